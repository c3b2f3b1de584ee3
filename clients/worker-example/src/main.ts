/**
 * The example external worker: `npm run worker:example` runs it, `npm run worker:example
 * -- --setup` declares its job type and creates its account. Exit codes: 0 stopped
 * (STOP, SIGINT, SIGTERM), 75 asked to restart (RESTART), 1 failed, 2 bad settings.
 */
import type { YardmasterClient } from '../../ts/src/node.ts';
import { createYardmasterClient } from '../../ts/src/node.ts';
import { backoffMs, isTransient, sleep } from './call-retries.ts';
import { describe, ExternalWorker } from './external-worker.ts';
import { setUp } from './setup.ts';
import { runTextStats } from './text-stats-job.ts';
import { adminSettings, SettingsError, workerSettings } from './worker-settings.ts';

const log = (line: string) => process.stdout.write(`${line}\n`);

async function runWorker(): Promise<number> {
  const settings = workerSettings(process.env);
  // gRPC: HTTP/2, one connection for the long poll, the heartbeats and the file streams.
  const client = createYardmasterClient({
    baseUrl: settings.url,
    protocol: 'grpc',
    apiKey: 'apiKey' in settings.credentials ? settings.credentials.apiKey : undefined,
  });
  try {
    if ('username' in settings.credentials) await logIn(client, settings.credentials.username, settings.credentials.password);
    const worker = new ExternalWorker({
      client,
      workerId: settings.workerId,
      queues: settings.queues,
      concurrency: settings.concurrency,
      handler: runTextStats,
    });
    let signals = 0;
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      process.on(signal, () => {
        if (++signals === 1) worker.drain(`${signal}; send it again to hand the running jobs back at once`);
        else worker.abandonJobs();
      });
    }
    return await worker.run();
  } finally {
    client.close();
  }
}

async function logIn(client: YardmasterClient, username: string, password: string): Promise<void> {
  for (let failures = 1; ; failures++) {
    try {
      await client.login(username, password);
      return;
    } catch (error) {
      if (!isTransient(error)) throw error;
      const pause = backoffMs(failures);
      log(`cannot log in yet (${describe(error)}): trying again in ${Math.round(pause)} ms`);
      await sleep(pause);
    }
  }
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const unknown = args.filter((arg) => arg !== '--setup');
  if (unknown.length > 0) throw new SettingsError(`unknown argument ${unknown.join(' ')}: the only one is --setup`);
  if (!args.includes('--setup')) return runWorker();
  const apiKey = await setUp(adminSettings(process.env), log);
  log(`start the worker with:\n\nWORKER_API_KEY=${apiKey} npm run worker:example`);
  return 0;
}

try {
  process.exit(await main());
} catch (error) {
  if (error instanceof SettingsError) {
    process.stderr.write(`text-stats worker: bad settings\n${error.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`text-stats worker: ${describe(error)}\n`);
  process.exit(1);
}
