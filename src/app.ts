import { createContextValues, type ServiceImpl } from '@connectrpc/connect';
import type { DescService } from '@bufbuild/protobuf';
import path from 'node:path';
import pg from 'pg';
import { Health } from '../gen/grpc/health/v1/health_pb.ts';
import { ServerReflection as ServerReflectionV1 } from '../gen/grpc/reflection/v1/reflection_pb.ts';
import { ServerReflection as ServerReflectionV1Alpha } from '../gen/grpc/reflection/v1alpha/reflection_pb.ts';
import { AdminService } from '../gen/yardmaster/v1/admin_pb.ts';
import { AuthService as AuthServiceDesc } from '../gen/yardmaster/v1/auth_pb.ts';
import { JobsService as JobsServiceDesc } from '../gen/yardmaster/v1/jobs_pb.ts';
import { QueueService as QueueServiceDesc } from '../gen/yardmaster/v1/queue_pb.ts';
import { FilesService as FilesServiceDesc } from '../gen/yardmaster/v1/files_pb.ts';
import { SystemService as SystemServiceDesc } from '../gen/yardmaster/v1/system_pb.ts';
import { WorkerService as WorkerServiceDesc } from '../gen/yardmaster/v1/worker_pb.ts';
import { createAdminRpc } from './admin/admin-rpc.ts';
import { AuditLog } from './admin/audit-log.ts';
import { SettingsStore } from './platform/settings/settings-store.ts';
import { settingsCatalog } from './settings-catalog.ts';
import { createAuthRpc } from './auth/auth-rpc.ts';
import { AuthService } from './auth/auth-service.ts';
import { Authenticator } from './auth/authenticator.ts';
import { CheckedCredentials } from './auth/checked-credentials.ts';
import { CredentialRateLimiter } from './auth/credential-rate-limiter.ts';
import { ensureFirstAdmin } from './auth/first-admin.ts';
import { SigningKeys } from './auth/signing-keys.ts';
import { UserAdmin } from './auth/user-admin.ts';
import { createUserAdminRpc } from './auth/user-admin-rpc.ts';
import type { Config } from './config.ts';
import type { MikroORM } from './platform/db/orm.ts';
import { createOrm } from './orm.ts';
import { runMigrations, withStartupLock } from './platform/db/schema-migrations.ts';
import { openPipeliningPool } from './platform/db/pipelining-pool.ts';
import { EventHub } from './platform/events/event-hub.ts';
import { pruneEvents } from './platform/events/event-retention.ts';
import { EventSequencer } from './platform/events/event-sequencer.ts';
import { PgNotifications } from './platform/events/pg-notifications.ts';
import { createFilesRpc, filesServiceOptions } from './files/files-rpc.ts';
import { FileCatalogue } from './files/file-catalogue.ts';
import { FileDownloads } from './files/file-downloads.ts';
import { FileHousekeeping } from './files/file-housekeeping.ts';
import { FileIntake } from './files/file-intake.ts';
import { FileUploads } from './files/file-uploads.ts';
import { JobFileIo } from './files/job-file-io.ts';
import { fileToProto } from './files/file-messages.ts';
import { jobFilesOf } from './job-files-adapter.ts';
import { newId } from './platform/ids.ts';
import { builtinJobTypes } from './jobs/builtin-job-types.ts';
import { JobAttempts } from './jobs/job-attempts.ts';
import { JobChanges } from './jobs/job-changes.ts';
import { heldInputFile } from './jobs/held-input-files.ts';
import { JobLeases } from './jobs/job-leases.ts';
import { LeaseSweeper } from './jobs/lease-sweeper.ts';
import { JobRunner } from './jobs/job-runner.ts';
import { JobStreams } from './jobs/job-streams.ts';
import { JobTypeRegistry, type JobType } from './jobs/job-types.ts';
import { JobTypeCatalog } from './jobs/job-type-catalog.ts';
import { createJobTypeAdminRpc } from './jobs/job-types-rpc.ts';
import { countsByStatusToProto, jobToProto } from './jobs/job-messages.ts';
import { createJobsRpc } from './jobs/jobs-rpc.ts';
import { JobsService } from './jobs/jobs-service.ts';
import { QueuedJobs } from './jobs/queued-jobs.ts';
import type { Logger } from './platform/logger.ts';
import { runMaintenance, startMaintenance, type MaintenanceTask } from './platform/queue/maintenance.ts';
import { ensureQueues, startPgBoss, type PgBoss } from './platform/queue/pg-boss.ts';
import { QueuePauses } from './queue/queue-pauses.ts';
import { QueueOverviewFeed } from './queue/queue-overview-feed.ts';
import { createQueueRpc } from './queue/queue-rpc.ts';
import { QueueService } from './queue/queue-service.ts';
import { AccessPolicies } from './server/access-policies.ts';
import { clientAddressOf } from './server/client-address.ts';
import { clientKey, entityManagerKey, loggerKey, onFirstUse, requestIdKey } from './server/context.ts';
import { createHealthService } from './server/health-service.ts';
import { createHttpHandler, sendJson, type HttpHandler, type PlainRoute } from './server/http-handler.ts';
import { auditInterceptors } from './server/interceptors/audit.ts';
import { authenticationInterceptor } from './server/interceptors/authentication.ts';
import { authorizationInterceptor } from './server/interceptors/authorization.ts';
import { credentialRateLimitInterceptor } from './server/interceptors/credential-rate-limit.ts';
import { errorMappingInterceptor } from './server/interceptors/error-mapping.ts';
import { heavyCallLimitInterceptor } from './server/interceptors/heavy-call-limit.ts';
import { loggingInterceptor } from './server/interceptors/logging.ts';
import { methodChain } from './server/interceptors/method-chain.ts';
import { requestStringsInterceptor } from './server/interceptors/request-strings.ts';
import { defaultStreamLimits, streamLimitInterceptor, type StreamLimits } from './server/interceptors/stream-limit.ts';
import { metricsRoute, ServerMetrics } from './server/metrics.ts';
import { Readiness } from './server/readiness.ts';
import { createReflectionV1, createReflectionV1Alpha, ReflectionIndex } from './server/reflection-service.ts';
import { createRpcHandler } from './server/rpc-handler.ts';
import { createWebConsole } from './server/web-console.ts';
import { ObjectStorage, type StorageConfig } from './platform/storage/object-storage.ts';
import { type BuildInfo, packageVersion } from './system/build-info.ts';
import { InstanceRegistry } from './system/instance-registry.ts';
import { PoolControls } from './system/pool-controls.ts';
import { createSystemRpc } from './system/system-rpc.ts';
import { SystemService } from './system/system-service.ts';
import { ClaimWakeups } from './worker/claim-wakeups.ts';
import { ExternalWorkers } from './worker/external-workers.ts';
import { ExternalWorkersAdmin } from './worker/external-workers-admin.ts';
import { createWorkerRpc } from './worker/worker-rpc.ts';
import { WorkerService } from './worker/worker-service.ts';

