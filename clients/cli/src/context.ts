import { createYardmasterClient, fileTokenStorage, type YardmasterClient } from '@yardmaster/client';
import type { Command } from 'commander';
import { CliFailure, ExitCode } from './exit-codes.ts';
import { Output } from './output.ts';
import { ProfileStore } from './profiles.ts';
import { cliVersion } from './version.ts';

/** The options every command accepts (declared on the program). */
export interface GlobalOptions {
  server?: string;
  profile?: string;
  json?: boolean;
  color?: boolean;
  protocol?: 'connect' | 'grpc' | 'grpc-web';
}

/** The server a fresh install talks to (the server's default port on this machine). */
export const defaultServer = 'http://127.0.0.1:8080';

/**
 * What a command runs with: its output, the profile and server it talks to, and a client
 * made on first use (signed in with the profile's saved session, or YARD_API_KEY).
 */
export class CommandContext {
  readonly out: Output;
  readonly profiles: ProfileStore;
  readonly profileName: string;
  readonly server: string;
  /** Aborted on Ctrl-C: streams and transfers stop, and the command ends with exit code 130. */
  readonly signal: AbortSignal;
  #client: YardmasterClient | undefined;
  readonly #protocol: GlobalOptions['protocol'];

  constructor(options: GlobalOptions, signal: AbortSignal) {
    this.out = new Output({ json: options.json ?? false, color: options.color ?? true });
    this.profiles = new ProfileStore();
    this.profileName = this.profiles.resolveName(options.profile);
    const server = options.server || process.env.YARD_SERVER || this.profiles.get(this.profileName)?.server || defaultServer;
    this.server = validServer(server);
    this.signal = signal;
    this.#protocol = options.protocol;
  }

  get client(): YardmasterClient {
    const apiKey = process.env.YARD_API_KEY || undefined;
    this.#client ??= createYardmasterClient({
      baseUrl: this.server,
      protocol: this.#protocol,
      userAgent: `yard/${cliVersion} (node ${process.version})`,
      apiKey,
      tokenStorage: apiKey ? undefined : fileTokenStorage(this.profiles.sessionFile(this.profileName)),
    });
    return this.#client;
  }

  /** The client, after checking there is a session or API key to call with. */
  get signedInClient(): YardmasterClient {
    const client = this.client;
    if (!client.tokens && !process.env.YARD_API_KEY) {
      const profile = this.profileName === 'default' ? '' : ` --profile ${this.profileName}`;
      throw new CliFailure(`not signed in: run \`yard login${profile}\` (or set YARD_API_KEY)`, ExitCode.unauthenticated);
    }
    return client;
  }

  close(): void {
    this.#client?.close();
  }
}

function validServer(server: string): string {
  try {
    const url = new URL(server);
    if (url.protocol === 'http:' || url.protocol === 'https:') return url.href.replace(/\/$/, '');
  } catch {}
  throw new CliFailure(`invalid server URL "${server}": expected e.g. http://127.0.0.1:8080`);
}

/** Makes the context of a command from its options and the program's (global) ones. */
export type ContextFactory = (command: Command) => CommandContext;
