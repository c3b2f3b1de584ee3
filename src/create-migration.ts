/**
 * `npm run migration:create [name]`: diffs the entities against a database migrated to
 * the latest migration and writes the difference as a new migration in
 * src/platform/db/migrations, registered in its index. Uses DATABASE_URL when set, otherwise a
 * throw-away embedded PostgreSQL.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createLogger } from './platform/logger.ts';
import { startEmbeddedPostgres } from './platform/db/embedded-postgres.ts';
import { createOrm } from './orm.ts';

const migrationsDir = path.join(import.meta.dirname, 'platform', 'db', 'migrations');
const logger = createLogger('warn');
const name = process.argv[2];

const scratchDir = await mkdtemp(path.join(os.tmpdir(), 'yardmaster-migration-'));
const embedded = process.env.DATABASE_URL ? undefined : await startEmbeddedPostgres({ clusterDir: scratchDir, logger });
const orm = await createOrm({ url: process.env.DATABASE_URL ?? embedded!.url, logger });
try {
  await orm.migrator.up();
  const result = await orm.migrator.create(migrationsDir, false, false, name);
  if (!result.fileName) {
    console.log('The entities match the migrations: nothing to do.');
  } else {
    const className = path.basename(result.fileName).replace(/\.ts$/, '');
    const indexFile = path.join(migrationsDir, 'index.ts');
    const lines = (await readFile(indexFile, 'utf8')).split('\n');
    const imports = lines.filter((line) => line.startsWith('import '));
    const entries = [...lines.join('\n').matchAll(/\{ name: '([^']+)', class: (\w+) \}/g)].map((m) => m[2]!);
    imports.push(`import { ${className} } from './${className}.ts';`);
    entries.push(className);
    const body = [
      ...imports,
      '',
      '/** Every migration, in order. `npm run migration:create` adds new ones here. */',
      'export const migrations = [',
      ...entries.map((entry) => `  { name: '${entry}', class: ${entry} },`),
      '];',
      '',
    ].join('\n');
    await writeFile(indexFile, body);
    console.log(`Created ${path.relative(process.cwd(), path.join(migrationsDir, result.fileName))}`);
  }
} finally {
  await orm.close();
  await embedded?.stop();
  await rm(scratchDir, { recursive: true, force: true });
}
