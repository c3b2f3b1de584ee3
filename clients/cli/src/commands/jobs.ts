import { readFile } from 'node:fs/promises';
import {
  JobLogLevel,
  JobStatus,
  JobTypeRuntime,
  tailLogs,
  watchJob,
  watchJobs,
  type Job,
  type JobLogLine,
  type YardmasterClient,
} from '@yardmaster/client';
import type { JsonObject, MessageInitShape } from '@bufbuild/protobuf';
import { timestampMs } from '@bufbuild/protobuf/wkt';
import type { JobFilterSchema } from '@yardmaster/client';
import { InvalidArgumentError, type Command } from 'commander';
import { examples, integer, keyValueJson, keyValueText, pointInTime, repeatable } from '../arguments.ts';
import type { CommandContext, ContextFactory } from '../context.ts';
import { CliFailure, ExitCode } from '../exit-codes.ts';
import { enumName, formatDuration, formatMs, formatTime, statusKey, type Output } from '../output.ts';
import { jobDisplay } from '../progress.ts';
import { resolveFileId } from './files.ts';

interface FilterOptions {
  status?: string[];
  type?: string[];
  owner?: string;
  label?: Record<string, string>;
  search?: string;
  since?: string;
  until?: string;
}

/** Submit, list, follow and manage jobs. */
export function registerJobCommands(program: Command, context: ContextFactory): void {
  const jobs = program.command('jobs').description('Submit, list, follow and manage jobs');

  examples(
    jobs
      .command('submit <type>')
      .description('Submit a job; with --wait, follow it with a progress bar and exit with its outcome')
      .option(
        '-p, --param <key=value>',
        'a parameter; the value is read as JSON when it parses (5, true, [1]), else as text; repeatable',
        keyValueJson,
      )
      .option('--params-file <file>', 'parameters from a JSON object (--param entries override it)')
      .option('-i, --input <file>', 'an input file: id or /path; repeatable', repeatable)
      .option('-n, --name <name>', 'a display name')
      .option('-l, --label <key=value>', 'a label; repeatable', keyValueText)
      .option('--priority <n>', 'higher runs first', integer)
      .option('--max-attempts <n>', 'attempts before the job fails', integer)
      .option('--run-after <when>', 'not before this ISO date/time')
      .option('-w, --wait', 'follow the job until it ends; the exit code follows it (0 succeeded, 10 failed, 11 cancelled)')
      .action(async (type: string, options: SubmitOptions, command: Command) => {
        const ctx = context(command);
        const client = ctx.signedInClient;
        const fromFile = options.paramsFile ? await readParamsFile(options.paramsFile) : {};
        const inputFileIds = await Promise.all((options.input ?? []).map((reference) => resolveFileId(client, reference, ctx.signal)));
        const { job } = await client.jobs.createJob({
          type,
          name: options.name ?? '',
          params: { ...fromFile, ...options.param } as JsonObject,
          labels: options.label,
          priority: options.priority ?? 0,
          maxAttempts: options.maxAttempts ?? 0,
          inputFileIds,
          runAfter: options.runAfter ? pointInTime(options.runAfter) : undefined,
          requestId: crypto.randomUUID(),
        });
        if (!options.wait) {
          if (ctx.out.json) return ctx.out.printJson(job);
          ctx.out.line(job!.id);
          return;
        }
        if (!ctx.out.json) ctx.out.note(`Submitted ${type} job ${job!.id}`);
        const final = await followJob(ctx, job!.id, false);
        if (ctx.out.json) ctx.out.printJson(final);
        return exitWithJob(ctx, final);
      }),
    [
      'yard jobs submit sleep --param seconds=5 --wait',
      'yard jobs submit checksum --input /data/big.iso --wait --json',
      'yard jobs submit sleep --params-file params.json --label team=ops --priority 5',
    ],
  );

  examples(
    addFilterOptions(
      jobs.command('list').alias('ls').description('List jobs, newest first; --watch keeps the table up to date as jobs change'),
    )
      .option('--order-by <order>', 'e.g. "create_time desc" or "priority desc"')
      .option('--limit <n>', 'jobs per page (default 50, at most 1000)', integer)
      .option('--page-token <token>', 'the next page, as printed after the previous one')
      .option('--watch', 'keep the list live (Ctrl-C ends); with --json, one job event per line')
      .action(
        async (options: FilterOptions & { orderBy?: string; limit?: number; pageToken?: string; watch?: boolean }, command: Command) => {
          const ctx = context(command);
          const client = ctx.signedInClient;
          const filter = jobFilter(options);
          const list = () =>
            client.jobs.listJobs(
              { filter, orderBy: options.orderBy ?? '', pageSize: options.limit ?? 0, pageToken: options.pageToken ?? '' },
              { signal: ctx.signal },
            );
          if (options.watch) return watchList(ctx, client, filter, list);
          const { jobs: page, nextPageToken } = await list();
          if (ctx.out.json) return ctx.out.printJson({ jobs: page, nextPageToken });
          jobTable(ctx.out, page);
          if (nextPageToken) ctx.out.note(`more: --page-token ${nextPageToken}`);
        },
      ),
    ['yard jobs list --status running,queued --type sleep', 'yard jobs list --label team=ops --since 2h --json', 'yard jobs list --watch'],
  );

  jobs
    .command('get <id>')
    .description('Show a job')
    .action(async (id: string, _options: unknown, command: Command) => {
      const ctx = context(command);
      const { job } = await ctx.signedInClient.jobs.getJob({ id });
      if (ctx.out.json) return ctx.out.printJson(job);
      showJob(ctx.out, job!);
    });

  examples(
    jobs
      .command('watch <id>')
      .description('Follow a job with a progress bar until it ends; the exit code follows it (0 succeeded, 10 failed, 11 cancelled)')
      .action(async (id: string, _options: unknown, command: Command) => {
        const ctx = context(command);
        ctx.signedInClient;
        const final = await followJob(ctx, id, true);
        return exitWithJob(ctx, final);
      }),
    ['yard jobs watch 0193a5c2-...', 'yard jobs watch "$ID" --json | jq -c .progress'],
  );

  examples(
    jobs
      .command('logs <id>')
      .description("Print a job's log; --follow keeps printing until the job ends")
      .option('-f, --follow', 'tail the log until the job ends')
      .option('--after <sequence>', 'only lines after this sequence number', integer)
      .action(async (id: string, options: { follow?: boolean; after?: number }, command: Command) => {
        const ctx = context(command);
        const client = ctx.signedInClient;
        const afterSequence = BigInt(options.after ?? 0);
        if (options.follow) {
          for await (const line of tailLogs(client, id, { follow: true, afterSequence, signal: ctx.signal })) printLogLine(ctx.out, line);
          return;
        }
        let pageToken = '';
        do {
          const page = await client.jobs.listJobLogs({ id, pageToken, pageSize: 1000 }, { signal: ctx.signal });
          for (const line of page.lines) if (line.sequence > afterSequence) printLogLine(ctx.out, line);
          pageToken = page.nextPageToken;
        } while (pageToken);
      }),
    ['yard jobs logs "$ID" --follow', 'yard jobs logs "$ID" --json | jq -r .message'],
  );

  jobs
    .command('cancel <id>')
    .description('Cancel a queued or running job')
    .option('--reason <text>', 'why (kept with the job)')
    .action(async (id: string, options: { reason?: string }, command: Command) => {
      const ctx = context(command);
      const { job } = await ctx.signedInClient.jobs.cancelJob({ id, reason: options.reason ?? '' });
      if (ctx.out.json) return ctx.out.printJson(job);
      ctx.out.line(`${id} ${job!.status === JobStatus.CANCELLED ? 'cancelled' : 'cancel requested'}`);
    });

  jobs
    .command('retry <id>')
    .description('Run a failed or cancelled job again')
    .action(async (id: string, _options: unknown, command: Command) => {
      const ctx = context(command);
      const { job } = await ctx.signedInClient.jobs.retryJob({ id });
      if (ctx.out.json) return ctx.out.printJson(job);
      ctx.out.line(`${id} ${ctx.out.status(job!.status)}`);
    });

  jobs
    .command('delete <id>')
    .alias('rm')
    .description('Delete a finished job and its log')
    .action(async (id: string, _options: unknown, command: Command) => {
      const ctx = context(command);
      await ctx.signedInClient.jobs.deleteJob({ id });
      if (ctx.out.json) return ctx.out.printJson({ id, deleted: true });
      ctx.out.line(`${id} deleted`);
    });

  jobs
    .command('update <id>')
    .description("Change a job's name, labels or (while queued) priority")
    .option('-n, --name <name>', 'new display name')
    .option('-l, --label <key=value>', 'the labels (replace all); repeatable', keyValueText)
    .option('--priority <n>', 'new priority', integer)
    .action(async (id: string, options: { name?: string; label?: Record<string, string>; priority?: number }, command: Command) => {
      const ctx = context(command);
      const paths = [options.name !== undefined && 'name', options.label && 'labels', options.priority !== undefined && 'priority'].filter(
        (path): path is string => typeof path === 'string',
      );
      if (paths.length === 0) throw new CliFailure('nothing to change: pass --name, --label or --priority');
      const { job } = await ctx.signedInClient.jobs.updateJob({
        job: { id, name: options.name ?? '', labels: options.label ?? {}, priority: options.priority ?? 0 },
        updateMask: { paths },
      });
      if (ctx.out.json) return ctx.out.printJson(job);
      showJob(ctx.out, job!);
    });

  addFilterOptions(jobs.command('stats').description('Counts by status and type, durations and throughput')).action(
    async (options: FilterOptions, command: Command) => {
      const ctx = context(command);
      const stats = await ctx.signedInClient.jobs.getJobStats({ filter: jobFilter(options) });
      if (ctx.out.json) return ctx.out.printJson(stats);
      ctx.out.fields([
        ['total', String(stats.total)],
        ...Object.entries(stats.countsByStatus).map(([status, count]): [string, string] => [statusKey(status), String(count)]),
        ['duration p50', formatDuration(stats.durationP50)],
        ['duration p95', formatDuration(stats.durationP95)],
        ['finished last hour', String(stats.finishedLastHour)],
        ['throughput', `${stats.throughputPerMinute.toFixed(1)}/min`],
      ]);
    },
  );

  jobs
    .command('types')
    .description('The job types you may submit, with their parameters')
    .action(async (_options: unknown, command: Command) => {
      const ctx = context(command);
      const { jobTypes } = await ctx.signedInClient.jobs.listJobTypes({});
      if (ctx.out.json) return ctx.out.printJson(jobTypes);
      ctx.out.table(
        ['TYPE', 'RUNS', 'PARAMS', 'DESCRIPTION'],
        jobTypes.map((type) => [
          type.name,
          enumName(JobTypeRuntime, type.runtime).replace('_', '-'),
          Object.keys((type.paramsSchema?.properties as Record<string, unknown> | undefined) ?? {}).join(', ') || '-',
          type.description,
        ]),
      );
    });

  examples(
    jobs
      .command('submit-batch <file>')
      .description('Submit several jobs at once, all or none, from a JSON array of CreateJob requests')
      .action(async (file: string, _options: unknown, command: Command) => {
        const ctx = context(command);
        const requests = JSON.parse(await readFile(file, 'utf8')) as unknown;
        if (!Array.isArray(requests)) throw new CliFailure(`${file}: expected a JSON array of jobs ({ "type": ..., "params": {...} })`);
        const { jobs: created } = await ctx.signedInClient.jobs.batchCreateJobs({
          requests: requests.map((request) => ({ requestId: crypto.randomUUID(), ...(request as object) })),
        });
        if (ctx.out.json) return ctx.out.printJson(created);
        for (const job of created) ctx.out.line(job.id);
      }),
    [`echo '[{"type":"sleep","params":{"seconds":1}},{"type":"noop"}]' > jobs.json && yard jobs submit-batch jobs.json`],
  );
}

