import { createContextValues } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import type { DescService } from '@bufbuild/protobuf';
import pg from 'pg';
import { Health } from '../gen/grpc/health/v1/health_pb.ts';
import { ServerReflection as ServerReflectionV1 } from '../gen/grpc/reflection/v1/reflection_pb.ts';
import { ServerReflection as ServerReflectionV1Alpha } from '../gen/grpc/reflection/v1alpha/reflection_pb.ts';
import { AdminService } from '../gen/yardmaster/v1/admin_pb.ts';
import { AuthService as AuthServiceDesc } from '../gen/yardmaster/v1/auth_pb.ts';
import { createAdminRpc } from './admin/admin-rpc.ts';
import { AuditLog } from './admin/audit-log.ts';
import { SettingsStore } from './admin/settings-store.ts';
import { UserAdmin } from './admin/user-admin.ts';
import { createAuthRpc } from './auth/auth-rpc.ts';
import { AuthService } from './auth/auth-service.ts';
import { Authenticator } from './auth/authenticator.ts';
import { CredentialRateLimiter } from './auth/credential-rate-limiter.ts';
import { ensureFirstAdmin } from './auth/first-admin.ts';
import { SigningKeys } from './auth/signing-keys.ts';
import type { Config } from './config.ts';
import { createOrm, type MikroORM } from './db/orm.ts';
import { runMigrations, withStartupLock } from './db/schema-migrations.ts';
import { PgNotifications } from './events/pg-notifications.ts';
import type { Logger } from './logger.ts';
import { AccessPolicies } from './server/access-policies.ts';
import { clientAddressOf } from './server/client-address.ts';
import { clientKey, entityManagerKey, loggerKey, requestIdKey } from './server/context.ts';
import { createHealthService } from './server/health-service.ts';
import { createHttpHandler, sendJson, type HttpHandler } from './server/http-handler.ts';
import { auditInterceptor } from './server/interceptors/audit.ts';
import { authenticationInterceptor } from './server/interceptors/authentication.ts';
import { authorizationInterceptor } from './server/interceptors/authorization.ts';
import { credentialRateLimitInterceptor } from './server/interceptors/credential-rate-limit.ts';
import { errorMappingInterceptor } from './server/interceptors/error-mapping.ts';
import { loggingInterceptor } from './server/interceptors/logging.ts';
import { ServerMetrics } from './server/metrics.ts';
import { Readiness } from './server/readiness.ts';
import { createReflectionV1, createReflectionV1Alpha, ReflectionIndex } from './server/reflection-service.ts';

export interface AppOptions {
  config: Config;
  databaseUrl: string;
  logger: Logger;
}

export interface App {
  handler: HttpHandler;
  /** Aborted by the listener when shutdown begins, to end server streams. */
  shutdownController: AbortController;
  /** The first admin's password when this start created it with a generated one. */
  firstAdminPassword: string | undefined;
  orm: MikroORM;
  close(): Promise<void>;
}

const maintenanceIntervalMs = 60 * 60 * 1000;

/**
 * The composition root: infrastructure, then the domain services, then the RPC
 * handlers and the HTTP routes. Reads no environment; main.ts and the tests both call it.
 */
