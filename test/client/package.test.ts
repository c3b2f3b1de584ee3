/**
 * @yardmaster/client as another project gets it: `npm pack` (which builds it), install the
 * tarball into a temporary project (peers linked from this repository's node_modules, no
 * network), type-check a consumer against the packed declarations, and run it with this
 * Node against a live server: login, GetMe, and a typed error.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { adminPassword, startTestServer, type TestServer } from '../support/test-server.ts';

const run = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, '../..');
const packageDir = path.join(repoRoot, 'clients/ts');
/** Child processes run this Node (and the npm scripts find it first on PATH). */
const env = { ...process.env, PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}` };

let server: TestServer;
let project: string;

beforeAll(async () => {
  server = await startTestServer();
  project = await mkdtemp(path.join(tmpdir(), 'yardmaster-consumer-'));
});
afterAll(async () => {
  await server?.close();
  if (project) await rm(project, { recursive: true, force: true });
});

test('the packed tarball installs into another project, type-checks and calls a live server', async () => {
  const { stdout: packed } = await run('npm', ['pack', '--json', '--pack-destination', project], { cwd: packageDir, env });
  const [tarball] = JSON.parse(packed.slice(packed.indexOf('['))) as { filename: string; files: { path: string }[] }[];
  const files = tarball!.files.map((file) => file.path);
  // Everything the package needs is inside it: its build (with the generated contract), no sources.
  expect(files).toContain('README.md');
  expect(files).toContain('dist/clients/ts/src/node.js');
  expect(files).toContain('dist/clients/ts/src/web.d.ts');
  expect(files).toContain('dist/gen/yardmaster/v1/jobs_pb.js');
  expect(files.filter((file) => !/^(dist\/|package\.json$|README\.md$)/.test(file))).toEqual([]);

  const peer = async (name: string) => `file:${await realpath(path.join(repoRoot, 'node_modules', name))}`;
  await writeFile(
    path.join(project, 'package.json'),
    JSON.stringify({
      name: 'consumer',
      private: true,
      type: 'module',
      dependencies: {
        '@yardmaster/client': `file:./${tarball!.filename}`,
        '@bufbuild/protobuf': await peer('@bufbuild/protobuf'),
        '@connectrpc/connect': await peer('@connectrpc/connect'),
        '@connectrpc/connect-node': await peer('@connectrpc/connect-node'),
      },
    }),
  );
  // --legacy-peer-deps: npm's arborist fails on peers satisfied by file: links (it never fetches anything here).
  await run('npm', ['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', '--legacy-peer-deps'], { cwd: project, env });

  await writeFile(
    path.join(project, 'main.ts'),
    `import { createYardmasterClient, Role, YardmasterError, type YardmasterClient } from '@yardmaster/client';

const [baseUrl, password] = process.argv.slice(2) as [string, string];
const client: YardmasterClient = createYardmasterClient({ baseUrl });
await client.login('admin', password);
const { user } = await client.auth.getMe({});
const error = await client.jobs.getJob({ id: '00000000-0000-7000-8000-000000000000' }).catch((thrown: unknown) => YardmasterError.from(thrown));
console.log(JSON.stringify({ username: user?.username, admin: user?.role === Role.ADMIN, error: 'codeName' in error ? error.codeName : 'none' }));
client.close();
`,
  );
  await writeFile(
    path.join(project, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'es2022',
        module: 'nodenext',
        strict: true,
        noEmit: true,
        lib: ['es2023', 'DOM'],
        typeRoots: [path.join(repoRoot, 'node_modules/@types')],
        types: ['node'],
      },
      files: ['main.ts'],
    }),
  );
  await run(path.join(repoRoot, 'node_modules/.bin/tsc'), ['-p', project], { cwd: project, env }).catch((error: { stdout?: string }) => {
    throw new Error(`the consumer does not type-check against the packed declarations:\n${error.stdout}`);
  });

  const { stdout } = await run(process.execPath, ['main.ts', server.url, adminPassword], { cwd: project, env });
  expect(JSON.parse(stdout)).toEqual({ username: 'admin', admin: true, error: 'NotFound' });
  // The consumer resolved the package from its own node_modules, not from this repository.
  const installed = JSON.parse(await readFile(path.join(project, 'node_modules/@yardmaster/client/package.json'), 'utf8')) as {
    name: string;
  };
  expect(installed.name).toBe('@yardmaster/client');
}, 60_000);