interface SubmitOptions {
  param?: Record<string, unknown>;
  paramsFile?: string;
  input?: string[];
  name?: string;
  label?: Record<string, string>;
  priority?: number;
  maxAttempts?: number;
  runAfter?: string;
  wait?: boolean;
}

async function readParamsFile(file: string): Promise<Record<string, unknown>> {
  const params = JSON.parse(await readFile(file, 'utf8')) as unknown;
  if (!params || typeof params !== 'object' || Array.isArray(params)) throw new CliFailure(`${file}: expected a JSON object of parameters`);
  return params as Record<string, unknown>;
}

function addFilterOptions(command: Command): Command {
  return command
    .option('-s, --status <status>', 'queued, running, succeeded, failed, cancelled (comma-separated or repeated)', repeatable)
    .option('-t, --type <type>', 'job type (comma-separated or repeated)', repeatable)
    .option('--owner <userId>', "another user's jobs (admins)")
    .option('-l, --label <key=value>', 'jobs with this label; repeatable', keyValueText)
    .option('--search <text>', 'text in the name, labels or params')
    .option('--since <when>', 'created after: ISO date/time or a duration ago (2h)')
    .option('--until <when>', 'created before: ISO date/time or a duration ago');
}

function jobFilter(options: FilterOptions): MessageInitShape<typeof JobFilterSchema> {
  return {
    statuses: (options.status ?? []).map((name) => {
      const status = JobStatus[name.toUpperCase() as keyof typeof JobStatus];
      if (typeof status !== 'number' || status === JobStatus.UNSPECIFIED)
        throw new InvalidArgumentError(`unknown status "${name}": use queued, running, succeeded, failed or cancelled`);
      return status;
    }),
    types: options.type ?? [],
    ownerId: options.owner ?? '',
    labels: options.label ?? {},
    search: options.search ?? '',
    createdAfter: options.since ? pointInTime(options.since) : undefined,
    createdBefore: options.until ? pointInTime(options.until) : undefined,
  };
}

