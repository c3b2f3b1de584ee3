import { HealthStatus, ServiceKind, ServiceState } from '@yardmaster/client';
import type { Command } from 'commander';
import { examples } from '../arguments.ts';
import type { ContextFactory } from '../context.ts';
import { ExitCode } from '../exit-codes.ts';
import { enumName, formatDuration, formatTime } from '../output.ts';

/** The system: health of the dependencies, and the services that can be started and stopped. */
export function registerSystemCommands(program: Command, context: ContextFactory): void {
  const system = program.command('system').description('Health and services of the system');

  system
    .command('status')
    .description('Version, uptime and a check per dependency; exits 1 when the system is not OK')
    .action(async (_options: unknown, command: Command) => {
      const ctx = context(command);
      const status = await ctx.signedInClient.system.getSystemStatus({});
      if (status.status !== HealthStatus.OK) process.exitCode = ExitCode.failure;
      if (ctx.out.json) return ctx.out.printJson(status);
      const out = ctx.out;
      const health = (value: HealthStatus) => {
        const name = enumName(HealthStatus, value);
        return value === HealthStatus.OK
          ? out.colors.green(name)
          : value === HealthStatus.DEGRADED
            ? out.colors.yellow(name)
            : out.colors.red(name);
      };
      out.fields([
        ['status', health(status.status)],
        ['version', `${status.version}${status.commit ? ` (${status.commit.slice(0, 12)})` : ''}`],
        ['uptime', formatDuration(status.uptime)],
        ['instance', status.instanceId],
      ]);
      out.line();
      out.table(
        ['DEPENDENCY', 'STATUS', 'LATENCY', 'DETAIL'],
        status.dependencies.map((check) => [check.name, health(check.status), formatDuration(check.latency), check.detail || '-']),
      );
      if (status.instances.length > 0) {
        out.line();
        out.table(
          ['INSTANCE', 'HOST', 'PID', 'VERSION', 'STARTED', 'HEARTBEAT'],
          status.instances.map((instance) => [
            instance.id,
            instance.host,
            String(instance.pid),
            instance.version,
            formatTime(instance.startTime),
            instance.lost ? out.colors.red('lost') : formatTime(instance.lastHeartbeatTime),
          ]),
        );
      }
    });

  system
    .command('services')
    .description('API instances, in-process worker pools and external workers, with their state')
    .action(async (_options: unknown, command: Command) => {
      const ctx = context(command);
      const { services } = await ctx.signedInClient.system.listServices({});
      if (ctx.out.json) return ctx.out.printJson(services);
      const out = ctx.out;
      out.table(
        ['NAME', 'KIND', 'STATE', 'QUEUES', 'CONCURRENCY', 'RUNNING', 'DONE', 'HEARTBEAT'],
        services.map((service) => {
          const state = enumName(ServiceState, service.state);
          return [
            service.name,
            enumName(ServiceKind, service.kind).replaceAll('_', '-'),
            service.state === ServiceState.RUNNING ? out.colors.green(state) : out.colors.yellow(state),
            service.queue || service.queues.join(', ') || '-',
            String(service.concurrency),
            String(service.jobsRunning),
            String(service.jobsDone),
            formatTime(service.lastHeartbeatTime),
          ];
        }),
      );
    });

  for (const [verb, description] of [
    ['start', 'Start a stopped service (admins)'],
    ['stop', 'Stop a service: a worker pool finishes its running jobs and takes no more (admins)'],
    ['restart', 'Restart a service (admins)'],
  ] as const) {
    examples(
      system
        .command(`${verb} <name>`)
        .description(description)
        .action(async (name: string, _options: unknown, command: Command) => {
          const ctx = context(command);
          const client = ctx.signedInClient;
          if (verb === 'start') await client.system.startService({ name });
          else if (verb === 'stop') await client.system.stopService({ name });
          else await client.system.restartService({ name });
          if (ctx.out.json)
            return ctx.out.printJson({ name, [verb === 'stop' ? 'stopped' : verb === 'start' ? 'started' : 'restarted']: true });
          ctx.out.line(`${name}: ${verb} requested`);
        }),
      [`yard system ${verb} pool:sleep`],
    );
  }
}
