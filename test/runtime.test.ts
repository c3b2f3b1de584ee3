/**
 * The project carries its runtime: `npm install` brings the Node.js that package.json pins
 * (the `node` package), every npm script runs under it, and the other places that name a
 * Node.js version (.nvmrc, the Dockerfile's image) say the same. A Node.js too old for the
 * sources gets one line saying what to run, not a stack trace.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';

const repoRoot = path.resolve(import.meta.dirname, '..');
const packageJson = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as {
  engines: { node: string };
  devDependencies: Record<string, string>;
  allowScripts: Record<string, boolean>;
};
const pinned = packageJson.devDependencies.node!;

test('the pinned Node.js is exact, runs the npm scripts, and .nvmrc and the Dockerfile name the same version', () => {
  expect(pinned).toMatch(/^\d+\.\d+\.\d+$/);
  expect(packageJson.allowScripts.node, 'the node package installs its binary from an install script').toBe(true);
  // `npm test` put node_modules/.bin first on PATH, so this very process is the pinned runtime.
  expect(process.versions.node).toBe(pinned);
  expect(readFileSync(path.join(repoRoot, '.nvmrc'), 'utf8').trim()).toBe(pinned);
  expect(readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8')).toMatch(new RegExp(`^FROM node:${pinned.replaceAll('.', '\\.')}-`, 'm'));
  const [minMajor, minMinor] = /^>=(\d+)\.(\d+)/.exec(packageJson.engines.node)!.slice(1).map(Number);
  const [major, minor] = pinned.split('.').map(Number);
  expect(major! > minMajor! || (major === minMajor && minor! >= minMinor!), 'the pin satisfies engines').toBe(true);
});

/** The first `node` on PATH outside node_modules/.bin: the machine's own runtime. */
function systemNode(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir || dir.includes(`node_modules${path.sep}.bin`)) continue;
    const candidate = path.join(dir, 'node');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {}
  }
  return undefined;
}

const oldNode = systemNode();
const oldNodeVersion = oldNode ? execFileSync(oldNode, ['-p', 'process.versions.node'], { encoding: 'utf8' }).trim() : undefined;
const tooOld = oldNodeVersion !== undefined && Number(oldNodeVersion.split('.')[0]) < 22;

test.skipIf(!tooOld)('under a too-old system Node.js, every entry point prints one line saying what to run, and exits 1', () => {
  for (const args of [
    ['src/start.js'],
    ['--import', './src/check-node.js', 'src/migrate.ts'],
    ['--import', './src/check-node.js', 'bench/run.ts'],
  ]) {
    const run = spawnSync(oldNode!, args, {
      cwd: repoRoot,
      encoding: 'utf8',
      env: { PATH: path.dirname(oldNode!), DATA_DIR: '/nonexistent' },
    });
    expect(run.status, args.join(' ')).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toBe(
      `yardmaster: needs Node.js 22.17 or newer, but ${oldNode} is ${oldNodeVersion}; ` +
        `run "npm install" once, then "npm start" (or "npx node <file>"), which use the Node.js ${pinned} that npm install puts in node_modules\n`,
    );
  }
});
