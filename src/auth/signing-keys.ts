import {
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  importJWK,
  jwtVerify,
  SignJWT,
  errors as joseErrors,
  type CryptoKey,
  type JWK,
  type JWTPayload,
} from 'jose';
import { z } from 'zod';
import { isUuid, newId } from '../platform/ids.ts';
import type { EntityManager, MikroORM } from '../platform/db/orm.ts';
import { unauthenticated } from '../platform/domain-errors.ts';
import type { PgNotifications } from '../platform/events/pg-notifications.ts';
import type { Logger } from '../platform/logger.ts';
import { roles, SigningKey } from './entities.ts';
import type { RoleName } from './entities.ts';
import { authReasons } from './auth-reasons.ts';

const algorithm = 'EdDSA';
const issuer = 'yardmaster';
const audience = 'yardmaster';
const channel = 'yardmaster_signing_keys';
/** Rotations are serialised across instances with this transaction-level advisory lock. */
const rotationLockKey = 0x59_4d_4b_52; // "YMKR"
/** How far apart the clocks of the instances (and other issuers' verifiers) may be, in seconds. */
const clockSkewSeconds = 60;

const uuid = z.string().refine(isUuid, 'must be a UUID');
/** The claims this server signs, by shape: what passes goes to SQL as is. */
const accessClaimsSchema = z.object({
  sub: uuid,
  sid: uuid,
  role: z.enum(roles),
  iat: z.number().int(),
  exp: z.number().int(),
});

/** What an access token says about its bearer. */
export interface AccessClaims {
  userId: string;
  sessionId: string;
  role: RoleName;
}

interface PublicKeyEntry {
  key: CryptoKey;
  jwk: JWK;
  retiredAt: Date | undefined;
}

/**
 * The keys that sign and verify access tokens. One key is current and signs; retired
 * keys keep verifying (and stay in the JWKS) until the tokens they signed have expired,
 * so a rotation logs nobody out. Every instance reloads its keys when told of a rotation.
 */
export class SigningKeys {
  readonly #orm: MikroORM;
  readonly #logger: Logger;
  readonly #accessTokenTtlMs: number;
  #current: { id: string; privateKey: CryptoKey } | undefined;
  #publicKeys = new Map<string, PublicKeyEntry>();
  #lastUnknownKidReload = 0;

  constructor(orm: MikroORM, logger: Logger, accessTokenTtlMs: number) {
    this.#orm = orm;
    this.#logger = logger.child({ component: 'signing-keys' });
    this.#accessTokenTtlMs = accessTokenTtlMs;
  }

