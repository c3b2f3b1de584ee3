/**
 * `--setup`: what an admin does once before the worker can run: declare the `text-stats`
 * job type and create a ROLE_WORKER account with an API key for the worker.
 */
import { randomBytes } from 'node:crypto';
import { durationFromMs } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import { Role } from '../../../gen/yardmaster/v1/common_pb.ts';
import { createYardmasterClient } from '../../ts/src/node.ts';
import { textStatsParamsSchema } from './text-stats-job.ts';
import type { AdminSettings } from './worker-settings.ts';

/** Declares the type (kept as it is when it exists), creates the account and returns its API key. */
export async function setUp(settings: AdminSettings, log: (line: string) => void): Promise<string> {
  const admin = createYardmasterClient({ baseUrl: settings.url, protocol: 'grpc' });
  const worker = createYardmasterClient({ baseUrl: settings.url, protocol: 'grpc' });
  try {
    await admin.login(settings.username, settings.password);
    try {
      await admin.admin.createJobType({
        jobType: {
          name: 'text-stats',
          description: 'Line, word and character counts of a text or CSV file, with every word counted in word-counts.csv',
          paramsSchema: textStatsParamsSchema,
          lease: durationFromMs(30_000),
          timeout: durationFromMs(3_600_000),
          maxAttempts: 3,
          minInputFiles: 1,
          maxInputFiles: 1,
        },
      });
      log('declared the job type text-stats');
    } catch (error) {
      if (!(error instanceof ConnectError && error.code === Code.AlreadyExists)) throw error;
      log('the job type text-stats exists already: left as it is');
    }
    const password = randomBytes(18).toString('base64url');
    await admin.admin.createUser({
      username: settings.workerUsername,
      email: `${settings.workerUsername}@workers.invalid`,
      password,
      role: Role.WORKER,
    });
    await worker.login(settings.workerUsername, password);
    const { secret } = await worker.auth.createApiKey({ name: 'text-stats worker' });
    log(`created the worker account ${settings.workerUsername} (ROLE_WORKER) and an API key for it`);
    return secret;
  } finally {
    admin.close();
    worker.close();
  }
}
