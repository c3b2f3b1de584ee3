import { createClient, type Client, type Interceptor, type Transport } from '@connectrpc/connect';
import { timestampDate, type Timestamp } from '@bufbuild/protobuf/wkt';
import { AdminService } from '../../../gen/yardmaster/v1/admin_pb.ts';
import { AuthService, type LoginResponse } from '../../../gen/yardmaster/v1/auth_pb.ts';
import { Health } from '../../../gen/grpc/health/v1/health_pb.ts';
import { JobsService } from '../../../gen/yardmaster/v1/jobs_pb.ts';
import { QueueService } from '../../../gen/yardmaster/v1/queue_pb.ts';
import { FilesService } from '../../../gen/yardmaster/v1/files_pb.ts';
import { SystemService } from '../../../gen/yardmaster/v1/system_pb.ts';
import { WorkerService } from '../../../gen/yardmaster/v1/worker_pb.ts';
import { authInterceptor } from './auth-interceptor.ts';
import { TokenSession, type SessionTokens } from './token-session.ts';
import type { TokenStorage } from './token-storage.ts';

export type { SessionTokens, TokenStorage };

/** How a client authenticates: an API key, or session tokens it refreshes by itself. */
export interface CredentialOptions {
  apiKey?: string;
  tokens?: SessionTokens;
  /** Called whenever the session tokens change (after login, refresh, logout), e.g. to persist them. */
  onTokensChange?: (tokens: SessionTokens | undefined) => void;
  /**
   * Where the session tokens are kept between runs: loaded when the client is made (unless
   * `tokens` is given), saved on every change, re-read before a refresh. See
   * `localStorageTokenStorage` (browsers, shared by tabs) and `fileTokenStorage` (Node.js).
   */
  tokenStorage?: TokenStorage;
}

export interface YardmasterClient {
  auth: Client<typeof AuthService>;
  admin: Client<typeof AdminService>;
  jobs: Client<typeof JobsService>;
  queue: Client<typeof QueueService>;
  files: Client<typeof FilesService>;
  system: Client<typeof SystemService>;
  worker: Client<typeof WorkerService>;
  health: Client<typeof Health>;
  /** The transport every service client above uses, credentials included (for connect-query and other Connect tooling). */
  transport: Transport;
  /** Signs in and keeps the session's tokens for every later call. */
  login(username: string, password: string): Promise<LoginResponse>;
  /** Ends the current session (or all, with `allSessions`) and forgets its tokens. */
  logout(options?: { allSessions?: boolean }): Promise<void>;
  readonly tokens: SessionTokens | undefined;
  /** Releases connections (HTTP/2 sessions). */
  close(): void;
}

/**
 * Builds the typed client on any transport. `makeTransport` is called twice: once for
 * calls with credentials, once (without interceptors) for the refresh itself.
 */
export function createClientOnTransport(
  makeTransport: (interceptors: Interceptor[]) => Transport,
  credentials: CredentialOptions,
  close: () => void,
): YardmasterClient {
  const session = new TokenSession({
    apiKey: credentials.apiKey,
    tokens: credentials.tokens,
    onChange: credentials.onTokensChange,
    storage: credentials.tokenStorage,
  });
  const plainAuth = createClient(AuthService, makeTransport([]));
  session.setRefresher(async (refreshToken) => tokensOf(await plainAuth.refresh({ refreshToken })));
  const transport = makeTransport([authInterceptor(session)]);
  const auth = createClient(AuthService, transport);
  return {
    auth,
    admin: createClient(AdminService, transport),
    jobs: createClient(JobsService, transport),
    queue: createClient(QueueService, transport),
    files: createClient(FilesService, transport),
    system: createClient(SystemService, transport),
    worker: createClient(WorkerService, transport),
    health: createClient(Health, transport),
    transport,
    async login(username, password) {
      const response = await plainAuth.login({ username, password });
      session.tokens = tokensOf(response);
      return response;
    },
    async logout(options = {}) {
      const tokens = session.tokens;
      if (tokens) await auth.logout({ refreshToken: tokens.refreshToken, allSessions: options.allSessions ?? false });
      session.tokens = undefined;
    },
    get tokens() {
      return session.tokens;
    },
    close() {
      session.close();
      close();
    },
  };
}

function tokensOf(response: { accessToken: string; refreshToken: string; accessTokenExpireTime?: Timestamp }): SessionTokens {
  return {
    accessToken: response.accessToken,
    refreshToken: response.refreshToken,
    accessTokenExpiresAt: response.accessTokenExpireTime ? timestampDate(response.accessTokenExpireTime) : undefined,
  };
}