/** Follows a job to its end with a progress display; with --json and `eachState`, one JSON line per state. */
async function followJob(ctx: CommandContext, id: string, eachState: boolean): Promise<Job> {
  const display = jobDisplay(ctx.out);
  let last: Job | undefined;
  try {
    for await (const state of watchJob(ctx.signedInClient, id, { signal: ctx.signal })) {
      last = state.job!;
      display.show(last);
      if (eachState && ctx.out.json) ctx.out.printJson(last, true);
    }
  } finally {
    display.stop();
  }
  if (!last || ctx.signal.aborted) throw new CliFailure('interrupted', ExitCode.interrupted);
  return last;
}

/** A summary of the ended job, and the exit code it means. */
function exitWithJob(ctx: CommandContext, job: Job): void {
  const out = ctx.out;
  if (!out.json) {
    const took = job.startTime && job.finishTime ? ` in ${formatMs(timestampMs(job.finishTime) - timestampMs(job.startTime))}` : '';
    const mark = job.status === JobStatus.SUCCEEDED ? out.colors.green('✔') : out.colors.red('✖');
    out.line(`${mark} ${job.type} job ${job.id} ${out.status(job.status)}${took}`);
    if (job.result && Object.keys(job.result).length > 0) out.line(`result: ${JSON.stringify(job.result)}`);
    if (job.error?.message) out.line(`error: ${job.error.message}${job.error.code ? ` (${job.error.code})` : ''}`);
  }
  if (job.status === JobStatus.FAILED) process.exitCode = ExitCode.jobFailed;
  else if (job.status === JobStatus.CANCELLED) process.exitCode = ExitCode.jobCancelled;
}

