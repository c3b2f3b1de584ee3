import { adminEntities } from './admin/entities.ts';
import { authEntities } from './auth/entities.ts';
import { eventEntities } from './platform/events/entities.ts';
import { fileEntities } from './files/entities.ts';
import { jobEntities } from './jobs/entities.ts';
import { queueEntities } from './queue/entities.ts';
import { settingsEntities } from './platform/settings/entities.ts';
import { systemEntities } from './system/entities.ts';
import { workerEntities } from './worker/entities.ts';
import { createOrm as createPlatformOrm, type MikroORM, type OrmOptions } from './platform/db/orm.ts';

/** Every entity of every area: the ORM's model, and what migrations are checked against. */
export const allEntities = [
  ...authEntities,
  ...settingsEntities,
  ...adminEntities,
  ...eventEntities,
  ...jobEntities,
  ...queueEntities,
  ...fileEntities,
  ...systemEntities,
  ...workerEntities,
];

/** The ORM over every area's entities, for the server, the migration scripts and the tests. */
export function createOrm(options: Omit<OrmOptions, 'entities'>): Promise<MikroORM> {
  return createPlatformOrm({ ...options, entities: allEntities });
}
