import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { fromJson, type JsonValue } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { createClient, type Client } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { AuthService } from '../../gen/yardmaster/v1/auth_pb.ts';
import { Role } from '../../gen/yardmaster/v1/common_pb.ts';
import type { User } from '../../gen/yardmaster/v1/common_pb.ts';
import { createYardmasterClient, type NodeClientOptions, type YardmasterClient } from '../../clients/ts/src/node.ts';
import { createApp, type App, type AppOptions } from '../../src/app.ts';
import type { JobType } from '../../src/jobs/job-types.ts';
import { inject } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import type { LogLevel } from '../../src/platform/logger.ts';
import type { ConnectionLimits } from '../../src/server/listener.ts';
import { createLogger } from '../../src/platform/logger.ts';
import { listen, type Listener } from '../../src/server/listener.ts';
import { uniqueName } from './assertions.ts';
import { queryDatabase } from './query-database.ts';
import { createTestDatabase, type TestDatabase } from './test-database.ts';

export const adminPassword = 'admin-password-for-tests';

export type ClientOptions = Omit<NodeClientOptions, 'baseUrl'>;

export interface TestUser {
  user: User;
  password: string;
  client: YardmasterClient;
}

/** A real server on a random port, on a database of its own. */
export interface TestServer {
  url: string;
  databaseUrl: string;
  app: App;
  /** The bucket of this server's files (a bucket of its own in the run's S3-compatible store). */
  bucket: string;
  /** A client of this server (closed with the server). */
  client(options?: ClientOptions): YardmasterClient;
  /** A client signed in as the first admin. */
  adminClient(options?: ClientOptions): Promise<YardmasterClient>;
  /** A new client signed in as this account (a session of its own). */
  signIn(username: string, password: string, options?: ClientOptions): Promise<YardmasterClient>;
  /** A typed client that presents `bearer` (an access token or API key) as is and never refreshes. */
  bearerClient(bearer: string): YardmasterClient;
  /**
   * A plain Connect AuthService client (JSON over HTTP/1.1) that sends exactly these
   * headers and nothing else: no credentials of its own, no refresh, no retry.
   */
  authClient(headers?: Record<string, string>): Client<typeof AuthService>;
  /** A plain AuthService client (as `authClient`) that presents `bearer` (an access token or API key) as is. */
  bearerAuthClient(bearer: string): Client<typeof AuthService>;
  /** Creates an account through AdminService and returns a client signed in as it. */
  createUser(options?: { role?: Role; username?: string; clientOptions?: ClientOptions }): Promise<TestUser>;
  /** Sets a runtime setting as the admin. */
  setSetting(key: string, value: unknown): Promise<void>;
  query<T extends pg.QueryResultRow>(sql: string, params?: unknown[]): Promise<T[]>;
  /** The column `n` of the first row, as a number: for `select count(*) as n ...`. */
  countRows(sql: string, params?: unknown[]): Promise<number>;
  close(): Promise<void>;
}

export interface TestServerOptions {
  env?: Record<string, string>;
  /** Job types registered besides the built-in ones. */
  jobTypes?: JobType[];
  /** Reuse an existing database (another instance of the same system) instead of a new one. */
  database?: TestDatabase;
  /** How long a single-message request body may take to arrive (the server's default otherwise). */
  requestBodyDeadlineMs?: number;
  /** Limits of the public surface smaller than production's, to reach them in a test. */
  appOptions?: Pick<AppOptions, 'readinessIntervalMs' | 'streamLimits' | 'instanceHeartbeatMs'>;
  /** Where the server reaches object storage, instead of the run's store (a proxy a test can take down). */
  storageEndpoint?: string;
  /** Connection timeouts below what the configuration allows, to see them fire in a test. */
  connections?: Partial<ConnectionLimits>;
}

export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const ownsDatabase = options.database === undefined;
  const database = options.database ?? (await createTestDatabase());
  const config = loadConfig({ PORT: '0', ADMIN_PASSWORD: adminPassword, DATABASE_URL: database.url, ...options.env });
  const logger = createLogger((process.env.TEST_LOG_LEVEL as LogLevel | undefined) ?? 'silent');
  const endpoint = options.storageEndpoint ?? inject('s3Endpoint');
  const storage = {
    endpoint,
    publicEndpoint: endpoint,
    ...inject('s3Credentials'),
    bucket: `test-${randomBytes(6).toString('hex')}`,
    region: 'us-east-1',
  };
  const app = await createApp({
    config,
    databaseUrl: database.url,
    storage,
    logger,
    extraJobTypes: options.jobTypes,
    jobDrainMs: 1000,
    requestBodyDeadlineMs: options.requestBodyDeadlineMs,
    ...options.appOptions,
  });
  let listener: Listener;
  try {
    listener = await listen(app.handler, {
      host: '127.0.0.1',
      port: 0,
      tls: config.tls,
      logger,
      shutdownController: app.shutdownController,
      connections: { ...config.connections, ...options.connections },
    });
  } catch (error) {
    await app.close();
    throw error;
  }
  const clients: YardmasterClient[] = [];
  const client = (clientOptions: ClientOptions = {}) => {
    const created = createYardmasterClient({ baseUrl: listener.url, ...clientOptions });
    clients.push(created);
    return created;
  };
  const signIn = async (username: string, password: string, clientOptions: ClientOptions = {}) => {
    const signedIn = client(clientOptions);
    await signedIn.login(username, password);
    return signedIn;
  };
  const adminClient = (clientOptions: ClientOptions = {}) => signIn('admin', adminPassword, clientOptions);
  const authClient = (headers: Record<string, string> = {}) => {
    const transport = createConnectTransport({
      baseUrl: listener.url,
      httpVersion: '1.1',
      interceptors: [
        (next) => (req) => {
          for (const [name, value] of Object.entries(headers)) req.header.set(name, value);
          return next(req);
        },
      ],
    });
    return createClient(AuthService, transport);
  };
  const query = <T extends pg.QueryResultRow>(sql: string, params?: unknown[]) => queryDatabase<T>(database.url, sql, params);
  let sharedAdmin: YardmasterClient | undefined;

  return {
    url: listener.url,
    databaseUrl: database.url,
    app,
    bucket: storage.bucket,
    client,
    adminClient,
    signIn,
    bearerClient: (bearer) => client({ apiKey: bearer }),
    authClient,
    bearerAuthClient: (bearer) => authClient({ authorization: `Bearer ${bearer}` }),
    async createUser({ role = Role.USER, username, clientOptions } = {}) {
      sharedAdmin ??= await adminClient();
      const name = username ?? uniqueName('user');
      const password = `password-of-${name}`;
      const { user } = await sharedAdmin.admin.createUser({ username: name, email: `${name}@example.com`, password, role });
      return { user: user!, password, client: await signIn(name, password, clientOptions) };
    },
    async setSetting(key, value) {
      sharedAdmin ??= await adminClient();
      await sharedAdmin.admin.updateSetting({ key, value: fromJson(ValueSchema, value as JsonValue) });
    },
    query,
    async countRows(sql, params = []) {
      const [row] = await query<{ n: number | string }>(sql, params);
      return Number(row!.n);
    },
    async close() {
      for (const created of clients) created.close();
      await listener.close(1000);
      await app.close();
      if (ownsDatabase) await database.drop();
    },
  };
}
