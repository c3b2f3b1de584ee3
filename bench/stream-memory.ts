/**
 * What an open WatchJobs stream holds in the server, by constructor: heap snapshots of
 * the server (through its inspector, each after a full garbage collection) before and
 * with `--streams` raw gRPC WatchJobs streams open, diffed per constructor and divided by
 * the number of streams; also the JS heap in use and the RSS per stream, as
 * bench/event-latency.ts reads them. A tool for looking into the memory figure of (b),
 * not a figure of `npm run bench`.
 *
 *   npx node bench/stream-memory.ts [--streams 1000] [--connections 10] [--top 30]
 *     [--server-root <checkout>] [--no-snapshot] [--retainers Constructor,...] [--settle-ms 500] [--bare]
 *
 * `--bare` measures bench/bare-stream-server.ts instead (a node:http2 stream and nothing
 * else, the baseline of figure (b)).
 *
 * `--server-root` runs the server of another checkout (an A/B against a base commit);
 * `--retainers` prints, for one new object of each named constructor, the shortest path
 * that keeps it alive from the heap's roots.
 */
import http2 from 'node:http2';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { requestNoopWatch } from './raw-watch-jobs.ts';
import { JobStatus } from '../gen/yardmaster/v1/jobs_pb.ts';
import { createYardmasterClient } from '../clients/ts/src/node.ts';
import { adminPassword, repoRoot, startBenchPostgres } from './support.ts';

const { values } = parseArgs({
  options: {
    streams: { type: 'string', default: '1000' },
    connections: { type: 'string', default: '10' },
    top: { type: 'string', default: '30' },
    'server-root': { type: 'string', default: repoRoot },
    'no-snapshot': { type: 'boolean', default: false },
    retainers: { type: 'string', default: '' },
    'settle-ms': { type: 'string', default: '500' },
    bare: { type: 'boolean', default: false },
  },
});
const streams = Number(values.streams);
const connections = Number(values.connections);
const serverRoot = path.resolve(values['server-root']);

/** A connection to a process's inspector (Chrome DevTools Protocol). */
class Inspector {
  readonly #socket: WebSocket;
  #nextId = 1;
  readonly #pending = new Map<number, (result: unknown) => void>();
  #chunks: string[] = [];
  /** Script ids and their addresses, once `Debugger.enable` has listed them. */
  readonly scripts = new Map<string, string>();

  private constructor(socket: WebSocket) {
    this.#socket = socket;
    socket.addEventListener('message', (message) => {
      const data = JSON.parse(String(message.data)) as {
        id?: number;
        method?: string;
        params?: { chunk?: string; scriptId?: string; url?: string };
        result?: unknown;
      };
      if (data.method === 'HeapProfiler.addHeapSnapshotChunk') this.#chunks.push(data.params!.chunk!);
      else if (data.method === 'Debugger.scriptParsed') this.scripts.set(data.params!.scriptId!, data.params!.url!);
      else if (data.id !== undefined) this.#pending.get(data.id)?.(data.result);
    });
  }

  static async open(url: string): Promise<Inspector> {
    const socket = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      socket.addEventListener('open', () => resolve(), { once: true });
      socket.addEventListener('error', () => reject(new Error(`cannot reach the inspector at ${url}`)), { once: true });
    });
    return new Inspector(socket);
  }

  call<T>(method: string, params: object = {}): Promise<T> {
    const id = this.#nextId++;
    return new Promise<T>((resolve) => {
      this.#pending.set(id, (result) => resolve(result as T));
      this.#socket.send(JSON.stringify({ id, method, params }));
    });
  }

  async heapUsed(): Promise<number> {
    await this.call('HeapProfiler.collectGarbage');
    return (await this.call<{ usedSize: number }>('Runtime.getHeapUsage')).usedSize;
  }

  /** A heap snapshot (V8 collects garbage before taking one). */
  async snapshot(): Promise<string> {
    this.#chunks = [];
    await this.call('HeapProfiler.takeHeapSnapshot', { reportProgress: false });
    const text = this.#chunks.join('');
    this.#chunks = [];
    return text;
  }

  close(): void {
    this.#socket.close();
  }
}

interface Snapshot {
  /** A closure's place in its source, by node index. */
  places: Map<number, string>;
  nodes: number[];
  edges: number[];
  strings: string[];
  nodeFields: number;
  edgeFields: number;
  nodeTypes: string[];
  edgeTypes: string[];
}

