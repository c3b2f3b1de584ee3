/**
 * Reads a .cpuprofile (node --cpu-prof) and prints where the time went: self time per
 * function and per package or source file, as shares of all samples (idle included).
 *
 *   npx node bench/profile-summary.ts <file.cpuprofile> [--top 30]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  children?: number[];
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

const { values, positionals } = parseArgs({ options: { top: { type: 'string' } }, allowPositionals: true });
const top = Number(values.top ?? 30);
const profile = JSON.parse(readFileSync(positionals[0]!, 'utf8')) as { nodes: ProfileNode[]; samples: number[] };
const hits = new Map<number, number>();
for (const sample of profile.samples) hits.set(sample, (hits.get(sample) ?? 0) + 1);
const total = profile.samples.length;

function where(url: string): string {
  if (url === '') return '(native)';
  const inModules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (inModules) return inModules[1]!;
  if (url.startsWith('node:')) return url;
  return url.replace(/^file:\/\/.*?\/(src|gen|bench|clients)\//, '$1/');
}

const byFunction = new Map<string, number>();
const byPlace = new Map<string, number>();
for (const node of profile.nodes) {
  const count = hits.get(node.id) ?? 0;
  if (count === 0) continue;
  const { functionName, url, lineNumber } = node.callFrame;
  const place = where(url);
  const name = `${functionName || '(anonymous)'} ${place}${url ? `:${lineNumber + 1}` : ''}`;
  byFunction.set(name, (byFunction.get(name) ?? 0) + count);
  byPlace.set(place, (byPlace.get(place) ?? 0) + count);
}

// Inclusive time of our own source files: samples with a frame of the file anywhere on the stack.
const parents = new Map<number, number>();
for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id);
const nodesById = new Map(profile.nodes.map((node) => [node.id, node]));
const inclusive = new Map<string, number>();
for (const [id, count] of hits) {
  const seen = new Set<string>();
  for (let at: number | undefined = id; at !== undefined; at = parents.get(at)) {
    const { functionName, url } = nodesById.get(at)!.callFrame;
    const place = where(url);
    if (!/^(src|gen)\//.test(place) && !place.startsWith('@mikro-orm') && place !== 'pino' && place !== 'prom-client') continue;
    const name = place.startsWith('src/') ? `${functionName || '(anonymous)'} ${place}` : place;
    if (!seen.has(name)) {
      seen.add(name);
      inclusive.set(name, (inclusive.get(name) ?? 0) + count);
    }
  }
}

const print = (title: string, counts: Map<string, number>) => {
  console.log(`\n${title}`);
  for (const [name, count] of [...counts].sort((a, b) => b[1] - a[1]).slice(0, top))
    console.log(`${((count / total) * 100).toFixed(1).padStart(6)}%  ${name}`);
};
console.log(`${total} samples`);
print('self time by package / file', byPlace);
print('self time by function', byFunction);
print('inclusive time of our functions (and the ORM, pino, prom-client)', inclusive);
