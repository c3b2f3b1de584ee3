/**
 * Writes a Brotli (.br) and a gzip (.gz) copy beside each text asset of the build, once,
 * at the best settings: the server then sends the smallest encoding a browser accepts
 * without compressing on every request.
 */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { brotliCompress, constants, gzip } from 'node:zlib';

const compressible = /\.(js|css|html|svg|json|txt)$/;
/** Below this size the encoding headers cost about what they save. */
const minimumBytes = 1024;

const toBrotli = promisify(brotliCompress);
const toGzip = promisify(gzip);

const distDir = path.resolve(import.meta.dirname, '../dist');
const entries = await readdir(distDir, { recursive: true, withFileTypes: true });
let plain = 0;
let brotli = 0;
for (const entry of entries) {
  if (!entry.isFile() || !compressible.test(entry.name)) continue;
  const file = path.join(entry.parentPath, entry.name);
  const bytes = await readFile(file);
  if (bytes.byteLength < minimumBytes) continue;
  const [br, gz] = await Promise.all([
    toBrotli(bytes, { params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: bytes.byteLength } }),
    toGzip(bytes, { level: 9 }),
  ]);
  await Promise.all([writeFile(`${file}.br`, br), writeFile(`${file}.gz`, gz)]);
  plain += bytes.byteLength;
  brotli += br.byteLength;
}
console.log(`precompressed ${(plain / 1024).toFixed(0)} KiB of text assets to ${(brotli / 1024).toFixed(0)} KiB (Brotli)`);
