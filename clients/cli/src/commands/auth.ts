import { rmSync } from 'node:fs';
import { Role, YardmasterError, type User } from '@yardmaster/client';
import type { Command } from 'commander';
import { examples, pointInTime } from '../arguments.ts';
import type { ContextFactory } from '../context.ts';
import { CliFailure } from '../exit-codes.ts';
import { enumName, formatTime, type Output } from '../output.ts';
import { askSecret, askText, readStandardInput } from '../prompts.ts';

/** Signing in and out, the account itself: login, logout, whoami, passwd, register, api-keys, sessions, permissions, profiles. */
export function registerAuthCommands(program: Command, context: ContextFactory): void {
  examples(
    program
      .command('login')
      .description('Sign in and keep the session in the profile (tokens in a file only you can read)')
      .option('-u, --username <name>', 'username or e-mail (prompted for when missing)')
      .option('--password-stdin', 'read the password from standard input instead of prompting')
      .action(async (options: { username?: string; passwordStdin?: boolean }, command: Command) => {
        const ctx = context(command);
        const saved = ctx.profiles.get(ctx.profileName);
        const username = options.username ?? (await askText('Username', 'pass --username', ctx.signal));
        const password = options.passwordStdin
          ? await readStandardInput()
          : await askSecret('Password', 'pass --password-stdin and pipe the password in', ctx.signal);
        if (!password) throw new CliFailure('empty password');
        const { user } = await ctx.client.login(username, password);
        ctx.profiles.save(ctx.profileName, { ...saved, server: ctx.server, username: user?.username ?? username });
        if (ctx.out.json) return ctx.out.printJson({ profile: ctx.profileName, server: ctx.server, user });
        ctx.out.line(
          `Signed in to ${ctx.server} as ${ctx.out.colors.bold(user?.username ?? username)} (${enumName(Role, user?.role ?? 0)}), profile "${ctx.profileName}".`,
        );
      }),
    [
      'yard login --server http://127.0.0.1:8080 --username admin',
      'echo "$PASSWORD" | yard login --username ci-bot --password-stdin',
      'yard login --profile prod --server https://yard.example.com',
    ],
  );

  program
    .command('logout')
    .description('End the session of the profile and forget its tokens')
    .option('--all', 'end every session of this account, on every device')
    .action(async (options: { all?: boolean }, command: Command) => {
      const ctx = context(command);
      if (!ctx.client.tokens) throw new CliFailure(`not signed in (profile "${ctx.profileName}")`, 3);
      try {
        await ctx.client.logout({ allSessions: options.all ?? false });
      } catch (error) {
        // A session the server already ended (expired, revoked) is forgotten here too.
        if (YardmasterError.from(error).codeName !== 'Unauthenticated') throw error;
        rmSync(ctx.profiles.sessionFile(ctx.profileName), { force: true });
      }
      if (ctx.out.json) return ctx.out.printJson({ profile: ctx.profileName, signedOut: true });
      ctx.out.line(`Signed out (profile "${ctx.profileName}").`);
    });

  program
    .command('whoami')
    .description('Show the signed-in account')
    .action(async (_options: unknown, command: Command) => {
      const ctx = context(command);
      const { user } = await ctx.signedInClient.auth.getMe({});
      if (ctx.out.json) return ctx.out.printJson(user);
      showUser(ctx.out, user!, ctx.server);
    });

  program
    .command('passwd')
    .description('Change your password (your other sessions end)')
    .action(async (_options: unknown, command: Command) => {
      const ctx = context(command);
      const client = ctx.signedInClient;
      const currentPassword = await askSecret('Current password', 'run it in a terminal', ctx.signal);
      const newPassword = await askSecret('New password (12 characters or more)', 'run it in a terminal', ctx.signal);
      await client.auth.changePassword({ currentPassword, newPassword });
      if (ctx.out.json) return ctx.out.printJson({ changed: true });
      ctx.out.line('Password changed; your other sessions have ended.');
    });

  program
    .command('register')
    .description('Create your own account (only when the server allows open registration)')
    .requiredOption('-u, --username <name>', 'the new username')
    .requiredOption('-e, --email <address>', 'your e-mail address')
    .option('--password-stdin', 'read the password from standard input instead of prompting')
    .action(async (options: { username: string; email: string; passwordStdin?: boolean }, command: Command) => {
      const ctx = context(command);
      const password = options.passwordStdin ? await readStandardInput() : await askSecret('Password', 'pass --password-stdin', ctx.signal);
      const { user } = await ctx.client.auth.register({ username: options.username, email: options.email, password });
      await ctx.client.login(options.username, password);
      ctx.profiles.save(ctx.profileName, { server: ctx.server, username: options.username });
      if (ctx.out.json) return ctx.out.printJson(user);
      ctx.out.line(`Registered and signed in as ${options.username}.`);
    });

  const keys = program.command('api-keys').description('API keys of your account, for scripts and services (YARD_API_KEY)');
  keys
    .command('ls')
    .description('List your API keys')
    .action(async (_options: unknown, command: Command) => {
      const ctx = context(command);
      const { apiKeys } = await ctx.signedInClient.auth.listApiKeys({});
      if (ctx.out.json) return ctx.out.printJson(apiKeys);
      ctx.out.table(
        ['ID', 'NAME', 'PREFIX', 'CREATED', 'EXPIRES', 'LAST USED'],
        apiKeys.map((key) => [
          key.id,
          key.name,
          key.prefix,
          formatTime(key.createTime),
          formatTime(key.expireTime),
          formatTime(key.lastUsedTime),
        ]),
      );
    });
  examples(
    keys
      .command('create <name>')
      .description('Create an API key; its secret is shown once')
      .option('--expires <when>', 'expiry: an ISO date/time')
      .action(async (name: string, options: { expires?: string }, command: Command) => {
        const ctx = context(command);
        const response = await ctx.signedInClient.auth.createApiKey({
          name,
          expireTime: options.expires ? pointInTime(options.expires) : undefined,
        });
        if (ctx.out.json) return ctx.out.printJson(response);
        ctx.out.line(response.secret);
        ctx.out.note('This is the only time the secret is shown: keep it now (e.g. export YARD_API_KEY=...).');
      }),
    ['yard api-keys create ci --expires 2027-01-01'],
  );
  keys
    .command('revoke <id>')
    .description('Revoke an API key')
    .action(async (id: string, _options: unknown, command: Command) => {
      const ctx = context(command);
      await ctx.signedInClient.auth.revokeApiKey({ id });
      if (ctx.out.json) return ctx.out.printJson({ id, revoked: true });
      ctx.out.line(`API key ${id} revoked.`);
    });

  const sessions = program.command('sessions').description('Your signed-in sessions (devices)');
  sessions
    .command('ls')
    .description('List your sessions')
    .action(async (_options: unknown, command: Command) => {
      const ctx = context(command);
      const { sessions: list } = await ctx.signedInClient.auth.listSessions({});
      if (ctx.out.json) return ctx.out.printJson(list);
      ctx.out.table(
        ['ID', 'DEVICE', 'ADDRESS', 'CREATED', 'LAST USED', 'CURRENT'],
        list.map((session) => [
          session.id,
          session.userAgent || '-',
          session.clientAddress || '-',
          formatTime(session.createTime),
          formatTime(session.lastUsedTime),
          session.current ? 'yes' : '',
        ]),
      );
    });
  sessions
    .command('revoke <id>')
    .description('End one of your sessions')
    .action(async (id: string, _options: unknown, command: Command) => {
      const ctx = context(command);
      await ctx.signedInClient.auth.revokeSession({ id });
      if (ctx.out.json) return ctx.out.printJson({ id, revoked: true });
      ctx.out.line(`Session ${id} ended.`);
    });

  program
    .command('permissions')
    .description('The methods your account may call')
    .action(async (_options: unknown, command: Command) => {
      const ctx = context(command);
      const response = await ctx.signedInClient.auth.getMyPermissions({});
      if (ctx.out.json) return ctx.out.printJson(response);
      for (const method of response.methods) ctx.out.line(method);
    });

  const profiles = program.command('profiles').description('Saved servers and sessions (one per profile)');
  profiles
    .command('ls', { isDefault: true })
    .description('List profiles')
    .action((_options: unknown, command: Command) => {
      const ctx = context(command);
      const config = ctx.profiles.read();
      const rows = Object.entries(config.profiles).map(([name, profile]) => ({ name, ...profile, current: name === ctx.profileName }));
      if (ctx.out.json) return ctx.out.printJson(rows);
      ctx.out.table(
        ['', 'PROFILE', 'SERVER', 'USERNAME'],
        rows.map((row) => [row.current ? '*' : '', row.name, row.server, row.username ?? '-']),
      );
    });
  profiles
    .command('use <name>')
    .description('Make a profile the one used when --profile and YARD_PROFILE are not given')
    .action((name: string, _options: unknown, command: Command) => {
      const ctx = context(command);
      ctx.profiles.use(name);
      if (ctx.out.json) return ctx.out.printJson({ currentProfile: name });
      ctx.out.line(`Now using profile "${name}".`);
    });
}

export function showUser(out: Output, user: User, server?: string): void {
  out.fields([
    ['username', user.username],
    ['email', user.email],
    ['role', enumName(Role, user.role)],
    ['id', user.id],
    ['active', user.active ? 'yes' : 'no'],
    ...(server ? ([['server', server]] as [string, string][]) : []),
  ]);
}
