import { LockMode, type EntityName, type FilterQuery } from '@mikro-orm/core';
import type { SettingsReader } from '../platform/settings/settings-store.ts';
import type { authSettings } from './auth-settings.ts';
import type { EntityManager } from '../platform/db/orm.ts';
import {
  DomainError,
  WrongPasswordError,
  invalidField,
  notFound,
  permissionDenied,
  unauthenticated,
  Violations,
} from '../platform/domain-errors.ts';
import { newId, requireId } from '../platform/ids.ts';
import { findPage, type Page, type PageRequest } from '../platform/pagination.ts';
import { createAccount, normalizeEmail, normalizeUsername } from './accounts.ts';
import type { Caller, ClientInfo } from '../platform/caller.ts';
import { ApiKey, RefreshToken, Session, User } from './entities.ts';
import { checkPasswordPolicy, hashPassword, maxPasswordLength, verifyDecoyPassword, verifyPassword } from './passwords.ts';
import { newApiKeySecret, newRefreshToken, openWithSecret, refreshTokenPrefix, sealWithSecret, secretHash } from './secrets.ts';
import type { SigningKeys } from './signing-keys.ts';
import { authReasons } from './auth-reasons.ts';

/** What a successful Login, Register or Refresh hands out. */
export interface TokenGrant {
  accessToken: string;
  accessTokenExpiresAt: Date;
  refreshToken: string;
  refreshTokenExpiresAt: Date;
  user: User;
}

interface SealedGrant {
  accessToken: string;
  accessTokenExpiresAt: string;
  refreshToken: string;
  refreshTokenExpiresAt: string;
}

/** The account and session a refresh token belongs to, known once the token is found. */
export interface SessionOwner {
  sessionId: string;
  userId: string;
  username: string;
}

const maxActiveApiKeysPerUser = 100;

export interface AuthServiceDeps {
  settings: SettingsReader<typeof authSettings>;
  signingKeys: SigningKeys;
  refreshTokenTtlMs: number;
  /**
   * Told after a change that ends a credential has committed, so that this instance stops
   * accepting it before its own notification comes back (the others learn by NOTIFY).
   */
  credentialsChanged?: () => void;
}

const invalidCredentials = () => unauthenticated('wrong username or password', authReasons.INVALID_CREDENTIALS);
/** Whether `presented` could be a refresh token at all (worth hashing and looking up). */
const plausibleRefreshToken = (presented: string) => presented.startsWith(refreshTokenPrefix) && presented.length <= 100;
const invalidRefreshToken = () => unauthenticated('the refresh token is not valid', authReasons.REFRESH_TOKEN_INVALID);

/**
 * Sign-in and the caller's own credentials. Every method takes the request's
 * EntityManager; nothing here knows about RPC.
 */
export class AuthService {
  readonly #settings: SettingsReader<typeof authSettings>;
  readonly #signingKeys: SigningKeys;
  readonly #refreshTokenTtlMs: number;
  readonly #credentialsChanged: () => void;

  constructor(deps: AuthServiceDeps) {
    this.#settings = deps.settings;
    this.#signingKeys = deps.signingKeys;
    this.#refreshTokenTtlMs = deps.refreshTokenTtlMs;
    this.#credentialsChanged = deps.credentialsChanged ?? (() => {});
  }

  async login(em: EntityManager, input: { username: string; password: string }, client: ClientInfo): Promise<TokenGrant> {
    const violations = new Violations();
    violations.check(input.username.trim() !== '', 'username', 'is required');
    violations.check(input.password !== '', 'password', 'is required');
    violations.check(input.username.length <= 320, 'username', 'is too long');
    violations.check(input.password.length <= maxPasswordLength, 'password', 'is too long');
    violations.throwIfAny();

    const identifier = normalizeUsername(input.username);
    const user = await em.findOne(User, identifier.includes('@') ? { email: normalizeEmail(identifier) } : { username: identifier }, {
      populate: ['passwordHash'],
    });
    const passwordOk = user ? await verifyPassword(user.passwordHash, input.password) : await verifyDecoyPassword(input.password);
    if (!user || !passwordOk) throw invalidCredentials();
    if (!user.active) throw unauthenticated('this account is deactivated', authReasons.ACCOUNT_DISABLED);
    user.lastLoginAt = new Date();
    return this.#startSession(em, user, client);
  }

