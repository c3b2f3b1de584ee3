import { defineEntity, p } from '@mikro-orm/core';

/**
 * One change to a resource, in a log shared by every instance. Rows are written by the
 * transaction that makes the change, without a position; the sequencer gives them their
 * global `sequence` after they commit, one batch at a time, so that positions grow in
 * the order events became visible and a reader that has seen position N never sees a
 * new event below N.
 */
const EventSchema = defineEntity({
  name: 'Event',
  tableName: 'events',
  indexes: [
    { properties: ['subjectId', 'sequence'] },
    { name: 'events_unsequenced', expression: 'create index "events_unsequenced" on "events" ("id") where "sequence" is null' },
  ],
  properties: {
    id: p.bigint('number').primary().autoincrement(),
    sequence: p.bigint('number').nullable().unique(),
    createdAt: p.datetime(),
    /** What the event is about, e.g. `job.updated`. */
    kind: p.string().length(64),
    /** The resource it is about (a job id). */
    subjectId: p.uuid(),
    /** Who may see it: the resource's owner (and admins). */
    ownerId: p.uuid(),
    /** The resource as it was right after the change. */
    payload: p.json<Record<string, unknown>>(),
  },
});
export class Event extends EventSchema.class {}
EventSchema.setClass(Event);

/** Where the sequencer and the pruning stand: one row. */
const EventPositionsSchema = defineEntity({
  name: 'EventPositions',
  tableName: 'event_positions',
  properties: {
    id: p.integer().primary().autoincrement(false),
    lastSequence: p.bigint('number'),
    /** Every event up to this sequence has been deleted: resuming before it needs a resync. */
    prunedThrough: p.bigint('number'),
  },
});
export class EventPositions extends EventPositionsSchema.class {}
EventPositionsSchema.setClass(EventPositions);

export const eventEntities = [Event, EventPositions];
