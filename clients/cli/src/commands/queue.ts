import type { Queue } from '@yardmaster/client';
import type { Command } from 'commander';
import { examples, integer } from '../arguments.ts';
import type { CommandContext, ContextFactory } from '../context.ts';
import { CliFailure } from '../exit-codes.ts';
import { formatDuration, formatTime } from '../output.ts';
import { confirmByTyping } from '../prompts.ts';

/** The queues (one per job type): state, pausing and clearing. */
export function registerQueueCommands(program: Command, context: ContextFactory): void {
  const queue = program.command('queue').description('Queues (one per job type): list, pause, resume, clear');

  queue
    .command('ls')
    .description('Every queue with its counts')
    .action(async (_options: unknown, command: Command) => {
      const ctx = context(command);
      const { queues } = await ctx.signedInClient.queue.listQueues({});
      if (ctx.out.json) return ctx.out.printJson(queues);
      queueTable(ctx, queues);
    });

  queue
    .command('status')
    .description('Totals over all queues and what is paused')
    .action(async (_options: unknown, command: Command) => {
      const ctx = context(command);
      const status = await ctx.signedInClient.queue.getQueueStatus({});
      if (ctx.out.json) return ctx.out.printJson(status);
      const totals = status.totals;
      ctx.out.fields([
        ['queued', String(totals?.queued ?? 0)],
        ['running', String(totals?.running ?? 0)],
        ['succeeded (1 h)', String(totals?.succeededLastHour ?? 0)],
        ['failed (1 h)', String(totals?.failedLastHour ?? 0)],
        ['oldest queued', formatDuration(totals?.oldestQueuedAge)],
        ['paused', status.pausedGlobally ? 'all queues' : status.pausedQueues.join(', ') || 'none'],
      ]);
    });

  queue
    .command('jobs <queue>')
    .description('Queued jobs of a queue, in the order they will run')
    .option('--limit <n>', 'jobs per page', integer)
    .option('--page-token <token>', 'the next page')
    .action(async (name: string, options: { limit?: number; pageToken?: string }, command: Command) => {
      const ctx = context(command);
      const page = await ctx.signedInClient.queue.listQueuedJobs({
        queue: name,
        pageSize: options.limit ?? 0,
        pageToken: options.pageToken ?? '',
      });
      if (ctx.out.json) return ctx.out.printJson(page);
      ctx.out.table(
        ['ID', 'NAME', 'PRIORITY', 'CREATED'],
        page.jobs.map((job) => [job.id, job.name || '-', String(job.priority), formatTime(job.createTime)]),
      );
      if (page.nextPageToken) ctx.out.note(`more: --page-token ${page.nextPageToken}`);
    });

  for (const [verb, description] of [
    ['pause', 'Stop starting new jobs of a queue (running ones finish); admins'],
    ['resume', 'Start jobs of a paused queue again; admins'],
  ] as const) {
    examples(
      queue
        .command(`${verb} [queue]`)
        .description(description)
        .option('--all', `${verb} every queue`)
        .action(async (name: string | undefined, options: { all?: boolean }, command: Command) => {
          const ctx = context(command);
          if (!name && !options.all) throw new CliFailure(`name a queue, or pass --all to ${verb} every queue`);
          const client = ctx.signedInClient;
          const request = { queue: name ?? '' };
          const response = verb === 'pause' ? await client.queue.pauseQueue(request) : await client.queue.resumeQueue(request);
          if (ctx.out.json) return ctx.out.printJson(response);
          ctx.out.line(`${name ? `queue ${name}` : 'every queue'} ${verb === 'pause' ? 'paused' : 'resumed'}`);
        }),
      [`yard queue ${verb} sleep`, `yard queue ${verb} --all`],
    );
  }

  examples(
    queue
      .command('clear [queue]')
      .description('Cancel every queued job of a queue (--all: of every queue); admins')
      .option('--dry-run', 'only count what would be cancelled')
      .option('--all', 'every queue')
      .option('-y, --yes', 'do not ask to confirm')
      .action(async (name: string | undefined, options: { dryRun?: boolean; all?: boolean; yes?: boolean }, command: Command) => {
        const ctx = context(command);
        if (!name && !options.all) throw new CliFailure('name a queue, or pass --all to clear every queue');
        const client = ctx.signedInClient;
        const confirm = name ?? 'all';
        if (!options.dryRun && !options.yes)
          await confirmByTyping(`Every queued job of ${name ? `queue ${name}` : 'every queue'} will be cancelled`, confirm, ctx.signal);
        const { count } = await client.queue.clearQueue({ queue: name ?? '', confirm, dryRun: options.dryRun ?? false });
        if (ctx.out.json) return ctx.out.printJson({ queue: name ?? '', dryRun: options.dryRun ?? false, count: Number(count) });
        ctx.out.line(options.dryRun ? `${count} queued jobs would be cancelled` : `${count} queued jobs cancelled`);
      }),
    ['yard queue clear sleep --dry-run', 'yard queue clear sleep --yes'],
  );

  queue
    .command('watch')
    .description('Queue counts, live (Ctrl-C ends); with --json, one update per line')
    .action(async (_options: unknown, command: Command) => {
      const ctx = context(command);
      for await (const update of ctx.signedInClient.queue.watchQueues({}, { signal: ctx.signal })) {
        if (ctx.out.json) {
          ctx.out.printJson(update, true);
          continue;
        }
        if (ctx.out.live) process.stdout.write('\x1b[2J\x1b[H');
        ctx.out.line(ctx.out.colors.dim(`${formatTime(update.time)}${update.pausedGlobally ? '  (all queues paused)' : ''}`));
        queueTable(ctx, update.queues);
      }
    });
}

function queueTable(ctx: CommandContext, queues: Queue[]): void {
  const out = ctx.out;
  out.table(
    ['QUEUE', 'STATE', 'QUEUED', 'RUNNING', 'OK 1H', 'FAILED 1H', 'OLDEST', 'CONCURRENCY', 'WORKERS'],
    queues.map((queue) => [
      queue.name,
      queue.paused ? out.colors.yellow('paused') : out.colors.green('active'),
      String(queue.queued),
      String(queue.running),
      String(queue.succeededLastHour),
      queue.failedLastHour > 0n ? out.colors.red(String(queue.failedLastHour)) : '0',
      queue.queued > 0n ? formatDuration(queue.oldestQueuedAge) : '-',
      String(queue.concurrency),
      String(queue.workersAttached),
    ]),
  );
}
