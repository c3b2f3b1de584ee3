import { Command, CommanderError, Option } from 'commander';
import { registerAdminCommands } from './commands/admin.ts';
import { registerAuthCommands } from './commands/auth.ts';
import { registerFileCommands } from './commands/files.ts';
import { registerJobCommands } from './commands/jobs.ts';
import { registerQueueCommands } from './commands/queue.ts';
import { registerSystemCommands } from './commands/system.ts';
import { CommandContext, defaultServer, type GlobalOptions } from './context.ts';
import { describeFailure, ExitCode } from './exit-codes.ts';
import { cliVersion } from './version.ts';

/** Runs `yard` with these arguments (without node and the script) and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  // `yard jobs ls | head`: a reader that went away is no failure.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(ExitCode.ok);
    throw error;
  });
  const interrupt = new AbortController();
  const onInterrupt = () => interrupt.abort(new Error('interrupted'));
  process.once('SIGINT', onInterrupt);
  const contexts: CommandContext[] = [];
  const context = (command: Command) => {
    const made = new CommandContext(command.optsWithGlobals<GlobalOptions>(), interrupt.signal);
    contexts.push(made);
    return made;
  };

  const program = new Command('yard')
    .description('Yardmaster from a terminal: jobs, files, queues, administration and system.')
    .version(cliVersion, '-V, --version')
    .option('--server <url>', `server address (default: YARD_SERVER, the profile's, or ${defaultServer})`)
    .option('--profile <name>', 'saved server and session to use (default: YARD_PROFILE, the current one, or "default")')
    .option('--json', 'print JSON for scripts (streams: one JSON document per line)')
    .option('--no-color', 'no colours (also when NO_COLOR is set or the output is not a terminal)')
    .addOption(new Option('--protocol <protocol>', 'wire protocol').choices(['connect', 'grpc', 'grpc-web']).default('connect'))
    .showSuggestionAfterError()
    .exitOverride()
    .addHelpText(
      'after',
      `
Environment:
  YARD_SERVER      server address        YARD_PROFILE     profile to use
  YARD_API_KEY     sign in with an API key instead of a saved session
  YARD_CONFIG_DIR  where profiles and sessions are kept (default: the user's config directory)
  NO_COLOR         no colours

Exit codes:
  0 ok, 1 failure, 2 usage, 3 not signed in or wrong password, 4 permission denied,
  5 not found, 6 request refused (invalid, wrong state), 7 server unreachable, 8 rate limit or quota,
  10 job failed, 11 job cancelled, 130 interrupted

Examples:
  $ yard login --username admin
  $ yard jobs submit sleep --param seconds=5 --wait
  $ yard files upload ./big.iso --dir /isos
  $ yard queue pause sleep
`,
    );
  registerAuthCommands(program, context);
  registerJobCommands(program, context);
  registerFileCommands(program, context);
  registerQueueCommands(program, context);
  registerAdminCommands(program, context);
  registerSystemCommands(program, context);
  for (const command of allCommands(program)) command.exitOverride().showSuggestionAfterError();

  try {
    await program.parseAsync(argv, { from: 'user' });
    if (interrupt.signal.aborted) return ExitCode.interrupted;
    return typeof process.exitCode === 'number' ? process.exitCode : ExitCode.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and --version end this way too, with exit code 0; commander already printed the problem.
      return error.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
    }
    if (interrupt.signal.aborted) return ExitCode.interrupted;
    const { line, exitCode } = describeFailure(error);
    process.stderr.write(`yard: ${line}\n`);
    return exitCode;
  } finally {
    process.off('SIGINT', onInterrupt);
    for (const made of contexts) made.close();
  }
}

function* allCommands(command: Command): Generator<Command> {
  for (const sub of command.commands) {
    yield sub;
    yield* allCommands(sub);
  }
}

process.exitCode = await main(process.argv.slice(2));