export async function createApp({ config, databaseUrl, logger }: AppOptions): Promise<App> {
  const orm = await createOrm({ url: databaseUrl, logger });
  const cleanups: (() => Promise<void> | void)[] = [() => orm.close()];
  const close = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  };
  try {
    const signingKeys = new SigningKeys(orm, logger, config.accessTokenTtlMs);
    const firstAdmin = await withStartupLock(databaseUrl, async () => {
      const applied = await runMigrations(orm);
      if (applied.length > 0) logger.info({ migrations: applied }, 'applied database migrations');
      await signingKeys.ensureKey();
      return ensureFirstAdmin(orm.em.fork(), { username: config.adminUsername, password: config.adminPassword });
    });
    if (firstAdmin.created) logger.info({ username: config.adminUsername }, 'created the first admin account');

    const notifications = new PgNotifications(databaseUrl, logger);
    cleanups.push(() => notifications.close());
    await notifications.start();
    const settings = new SettingsStore(orm, logger);
    await settings.start(notifications);
    await signingKeys.start(notifications);

    const rateLimitPool = new pg.Pool({ connectionString: databaseUrl, max: 4 });
    rateLimitPool.on('error', (error) => logger.warn({ err: error }, 'rate limit pool connection failed'));
    cleanups.push(() => rateLimitPool.end());

    const metrics = new ServerMetrics();
    const auditLog = new AuditLog(orm, logger);
    const authService = new AuthService({ settings, signingKeys, refreshTokenTtlMs: config.refreshTokenTtlMs });
    const rateLimiter = new CredentialRateLimiter(rateLimitPool, settings);
    const authenticator = new Authenticator(signingKeys);
    const userAdmin = new UserAdmin(settings);

    const readiness = new Readiness();
    readiness.add('database', async () => {
      await orm.em.fork().execute('select 1');
    });

    const yardmasterServices: DescService[] = [AuthServiceDesc, AdminService];
    const standardServices: DescService[] = [Health, ServerReflectionV1, ServerReflectionV1Alpha];
    const policies = new AccessPolicies(yardmasterServices, standardServices);
    const reflection = new ReflectionIndex([...yardmasterServices, ...standardServices]);
    const shutdownController = new AbortController();

    const rpc = connectNodeAdapter({
      routes: (router) => {
        router.service(AuthServiceDesc, createAuthRpc(authService, policies));
        router.service(AdminService, createAdminRpc({ users: userAdmin, settings, auditLog, signingKeys }));
        router.service(Health, createHealthService(readiness, () => reflection.serviceNames));
        router.service(ServerReflectionV1, createReflectionV1(reflection));
        router.service(ServerReflectionV1Alpha, createReflectionV1Alpha(reflection));
      },
      interceptors: [
        loggingInterceptor(metrics),
        errorMappingInterceptor(),
        // Outside authentication, so that calls with bad credentials are audited too.
        auditInterceptor(auditLog, policies),
        authenticationInterceptor(authenticator, policies, metrics),
        authorizationInterceptor(policies),
        credentialRateLimitInterceptor(rateLimiter, policies, metrics),
      ],
      contextValues: (req) => {
        const requestId = String(req.headers['x-request-id']);
        return createContextValues()
          .set(requestIdKey, requestId)
          .set(clientKey, { clientAddress: clientAddressOf(req, config.trustProxyHops), userAgent: String(req.headers['user-agent'] ?? '') })
          .set(loggerKey, logger.child({ requestId }))
          .set(entityManagerKey, orm.em.fork());
      },
      shutdownSignal: shutdownController.signal,
      jsonOptions: { ignoreUnknownFields: false },
      readMaxBytes: 8 * 1024 * 1024,
      fallback: (_req, res) => sendJson(res, 404, { code: 'not_found', message: 'no such route' }),
    });

    const handler = createHttpHandler({
      rpc,
      corsOrigins: config.corsOrigins,
      routes: {
        '/healthz': (_req, res) => sendJson(res, 200, { status: 'ok' }),
        '/readyz': async (_req, res) => {
          const { ok, dependencies } = await readiness.check();
          sendJson(res, ok ? 200 : 503, { status: ok ? 'ready' : 'unavailable', dependencies });
        },
        '/.well-known/jwks.json': (_req, res) => sendJson(res, 200, signingKeys.jwks(), { 'cache-control': 'public, max-age=300' }),
        ...(config.metricsEnabled
          ? {
              '/metrics': async (_req, res) => {
                res.writeHead(200, { 'content-type': metrics.registry.contentType });
                res.end(await metrics.registry.metrics());
              },
            }
          : {}),
      },
    });

    const maintenance = setInterval(() => {
      void (async () => {
        try {
          await authService.pruneSessions(orm.em.fork());
          await rateLimiter.pruneExpired();
        } catch (error) {
          logger.warn({ err: error }, 'maintenance failed');
        }
      })();
    }, maintenanceIntervalMs).unref();
    cleanups.push(() => clearInterval(maintenance));

    return { handler, shutdownController, firstAdminPassword: firstAdmin.generatedPassword, orm, close };
  } catch (error) {
    await close();
    throw error;
  }
}
