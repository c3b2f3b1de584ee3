import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';

/** API keys start with this, so that a leaked key is easy to grep for and to tell from a JWT. */
export const apiKeyPrefix = 'ym_';
/** Refresh tokens start with this. */
export const refreshTokenPrefix = 'ymr_';

export function newApiKeySecret(): string {
  return apiKeyPrefix + randomBytes(32).toString('base64url');
}

export function newRefreshToken(): string {
  return refreshTokenPrefix + randomBytes(32).toString('base64url');
}

/**
 * Hash under which a high-entropy secret (API key, refresh token) is stored. 256 random
 * bits cannot be guessed, so a fast hash is enough; the database never holds the secret.
 */
export function secretHash(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

function keyFromSecret(secret: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), 'yardmaster sealed by secret', 32));
}

/** Encrypts `plaintext` so that only a holder of `secret` can read it back (AES-256-GCM). */
export function sealWithSecret(secret: string, plaintext: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', keyFromSecret(secret), iv);
  const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64');
}

export function openWithSecret(secret: string, sealed: string): string | undefined {
  try {
    const raw = Buffer.from(sealed, 'base64');
    const decipher = createDecipheriv('aes-256-gcm', keyFromSecret(secret), raw.subarray(0, 12));
    decipher.setAuthTag(raw.subarray(12, 28));
    return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
  } catch {
    return undefined;
  }
}
