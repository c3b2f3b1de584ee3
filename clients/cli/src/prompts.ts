import { CliFailure } from './exit-codes.ts';

/** Loaded only when a prompt is shown: most runs never ask anything, and the library is a good part of a start. */
const prompts = () => import('@inquirer/prompts');

/** Prompts draw on standard error, so that standard output stays the command's result. */
const promptContext = { output: process.stderr };

function requireTerminal(what: string, instead: string): void {
  if (!process.stdin.isTTY) throw new CliFailure(`${what} needed and standard input is not a terminal: ${instead}`);
}

export async function askText(message: string, instead: string, signal: AbortSignal): Promise<string> {
  requireTerminal(message.toLowerCase(), instead);
  const { input } = await prompts();
  return input({ message, required: true }, { ...promptContext, signal });
}

/** Asks without echo (a mask instead). */
export async function askSecret(message: string, instead: string, signal: AbortSignal): Promise<string> {
  requireTerminal(message.toLowerCase(), instead);
  const { password } = await prompts();
  return password({ message, mask: '*' }, { ...promptContext, signal });
}

/** Asks the person to type `expected` back before something irreversible; --yes skips it. */
export async function confirmByTyping(what: string, expected: string, signal: AbortSignal): Promise<void> {
  requireTerminal('confirmation', 'pass --yes');
  const { input } = await prompts();
  const answer = await input({ message: `${what}. Type "${expected}" to confirm` }, { ...promptContext, signal });
  if (answer !== expected) throw new CliFailure('not confirmed: nothing was changed', 1);
}

/** All of standard input, without the one line break a pipe or `echo` adds at the end (as `docker login --password-stdin`). */
export async function readStandardInput(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}
