import type { FilterQuery, QueryOrderMap } from '@mikro-orm/core';
import type { EntityManager } from '../platform/db/orm.ts';
import { failedPrecondition, invalidField, notFound, Violations } from '../platform/domain-errors.ts';
import { requireId } from '../platform/ids.ts';
import { findPage, parseOrderBy, type Page, type PageRequest } from '../platform/pagination.ts';
import { checkEmail, checkUsername, createAccount, ensureIdentityFree, normalizeEmail, normalizeUsername } from './accounts.ts';
import type { Caller } from '../platform/caller.ts';
import { ApiKey, Session, User, type RoleName } from './entities.ts';
import { checkPasswordPolicy, generatePassword, hashPassword } from './passwords.ts';
import type { SettingsReader } from '../platform/settings/settings-store.ts';
import type { authSettings } from './auth-settings.ts';
import { escapeLike } from '../platform/db/like-patterns.ts';
import { authReasons } from './auth-reasons.ts';
import { checkUpdateMask } from '../platform/update-masks.ts';

/** Changes that could leave the system without an admin are serialised with this lock. */
const adminChangeLockKey = 0x59_4d_41_44; // "YMAD"

export interface UserFilter {
  query: string;
  role: RoleName | undefined;
  active: boolean | undefined;
  orderBy: string;
}

export interface UserChanges {
  username?: string;
  email?: string;
  role?: RoleName | undefined;
  active?: boolean;
}

const updatablePaths = ['username', 'email', 'role', 'active'] as const;
type UpdatablePath = (typeof updatablePaths)[number];

const orderings: Record<string, QueryOrderMap<User>> = {
  '': { id: 'desc' },
  'create_time desc': { id: 'desc' },
  create_time: { id: 'asc' },
  'create_time asc': { id: 'asc' },
  username: { username: 'asc', id: 'asc' },
  'username asc': { username: 'asc', id: 'asc' },
};

/** What account deletion needs from the files area (implemented by it, connected in app.ts). */
export interface AccountFiles {
  /** Removes what the account owns outside its database rows (file bytes), before the account is deleted. */
  deleteAccountFiles(em: EntityManager, userId: string): Promise<void>;
}

/** Account administration. Callers of these are admins: the access policy saw to it. */
export class UserAdmin {
  readonly #settings: SettingsReader<typeof authSettings>;
  readonly #accountFiles: AccountFiles;
  readonly #credentialsChanged: () => void;

  /** `credentialsChanged` is told after a change to an account's credentials has committed (see AuthServiceDeps). */
  constructor(settings: SettingsReader<typeof authSettings>, accountFiles: AccountFiles, credentialsChanged: () => void = () => {}) {
    this.#settings = settings;
    this.#accountFiles = accountFiles;
    this.#credentialsChanged = credentialsChanged;
  }

  listUsers(em: EntityManager, filter: UserFilter, page: PageRequest): Promise<Page<User>> {
    const orderBy = parseOrderBy(filter.orderBy, orderings, 'must be one of "create_time desc", "create_time" or "username"');
    const conditions: FilterQuery<User>[] = [];
    const query = filter.query.trim().toLowerCase();
    if (query !== '') {
      const pattern = `%${escapeLike(query)}%`;
      conditions.push({ $or: [{ username: { $like: pattern } }, { email: { $like: pattern } }] });
    }
    if (filter.role) conditions.push({ role: filter.role });
    if (filter.active !== undefined) conditions.push({ active: filter.active });
    return findPage(em, User, {
      where: conditions.length > 0 ? { $and: conditions } : {},
      orderBy,
      query: ['users', filter.query, filter.role, filter.active, orderBy],
      page,
    });
  }

  async getUser(em: EntityManager, id: string): Promise<User> {
    requireId(id, 'id');
    const user = await em.findOne(User, id);
    if (!user) throw notFound('user');
    return user;
  }

  createUser(em: EntityManager, input: { username: string; email: string; password: string; role: RoleName | undefined }): Promise<User> {
    const violations = new Violations();
    violations.check(input.role !== undefined, 'role', 'must be ROLE_USER, ROLE_ADMIN or ROLE_WORKER');
    return createAccount(
      em,
      { ...input, role: input.role ?? 'user' },
      this.#settings.get('auth.password_min_length'),
      { username: 'username', email: 'email', password: 'password' },
      violations,
    );
  }

