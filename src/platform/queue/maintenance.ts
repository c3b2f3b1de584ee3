import type { Logger } from '../logger.ts';
import type { PgBoss } from './pg-boss.ts';

/** Queue of the periodic housekeeping job (not a job type: its name cannot clash with one). */
export const maintenanceQueue = 'system.maintenance';
const everyTenMinutes = '*/10 * * * *';

export interface MaintenanceTask {
  name: string;
  /** Returns how many rows it cleaned up, for the log. */
  run(): Promise<number>;
}

/**
 * Housekeeping as a pg-boss scheduled job: pg-boss creates one job per period however
 * many instances there are, and one worker runs it, so each task runs once per period.
 */
export async function startMaintenance(boss: PgBoss, tasks: MaintenanceTask[], logger: Logger): Promise<void> {
  const maintenanceLogger = logger.child({ component: 'maintenance' });
  if (!(await boss.getQueue(maintenanceQueue))) await boss.createQueue(maintenanceQueue, { policy: 'singleton', retryLimit: 0 });
  await boss.schedule(maintenanceQueue, everyTenMinutes);
  await boss.work(maintenanceQueue, async () => {
    await runMaintenance(tasks, maintenanceLogger);
  });
}

/** Runs every task, each on its own: one failing does not stop the others. */
export async function runMaintenance(tasks: MaintenanceTask[], logger: Logger): Promise<void> {
  for (const task of tasks) {
    try {
      const cleaned = await task.run();
      if (cleaned > 0) logger.info({ task: task.name, cleaned }, 'maintenance');
    } catch (error) {
      logger.warn({ err: error, task: task.name }, 'a maintenance task failed');
    }
  }
}
