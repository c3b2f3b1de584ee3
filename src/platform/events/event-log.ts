import type { EntityManager } from '../db/orm.ts';
import { Event } from './entities.ts';

export interface NewEvent {
  kind: string;
  subjectId: string;
  ownerId: string;
  payload: Record<string, unknown>;
}

/** An event with its global position, as streams deliver it. */
export interface SequencedEvent extends NewEvent {
  sequence: number;
  createdAt: Date;
}

/**
 * Records an event in the caller's transaction, so that it exists exactly when the
 * change it describes does. It gets its position from the sequencer after the commit.
 */
export function appendEvent(em: EntityManager, event: NewEvent): void {
  em.create(Event, { ...event, createdAt: new Date() });
}

interface EventRow {
  sequence: string;
  created_at: string | Date;
  kind: string;
  subject_id: string;
  owner_id: string;
  payload: Record<string, unknown>;
}

/** Sequenced events after `afterSequence`, in order, optionally only those of one owner. */
export async function readEvents(em: EntityManager, afterSequence: number, limit: number, ownerId?: string): Promise<SequencedEvent[]> {
  const rows = await em.execute<EventRow[]>(
    `select sequence, created_at, kind, subject_id, owner_id, payload from events
      where sequence > ? ${ownerId ? 'and owner_id = ?' : ''} order by sequence limit ?`,
    ownerId ? [afterSequence, ownerId, limit] : [afterSequence, limit],
  );
  return rows.map((row) => ({
    sequence: Number(row.sequence),
    createdAt: new Date(row.created_at),
    kind: row.kind,
    subjectId: row.subject_id,
    ownerId: row.owner_id,
    payload: row.payload,
  }));
}
