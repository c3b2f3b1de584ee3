import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import envPaths from 'env-paths';
import { CliFailure } from './exit-codes.ts';

/** What `yard login` remembers of a server, under a profile name. */
export interface Profile {
  server: string;
  username?: string;
}

interface ConfigFile {
  /** The profile used when neither --profile nor YARD_PROFILE names one. */
  currentProfile?: string;
  profiles: Record<string, Profile>;
}

export const defaultProfileName = 'default';

/**
 * Profiles (config.json) and each profile's session tokens (sessions/<profile>.json, mode
 * 0600) in the user's configuration directory: ~/.config/yardmaster on Linux, the
 * platform's equivalent elsewhere, or YARD_CONFIG_DIR.
 */
export class ProfileStore {
  readonly directory: string;

  constructor(directory = process.env.YARD_CONFIG_DIR || envPaths('yardmaster', { suffix: '' }).config) {
    this.directory = directory;
  }

  get #configFile(): string {
    return path.join(this.directory, 'config.json');
  }

  read(): ConfigFile {
    try {
      const parsed = JSON.parse(readFileSync(this.#configFile, 'utf8')) as Partial<ConfigFile>;
      return { currentProfile: parsed.currentProfile, profiles: parsed.profiles ?? {} };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { profiles: {} };
      throw new CliFailure(`cannot read ${this.#configFile}: ${(error as Error).message}`, 1);
    }
  }

  write(config: ConfigFile): void {
    mkdirSync(this.directory, { recursive: true, mode: 0o700 });
    const temporary = `${this.#configFile}.${process.pid}.tmp`;
    writeFileSync(temporary, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
    renameSync(temporary, this.#configFile);
  }

  /** The profile to use: --profile, then YARD_PROFILE, then the current one, then "default". */
  resolveName(requested: string | undefined): string {
    const name = requested || process.env.YARD_PROFILE || this.read().currentProfile || defaultProfileName;
    if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new CliFailure(`invalid profile name "${name}": use letters, digits, ".", "_" and "-"`);
    return name;
  }

  get(name: string): Profile | undefined {
    return this.read().profiles[name];
  }

  save(name: string, profile: Profile): void {
    const config = this.read();
    config.profiles[name] = profile;
    config.currentProfile ??= name;
    this.write(config);
  }

  use(name: string): void {
    const config = this.read();
    if (!config.profiles[name]) throw new CliFailure(`no profile "${name}": sign in with \`yard login --profile ${name}\` first`, 5);
    config.currentProfile = name;
    this.write(config);
  }

  sessionFile(name: string): string {
    return path.join(this.directory, 'sessions', `${name}.json`);
  }
}