async function watchList(
  ctx: CommandContext,
  client: YardmasterClient,
  filter: ReturnType<typeof jobFilter>,
  list: () => Promise<{ jobs: Job[] }>,
): Promise<void> {
  const out = ctx.out;
  if (!out.live) {
    for await (const event of watchJobs(client, { filter, signal: ctx.signal, onResync: () => undefined })) {
      if (out.json) out.printJson(event, true);
      else if (event.job)
        out.line(`${event.job.id} ${event.job.type} ${out.status(event.job.status)} ${event.job.progress?.percent ?? 0}%`);
    }
    return;
  }
  let redraw: NodeJS.Timeout | undefined;
  const draw = async () => {
    const { jobs } = await list();
    process.stdout.write('\x1b[2J\x1b[H');
    out.line(out.colors.dim(`${new Date().toLocaleTimeString()}  live: Ctrl-C to stop`));
    jobTable(out, jobs);
  };
  await draw();
  try {
    for await (const _event of watchJobs(client, { filter, signal: ctx.signal, onResync: () => undefined })) {
      // Several events in a burst make one redraw.
      redraw ??= setTimeout(() => {
        redraw = undefined;
        draw().catch(() => undefined);
      }, 200);
    }
  } finally {
    clearTimeout(redraw);
  }
}

function jobTable(out: Output, jobs: Job[]): void {
  out.table(
    ['ID', 'TYPE', 'NAME', 'STATUS', 'PROGRESS', 'CREATED'],
    jobs.map((job) => [
      job.id,
      job.type,
      job.name || '-',
      out.status(job.status),
      `${job.progress?.percent ?? 0}%`,
      formatTime(job.createTime),
    ]),
  );
}

function showJob(out: Output, job: Job): void {
  out.fields([
    ['id', job.id],
    ['type', job.type],
    ['name', job.name || '-'],
    ['status', out.status(job.status) + (job.cancelRequested ? ' (cancel requested)' : '')],
    ['progress', `${job.progress?.percent ?? 0}%${job.progress?.message ? ` ${job.progress.message}` : ''}`],
    ['params', JSON.stringify(job.params ?? {})],
    [
      'labels',
      Object.entries(job.labels)
        .map(([key, value]) => `${key}=${value}`)
        .join(', ') || '-',
    ],
    ['priority', String(job.priority)],
    ['attempt', `${job.attempt} of ${job.maxAttempts}`],
    ['inputs', job.inputFileIds.join(', ') || '-'],
    ['outputs', job.outputFileIds.join(', ') || '-'],
    ['result', job.result ? JSON.stringify(job.result) : '-'],
    ['error', job.error?.message ? `${job.error.message}${job.error.code ? ` (${job.error.code})` : ''}` : '-'],
    ['created', formatTime(job.createTime)],
    ['started', formatTime(job.startTime)],
    ['finished', formatTime(job.finishTime)],
    ['owner', job.ownerId],
  ]);
}

function printLogLine(out: Output, line: JobLogLine): void {
  if (out.json) {
    out.printJson(line, true);
    return;
  }
  const level = enumName(JobLogLevel, line.level).padEnd(5);
  const painted =
    line.level >= JobLogLevel.ERROR
      ? out.colors.red(level)
      : line.level === JobLogLevel.WARN
        ? out.colors.yellow(level)
        : out.colors.dim(level);
  out.line(`${out.colors.dim(formatTime(line.time))} ${painted} ${line.message}`);
}
