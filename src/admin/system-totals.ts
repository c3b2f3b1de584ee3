import type { EntityManager } from '../platform/db/orm.ts';
import type { RoleName } from '../platform/caller.ts';

export interface SystemTotals {
  usersTotal: number;
  usersEnabled: number;
  usersActive24h: number;
  usersByRole: Record<RoleName, number>;
  apiKeysActive: number;
  sessionsActive: number;
  jobsByStatus: Record<string, number>;
  filesTotal: number;
  fileBytesTotal: number;
}

/** The totals of AdminService.GetMetrics, counted in the database at the time of the call. */
export async function countSystemTotals(em: EntityManager): Promise<SystemTotals> {
  const [users] = await em.execute<
    { total: string; enabled: string; active_24h: string; users: string; admins: string; workers: string }[]
  >(
    `select count(*) as total,
            count(*) filter (where active) as enabled,
            count(*) filter (where last_seen_at > now() - interval '24 hours') as active_24h,
            count(*) filter (where role = 'user') as users,
            count(*) filter (where role = 'admin') as admins,
            count(*) filter (where role = 'worker') as workers
       from users`,
  );
  const [credentials] = await em.execute<{ api_keys: string; sessions: string }[]>(
    `select (select count(*) from api_keys where revoked_at is null and (expires_at is null or expires_at > now())) as api_keys,
            (select count(*) from sessions where revoked_at is null and expires_at > now()) as sessions`,
  );
  const jobs = await em.execute<{ status: string; count: string }[]>('select status, count(*) as count from jobs group by status');
  const [files] = await em.execute<{ files: string; bytes: string }[]>(
    `select count(*) as files, coalesce(sum(size), 0) as bytes from files where status = 'available'`,
  );
  return {
    usersTotal: Number(users!.total),
    usersEnabled: Number(users!.enabled),
    usersActive24h: Number(users!.active_24h),
    usersByRole: { user: Number(users!.users), admin: Number(users!.admins), worker: Number(users!.workers) },
    apiKeysActive: Number(credentials!.api_keys),
    sessionsActive: Number(credentials!.sessions),
    jobsByStatus: Object.fromEntries(jobs.map((row) => [row.status, Number(row.count)])),
    filesTotal: Number(files?.files ?? 0),
    fileBytesTotal: Number(files?.bytes ?? 0),
  };
}
