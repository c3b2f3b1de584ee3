import type { FilterQuery } from '@mikro-orm/core';
import type { EntityManager, MikroORM } from '../db/orm.ts';
import { newId, isUuid } from '../ids.ts';
import type { Logger } from '../logger.ts';
import { findPage, type Page, type PageRequest } from '../pagination.ts';
import { AuditEvent, type AuditOutcomeName } from './entities.ts';
import { escapeLike } from '../db/like-patterns.ts';

export interface AuditRecord {
  actorId: string | undefined;
  actorUsername: string | undefined;
  action: string;
  target: string | undefined;
  clientAddress: string;
  requestId: string;
  outcome: AuditOutcomeName;
  errorCode: string | undefined;
  reason: string | undefined;
}

export interface AuditFilter {
  actor: string;
  action: string;
  target: string;
  since: Date | undefined;
  until: Date | undefined;
  outcome: AuditOutcomeName | undefined;
}

/**
 * The audit trail: who did what to which target, when, from where, and how it ended.
 * Records are written outside the audited call's transaction, so a failed call is
 * recorded too.
 */
export class AuditLog {
  readonly #orm: MikroORM;
  readonly #logger: Logger;

  constructor(orm: MikroORM, logger: Logger) {
    this.#orm = orm;
    this.#logger = logger.child({ component: 'audit' });
  }

  async record(entry: AuditRecord): Promise<void> {
    const em = this.#orm.em.fork();
    try {
      em.create(AuditEvent, {
        id: newId(),
        createdAt: new Date(),
        actorId: entry.actorId ?? null,
        actorUsername: entry.actorUsername?.slice(0, 64) ?? null,
        action: entry.action.slice(0, 200),
        target: entry.target?.slice(0, 512) || null,
        clientAddress: entry.clientAddress.slice(0, 64),
        requestId: entry.requestId.slice(0, 128),
        outcome: entry.outcome,
        errorCode: entry.errorCode ?? null,
        reason: entry.reason?.slice(0, 128) ?? null,
      });
      await em.flush();
    } catch (error) {
      // The action itself already happened; losing its record is logged loudly instead.
      this.#logger.error({ err: error, audit: entry }, 'could not write an audit event');
    }
  }

  list(em: EntityManager, filter: AuditFilter, page: PageRequest): Promise<Page<AuditEvent>> {
    const conditions: FilterQuery<AuditEvent>[] = [];
    if (filter.actor !== '') conditions.push(isUuid(filter.actor) ? { actorId: filter.actor } : { actorUsername: filter.actor.toLowerCase() });
    if (filter.action !== '') {
      conditions.push({ $or: [{ action: filter.action }, { action: { $like: `${escapeLike(filter.action)}.%` } }] });
    }
    if (filter.target !== '') conditions.push({ target: filter.target });
    if (filter.since) conditions.push({ createdAt: { $gte: filter.since } });
    if (filter.until) conditions.push({ createdAt: { $lt: filter.until } });
    if (filter.outcome) conditions.push({ outcome: filter.outcome });
    return findPage(em, AuditEvent, {
      where: conditions.length > 0 ? { $and: conditions } : {},
      orderBy: { id: 'desc' },
      query: ['audit', filter],
      page,
    });
  }
}