export interface AppOptions {
  config: Config;
  databaseUrl: string;
  /** Where file bytes go (MinIO, or the embedded server main.ts started). */
  storage: StorageConfig;
  logger: Logger;
  /** Job types beyond the built-in ones (tests add their own). */
  extraJobTypes?: JobType[];
  /** How long a stopping instance lets running jobs finish before it hands them back. */
  jobDrainMs?: number;
  /** How long the body of a single-message request may take to arrive. */
  requestBodyDeadlineMs?: number;
  /** How often the dependencies are checked for /readyz and the health service. */
  readinessIntervalMs?: number;
  /** The version and commit this process runs (main.ts reads GIT_COMMIT or git; the default has no commit). */
  build?: BuildInfo;
  /** How often this instance tells the others it is alive (three missed heartbeats: lost). */
  instanceHeartbeatMs?: number;
  /** Caps on open streams per account, per anonymous client address and for all anonymous callers. */
  streamLimits?: Partial<StreamLimits>;
  /** Where the built web console is (clients/web/dist unless told). */
  webConsoleDir?: string;
}

export interface App {
  handler: HttpHandler;
  /** Aborted by the listener when shutdown begins, to end server streams. */
  shutdownController: AbortController;
  /** The first admin's password when this start created it with a generated one. */
  firstAdminPassword: string | undefined;
  instanceId: string;
  orm: MikroORM;
  boss: PgBoss;
  sequencer: EventSequencer;
  /** The dependency checks every health reader shares. */
  readiness: Readiness;
  /** Runs every housekeeping task now (the schedule runs them every ten minutes). */
  runMaintenance(): Promise<void>;
  close(): Promise<void>;
}

