import { readFile } from 'node:fs/promises';
import { fromJson, toJson, type JsonObject, type JsonValue } from '@bufbuild/protobuf';
import { ValueSchema, type Value } from '@bufbuild/protobuf/wkt';
import { AuditOutcome, Role, type User, type YardmasterClient } from '@yardmaster/client';
import { InvalidArgumentError, type Command } from 'commander';
import { duration, examples, integer, parseJsonOrText, pointInTime } from '../arguments.ts';
import type { ContextFactory } from '../context.ts';
import { CliFailure, ExitCode } from '../exit-codes.ts';
import { enumName, formatBytes, formatTime, statusKey } from '../output.ts';
import { askSecret, confirmByTyping, readStandardInput } from '../prompts.ts';
import { showUser } from './auth.ts';

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function role(value: string): Role {
  const parsed = Role[value.toUpperCase() as keyof typeof Role];
  if (typeof parsed !== 'number' || parsed === Role.UNSPECIFIED)
    throw new InvalidArgumentError(`unknown role "${value}": use user, admin or worker`);
  return parsed;
}

/** A user from an id or a username. */
async function resolveUser(client: YardmasterClient, reference: string): Promise<User> {
  if (uuidPattern.test(reference)) return (await client.admin.getUser({ id: reference })).user!;
  const { users } = await client.admin.listUsers({ query: reference, pageSize: 1000 });
  const user = users.find((candidate) => candidate.username === reference || candidate.email === reference);
  if (!user) throw new CliFailure(`no user "${reference}"`, ExitCode.notFound);
  return user;
}