  /** Creates the first key when there is none (call under the start-up lock). */
  async ensureKey(): Promise<void> {
    const em = this.#orm.em.fork();
    if ((await em.count(SigningKey, { retiredAt: null })) === 0) {
      await em.transactional((tx) => this.#insertNewKey(tx));
      this.#logger.info('created the first access-token signing key');
    }
  }

  async start(notifications: PgNotifications): Promise<void> {
    await notifications.subscribe(channel, () => void this.#reloadLogged());
    notifications.onReconnect(() => void this.#reloadLogged());
    await this.#reload();
  }

  async sign(claims: AccessClaims): Promise<{ token: string; expiresAt: Date }> {
    const current = this.#current;
    if (!current) throw new Error('no signing key loaded');
    const issuedAt = Math.floor(Date.now() / 1000);
    const expiresAt = new Date(issuedAt * 1000 + this.#accessTokenTtlMs);
    const token = await new SignJWT({ sid: claims.sessionId, role: claims.role })
      .setProtectedHeader({ alg: algorithm, kid: current.id, typ: 'JWT' })
      .setIssuer(issuer)
      .setAudience(audience)
      .setSubject(claims.userId)
      .setJti(newId())
      .setIssuedAt(issuedAt)
      .setExpirationTime(Math.floor(expiresAt.getTime() / 1000))
      .sign(current.privateKey);
    return { token, expiresAt };
  }

  /** Verifies signature, algorithm, issuer, audience and expiry. Throws Unauthenticated. */
  async verify(token: string): Promise<AccessClaims & { expiresAtMs: number }> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, (header) => this.#keyFor(header.kid), {
        algorithms: [algorithm],
        issuer,
        audience,
        requiredClaims: ['sub', 'exp', 'iat'],
        clockTolerance: 5,
      }));
    } catch (error) {
      throw unauthenticated(
        error instanceof joseErrors.JWTExpired ? 'the access token has expired' : 'the access token is not valid',
        error instanceof joseErrors.JWTExpired ? authReasons.ACCESS_TOKEN_EXPIRED : authReasons.ACCESS_TOKEN_INVALID,
      );
    }
    const parsed = accessClaimsSchema.safeParse(payload);
    if (!parsed.success) {
      const claim = String(parsed.error.issues[0]!.path[0]);
      throw unauthenticated(
        `the access token is not valid: claim ${claim} is ${payload[claim] === undefined ? 'missing' : 'malformed'}`,
        authReasons.ACCESS_TOKEN_INVALID,
      );
    }
    const { sub, sid, role, iat, exp } = parsed.data;
    // Only this server issues these tokens, and only with its own lifetime: a token from
    // the future or one that lives longer was not made here, whatever key signed it.
    if (iat > Date.now() / 1000 + clockSkewSeconds)
      throw unauthenticated('the access token is not valid: it was issued in the future', authReasons.ACCESS_TOKEN_INVALID);
    if (exp - iat > this.#accessTokenTtlMs / 1000 + clockSkewSeconds) {
      throw unauthenticated(
        'the access token is not valid: it lives longer than this server issues tokens for',
        authReasons.ACCESS_TOKEN_INVALID,
      );
    }
    return { userId: sub, sessionId: sid, role, expiresAtMs: exp * 1000 };
  }

  /** The public keys, as served at /.well-known/jwks.json. */
  jwks(): { keys: JWK[] } {
    return { keys: [...this.#publicKeys.values()].map((entry) => entry.jwk) };
  }

  async rotate(em: EntityManager): Promise<{ keyId: string; previousKeyId: string }> {
    const result = await em.transactional(async (tx) => {
      await tx.execute('select pg_advisory_xact_lock(?)', [rotationLockKey]);
      const previous = await tx.findOne(SigningKey, { retiredAt: null }, { orderBy: { createdAt: 'desc' } });
      await tx.nativeUpdate(SigningKey, { retiredAt: null }, { retiredAt: new Date() });
      const keyId = await this.#insertNewKey(tx);
      await tx.execute('select pg_notify(?, ?)', [channel, keyId]);
      return { keyId, previousKeyId: previous?.id ?? '' };
    });
    await this.#reload();
    return result;
  }

  async #insertNewKey(em: EntityManager): Promise<string> {
    const { publicKey, privateKey } = await generateKeyPair('Ed25519', { extractable: true });
    const publicJwk = await exportJWK(publicKey);
    const privateJwk = await exportJWK(privateKey);
    const id = await calculateJwkThumbprint(publicJwk);
    em.create(SigningKey, {
      id,
      algorithm,
      publicJwk: { ...publicJwk, kid: id, alg: algorithm, use: 'sig' },
      privateJwk: { ...privateJwk },
      createdAt: new Date(),
    });
    await em.flush();
    return id;
  }

  async #keyFor(kid: string | undefined): Promise<CryptoKey> {
    if (kid === undefined) throw new joseErrors.JWSSignatureVerificationFailed();
    let entry = this.#publicKeys.get(kid);
    // A token signed by a key another instance just created: reload, at most once a second,
    // so that garbage kids cannot make every request hit the database.
    if (!entry && Date.now() - this.#lastUnknownKidReload > 1000) {
      this.#lastUnknownKidReload = Date.now();
      await this.#reload();
      entry = this.#publicKeys.get(kid);
    }
    if (!entry) throw new joseErrors.JWSSignatureVerificationFailed();
    return entry.key;
  }

  async #reloadLogged(): Promise<void> {
    try {
      await this.#reload();
    } catch (error) {
      this.#logger.error({ err: error }, 'reloading signing keys failed');
    }
  }

  async #reload(): Promise<void> {
    const em = this.#orm.em.fork();
    // Keys retired longer ago than a token lives (plus a minute of clock skew) verify nothing any more.
    const verifiesUntil = new Date(Date.now() - this.#accessTokenTtlMs - 60_000);
    await em.nativeDelete(SigningKey, { retiredAt: { $lt: verifiesUntil } });
    const rows = await em.find(SigningKey, {}, { orderBy: { createdAt: 'desc' }, populate: ['privateJwk'] });
    const publicKeys = new Map<string, PublicKeyEntry>();
    let current: { id: string; privateKey: CryptoKey } | undefined;
    for (const row of rows) {
      const jwk = row.publicJwk as JWK;
      publicKeys.set(row.id, { key: (await importJWK(jwk, algorithm)) as CryptoKey, jwk, retiredAt: row.retiredAt ?? undefined });
      if (!current && !row.retiredAt) {
        current = { id: row.id, privateKey: (await importJWK(row.privateJwk as JWK, algorithm)) as CryptoKey };
      }
    }
    this.#publicKeys = publicKeys;
    if (current) this.#current = current;
  }
}
