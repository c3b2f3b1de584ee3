import type { EntityClass } from '@mikro-orm/core';
import { Migrator } from '@mikro-orm/migrations';
import { MikroORM } from '@mikro-orm/postgresql';
import type { Logger } from '../logger.ts';
import { migrations } from './migrations/index.ts';

export type { MikroORM };
export type { EntityManager } from '@mikro-orm/postgresql';

export interface OrmOptions {
  url: string;
  logger: Logger;
  poolSize?: number;
  /** Every entity of every area: the composition root assembles them. */
  // biome-ignore lint/suspicious/noExplicitAny: entity classes of every shape are listed together.
  entities: EntityClass<any>[];
}

export async function createOrm({ url, logger, poolSize = 10, entities }: OrmOptions): Promise<MikroORM> {
  const sqlLogger = logger.child({ component: 'orm' });
  return MikroORM.init({
    clientUrl: url,
    entities,
    extensions: [Migrator],
    pool: { min: 0, max: poolSize },
    // The schema is owned by migrations; nothing is created implicitly at start-up.
    ensureDatabase: false,
    debug: sqlLogger.isLevelEnabled('trace'),
    logger: (message) => sqlLogger.trace(message),
    migrations: {
      migrationsList: migrations,
      tableName: 'schema_migrations',
      snapshot: false,
      silent: true,
    },
    schemaGenerator: {
      // pg-boss keeps its own schema; it is not part of our model.
      ignoreSchema: ['pgboss'],
      // The credential-change triggers and the event sequencer (sequence_events) are written
      // by hand in their migrations: the entities do not describe them, so diffs must not drop them.
      ignoreTriggers: true,
      ignoreRoutines: true,
    },
  });
}