/** Administration (admins only): users, settings, audit log, metrics, signing keys, job types. */
export function registerAdminCommands(program: Command, context: ContextFactory): void {
  const admin = program.command('admin').description('Administration (admins only): users, settings, audit, metrics, job types');

  const users = admin.command('users').description('User accounts');
  users
    .command('ls', { isDefault: true })
    .description('List users')
    .option('-q, --query <text>', 'username or e-mail contains')
    .option('--role <role>', 'user, admin or worker', role)
    .option('--limit <n>', 'users per page', integer)
    .option('--page-token <token>', 'the next page')
    .action(async (options: { query?: string; role?: Role; limit?: number; pageToken?: string }, command: Command) => {
      const ctx = context(command);
      const page = await ctx.signedInClient.admin.listUsers({
        query: options.query ?? '',
        role: options.role ?? Role.UNSPECIFIED,
        pageSize: options.limit ?? 0,
        pageToken: options.pageToken ?? '',
      });
      if (ctx.out.json) return ctx.out.printJson(page);
      ctx.out.table(
        ['ID', 'USERNAME', 'EMAIL', 'ROLE', 'ACTIVE', 'CREATED'],
        page.users.map((user) => [
          user.id,
          user.username,
          user.email,
          enumName(Role, user.role),
          user.active ? 'yes' : ctx.out.colors.red('no'),
          formatTime(user.createTime),
        ]),
      );
      if (page.nextPageToken) ctx.out.note(`more: --page-token ${page.nextPageToken}`);
    });
  users
    .command('get <user>')
    .description('Show a user (id or username)')
    .action(async (reference: string, _options: unknown, command: Command) => {
      const ctx = context(command);
      const user = await resolveUser(ctx.signedInClient, reference);
      if (ctx.out.json) return ctx.out.printJson(user);
      showUser(ctx.out, user);
    });
  examples(
    users
      .command('create <username>')
      .description('Create an account')
      .requiredOption('-e, --email <address>', 'e-mail address')
      .option('--role <role>', 'user (default), admin or worker', role)
      .option('--password-stdin', 'read the password from standard input instead of prompting')
      .action(async (username: string, options: { email: string; role?: Role; passwordStdin?: boolean }, command: Command) => {
        const ctx = context(command);
        const client = ctx.signedInClient;
        const password = options.passwordStdin
          ? await readStandardInput()
          : await askSecret(`Password for ${username}`, 'pass --password-stdin', ctx.signal);
        const { user } = await client.admin.createUser({ username, email: options.email, password, role: options.role ?? Role.USER });
        if (ctx.out.json) return ctx.out.printJson(user);
        ctx.out.line(`created ${user!.username} (${user!.id})`);
      }),
    ['echo "$PASSWORD" | yard admin users create alice --email alice@example.com --password-stdin'],
  );
  users
    .command('update <user>')
    .description('Change username, e-mail, role or whether the account is active')
    .option('--username <name>', 'new username')
    .option('--email <address>', 'new e-mail address')
    .option('--role <role>', 'user, admin or worker', role)
    .option('--active', 'reactivate the account')
    .option('--inactive', 'deactivate the account (its sessions end)')
    .action(
      async (
        reference: string,
        options: { username?: string; email?: string; role?: Role; active?: boolean; inactive?: boolean },
        command: Command,
      ) => {
        const ctx = context(command);
        const client = ctx.signedInClient;
        const existing = await resolveUser(client, reference);
        const paths = [
          options.username !== undefined && 'username',
          options.email !== undefined && 'email',
          options.role !== undefined && 'role',
          (options.active || options.inactive) && 'active',
        ].filter((path): path is string => typeof path === 'string');
        if (paths.length === 0) throw new CliFailure('nothing to change: pass --username, --email, --role, --active or --inactive');
        const { user } = await client.admin.updateUser({
          user: {
            id: existing.id,
            username: options.username ?? '',
            email: options.email ?? '',
            role: options.role ?? Role.UNSPECIFIED,
            active: options.active === true,
          },
          updateMask: { paths },
        });
        if (ctx.out.json) return ctx.out.printJson(user);
        showUser(ctx.out, user!);
      },
    );
  users
    .command('delete <user>')
    .description('Delete an account for good (to only deactivate it: update --inactive)')
    .option('-y, --yes', 'do not ask to confirm')
    .action(async (reference: string, options: { yes?: boolean }, command: Command) => {
      const ctx = context(command);
      const client = ctx.signedInClient;
      const user = await resolveUser(client, reference);
      if (!options.yes) await confirmByTyping(`The account ${user.username} will be deleted`, user.username, ctx.signal);
      await client.admin.deleteUser({ id: user.id, confirm: user.username });
      if (ctx.out.json) return ctx.out.printJson({ id: user.id, deleted: true });
      ctx.out.line(`deleted ${user.username}`);
    });
  users
    .command('reset-password <user>')
    .description('Set a new password (or let the server generate one); the sessions of the account end')
    .option('--password-stdin', 'read the new password from standard input; otherwise one is generated and printed')
    .action(async (reference: string, options: { passwordStdin?: boolean }, command: Command) => {
      const ctx = context(command);
      const client = ctx.signedInClient;
      const user = await resolveUser(client, reference);
      const newPassword = options.passwordStdin ? await readStandardInput() : '';
      const response = await client.admin.resetUserPassword({ id: user.id, newPassword });
      if (ctx.out.json) return ctx.out.printJson(response);
      if (response.generatedPassword) ctx.out.line(response.generatedPassword);
      else ctx.out.line(`password of ${user.username} reset`);
    });
  users
    .command('clear-throttle <user>')
    .description('Lift the sign-in back-off of an account after failed attempts')
    .action(async (reference: string, _options: unknown, command: Command) => {
      const ctx = context(command);
      const client = ctx.signedInClient;
      const user = await resolveUser(client, reference);
      const response = await client.admin.clearSignInThrottle({ id: user.id });
      if (ctx.out.json) return ctx.out.printJson(response);
      ctx.out.line(response.wasThrottled ? `sign-in throttle of ${user.username} lifted` : `${user.username} was not throttled`);
    });

  const settings = admin.command('settings').description('Runtime settings (applied on every instance within a second)');
  settings
    .command('ls', { isDefault: true })
    .description('List settings with their values')
    .action(async (_options: unknown, command: Command) => {
      const ctx = context(command);
      const { settings: list } = await ctx.signedInClient.admin.listSettings({});
      if (ctx.out.json) return ctx.out.printJson(list);
      ctx.out.table(
        ['KEY', 'VALUE', 'DEFAULT', 'UPDATED BY'],
        list.map((setting) => [setting.key, valueText(setting.value), valueText(setting.defaultValue), setting.updatedBy || '-']),
      );
    });
  settings
    .command('get <key>')
    .description('Show a setting')
    .action(async (key: string, _options: unknown, command: Command) => {
      const ctx = context(command);
      const { setting } = await ctx.signedInClient.admin.getSetting({ key });
      if (ctx.out.json) return ctx.out.printJson(setting);
      ctx.out.fields([
        ['key', setting!.key],
        ['value', valueText(setting!.value)],
        ['default', valueText(setting!.defaultValue)],
        ['description', setting!.description],
        ['updated by', setting!.updatedBy || '-'],
        ['updated', formatTime(setting!.updateTime)],
      ]);
    });
  examples(
    settings
      .command('set <key> <value>')
      .description('Change a setting; the value is read as JSON when it parses (true, 5, ["a"]), else as text')
      .action(async (key: string, value: string, _options: unknown, command: Command) => {
        const ctx = context(command);
        const { setting } = await ctx.signedInClient.admin.updateSetting({
          key,
          value: fromJson(ValueSchema, parseJsonOrText(value) as JsonValue),
        });
        if (ctx.out.json) return ctx.out.printJson(setting);
        ctx.out.line(`${key} = ${valueText(setting!.value)}`);
      }),
    ['yard admin settings set auth.open_registration true', 'yard admin settings set files.max_upload_size 10737418240'],
  );

  examples(
    admin
      .command('audit')
      .description('The audit log, newest first')
      .option('--actor <user>', 'who (id or username)')
      .option('--action <method>', 'what, e.g. yardmaster.v1.QueueService/PauseQueue')
      .option('--target <id>', 'on what')
      .option('--since <when>', 'from: ISO date/time or a duration ago (2h)')
      .option('--until <when>', 'to: ISO date/time or a duration ago')
      .option('--outcome <outcome>', 'success or failure')
      .option('--limit <n>', 'events per page', integer)
      .option('--page-token <token>', 'the next page')
      .action(async (options: AuditOptions, command: Command) => {
        const ctx = context(command);
        const outcome = options.outcome
          ? AuditOutcome[options.outcome.toUpperCase() as keyof typeof AuditOutcome]
          : AuditOutcome.UNSPECIFIED;
        if (typeof outcome !== 'number') throw new CliFailure(`--outcome must be success or failure`);
        const page = await ctx.signedInClient.admin.listAuditEvents({
          actor: options.actor ?? '',
          action: options.action ?? '',
          target: options.target ?? '',
          startTime: options.since ? pointInTime(options.since) : undefined,
          endTime: options.until ? pointInTime(options.until) : undefined,
          outcome,
          pageSize: options.limit ?? 0,
          pageToken: options.pageToken ?? '',
        });
        if (ctx.out.json) return ctx.out.printJson(page);
        ctx.out.table(
          ['TIME', 'ACTOR', 'ACTION', 'TARGET', 'OUTCOME', 'ADDRESS'],
          page.auditEvents.map((event) => [
            formatTime(event.createTime),
            event.actorUsername || event.actorId || '-',
            event.action,
            event.target || '-',
            event.outcome === AuditOutcome.FAILURE ? ctx.out.colors.red(`failure ${event.errorCode}`) : 'success',
            event.clientAddress || '-',
          ]),
        );
        if (page.nextPageToken) ctx.out.note(`more: --page-token ${page.nextPageToken}`);
      }),
    ['yard admin audit --since 1h --outcome failure', 'yard admin audit --actor alice --json'],
  );

  admin
    .command('metrics')
    .description('Totals: users, sessions, API keys, jobs by status, files and bytes')
    .action(async (_options: unknown, command: Command) => {
      const ctx = context(command);
      const metrics = await ctx.signedInClient.admin.getMetrics({});
      if (ctx.out.json) return ctx.out.printJson(metrics);
      ctx.out.fields([
        ['users', `${metrics.usersTotal} (${metrics.usersEnabled} active, ${metrics.usersActive24h} signed in within 24 h)`],
        ['sessions', String(metrics.sessionsActive)],
        ['API keys', String(metrics.apiKeysActive)],
        [
          'jobs',
          Object.entries(metrics.jobsByStatus)
            .map(([status, count]) => `${statusKey(status)} ${count}`)
            .join(', ') || '0',
        ],
        ['files', `${metrics.filesTotal} (${formatBytes(metrics.fileBytesTotal)})`],
      ]);
    });

  admin
    .command('rotate-signing-key')
    .description('Sign new access tokens with a new key (tokens signed with the old one stay valid until they expire)')
    .action(async (_options: unknown, command: Command) => {
      const ctx = context(command);
      const response = await ctx.signedInClient.admin.rotateSigningKey({});
      if (ctx.out.json) return ctx.out.printJson(response);
      ctx.out.line(`signing key ${response.previousKeyId} -> ${response.keyId}`);
    });

  const jobTypes = admin.command('job-types').description('Job types run by external workers');
  const jobTypeOptions = (command: Command) =>
    command
      .option('--description <text>', 'what the type does')
      .option('--params-schema <file>', 'a JSON Schema of the params (file)')
      .option('--max-attempts <n>', 'attempts before a job fails', integer)
      .option('--timeout <duration>', 'longest run of one attempt, e.g. 30m')
      .option('--lease <duration>', 'how long a claim lasts between heartbeats, e.g. 1m');
  const jobType = async (name: string, options: JobTypeOptions) => ({
    name,
    description: options.description ?? '',
    paramsSchema: options.paramsSchema ? (JSON.parse(await readFile(options.paramsSchema, 'utf8')) as JsonObject) : undefined,
    maxAttempts: options.maxAttempts ?? 0,
    timeout: options.timeout ? duration(options.timeout) : undefined,
    lease: options.lease ? duration(options.lease) : undefined,
  });
  examples(
    jobTypeOptions(jobTypes.command('create <name>').description('Declare a job type for external workers')).action(
      async (name: string, options: JobTypeOptions, command: Command) => {
        const ctx = context(command);
        const { jobType: created } = await ctx.signedInClient.admin.createJobType({ jobType: await jobType(name, options) });
        if (ctx.out.json) return ctx.out.printJson(created);
        ctx.out.line(`job type ${created!.name} created`);
      },
    ),
    ['yard admin job-types create render --description "Renders a scene" --params-schema render.schema.json --timeout 30m'],
  );
  jobTypeOptions(jobTypes.command('update <name>').description('Change a job type (only the options given)')).action(
    async (name: string, options: JobTypeOptions, command: Command) => {
      const ctx = context(command);
      const paths = [
        options.description !== undefined && 'description',
        options.paramsSchema !== undefined && 'params_schema',
        options.maxAttempts !== undefined && 'max_attempts',
        options.timeout !== undefined && 'timeout',
        options.lease !== undefined && 'lease',
      ].filter((path): path is string => typeof path === 'string');
      if (paths.length === 0) throw new CliFailure('nothing to change');
      const { jobType: updated } = await ctx.signedInClient.admin.updateJobType({
        jobType: await jobType(name, options),
        updateMask: { paths },
      });
      if (ctx.out.json) return ctx.out.printJson(updated);
      ctx.out.line(`job type ${updated!.name} updated`);
    },
  );
  jobTypes
    .command('delete <name>')
    .description('Remove a job type')
    .action(async (name: string, _options: unknown, command: Command) => {
      const ctx = context(command);
      await ctx.signedInClient.admin.deleteJobType({ name });
      if (ctx.out.json) return ctx.out.printJson({ name, deleted: true });
      ctx.out.line(`job type ${name} deleted`);
    });
}

interface AuditOptions {
  actor?: string;
  action?: string;
  target?: string;
  since?: string;
  until?: string;
  outcome?: string;
  limit?: number;
  pageToken?: string;
}

interface JobTypeOptions {
  description?: string;
  paramsSchema?: string;
  maxAttempts?: number;
  timeout?: string;
  lease?: string;
}

function valueText(value: Value | undefined): string {
  return value ? JSON.stringify(toJson(ValueSchema, value)) : '-';
}
