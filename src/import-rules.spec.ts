import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';

/**
 * The house rules of src/, checked on every import statement:
 * - platform/ (what every area uses and none owns) imports no area, no server/ and nothing at src/'s root;
 * - an area (every other folder but server/) imports no other area: what it needs from one it
 *   declares as an interface of its own, and the composition root (app.ts) connects them. The
 *   one exception is entities.ts -> another area's entities.ts: a foreign key needs the class;
 * - an area's domain code (all but its *-rpc.ts and *-messages.ts) imports neither server/,
 *   Connect nor gen/;
 * - server/ imports no area (app.ts hands it the areas' handlers and interfaces it declares);
 * - no folder imports src/'s root (the composition root and the process edge import them, not
 *   the other way round), and there is no cycle between folders.
 */

const srcDir = import.meta.dirname;
const platform = 'platform';
const server = 'server';
const root = '(src root)';

interface ImportEdge {
  file: string;
  line: number;
  specifier: string;
  typeOnly: boolean;
  /** src-relative path of the imported file; undefined for packages. */
  target: string | undefined;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return /\.(ts|js)$/.test(entry.name) && !entry.name.endsWith('.d.ts') ? [full] : [];
  });
}

const importPattern = /^\s*(?:import|export)\s+(type\s+)?(?:[^'"]*?\s+from\s+)?['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/gm;

function importsOf(file: string): ImportEdge[] {
  const text = readFileSync(file, 'utf8');
  const edges: ImportEdge[] = [];
  for (const match of text.matchAll(importPattern)) {
    const specifier = match[2] ?? match[3]!;
    const line = text.slice(0, match.index).split('\n').length + (match[0].match(/^\s*/)![0].split('\n').length - 1);
    const target = specifier.startsWith('.') ? path.relative(srcDir, path.resolve(path.dirname(file), specifier)) : undefined;
    edges.push({ file: path.relative(srcDir, file), line, specifier, typeOnly: Boolean(match[1]), target });
  }
  return edges;
}

/** The top-level folder of a src-relative path ('..' for files outside src/, such as gen/). */
function folderOf(relative: string): string {
  const parts = relative.split(path.sep);
  if (parts[0] === '..') return parts[1] === 'gen' ? 'gen' : '..';
  return parts.length === 1 ? root : parts[0]!;
}

const isArea = (folder: string) => ![platform, server, root, 'gen', '..'].includes(folder);
const isRpcLayer = (file: string) => /-(rpc|messages)\.ts$/.test(file);
const isEntities = (file: string) => path.basename(file) === 'entities.ts';

/** Every broken rule, one line each: file:line, the import, and the rule. */
function importRuleViolations(edges: ImportEdge[]): string[] {
  const violations: string[] = [];
  const report = (edge: ImportEdge, rule: string) => violations.push(`src/${edge.file}:${edge.line} imports '${edge.specifier}': ${rule}`);
  for (const edge of edges) {
    const from = folderOf(edge.file);
    const to = edge.target === undefined ? undefined : folderOf(edge.target);
    const connect = edge.specifier.startsWith('@connectrpc/');
    if (from === root) continue;
    if (to === root) report(edge, "nothing in a folder imports the composition root or the process edge at src/'s root");
    if (from === platform) {
      if (to !== undefined && isArea(to)) report(edge, `the platform imports no area (${to}/)`);
      if (to === server) report(edge, 'the platform does not import server/');
      if (connect) report(edge, 'the platform does not import Connect');
    }
    if (from === server && to !== undefined && isArea(to)) {
      report(edge, `server/ imports no area (${to}/): declare what it needs as an interface in server/, app.ts passes it in`);
    }
    if (isArea(from)) {
      if (to !== undefined && isArea(to) && to !== from && !(isEntities(edge.file) && isEntities(edge.target!))) {
        report(
          edge,
          `an area imports no other area (${from}/ -> ${to}/): declare the interface ${from}/ needs in ${from}/, and connect it in app.ts`,
        );
      }
      if (!isRpcLayer(edge.file)) {
        if (to === server) report(edge, 'domain code does not import server/ (only *-rpc.ts does)');
        if (to === 'gen') report(edge, 'domain code does not import gen/ (only *-rpc.ts and *-messages.ts do)');
        if (connect) report(edge, 'domain code does not import Connect (only *-rpc.ts does)');
      }
    }
  }
  violations.push(...folderCycles(edges));
  return violations;
}

/** Cycles in the graph of folder -> folder imports, each named with one import per step. */
function folderCycles(edges: ImportEdge[]): string[] {
  const witness = new Map<string, ImportEdge>();
  const next = new Map<string, Set<string>>();
  for (const edge of edges) {
    if (edge.target === undefined) continue;
    const from = folderOf(edge.file);
    const to = folderOf(edge.target);
    if (from === to || from === root || to === root || to === 'gen' || to === '..') continue;
    if (!next.has(from)) next.set(from, new Set());
    next.get(from)!.add(to);
    if (!witness.has(`${from}>${to}`)) witness.set(`${from}>${to}`, edge);
  }
  const cycles: string[] = [];
  const seen = new Set<string>();
  const walk = (folder: string, trail: string[]) => {
    for (const to of next.get(folder) ?? []) {
      const start = trail.indexOf(to);
      if (start >= 0) {
        const cycle = [...trail.slice(start), to];
        const key = [...cycle.slice(0, -1)].sort().join(',');
        if (seen.has(key)) continue;
        seen.add(key);
        const steps = cycle.slice(0, -1).map((step, i) => {
          const edge = witness.get(`${step}>${cycle[i + 1]}`)!;
          return `src/${edge.file}:${edge.line} imports '${edge.specifier}'`;
        });
        cycles.push(`folder cycle ${cycle.join(' -> ')}: ${steps.join('; ')}`);
      } else {
        walk(to, [...trail, to]);
      }
    }
  };
  for (const folder of next.keys()) walk(folder, [folder]);
  return cycles;
}

const allEdges = sourceFiles(srcDir).flatMap(importsOf);

test('src/ keeps its import rules (platform, areas, domain vs RPC layer, no folder cycles)', () => {
  expect(importRuleViolations(allEdges).join('\n')).toBe('');
});

test('the rules catch what they are meant to catch', () => {
  const edge = (file: string, specifier: string, target?: string): ImportEdge => ({ file, line: 1, specifier, typeOnly: false, target });
  const violations = importRuleViolations([
    edge('platform/ids.ts', '../jobs/entities.ts', 'jobs/entities.ts'),
    edge('jobs/jobs-service.ts', '@connectrpc/connect'),
    edge('jobs/jobs-service.ts', '../../gen/x_pb.ts', '../gen/x_pb.ts'),
    edge('jobs/jobs-service.ts', '../files/files-service.ts', 'files/files-service.ts'),
    edge('files/files-service.ts', '../jobs/jobs-service.ts', 'jobs/jobs-service.ts'),
    edge('server/context.ts', '../auth/caller.ts', 'auth/caller.ts'),
  ]);
  expect(violations).toEqual([
    "src/platform/ids.ts:1 imports '../jobs/entities.ts': the platform imports no area (jobs/)",
    "src/jobs/jobs-service.ts:1 imports '@connectrpc/connect': domain code does not import Connect (only *-rpc.ts does)",
    "src/jobs/jobs-service.ts:1 imports '../../gen/x_pb.ts': domain code does not import gen/ (only *-rpc.ts and *-messages.ts do)",
    expect.stringContaining(
      "src/jobs/jobs-service.ts:1 imports '../files/files-service.ts': an area imports no other area (jobs/ -> files/)",
    ),
    expect.stringContaining(
      "src/files/files-service.ts:1 imports '../jobs/jobs-service.ts': an area imports no other area (files/ -> jobs/)",
    ),
    expect.stringContaining("src/server/context.ts:1 imports '../auth/caller.ts': server/ imports no area (auth/)"),
    expect.stringMatching(/^folder cycle (jobs -> files -> jobs|files -> jobs -> files)/),
  ]);
  expect(importRuleViolations([edge('jobs/entities.ts', '../auth/entities.ts', 'auth/entities.ts')])).toEqual([]);
});
