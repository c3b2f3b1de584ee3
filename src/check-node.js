// Plain JavaScript on purpose: it must run, and say something useful, under a Node.js too
// old to load the TypeScript sources (Node 20 stops at the ".ts" extension with a stack
// trace before any of our code runs). Every npm script loads it first with --import, and
// src/start.js, the entry point a person types, imports it before main.ts.
import { readFileSync } from 'node:fs';

const packageJson = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const [, neededMajor, neededMinor] = /^>=\s*(\d+)\.(\d+)/.exec(packageJson.engines.node).map(Number);
const [major, minor] = process.versions.node.split('.').map(Number);

if (major < neededMajor || (major === neededMajor && minor < neededMinor)) {
  process.stderr.write(
    `yardmaster: needs Node.js ${neededMajor}.${neededMinor} or newer, but ${process.execPath} is ${process.versions.node}; ` +
      `run "npm install" once, then "npm start" (or "npx node <file>"), which use the Node.js ${packageJson.devDependencies.node} that npm install puts in node_modules\n`,
  );
  process.exit(1);
}
