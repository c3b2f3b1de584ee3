import { defineEntity, p } from '@mikro-orm/core';

const now = () => new Date();

export const auditOutcomes = ['success', 'failure'] as const;
export type AuditOutcomeName = (typeof auditOutcomes)[number];

/**
 * One audited action. The actor is kept by id and by name, without a foreign key, so the
 * record outlives the account it names.
 */
const AuditEventSchema = defineEntity({
  name: 'AuditEvent',
  tableName: 'audit_events',
  indexes: [{ properties: ['actorId', 'createdAt'] }, { properties: ['action', 'createdAt'] }, { properties: ['target', 'createdAt'] }],
  properties: {
    id: p.uuid().primary(),
    createdAt: p.datetime().onCreate(now).index(),
    actorId: p.uuid().nullable(),
    actorUsername: p.string().length(64).nullable(),
    action: p.string().length(200),
    target: p.string().length(512).nullable(),
    clientAddress: p.string().length(64),
    requestId: p.string().length(128),
    outcome: p.enum(auditOutcomes),
    errorCode: p.string().length(32).nullable(),
    reason: p.string().length(128).nullable(),
  },
});
export class AuditEvent extends AuditEventSchema.class {}
AuditEventSchema.setClass(AuditEvent);

export const adminEntities = [AuditEvent];
