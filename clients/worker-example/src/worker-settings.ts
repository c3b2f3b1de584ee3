import os from 'node:os';

export interface WorkerSettings {
  url: string;
  /** An API key, or a username and password to log in with. */
  credentials: { apiKey: string } | { username: string; password: string };
  workerId: string;
  queues: string[];
  concurrency: number;
}

export interface AdminSettings {
  url: string;
  username: string;
  password: string;
  /** The worker account setup creates. */
  workerUsername: string;
}

/** Thrown with one line per bad or missing variable. */
export class SettingsError extends Error {}

const workerIdPattern = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}$/;

export function workerSettings(env: NodeJS.ProcessEnv): WorkerSettings {
  const problems: string[] = [];
  const url = env.YARDMASTER_URL || 'http://127.0.0.1:8080';
  if (!URL.canParse(url)) problems.push(`YARDMASTER_URL: "${url}" is not a URL`);
  let credentials: WorkerSettings['credentials'] = { apiKey: '' };
  if (env.WORKER_API_KEY) credentials = { apiKey: env.WORKER_API_KEY };
  else if (env.WORKER_USERNAME && env.WORKER_PASSWORD) credentials = { username: env.WORKER_USERNAME, password: env.WORKER_PASSWORD };
  else problems.push('WORKER_API_KEY (or WORKER_USERNAME and WORKER_PASSWORD): required, the credentials of a ROLE_WORKER account');
  const workerId = env.WORKER_ID || `${os.hostname().replace(/[^A-Za-z0-9._:@-]/g, '-')}-text-stats`;
  if (!workerIdPattern.test(workerId)) {
    problems.push(`WORKER_ID: "${workerId}" must be 1 to 100 characters of A-Z, a-z, 0-9, ".", "_", ":", "@" and "-"`);
  }
  const queues = (env.WORKER_QUEUES || 'text-stats')
    .split(',')
    .map((queue) => queue.trim())
    .filter((queue) => queue !== '');
  if (queues.length === 0) problems.push('WORKER_QUEUES: names no queue');
  const concurrency = Number(env.WORKER_CONCURRENCY || '2');
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 100) {
    problems.push(`WORKER_CONCURRENCY: "${env.WORKER_CONCURRENCY}" must be a whole number from 1 to 100`);
  }
  if (problems.length > 0) throw new SettingsError(problems.join('\n'));
  return { url, credentials, workerId, queues, concurrency };
}

export function adminSettings(env: NodeJS.ProcessEnv): AdminSettings {
  const url = env.YARDMASTER_URL || 'http://127.0.0.1:8080';
  const problems: string[] = [];
  if (!URL.canParse(url)) problems.push(`YARDMASTER_URL: "${url}" is not a URL`);
  if (!env.ADMIN_PASSWORD)
    problems.push('ADMIN_PASSWORD: required for --setup, the password of an admin account (ADMIN_USERNAME, default admin)');
  if (problems.length > 0) throw new SettingsError(problems.join('\n'));
  return {
    url,
    username: env.ADMIN_USERNAME || 'admin',
    password: env.ADMIN_PASSWORD!,
    workerUsername: env.WORKER_USERNAME || 'text-stats-worker',
  };
}
