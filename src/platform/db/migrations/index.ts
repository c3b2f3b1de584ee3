import { Migration20261122210449_initial } from './Migration20261122210449_initial.ts';
import { Migration20261122221837_jobs } from './Migration20261122221837_jobs.ts';
import { Migration20261122222306_files } from './Migration20261122222306_files.ts';
import { Migration20261203090051_job_types } from './Migration20261203090051_job_types.ts';
import { Migration20261203090354_system } from './Migration20261203090354_system.ts';
import { Migration20261203102209_worker } from './Migration20261203102209_worker.ts';
import { Migration20261203140000_credential_notifications } from './Migration20261203140000_credential_notifications.ts';
import { Migration20261203140500_event_sequencing } from './Migration20261203140500_event_sequencing.ts';
import { Migration20261203150000_job_search } from './Migration20261203150000_job_search.ts';
import { Migration20261203151000_event_sequencing_scan } from './Migration20261203151000_event_sequencing_scan.ts';
import { Migration20261203161000_event_fillfactor } from './Migration20261203161000_event_fillfactor.ts';

/** Every migration, in order. `npm run migration:create` adds new ones here. */
export const migrations = [
  { name: 'Migration20261122210449_initial', class: Migration20261122210449_initial },
  { name: 'Migration20261122221837_jobs', class: Migration20261122221837_jobs },
  { name: 'Migration20261122222306_files', class: Migration20261122222306_files },
  { name: 'Migration20261203090051_job_types', class: Migration20261203090051_job_types },
  { name: 'Migration20261203090354_system', class: Migration20261203090354_system },
  { name: 'Migration20261203102209_worker', class: Migration20261203102209_worker },
  { name: 'Migration20261203140000_credential_notifications', class: Migration20261203140000_credential_notifications },
  { name: 'Migration20261203140500_event_sequencing', class: Migration20261203140500_event_sequencing },
  { name: 'Migration20261203150000_job_search', class: Migration20261203150000_job_search },
  { name: 'Migration20261203151000_event_sequencing_scan', class: Migration20261203151000_event_sequencing_scan },
  { name: 'Migration20261203161000_event_fillfactor', class: Migration20261203161000_event_fillfactor },
];