/**
 * The composition root: infrastructure, then the domain services, then the RPC
 * handlers and the HTTP routes. Reads no environment; main.ts and the tests both call it.
 */
export async function createApp({
  config,
  databaseUrl,
  storage: storageConfig,
  logger,
  extraJobTypes = [],
  jobDrainMs = 10_000,
  requestBodyDeadlineMs = 30_000,
  readinessIntervalMs,
  build = { version: packageVersion(), commit: '' },
  instanceHeartbeatMs,
  streamLimits,
  webConsoleDir = path.join(import.meta.dirname, '..', 'clients', 'web', 'dist'),
}: AppOptions): Promise<App> {
  const instanceId = newId();
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
    const settings = new SettingsStore(orm, logger, settingsCatalog, { 'files.max_upload_bytes': config.maxUploadBytes });
    await settings.start(notifications);
    await signingKeys.start(notifications);

    const storage = new ObjectStorage(storageConfig);
    await storage.ensureBucket(storageConfig.region);

    const registry = new JobTypeRegistry([...builtinJobTypes, ...extraJobTypes]);
    const boss = await startPgBoss({ url: databaseUrl, logger });
    cleanups.push(() => boss.stop({ graceful: true, timeout: 5000 }));
    await ensureQueues(boss, registry.all());
    const catalog = new JobTypeCatalog({ orm, registry, boss, logger });
    await catalog.start(notifications);

    const sequencer = new EventSequencer(orm, logger);
    sequencer.start();
    cleanups.push(() => sequencer.stop());
    const hub = new EventHub(orm, logger);
    await hub.start(notifications);
    cleanups.push(() => hub.stop());
    const pauses = new QueuePauses(orm, logger);
    await pauses.start(notifications);
    const poolControls = new PoolControls(orm, logger);
    await poolControls.start(notifications);

    const rateLimitPool = new pg.Pool({ connectionString: databaseUrl, max: 4 });
    rateLimitPool.on('error', (error) => logger.warn({ err: error }, 'rate limit pool connection failed'));
    cleanups.push(() => rateLimitPool.end());

    const metrics = new ServerMetrics();
    const auditLog = new AuditLog(orm, logger);
    const checkedCredentials = new CheckedCredentials();
    await checkedCredentials.start(notifications);
    const credentialsChanged = () => checkedCredentials.forgetAll();
    const authService = new AuthService({ settings, signingKeys, refreshTokenTtlMs: config.refreshTokenTtlMs, credentialsChanged });
    const rateLimiter = new CredentialRateLimiter(rateLimitPool, settings);
    const authenticator = new Authenticator(signingKeys, checkedCredentials);
    const fileIntake = new FileIntake({ storage, settings });
    const fileUploads = new FileUploads({ storage, settings, intake: fileIntake });
    const heldInputs = { holds: heldInputFile };
    const fileCatalogue = new FileCatalogue({ storage, settings, heldInputs });
    const fileDownloads = new FileDownloads({ storage, heldInputs });
    const jobFileIo = new JobFileIo({ storage, intake: fileIntake });
    const fileHousekeeping = new FileHousekeeping({ storage });
    const userAdmin = new UserAdmin(settings, fileCatalogue, credentialsChanged);
    const changes = new JobChanges(sequencer);
    const jobFiles = jobFilesOf(jobFileIo);
    // Pipelining connections: a CreateJob's transaction is one round trip; the runner takes its
    // batches there (fetch and start in one transaction) and ends their attempts in two.
    const pipeliningPool = openPipeliningPool(databaseUrl, logger);
    cleanups.push(() => pipeliningPool.end());
    const jobs = new JobsService({
      registry,
      catalog,
      boss,
      settings,
      changes,
      files: jobFiles,
      connection: orm.em.getConnection(),
      creationPool: pipeliningPool,
    });
    const attempts = new JobAttempts({ boss, changes, pauses, pipeliningPool });
    const streams = new JobStreams({ hub, notifications, settings, logger });
    const leases = new JobLeases({
      boss,
      attempts,
      changes,
      files: jobFiles,
      policyOf: (queue) => catalog.external(queue),
      watchExpiry: (expiresAt) => leaseSweeper.watch(expiresAt),
      logger,
    });
    const leaseSweeper = new LeaseSweeper({ orm, leases, logger, onExpired: (count) => metrics.countExpiredLeases(count) });
    leaseSweeper.start();
    cleanups.push(() => leaseSweeper.stop());
    const claimWakeups = new ClaimWakeups({
      onQueued: (listener) =>
        hub.subscribe((event) => {
          if (event.kind.startsWith('job.') && event.payload.status === 'queued') listener(String(event.payload.type));
        }),
      onPausesChanged: (listener) => pauses.onChange(listener),
    });
    cleanups.push(() => claimWakeups.close());
    const workerService = new WorkerService({
      jobs: leases,
      workers: new ExternalWorkers(),
      wakeups: claimWakeups,
      isPaused: (queue) => pauses.isPaused(queue),
    });
    const queues = new QueueService({
      jobs: new QueuedJobs({ catalog, registry, boss, changes }),
      pauses,
      workersByQueue: (em) => instances.workersByQueue(em),
    });
    const queueFeed = new QueueOverviewFeed({
      queues,
      hub,
      pauses,
      heartbeatIntervalMs: () => settings.get('jobs.stream_heartbeat_interval'),
    });

    const externalWorkers = new ExternalWorkersAdmin();
    let runner: JobRunner | undefined;
    const instances = new InstanceRegistry({
      orm,
      logger,
      instanceId,
      role: config.role,
      build,
      pools: () => runner?.poolReports() ?? [],
      heartbeatIntervalMs: instanceHeartbeatMs,
    });

    const maintenanceTasks: MaintenanceTask[] = [
      { name: 'prune lost instances', run: () => instances.prune(orm.em.fork()) },
      { name: 'prune lost external workers', run: () => externalWorkers.prune(orm.em.fork()) },
      { name: 'prune events', run: () => pruneEvents(orm.em.fork(), settings.get('jobs.event_retention')) },
      { name: 'prune sessions', run: () => authService.pruneSessions(orm.em.fork()) },
      { name: 'prune rate limit counters', run: () => rateLimiter.pruneExpired() },
      { name: 'remove stale uploads', run: () => fileHousekeeping.cleanupStaleUploads(orm.em.fork()) },
      { name: 'remove orphan staged uploads', run: () => fileHousekeeping.removeOrphanStagedObjects(orm.em.fork()) },
      { name: 'fail oversized multipart uploads', run: () => fileHousekeeping.failOversizedMultipartUploads(orm.em.fork()) },
    ];
    if (config.role !== 'api') {
      const jobRunner = new JobRunner({
        orm,
        files: jobFiles,
        boss,
        registry,
        attempts,
        pauses,
        pools: poolControls,
        notifications,
        logger,
        instanceId,
        poolDrainMs: () => settings.get('jobs.pool_drain_time'),
      });
      runner = jobRunner;
      jobRunner.onPoolsChanged(() => instances.heartbeatNow());
      await jobRunner.start();
      cleanups.push(() => jobRunner.stop(jobDrainMs));
      await startMaintenance(boss, maintenanceTasks, logger);
    }

    const readiness = new Readiness(readinessIntervalMs);
    readiness.add('database', async () => {
      await orm.em.fork().execute('select 1');
    });
    readiness.add('object storage', () => storage.check());
    readiness.add('queue', async () => {
      await boss.getQueue(registry.all()[0]!.name);
    });
    await readiness.start();
    cleanups.push(() => readiness.stop());
    await instances.start();
    metrics.reportSystem({
      queues: () => queues.figures(orm.em.fork()),
      liveInstances: () => instances.countLive(orm.em.fork()),
      liveExternalWorkers: () => externalWorkers.countLive(orm.em.fork()),
    });
    // Deregisters first when closing: a stopping instance is no longer one to count on.
    cleanups.push(() => instances.stop());
    // Whether every queue has workers is about the whole system, not this instance: it is
    // checked on a schedule of its own, shown by GetSystemStatus, and left out of /readyz
    // and the health service (a queue without workers makes no instance unready).
    const workerCoverage = new Readiness(readinessIntervalMs);
    const servesApi = config.role !== 'worker';
    const system = new SystemService({
      registry: instances,
      pools: poolControls,
      checks: servesApi ? [readiness, workerCoverage] : [readiness],
      externalWorkers,
      readyQueues: (em) => queues.readyQueues(em),
      hasQueue: (queue) => registry.get(queue) !== undefined,
    });
    if (servesApi) {
      workerCoverage.add('workers', async () => {
        const unserved = await system.queuesWithoutWorkers(orm.em.fork());
        return unserved.length > 0 ? `no live worker for: ${unserved.join(', ')}` : undefined;
      });
      await workerCoverage.start();
      cleanups.push(() => workerCoverage.stop());
    }

    const yardmasterServices: DescService[] = [
      AuthServiceDesc,
      AdminService,
      JobsServiceDesc,
      QueueServiceDesc,
      FilesServiceDesc,
      SystemServiceDesc,
      WorkerServiceDesc,
    ];
    const standardServices: DescService[] = [Health, ServerReflectionV1, ServerReflectionV1Alpha];
    const policies = new AccessPolicies(yardmasterServices, standardServices);
    const reflection = new ReflectionIndex([...yardmasterServices, ...standardServices]);
    const shutdownController = new AbortController();

    const audit = auditInterceptors(auditLog, policies);
    const webConsole = createWebConsole({ distDir: webConsoleDir, storageOrigins: [new URL(storageConfig.publicEndpoint).origin] });
    const rpc = createRpcHandler({
      logger,
      routes: (router) => {
        if (config.role === 'worker') return;
        router.service(AuthServiceDesc, createAuthRpc(authService, policies));
        // AdminService is one contract served by three areas: auth administers the accounts,
        // jobs the declared job types, admin the rest.
        router.service(AdminService, {
          ...createUserAdminRpc({ users: userAdmin, signingKeys, credentialLimiter: rateLimiter }),
          ...createJobTypeAdminRpc(catalog),
          ...createAdminRpc({ settings, auditLog, jobCountsToProto: countsByStatusToProto }),
        } satisfies ServiceImpl<typeof AdminService>);
        router.service(JobsServiceDesc, createJobsRpc(jobs, streams, catalog));
        router.service(QueueServiceDesc, createQueueRpc({ queues, feed: queueFeed, jobToProto }));
        router.service(
          FilesServiceDesc,
          createFilesRpc({ uploads: fileUploads, catalogue: fileCatalogue, downloads: fileDownloads }),
          filesServiceOptions,
        );
        router.service(SystemServiceDesc, createSystemRpc(system));
        router.service(
          WorkerServiceDesc,
          createWorkerRpc({
            workers: workerService,
            jobToProto,
            inputFiles: async (em, job) => (await jobFileIo.availableFiles(em, job.ownerId, job.inputFileIds)).map(fileToProto),
          }),
        );
        router.service(
          Health,
          createHealthService(
            readiness,
            () => reflection.serviceNames,
            () => settings.get('jobs.stream_heartbeat_interval'),
          ),
        );
        router.service(ServerReflectionV1, createReflectionV1(reflection));
        router.service(ServerReflectionV1Alpha, createReflectionV1Alpha(reflection));
      },
      interceptors: [
        methodChain(policies, [
          loggingInterceptor(metrics, logger),
          errorMappingInterceptor(),
          requestStringsInterceptor(),
          // Outside authentication, so that calls with bad credentials are audited too.
          audit.record,
          authenticationInterceptor(authenticator, policies, metrics),
          authorizationInterceptor(policies),
          credentialRateLimitInterceptor(rateLimiter, policies, metrics, auditLog),
          streamLimitInterceptor({ ...defaultStreamLimits, ...streamLimits }),
          heavyCallLimitInterceptor(policies, settings),
          // Last: only a call about to reach its handler is recorded before it runs.
          audit.writeAhead,
        ]),
      ],
      contextValues: (req) => {
        const requestId = String(req.headers['x-request-id']);
        return createContextValues()
          .set(requestIdKey, requestId)
          .set(clientKey, {
            clientAddress: clientAddressOf(req, config.trustProxyHops),
            userAgent: String(req.headers['user-agent'] ?? ''),
          })
          .set(
            loggerKey,
            onFirstUse(() => logger.child({ requestId })),
          )
          .set(
            entityManagerKey,
            onFirstUse(() => orm.em.fork()),
          );
      },
      shutdownSignal: shutdownController.signal,
      waitingUnaryMethods: [WorkerServiceDesc.method.claimJobs],
      handoffMethods: [JobsServiceDesc.method.watchJobs],
      jsonOptions: { ignoreUnknownFields: false },
      readMaxBytes: 8 * 1024 * 1024,
      fallback: (req, res) => {
        const notFound = () => sendJson(res, 404, { code: 'not_found', message: 'no such route' });
        if (config.role === 'worker') return notFound();
        webConsole(req, res).then(
          (served) => served || notFound(),
          (error: unknown) => {
            logger.warn({ err: error }, 'serving the web console failed');
            if (!res.headersSent) notFound();
            else res.destroy();
          },
        );
      },
    });

    const routes: Record<string, PlainRoute> = {
      '/healthz': (_req, res) => sendJson(res, 200, { status: 'ok', instance: instanceId, role: config.role }),
      '/readyz': async (_req, res) => {
        const { ok, dependencies } = await readiness.current();
        sendJson(res, ok ? 200 : 503, { status: ok ? 'ready' : 'unavailable', dependencies });
      },
      '/.well-known/jwks.json': (_req, res) => sendJson(res, 200, signingKeys.jwks(), { 'cache-control': 'public, max-age=300' }),
    };
    if (config.metricsEnabled) {
      routes['/metrics'] = metricsRoute(metrics, config.metricsToken);
    }
    const streamingRequestPaths = new Set(
      [...yardmasterServices, ...standardServices].flatMap((service) =>
        service.methods
          .filter((method) => method.methodKind === 'client_streaming' || method.methodKind === 'bidi_streaming')
          .map((method) => `/${service.typeName}/${method.name}`),
      ),
    );
    const handler = createHttpHandler({ rpc, corsOrigins: config.corsOrigins, routes, streamingRequestPaths, requestBodyDeadlineMs });

    return {
      handler,
      shutdownController,
      firstAdminPassword: firstAdmin.generatedPassword,
      instanceId,
      orm,
      boss,
      sequencer,
      readiness,
      runMaintenance: () => runMaintenance(maintenanceTasks, logger),
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}