  /** Applies the fields named in `updateMask` (proto paths); the others are untouched. */
  async updateUser(em: EntityManager, id: string, changes: UserChanges, updateMask: string[]): Promise<User> {
    requireId(id, 'user.id');
    const paths = this.#checkMask(updateMask);
    const violations = new Violations();
    const username = paths.has('username') ? normalizeUsername(changes.username ?? '') : undefined;
    const email = paths.has('email') ? normalizeEmail(changes.email ?? '') : undefined;
    if (username !== undefined) checkUsername(username, 'user.username', violations);
    if (email !== undefined) checkEmail(email, 'user.email', violations);
    if (paths.has('role') && !changes.role) violations.add('user.role', 'must be a role');
    violations.throwIfAny();

    const updated = await em.transactional(async (tx) => {
      await tx.execute('select pg_advisory_xact_lock(?)', [adminChangeLockKey]);
      const user = await tx.findOne(User, id);
      if (!user) throw notFound('user');
      await ensureIdentityFree(tx, { username, email }, user.id, { username: 'user.username', email: 'user.email' });
      const losesAdmin =
        user.role === 'admin' &&
        user.active &&
        ((paths.has('role') && changes.role !== 'admin') || (paths.has('active') && changes.active === false));
      if (losesAdmin) await this.#ensureAnotherAdmin(tx, user.id);
      if (username !== undefined) user.username = username;
      if (email !== undefined) user.email = email;
      if (paths.has('role')) user.role = changes.role!;
      if (paths.has('active')) {
        if (user.active && changes.active === false) {
          await tx.nativeUpdate(
            Session,
            { user: user.id, revokedAt: null },
            { revokedAt: new Date(), revokeReason: 'account_deactivated' },
          );
        }
        user.active = changes.active ?? false;
      }
      await tx.flush();
      return user;
    });
    this.#credentialsChanged();
    return updated;
  }

  /**
   * Deletes an account. What other areas keep outside the database for it (file bytes)
   * is removed first through AccountFiles, once the deletion is known to be allowed;
   * the rows then go with the account.
   */
  async deleteUser(em: EntityManager, actor: Caller, input: { id: string; confirm: string }): Promise<void> {
    requireId(input.id, 'id');
    const checkAllowed = async (tx: EntityManager) => {
      await tx.execute('select pg_advisory_xact_lock(?)', [adminChangeLockKey]);
      const user = await tx.findOne(User, input.id);
      if (!user) throw notFound('user');
      if (input.confirm !== user.username) throw invalidField('confirm', 'must equal the username of the account to delete');
      if (user.id === actor.userId) throw failedPrecondition('admins cannot delete their own account', authReasons.SELF_DELETE);
      if (user.role === 'admin' && user.active) await this.#ensureAnotherAdmin(tx, user.id);
      return user;
    };
    await em.fork().transactional(checkAllowed);
    await this.#accountFiles.deleteAccountFiles(em.fork(), input.id);
    await em.transactional(async (tx) => {
      tx.remove(await checkAllowed(tx));
      await tx.flush();
    });
    this.#credentialsChanged();
  }

  /**
   * Sets a new password (generated when none is given) and ends all the account's
   * sessions and API keys: a reset is what follows a suspected takeover, and a key made
   * by whoever took the account over must not outlive it.
   */
  async resetPassword(em: EntityManager, input: { id: string; newPassword: string }): Promise<{ user: User; generatedPassword: string }> {
    requireId(input.id, 'id');
    const minLength = this.#settings.get('auth.password_min_length');
    const generatedPassword = input.newPassword === '' ? generatePassword(minLength) : '';
    const password = generatedPassword || input.newPassword;
    const violations = new Violations();
    checkPasswordPolicy(password, minLength, 'new_password', violations);
    violations.throwIfAny();
    const user = await em.findOne(User, input.id);
    if (!user) throw notFound('user');
    user.passwordHash = await hashPassword(password);
    await em.flush();
    await em.nativeUpdate(Session, { user: user.id, revokedAt: null }, { revokedAt: new Date(), revokeReason: 'password_reset' });
    await em.nativeUpdate(ApiKey, { user: user.id, revokedAt: null }, { revokedAt: new Date() });
    this.#credentialsChanged();
    return { user, generatedPassword };
  }

  #checkMask(updateMask: string[]): Set<UpdatablePath> {
    const violations = new Violations();
    const paths = checkUpdateMask(updateMask, updatablePaths, violations);
    violations.throwIfAny();
    return paths;
  }

  async #ensureAnotherAdmin(em: EntityManager, exceptId: string): Promise<void> {
    const others = await em.count(User, { role: 'admin', active: true, id: { $ne: exceptId } });
    if (others === 0) throw failedPrecondition('this is the last active admin: promote another account first', authReasons.LAST_ADMIN);
  }
}