  async register(em: EntityManager, input: { username: string; email: string; password: string }, client: ClientInfo): Promise<TokenGrant> {
    if (!this.#settings.get('auth.open_registration')) {
      throw permissionDenied('registration is closed: ask an admin for an account', authReasons.REGISTRATION_CLOSED);
    }
    const user = await createAccount(em, { ...input, role: 'user' }, this.#settings.get('auth.password_min_length'), {
      username: 'username',
      email: 'email',
      password: 'password',
    });
    user.lastLoginAt = new Date();
    return this.#startSession(em, user, client);
  }

  /**
   * Rotates a refresh token. A token that was already rotated is either a racing
   * duplicate (within the grace interval: the same reply again) or a stolen copy in
   * use (afterwards: the whole session is revoked).
   */
  async refresh(
    em: EntityManager,
    input: { refreshToken: string },
    client: ClientInfo,
    identified: (session: SessionOwner) => void = () => {},
  ): Promise<TokenGrant> {
    const presented = input.refreshToken.trim();
    if (!plausibleRefreshToken(presented)) throw invalidRefreshToken();

    const outcome = await em.transactional(async (tx): Promise<TokenGrant | DomainError> => {
      // The row lock serialises racing refreshes of one token, so exactly one rotates it.
      const token = await tx.findOne(
        RefreshToken,
        { tokenHash: secretHash(presented) },
        {
          lockMode: LockMode.PESSIMISTIC_WRITE,
          populate: ['rotationReply'],
        },
      );
      if (!token) return invalidRefreshToken();
      const session = await tx.findOneOrFail(Session, token.session, { lockMode: LockMode.PESSIMISTIC_WRITE });
      const user = await tx.findOneOrFail(User, session.user);
      identified({ sessionId: session.id, userId: user.id, username: user.username });
      const now = new Date();
      if (session.revokedAt) return unauthenticated('this session has ended', authReasons.SESSION_REVOKED);
      if (token.expiresAt <= now || session.expiresAt <= now)
        return unauthenticated('the refresh token has expired', authReasons.REFRESH_TOKEN_EXPIRED);
      if (!user.active) return unauthenticated('this account is deactivated', authReasons.ACCOUNT_DISABLED);

      if (token.rotatedAt) {
        const withinGrace = now.getTime() - token.rotatedAt.getTime() <= this.#settings.get('auth.refresh_reuse_grace');
        const earlierReply = withinGrace && token.rotationReply ? openWithSecret(presented, token.rotationReply) : undefined;
        if (earlierReply) return this.#unsealGrant(earlierReply, user);
        session.revokedAt = now;
        session.revokeReason = 'refresh_token_reuse';
        return unauthenticated(
          'this refresh token was already used: the session has been ended for safety',
          authReasons.REFRESH_TOKEN_REUSED,
        );
      }

      const grant = await this.#issueTokens(tx, session, user, client, now);
      token.rotatedAt = now;
      token.rotationReply = sealWithSecret(presented, JSON.stringify(this.#sealableGrant(grant)));
      // Only the latest spent token can still be in a racing request; older replies are dropped.
      await tx.nativeUpdate(
        RefreshToken,
        { session: session.id, id: { $ne: token.id }, rotationReply: { $ne: null } },
        { rotationReply: null },
      );
      user.lastSeenAt = now;
      return grant;
    });
    // A revocation for reuse must be committed even though the call fails.
    if (outcome instanceof DomainError) {
      this.#credentialsChanged();
      throw outcome;
    }
    return outcome;
  }

  /**
   * Ends one of the caller's sessions (the one of `refreshToken`, else the one of the
   * caller's access token) or, with `allSessions`, all of them. Returns how many ended,
   * and which session the call was about (undefined for all).
   */
  async logout(
    em: EntityManager,
    input: { refreshToken: string; allSessions: boolean },
    caller: Caller,
  ): Promise<{ revoked: number; sessionId: string | undefined }> {
    let sessionId = caller.sessionId;
    if (input.refreshToken !== '') {
      const presented = input.refreshToken.trim();
      const token = plausibleRefreshToken(presented) ? await em.findOne(RefreshToken, { tokenHash: secretHash(presented) }) : null;
      const session = token ? await em.findOne(Session, { id: token.session, user: caller.userId }) : null;
      // Another account's token is answered like an unknown one.
      if (!session) throw invalidField('refresh_token', 'is not the refresh token of one of your sessions');
      sessionId = session.id;
    }
    if (input.allSessions) {
      const revoked = await em.nativeUpdate(
        Session,
        { user: caller.userId, revokedAt: null },
        { revokedAt: new Date(), revokeReason: 'logout' },
      );
      this.#credentialsChanged();
      return { revoked, sessionId: undefined };
    }
    if (!sessionId) throw invalidField('refresh_token', 'is required to end one session when calling with an API key');
    const revoked = await em.nativeUpdate(Session, { id: sessionId, revokedAt: null }, { revokedAt: new Date(), revokeReason: 'logout' });
    this.#credentialsChanged();
    return { revoked, sessionId };
  }

  async getUser(em: EntityManager, caller: Caller): Promise<User> {
    return em.findOneOrFail(User, caller.userId);
  }

  /** Changes the caller's password; their other sessions end. Returns how many ended. */
  async changePassword(em: EntityManager, caller: Caller, input: { currentPassword: string; newPassword: string }): Promise<number> {
    const violations = new Violations();
    violations.check(input.currentPassword !== '', 'current_password', 'is required');
    checkPasswordPolicy(input.newPassword, this.#settings.get('auth.password_min_length'), 'new_password', violations);
    violations.throwIfAny();
    const user = await em.findOneOrFail(User, caller.userId, { populate: ['passwordHash'] });
    if (input.currentPassword.length > maxPasswordLength || !(await verifyPassword(user.passwordHash, input.currentPassword))) {
      throw new WrongPasswordError('the current password is wrong', {
        reason: authReasons.WRONG_PASSWORD,
        violations: [{ field: 'current_password', description: 'is not the current password' }],
      });
    }
    user.passwordHash = await hashPassword(input.newPassword);
    await em.flush();
    const others = caller.sessionId
      ? { user: user.id, revokedAt: null, id: { $ne: caller.sessionId } }
      : { user: user.id, revokedAt: null };
    const revoked = await em.nativeUpdate(Session, others, { revokedAt: new Date(), revokeReason: 'password_changed' });
    this.#credentialsChanged();
    return revoked;
  }

  async createApiKey(
    em: EntityManager,
    caller: Caller,
    input: { name: string; expiresAt: Date | undefined },
  ): Promise<{ apiKey: ApiKey; secret: string }> {
    const name = input.name.trim();
    const violations = new Violations();
    violations.check(name.length >= 1 && name.length <= 100, 'name', 'must be 1 to 100 characters');
    if (input.expiresAt) violations.check(input.expiresAt.getTime() > Date.now(), 'expire_time', 'must be in the future');
    violations.throwIfAny();
    const active = await em.count(ApiKey, {
      user: caller.userId,
      revokedAt: null,
      $or: [{ expiresAt: null }, { expiresAt: { $gt: new Date() } }],
    });
    if (active >= maxActiveApiKeysPerUser) {
      throw new DomainError(
        'resource_exhausted',
        `an account may hold at most ${maxActiveApiKeysPerUser} active API keys: revoke some first`,
        { reason: authReasons.API_KEY_LIMIT },
      );
    }
    const secret = newApiKeySecret();
    const apiKey = em.create(ApiKey, {
      id: newId(),
      user: caller.userId,
      name,
      prefix: secret.slice(0, 11),
      secretHash: secretHash(secret),
      expiresAt: input.expiresAt ?? null,
    });
    await em.flush();
    return { apiKey, secret };
  }

  listApiKeys(em: EntityManager, caller: Caller, input: { showRevoked: boolean }, page: PageRequest): Promise<Page<ApiKey>> {
    return findPage(em, ApiKey, {
      where: input.showRevoked ? { user: caller.userId } : { user: caller.userId, revokedAt: null },
      orderBy: { id: 'desc' },
      query: ['api_keys', input.showRevoked],
      page,
    });
  }

  async revokeApiKey(em: EntityManager, caller: Caller, id: string): Promise<ApiKey> {
    const apiKey = await findOwned(em, ApiKey, id, caller.userId, 'API key');
    apiKey.revokedAt ??= new Date();
    await em.flush();
    this.#credentialsChanged();
    return apiKey;
  }

  listSessions(em: EntityManager, caller: Caller, page: PageRequest): Promise<Page<Session>> {
    return findPage(em, Session, {
      where: { user: caller.userId, revokedAt: null, expiresAt: { $gt: new Date() } },
      orderBy: { lastUsedAt: 'desc', id: 'desc' },
      query: ['sessions'],
      page,
    });
  }

  async revokeSession(em: EntityManager, caller: Caller, id: string): Promise<void> {
    const session = await findOwned(em, Session, id, caller.userId, 'session');
    session.revokedAt ??= new Date();
    session.revokeReason ??= 'revoked';
    await em.flush();
    this.#credentialsChanged();
  }

  /** Deletes sessions that can no longer be used; their refresh tokens go with them. */
  async pruneSessions(em: EntityManager): Promise<number> {
    const day = 86_400_000;
    return em.nativeDelete(Session, {
      $or: [{ expiresAt: { $lt: new Date(Date.now() - day) } }, { revokedAt: { $lt: new Date(Date.now() - 7 * day) } }],
    });
  }

  async #startSession(em: EntityManager, user: User, client: ClientInfo): Promise<TokenGrant> {
    const now = new Date();
    const session = em.create(Session, {
      id: newId(),
      user: user.id,
      lastUsedAt: now,
      expiresAt: now,
      userAgent: client.userAgent.slice(0, 512),
      clientAddress: client.clientAddress.slice(0, 64),
    });
    user.lastSeenAt = now;
    const grant = await this.#issueTokens(em, session, user, client, now);
    await em.flush();
    return grant;
  }

  /** A new refresh token for the session (extending it) and an access token bound to it. */
  async #issueTokens(em: EntityManager, session: Session, user: User, client: ClientInfo, now: Date): Promise<TokenGrant> {
    const refreshToken = newRefreshToken();
    const refreshTokenExpiresAt = new Date(now.getTime() + this.#refreshTokenTtlMs);
    em.create(RefreshToken, { id: newId(), session: session.id, tokenHash: secretHash(refreshToken), expiresAt: refreshTokenExpiresAt });
    session.lastUsedAt = now;
    session.expiresAt = refreshTokenExpiresAt;
    session.userAgent = client.userAgent.slice(0, 512);
    session.clientAddress = client.clientAddress.slice(0, 64);
    const access = await this.#signingKeys.sign({ userId: user.id, sessionId: session.id, role: user.role });
    await em.flush();
    return { accessToken: access.token, accessTokenExpiresAt: access.expiresAt, refreshToken, refreshTokenExpiresAt, user };
  }

  #sealableGrant(grant: TokenGrant): SealedGrant {
    return {
      accessToken: grant.accessToken,
      accessTokenExpiresAt: grant.accessTokenExpiresAt.toISOString(),
      refreshToken: grant.refreshToken,
      refreshTokenExpiresAt: grant.refreshTokenExpiresAt.toISOString(),
    };
  }

  #unsealGrant(json: string, user: User): TokenGrant {
    const sealed = JSON.parse(json) as SealedGrant;
    return {
      accessToken: sealed.accessToken,
      accessTokenExpiresAt: new Date(sealed.accessTokenExpiresAt),
      refreshToken: sealed.refreshToken,
      refreshTokenExpiresAt: new Date(sealed.refreshTokenExpiresAt),
      user,
    };
  }
}

/** A row of the caller's own; anyone else's is NotFound, never PermissionDenied. */
async function findOwned<T extends { id: string; user: string }>(
  em: EntityManager,
  entity: EntityName<T>,
  id: string,
  userId: string,
  resource: string,
): Promise<T> {
  requireId(id, 'id');
  const row = await em.findOne(entity, { id, user: userId } as FilterQuery<T>);
  if (!row) throw notFound(resource);
  return row as T;
}
