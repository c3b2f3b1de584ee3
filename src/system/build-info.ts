import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';

/** What the running code is: shown by GetSystemStatus and recorded with each instance. */
export interface BuildInfo {
  version: string;
  /** The source commit; empty when neither GIT_COMMIT nor a git checkout tells it. */
  commit: string;
}

const repositoryRoot = path.join(import.meta.dirname, '..', '..');

/** The version in package.json. */
export function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(path.join(repositoryRoot, 'package.json'), 'utf8')) as { version?: string };
  return manifest.version ?? '';
}

/**
 * The commit from `GIT_COMMIT` (set by a build that has no .git, such as an image), else
 * asked of git once at start; a machine without git or a checkout gives an empty commit.
 */
export function readBuildInfo(env: Record<string, string | undefined>): BuildInfo {
  let commit = env.GIT_COMMIT?.trim() ?? '';
  if (commit === '') {
    try {
      commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: repositoryRoot, timeout: 2000, stdio: ['ignore', 'pipe', 'ignore'] })
        .toString()
        .trim();
    } catch {
      commit = '';
    }
  }
  return { version: packageVersion(), commit: commit.slice(0, 64) };
}