function parseSnapshot(text: string, scripts: Map<string, string>): Snapshot {
  const raw = JSON.parse(text) as {
    locations: number[];
    snapshot: { meta: { node_fields: string[]; edge_fields: string[]; node_types: [string[]]; edge_types: [string[]] } };
    nodes: number[];
    edges: number[];
    strings: string[];
  };
  const meta = raw.snapshot.meta;
  const places = new Map<number, string>();
  for (let at = 0; at < raw.locations.length; at += 4) {
    const script = scripts.get(String(raw.locations[at + 1])) ?? `script ${raw.locations[at + 1]}`;
    const file = script
      .replace(/^file:\/\//, '')
      .replace(/.*node_modules\//, '')
      .replace(/.*\/src\//, 'src/');
    places.set(raw.locations[at]! / meta.node_fields.length, `${file}:${raw.locations[at + 2]! + 1}`);
  }
  return {
    places,
    nodes: raw.nodes,
    edges: raw.edges,
    strings: raw.strings,
    nodeFields: meta.node_fields.length,
    edgeFields: meta.edge_fields.length,
    nodeTypes: meta.node_types[0],
    edgeTypes: meta.edge_types[0],
  };
}

/** A node's group: its constructor for objects, its kind for everything else. */
function groupOf(snapshot: Snapshot, index: number): string {
  const type = snapshot.nodeTypes[snapshot.nodes[index * snapshot.nodeFields]!]!;
  const name = snapshot.strings[snapshot.nodes[index * snapshot.nodeFields + 1]!]!;
  if (type === 'object' || type === 'native') return name.length > 60 ? `${name.slice(0, 57)}...` : name;
  if (type === 'closure') return `(closure) ${name || '<anonymous>'} ${snapshot.places.get(index) ?? ''}`;
  return `(${type})`;
}

function totalsByGroup(snapshot: Snapshot): Map<string, { count: number; bytes: number }> {
  const totals = new Map<string, { count: number; bytes: number }>();
  const nodeCount = snapshot.nodes.length / snapshot.nodeFields;
  for (let index = 0; index < nodeCount; index++) {
    const group = groupOf(snapshot, index);
    const entry = totals.get(group) ?? { count: 0, bytes: 0 };
    entry.count++;
    entry.bytes += snapshot.nodes[index * snapshot.nodeFields + 3]!;
    totals.set(group, entry);
  }
  return totals;
}

/** The shortest path of strong references from the roots to one node of `constructorName` not in `before`. */
function retainerPath(snapshot: Snapshot, constructorName: string, beforeIds: Set<number>): string[] | undefined {
  const { nodes, edges, strings, nodeFields, edgeFields, edgeTypes } = snapshot;
  const nodeCount = nodes.length / nodeFields;
  const firstEdge = new Uint32Array(nodeCount + 1);
  for (let index = 0, edge = 0; index < nodeCount; index++) {
    firstEdge[index] = edge;
    edge += nodes[index * nodeFields + 4]! * edgeFields;
  }
  firstEdge[nodeCount] = edges.length;
  const parent = new Int32Array(nodeCount).fill(-1);
  const parentEdge = new Int32Array(nodeCount).fill(-1);
  parent[0] = 0;
  const queue = [0];
  const label = (index: number) => `${groupOf(snapshot, index)}@${nodes[index * nodeFields + 2]}`;
  for (let head = 0; head < queue.length; head++) {
    const from = queue[head]!;
    for (let edge = firstEdge[from]!; edge < firstEdge[from + 1]!; edge += edgeFields) {
      const type = edgeTypes[edges[edge]!];
      if (type === 'weak' || type === 'shortcut') continue;
      const to = edges[edge + 2]! / nodeFields;
      if (parent[to] !== -1) continue;
      parent[to] = from;
      parentEdge[to] = edge;
      queue.push(to);
      const id = nodes[to * nodeFields + 2]!;
      if (groupOf(snapshot, to) === constructorName && !beforeIds.has(id)) {
        const path: string[] = [];
        for (let at = to; at !== 0; at = parent[at]!) {
          const via = parentEdge[at]!;
          const edgeType = edgeTypes[edges[via]!];
          const nameOrIndex = edges[via + 1]!;
          const edgeName = edgeType === 'element' || edgeType === 'hidden' ? `[${nameOrIndex}]` : strings[nameOrIndex];
          path.unshift(`${label(at)} <-${edgeName}-`);
        }
        return path;
      }
    }
  }
  return undefined;
}

function idsOf(snapshot: Snapshot): Set<number> {
  const ids = new Set<number>();
  for (let index = 2; index < snapshot.nodes.length; index += snapshot.nodeFields) ids.add(snapshot.nodes[index]!);
  return ids;
}

function rssOf(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/)!;
  return Number(line[1]) * 1024;
}

function openStream(session: http2.ClientHttp2Session, apiKey: string): Promise<http2.ClientHttp2Stream> {
  const stream = requestNoopWatch(session, apiKey);
  stream.on('error', () => {});
  // The first message is a heartbeat: the stream is set up (and taken) once it arrives.
  return new Promise((resolve) => stream.once('data', () => resolve(stream)));
}

/** `src/main.ts` of the server root with its inspector open, as bench/support.ts starts it, also telling the inspector's address. */
async function startServer(databaseUrl: string) {
  const script = values.bare ? path.join(repoRoot, 'bench/bare-stream-server.ts') : path.join(serverRoot, 'src/main.ts');
  const child = spawn(process.execPath, ['--inspect=127.0.0.1:0', script], {
    cwd: serverRoot,
    env: { ...process.env, DATABASE_URL: databaseUrl, HOST: '127.0.0.1', PORT: '0', ADMIN_PASSWORD: adminPassword },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let inspectorUrl: string | undefined;
  createInterface({ input: child.stderr! }).on('line', (line) => {
    inspectorUrl ??= /Debugger listening on (ws:\/\/\S+)/.exec(line)?.[1];
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.includes('"url"') && line.includes('serving')) resolve((JSON.parse(line) as { url: string }).url);
    });
    void exited.then(() => reject(new Error('the server exited during start-up')));
  });
  return {
    url,
    pid: child.pid!,
    inspectorUrl: inspectorUrl!,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

const postgres = await startBenchPostgres();
try {
  const databaseUrl = await postgres.createDatabase('bench_stream_memory');
  const server = await startServer(databaseUrl);
  const sessions: http2.ClientHttp2Session[] = [];
  try {
    let secret = '';
    if (!values.bare) {
      const admin = createYardmasterClient({ baseUrl: server.url, protocol: 'grpc' });
      await admin.login('admin', adminPassword);
      for (let index = 0; index < 20; index++) {
        const { job } = await admin.jobs.createJob({ type: 'noop' });
        for await (const message of admin.jobs.watchJob({ id: job!.id })) if (message.job?.status === JobStatus.SUCCEEDED) break;
      }
      secret = (await admin.auth.createApiKey({ name: 'stream-memory' })).secret;
    }
    // Warms the stream path (set-up, take-over, end) before the first reading.
    for (let index = 0; index < connections; index++) {
      const session = http2.connect(server.url, { settings: { initialWindowSize: 4 * 2 ** 20 } });
      session.on('error', () => {});
      sessions.push(session);
    }
    const warm = await Promise.all(Array.from({ length: 50 }, (_, index) => openStream(sessions[index % connections]!, secret)));
    for (const stream of warm) stream.close();
    await new Promise((resolve) => setTimeout(resolve, 500));

    const inspector = await Inspector.open(server.inspectorUrl);
    if (!values['no-snapshot']) await inspector.call('Debugger.enable');
    const snapshots = !values['no-snapshot'];
    const before = snapshots ? parseSnapshot(await inspector.snapshot(), inspector.scripts) : undefined;
    const heapBefore = await inspector.heapUsed();
    const rssBefore = rssOf(server.pid);
    const open = await Promise.all(Array.from({ length: streams }, (_, index) => openStream(sessions[index % connections]!, secret)));
    // Past the first credential re-check (every 5 s) with `--settle-ms 6000`: what a stream holds for good.
    await new Promise((resolve) => setTimeout(resolve, Number(values['settle-ms'])));
    const heapOpen = await inspector.heapUsed();
    const rssOpen = rssOf(server.pid);
    console.log(
      `${open.length} streams open: JS heap ${((heapOpen - heapBefore) / streams / 1024).toFixed(2)} KiB per stream, ` +
        `RSS ${((rssOpen - rssBefore) / streams / 1024).toFixed(1)} KiB per stream (after a full GC; server ${values.bare ? 'bare node:http2' : serverRoot})`,
    );
    if (before) {
      const after = parseSnapshot(await inspector.snapshot(), inspector.scripts);
      const totalsBefore = totalsByGroup(before);
      const rows = [...totalsByGroup(after)].map(([group, { count, bytes }]) => {
        const was = totalsBefore.get(group) ?? { count: 0, bytes: 0 };
        return { group, count: (count - was.count) / streams, bytes: (bytes - was.bytes) / streams };
      });
      rows.sort((a, b) => b.bytes - a.bytes);
      const total = rows.reduce((sum, row) => sum + row.bytes, 0);
      console.log(`heap snapshot diff: ${(total / 1024).toFixed(2)} KiB per stream (self sizes), by constructor:`);
      for (const row of rows.slice(0, Number(values.top)))
        console.log(`  ${row.bytes.toFixed(0).padStart(6)} B  ${row.count.toFixed(2).padStart(6)} x  ${row.group}`);
      const beforeIds = idsOf(before);
      for (const name of values.retainers.split(',').filter(Boolean)) {
        const found = retainerPath(after, name, beforeIds);
        console.log(`retainers of a new ${name}:`);
        for (const step of found?.reverse() ?? ['(none found)']) console.log(`    ${step}`);
      }
      if (process.env.STREAM_MEMORY_SNAPSHOT_DIR)
        await writeFile(path.join(process.env.STREAM_MEMORY_SNAPSHOT_DIR, `after-${server.pid}.heapsnapshot`), JSON.stringify(after));
    }
    inspector.close();
    for (const stream of open) stream.close();
  } finally {
    for (const session of sessions) session.destroy();
    await server.stop();
  }
} finally {
  await postgres.stop();
}
