/**
 * `npm start` (through src/start.js): reads the configuration, starts the embedded
 * database and storage when none is configured, builds the app, serves it, and shuts
 * down gracefully on SIGTERM/SIGINT. The only module that reads the environment or
 * handles signals.
 */
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { App } from './app.ts';
import { processConfig } from './process-config.ts';
import { lockDataDir, type DataDirLock } from './data-dir-lock.ts';
import { startEmbeddedPostgres, type EmbeddedPostgres } from './platform/db/embedded-postgres.ts';
import type { EmbeddedS3 } from './platform/storage/embedded-s3.ts';
import type { StorageConfig } from './platform/storage/object-storage.ts';
import { createLogger } from './platform/logger.ts';
import type { Listener } from './server/listener.ts';
import { describeStartupFailure } from './startup-failure.ts';
import { readBuildInfo } from './system/build-info.ts';

const config = processConfig();

const logger = createLogger(config.logLevel, undefined, config.logFormat);
let dataDirLock: DataDirLock | undefined;
let embedded: EmbeddedPostgres | undefined;
let embeddedS3: EmbeddedS3 | undefined;
let app: App | undefined;
let listener: Listener | undefined;
let stopping = false;

/** The start-up timeline, in the debug log: where the seconds before "serving" go. */
function reached(step: string): void {
  logger.debug({ step, ms: Math.round(performance.now()) }, 'start-up');
}

async function shutdown(signal: string): Promise<void> {
  if (stopping) {
    logger.warn({ signal }, 'second signal: exiting now');
    process.exit(1);
  }
  stopping = true;
  logger.info({ signal }, 'shutting down: no new calls, finishing the ones in flight');
  const steps: [string, (() => Promise<void>) | undefined][] = [
    ['the listener (calls and streams in flight)', listener && (() => listener!.close())],
    ['the app (jobs, queue, event fan-out, database pools)', app && (() => app!.close())],
    ['the embedded storage', embeddedS3 && (() => embeddedS3!.stop())],
    ['the embedded PostgreSQL', embedded && (() => embedded!.stop())],
  ];
  let current = 'nothing';
  // A step can wait forever on something that never answers (a promise of a connection
  // lost during a database outage); past the deadline the process says what it was
  // waiting on, and exits non-zero rather than hang until someone kills it.
  const deadline = setTimeout(() => {
    logger.error(
      { step: current, activeResources: countBy(process.getActiveResourcesInfo()), timeoutMs: config.shutdownTimeoutMs },
      `shutdown did not finish within ${config.shutdownTimeoutMs / 1000}s: still waiting on ${current}; exiting`,
    );
    // The exit handler asks the database to stop without waiting for it.
    process.exit(1);
  }, config.shutdownTimeoutMs);
  try {
    for (const [name, step] of steps) {
      if (!step) continue;
      current = name;
      await step();
    }
    clearTimeout(deadline);
    logger.info('stopped');
    process.exit(0);
  } catch (error) {
    clearTimeout(deadline);
    logger.error({ err: error, step: current }, 'shutdown failed');
    process.exit(1);
  }
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
// The terminal closed: without a handler Node dies at once, leaving the embedded
// PostgreSQL (in a session of its own, which the hangup does not reach) running.
process.on('SIGHUP', () => void shutdown('SIGHUP'));
// However the process ends (a crash included), the embedded PostgreSQL, in a session of
// its own, is told to stop (stop() signals it before its first await), and the DATA_DIR
// lock is given back.
process.on('exit', () => {
  void embedded?.stop();
  dataDirLock?.release();
});

function countBy(names: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const name of names) counts[name] = (counts[name] ?? 0) + 1;
  return counts;
}

try {
  reached('configuration read');
  // The embedded PostgreSQL's cluster can have one owner. The embedded storage alone may be
  // shared: instances on one external database can serve the same object directory.
  if (!config.databaseUrl) dataDirLock = lockDataDir(config.dataDir);
  const embeddedStarts: Promise<void>[] = [];
  if (!config.databaseUrl) {
    embeddedStarts.push(
      startEmbeddedPostgres({ clusterDir: path.join(config.dataDir, 'postgres'), logger, ownProcessGroup: true }).then((started) => {
        embedded = started;
        reached('embedded PostgreSQL ready');
      }),
    );
  }
  if (!config.s3) {
    embeddedStarts.push(
      import('./platform/storage/embedded-s3.ts').then(async ({ embeddedS3Secret, startEmbeddedS3 }) => {
        const secretKey = await embeddedS3Secret(config.dataDir);
        embeddedS3 = await startEmbeddedS3({
          directory: path.join(config.dataDir, 'objects'),
          host: config.host,
          bucket: config.s3Bucket,
          secretKey,
          logger,
        });
        reached('embedded storage ready');
      }),
    );
  }
  // The server's modules take about half a second to load: load them while the embedded
  // PostgreSQL starts (initialising a new cluster takes one to two seconds) instead of before.
  const serverModules = Promise.all([import('./app.ts'), import('./server/listener.ts')]);
  serverModules.catch(() => {});
  // The database and the storage do not depend on each other: they start together.
  const results = await Promise.allSettled(embeddedStarts);
  const failed = results.find((result) => result.status === 'rejected');
  if (failed) throw failed.reason;
  const [{ createApp }, { listen }] = await serverModules;
  reached('server modules loaded');
  const storage: StorageConfig = config.s3
    ? { ...config.s3, bucket: config.s3Bucket, region: config.s3Region }
    : {
        endpoint: embeddedS3!.endpoint,
        publicEndpoint: embeddedS3!.endpoint,
        ...embeddedS3!.credentials,
        bucket: config.s3Bucket,
        region: config.s3Region,
      };
  app = await createApp({ config, databaseUrl: config.databaseUrl ?? embedded!.url, storage, logger, build: readBuildInfo(process.env) });
  reached('app ready');
  listener = await listen(app.handler, {
    host: config.host,
    port: config.port,
    tls: config.tls,
    logger,
    shutdownController: app.shutdownController,
    connections: config.connections,
  });
  reached('listening');
  if (app.firstAdminPassword) {
    // Printed outside the log on purpose: it is shown once and must not be kept in log storage.
    process.stdout.write(
      `\nCreated the first admin account "${config.adminUsername}" with the password:\n\n    ${app.firstAdminPassword}\n\n` +
        'It is shown this once. Change it with AuthService.ChangePassword.\n\n',
    );
  }
  logger.info(
    { url: listener.url },
    `Yardmaster is serving Connect, gRPC and gRPC-Web at ${listener.url}: try \`npx buf curl --list-methods ${listener.url}\`, and log in with AuthService.Login (README, "Calling the API")`,
  );
} catch (error) {
  const line = describeStartupFailure(error, config);
  if (line) process.stderr.write(`yardmaster: ${line}\n`);
  else logger.fatal({ err: error }, 'start-up failed');
  // Nothing this process started may outlive it: above all not the embedded PostgreSQL.
  await app?.close().catch(() => {});
  await embeddedS3?.stop().catch(() => {});
  await embedded?.stop().catch(() => {});
  process.exit(1);
}
