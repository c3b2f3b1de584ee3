import { defineEntity, p } from '@mikro-orm/core';
import { roles } from '../platform/caller.ts';

export { roles };
export type { RoleName } from '../platform/caller.ts';

const now = () => new Date();

const UserSchema = defineEntity({
  name: 'User',
  tableName: 'users',
  properties: {
    id: p.uuid().primary(),
    username: p.string().length(64).unique(),
    email: p.string().length(320).unique(),
    passwordHash: p.text().lazy(),
    role: p.enum(roles),
    active: p.boolean().default(true),
    createdAt: p.datetime().onCreate(now),
    updatedAt: p.datetime().onCreate(now).onUpdate(now),
    lastLoginAt: p.datetime().nullable(),
    /** Last login or refresh: what "active in the last 24 hours" counts. */
    lastSeenAt: p.datetime().nullable(),
  },
});
export class User extends UserSchema.class {}
UserSchema.setClass(User);

/**
 * A session is one sign-in on one device: a family of refresh tokens, each replacing
 * the one before. Revoking the session revokes the whole family and the access tokens
 * that carry its id.
 */
const SessionSchema = defineEntity({
  name: 'Session',
  tableName: 'sessions',
  properties: {
    id: p.uuid().primary(),
    user: () => p.manyToOne(User).mapToPk().deleteRule('cascade').index(),
    createdAt: p.datetime().onCreate(now),
    lastUsedAt: p.datetime(),
    expiresAt: p.datetime(),
    revokedAt: p.datetime().nullable(),
    revokeReason: p.string().length(64).nullable(),
    userAgent: p.string().length(512),
    clientAddress: p.string().length(64),
  },
});
export class Session extends SessionSchema.class {}
SessionSchema.setClass(Session);

const RefreshTokenSchema = defineEntity({
  name: 'RefreshToken',
  tableName: 'refresh_tokens',
  properties: {
    id: p.uuid().primary(),
    session: () => p.manyToOne(Session).mapToPk().deleteRule('cascade').index(),
    /** SHA-256 of the token: the token has 256 random bits, so a fast hash is enough. */
    tokenHash: p.string().length(64).unique(),
    createdAt: p.datetime().onCreate(now),
    expiresAt: p.datetime(),
    /** Set when this token was exchanged; presenting it again after the grace interval is reuse. */
    rotatedAt: p.datetime().nullable(),
    /**
     * The reply of the rotation, encrypted with a key derived from this token, so that a
     * racing second refresh within the grace interval gets the same pair, and the stored
     * value is useless to anyone who does not hold the token itself.
     */
    rotationReply: p.text().nullable().lazy(),
  },
});
export class RefreshToken extends RefreshTokenSchema.class {}
RefreshTokenSchema.setClass(RefreshToken);

const ApiKeySchema = defineEntity({
  name: 'ApiKey',
  tableName: 'api_keys',
  properties: {
    id: p.uuid().primary(),
    user: () => p.manyToOne(User).mapToPk().deleteRule('cascade').index(),
    name: p.string().length(100),
    /** `ym_` and the next 8 characters of the secret, to recognise a key in a list. */
    prefix: p.string().length(16),
    secretHash: p.string().length(64).unique(),
    createdAt: p.datetime().onCreate(now),
    expiresAt: p.datetime().nullable(),
    lastUsedAt: p.datetime().nullable(),
    revokedAt: p.datetime().nullable(),
  },
});
export class ApiKey extends ApiKeySchema.class {}
ApiKeySchema.setClass(ApiKey);

/**
 * A key that signs access tokens. Exactly one is current (retiredAt unset); retired keys
 * stay published in the JWKS until every token they signed has expired.
 */
const SigningKeySchema = defineEntity({
  name: 'SigningKey',
  tableName: 'signing_keys',
  properties: {
    id: p.string().length(64).primary(),
    algorithm: p.string().length(16),
    publicJwk: p.json<Record<string, unknown>>(),
    privateJwk: p.json<Record<string, unknown>>().lazy(),
    createdAt: p.datetime().onCreate(now),
    retiredAt: p.datetime().nullable(),
  },
});
export class SigningKey extends SigningKeySchema.class {}
SigningKeySchema.setClass(SigningKey);

/**
 * Counters of the credential rate limiter (rate-limiter-flexible's Postgres store, whose
 * column layout this mirrors), shared by every instance.
 */
const RateLimitCounterSchema = defineEntity({
  name: 'RateLimitCounter',
  tableName: 'rate_limit_counters',
  properties: {
    key: p.string().length(255).primary(),
    points: p.integer().default(0),
    expire: p.bigint('number').nullable(),
  },
});
export class RateLimitCounter extends RateLimitCounterSchema.class {}
RateLimitCounterSchema.setClass(RateLimitCounter);

export const authEntities = [User, Session, RefreshToken, ApiKey, SigningKey, RateLimitCounter];
