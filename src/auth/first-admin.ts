import type { EntityManager } from '../platform/db/orm.ts';
import { newId } from '../platform/ids.ts';
import { User } from './entities.ts';
import { generatePassword, hashPassword } from './passwords.ts';

/**
 * On the very first start (no accounts at all), creates the admin account. Returns the
 * password when it was generated, so that it can be shown once; undefined otherwise.
 */
export async function ensureFirstAdmin(
  em: EntityManager,
  admin: { username: string; password: string | undefined },
): Promise<{ created: boolean; generatedPassword: string | undefined }> {
  if ((await em.count(User, {})) > 0) return { created: false, generatedPassword: undefined };
  const generatedPassword = admin.password === undefined ? generatePassword() : undefined;
  em.create(User, {
    id: newId(),
    username: admin.username,
    email: `${admin.username}@yardmaster.local`,
    passwordHash: await hashPassword(admin.password ?? generatedPassword!),
    role: 'admin',
    active: true,
  });
  await em.flush();
  return { created: true, generatedPassword };
}
