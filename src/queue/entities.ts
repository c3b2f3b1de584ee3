import { defineEntity, p } from '@mikro-orm/core';

/** Name of the row that holds the global pause. */
export const globalQueueName = '*';

/**
 * The pause state of a queue (or, under `*`, of every queue). Kept by us because pg-boss
 * has no pause: every instance and every claim honours these rows.
 */
const QueueStateSchema = defineEntity({
  name: 'QueueState',
  tableName: 'queue_states',
  properties: {
    name: p.string().length(64).primary(),
    paused: p.boolean(),
    updatedAt: p.datetime(),
    updatedBy: p.string().length(64).nullable(),
  },
});
export class QueueState extends QueueStateSchema.class {}
QueueStateSchema.setClass(QueueState);

export const queueEntities = [QueueState];
