import { adminEntities } from '../admin/entities.ts';
import { authEntities } from '../auth/entities.ts';
import { eventEntities } from '../events/entities.ts';
import { fileEntities } from '../files/entities.ts';
import { jobEntities } from '../jobs/entities.ts';
import { queueEntities } from '../queue/entities.ts';

/** Every entity of every area: the ORM's model, and what migrations are checked against. */
export const allEntities = [...authEntities, ...adminEntities, ...eventEntities, ...jobEntities, ...queueEntities, ...fileEntities];
