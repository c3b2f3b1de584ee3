import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, expect, test } from 'vitest';
import { Health } from '../gen/grpc/health/v1/health_pb.ts';
import { AdminService } from '../gen/yardmaster/v1/admin_pb.ts';
import { AuthService } from '../gen/yardmaster/v1/auth_pb.ts';
import { createOrm } from '../src/orm.ts';
import { createLogger } from '../src/platform/logger.ts';
import { AccessPolicies } from '../src/server/access-policies.ts';
import { createTestDatabase } from './support/test-database.ts';

const run = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, '..');
const scratch: string[] = [];
afterAll(async () => {
  for (const dir of scratch) await rm(dir, { recursive: true, force: true });
});

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)))
    .sort();
}

test('gen/ is exactly what buf generate makes from proto/', async () => {
  const out = await mkdtemp(path.join(os.tmpdir(), 'yardmaster-gen-'));
  scratch.push(out);
  await run('npx', ['buf', 'generate', '--output', out], { cwd: repoRoot });
  const committed = path.join(repoRoot, 'gen');
  const fresh = path.join(out, 'gen');
  const files = await listFiles(committed);
  expect(await listFiles(fresh)).toEqual(files);
  for (const file of files) {
    expect(await readFile(path.join(committed, file), 'utf8'), `gen/${file} is stale: run npm run generate`).toBe(
      await readFile(path.join(fresh, file), 'utf8'),
    );
  }
}, 60_000);

test('the contract passes buf lint (STANDARD and COMMENTS) and buf format', async () => {
  await run('npx', ['buf', 'lint'], { cwd: repoRoot });
  await run('npx', ['buf', 'format', '--exit-code', '-d'], { cwd: repoRoot });
}, 60_000);

test('every Yardmaster method declares its access rule', () => {
  const policies = new AccessPolicies([AuthService, AdminService], [Health]);
  for (const method of [...AuthService.methods, ...AdminService.methods]) {
    const rule = policies.forMethod(method);
    expect(rule.public || rule.roles.size > 0, rule.name).toBe(true);
  }
  expect(policies.methodsFor('user').some((name) => name.startsWith('yardmaster.v1.AdminService.'))).toBe(false);
});

test('a service method without an access rule stops start-up', () => {
  // grpc.health.v1 carries no yardmaster.v1.access option: treated as one of ours it must be refused.
  expect(() => new AccessPolicies([Health], [])).toThrow(/without an access rule.*grpc\.health\.v1\.Health\.Check/);
});

test('the entities match the migrations (no model change without a migration)', async () => {
  const database = await createTestDatabase();
  const orm = await createOrm({ url: database.url, logger: createLogger('silent'), poolSize: 2 });
  try {
    expect(await orm.migrator.getPending()).toEqual([]);
    expect(await orm.migrator.checkSchema(), 'entities changed without a migration: run npm run migration:create').toBe(false);
  } finally {
    await orm.close();
    await database.drop();
  }
});
