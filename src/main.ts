/**
 * `npm start`: reads the configuration, starts the embedded database when no
 * DATABASE_URL is set, builds the app, serves it, and shuts down gracefully on
 * SIGTERM/SIGINT. The only module that reads the environment or handles signals.
 */
import path from 'node:path';
import { createApp, type App } from './app.ts';
import { processConfig } from './process-config.ts';
import { startEmbeddedPostgres, type EmbeddedPostgres } from './db/embedded-postgres.ts';
import { embeddedS3Secret, startEmbeddedS3, type EmbeddedS3 } from './storage/embedded-s3.ts';
import type { StorageConfig } from './storage/object-storage.ts';
import { createLogger } from './logger.ts';
import { listen, type Listener } from './server/listener.ts';

const config = processConfig();

const logger = createLogger(config.logLevel);
let embedded: EmbeddedPostgres | undefined;
let embeddedS3: EmbeddedS3 | undefined;
let app: App | undefined;
let listener: Listener | undefined;
let stopping = false;

async function shutdown(signal: string): Promise<void> {
  if (stopping) {
    logger.warn({ signal }, 'second signal: exiting now');
    process.exit(1);
  }
  stopping = true;
  logger.info({ signal }, 'shutting down: no new calls, finishing the ones in flight');
  try {
    await listener?.close();
    await app?.close();
    await embeddedS3?.stop();
    await embedded?.stop();
    logger.info('stopped');
    process.exit(0);
  } catch (error) {
    logger.error({ err: error }, 'shutdown failed');
    process.exit(1);
  }
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));

try {
  if (!config.databaseUrl) {
    embedded = await startEmbeddedPostgres({ clusterDir: path.join(config.dataDir, 'postgres'), logger });
  }
  if (!config.s3) {
    const secretKey = await embeddedS3Secret(config.dataDir);
    embeddedS3 = await startEmbeddedS3({ directory: path.join(config.dataDir, 'objects'), host: config.host, bucket: config.s3Bucket, secretKey, logger });
  }
  const storage: StorageConfig = config.s3
    ? { ...config.s3, bucket: config.s3Bucket, region: config.s3Region }
    : { endpoint: embeddedS3!.endpoint, publicEndpoint: embeddedS3!.endpoint, ...embeddedS3!.credentials, bucket: config.s3Bucket, region: config.s3Region };
  app = await createApp({ config, databaseUrl: config.databaseUrl ?? embedded!.url, storage, logger });
  listener = await listen(app.handler, { host: config.host, port: config.port, tls: config.tls, logger, shutdownController: app.shutdownController, connections: config.connections });
  logger.info({ url: listener.url }, 'Yardmaster is serving Connect, gRPC and gRPC-Web');
  if (app.firstAdminPassword) {
    // Printed outside the JSON log on purpose: it is shown once and must not be kept in log storage.
    process.stdout.write(
      `\nCreated the first admin account "${config.adminUsername}" with the password:\n\n    ${app.firstAdminPassword}\n\n` +
        'It is shown this once. Change it with AuthService.ChangePassword.\n\n',
    );
  }
} catch (error) {
  logger.fatal({ err: error }, 'start-up failed');
  await app?.close().catch(() => {});
  await embeddedS3?.stop().catch(() => {});
  await embedded?.stop().catch(() => {});
  process.exit(1);
}
