import type { FilterQuery } from '@mikro-orm/core';
import type { EntityManager, MikroORM } from '../platform/db/orm.ts';
import { newId, isUuid } from '../platform/ids.ts';
import type { Logger } from '../platform/logger.ts';
import { findPage, type Page, type PageRequest } from '../platform/pagination.ts';
import { AuditEvent, type AuditOutcomeName } from './entities.ts';
import { escapeLike } from '../platform/db/like-patterns.ts';
import { adminReasons } from './admin-reasons.ts';

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

/** Stands for the outcome of a call recorded before it ran, until its real outcome replaces it. */
const outcomeNotRecorded = { outcome: 'failure', errorCode: 'unknown', reason: adminReasons.OUTCOME_NOT_RECORDED } as const;

/**
 * The audit trail: who did what to which target, when, from where, and how it ended.
 * Records are written outside the audited call's transaction, so a failed call is
 * recorded too. A call that can change something is recorded before it runs (`begin`)
 * and its outcome filled in after (`finish`): its effects may reach object storage as
 * well as the database, which no transaction can undo, so a call whose record cannot be
 * written must not run at all.
 */
export class AuditLog {
  readonly #orm: MikroORM;
  readonly #logger: Logger;

  constructor(orm: MikroORM, logger: Logger) {
    this.#orm = orm;
    this.#logger = logger.child({ component: 'audit' });
  }

  /** Records a call that has ended (one refused before it could act); a failure to write is logged. */
  async record(entry: AuditRecord): Promise<void> {
    try {
      await this.#insert(entry);
    } catch (error) {
      // The call already ended without acting; losing its record is logged loudly instead.
      this.#logger.error({ err: error, audit: entry }, 'could not write an audit event');
    }
  }

  /**
   * Records a call about to run, its outcome not yet known; returns the record's id. It
   * throws when the record cannot be written: the caller must then not run the call.
   */
  async begin(entry: Omit<AuditRecord, 'outcome' | 'errorCode' | 'reason'>): Promise<string> {
    return this.#insert({ ...entry, ...outcomeNotRecorded });
  }

  /**
   * Fills in the outcome of a call recorded by `begin`. If this fails, the record stays,
   * saying the call ran with an outcome not recorded; the failure is logged.
   */
  async finish(id: string, entry: AuditRecord): Promise<void> {
    try {
      await this.#orm.em.fork().nativeUpdate(AuditEvent, { id }, this.#row(entry));
    } catch (error) {
      this.#logger.error({ err: error, audit: entry, auditEventId: id }, 'could not record the outcome of an audited call');
    }
  }

  async #insert(entry: AuditRecord): Promise<string> {
    const em = this.#orm.em.fork();
    const id = newId();
    em.create(AuditEvent, { id, createdAt: new Date(), ...this.#row(entry) });
    await em.flush();
    return id;
  }

  /** The columns of a record, cut to their sizes. */
  #row(entry: AuditRecord) {
    return {
      actorId: entry.actorId ?? null,
      actorUsername: entry.actorUsername?.slice(0, 64) ?? null,
      action: entry.action.slice(0, 200),
      target: entry.target?.slice(0, 512) || null,
      clientAddress: entry.clientAddress.slice(0, 64),
      requestId: entry.requestId.slice(0, 128),
      outcome: entry.outcome,
      errorCode: entry.errorCode ?? null,
      reason: entry.reason?.slice(0, 128) ?? null,
    };
  }

  list(em: EntityManager, filter: AuditFilter, page: PageRequest): Promise<Page<AuditEvent>> {
    const conditions: FilterQuery<AuditEvent>[] = [];
    if (filter.actor !== '')
      conditions.push(isUuid(filter.actor) ? { actorId: filter.actor } : { actorUsername: filter.actor.toLowerCase() });
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
