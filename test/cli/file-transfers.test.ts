/**
 * `yard files upload` and `download` against a real server, run as a child process: the
 * bytes come back identical, and the CLI's memory does not grow with the file (it never
 * holds a file: a 60 MiB transfer peaks no higher, within slack, than a 20 MiB one).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { adminPassword, startTestServer, type TestServer } from '../support/test-server.ts';
import { signedInTerminal, type Terminal } from './support.ts';

const mib = 1024 * 1024;
/**
 * Allowed growth of the CLI's peak RSS from a 20 MiB to a 60 MiB transfer (young
 * generation kept small, see support.ts). A CLI that held the file would need 40 MiB more
 * at least; streaming holds a few 64 KiB chunks and the sockets' buffers whatever the
 * size. Measured growth: -3 to 9 MiB.
 */
const maxGrowthBytes = 30 * mib;

let server: TestServer;
let terminal: Terminal;

beforeAll(async () => {
  server = await startTestServer();
  terminal = await signedInTerminal(server.url, 'admin', adminPassword);
});
afterAll(async () => {
  await terminal?.close();
  await server?.close();
});

/**
 * A file of `bytes` written 1 MiB at a time (never held whole), and its SHA-256: one
 * random block, numbered in its first bytes at each position so that no two MiB are
 * alike (cheaper than fresh random bytes on a busy machine).
 */
async function randomFile(file: string, bytes: number): Promise<string> {
  const hash = createHash('sha256');
  const block = randomBytes(mib);
  const handle = await open(file, 'w');
  for (let written = 0; written < bytes; written += mib) {
    block.writeUInt32BE(written / mib, 0);
    const chunk = block.subarray(0, Math.min(mib, bytes - written));
    hash.update(chunk);
    await handle.write(chunk);
  }
  await handle.close();
  return hash.digest('hex');
}

async function sha256Of(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function roundTrip(name: string, bytes: number): Promise<{ uploadPeak: number; downloadPeak: number }> {
  const local = path.join(terminal.configDir, name);
  const copy = path.join(terminal.configDir, `${name}.copy`);
  const sent = await randomFile(local, bytes);
  const upload = await terminal.run(['files', 'upload', local, '--dir', '/transfers', '--json'], { measureMemory: true });
  expect(upload.stderr).toBe('');
  expect(upload.code).toBe(0);
  const [file] = JSON.parse(upload.stdout) as { id: string; size: string; sha256: string; status: string }[];
  expect(file).toMatchObject({ size: String(bytes), sha256: sent, status: 'FILE_STATUS_AVAILABLE' });

  const download = await terminal.run(['files', 'download', `/transfers/${name}`, '-o', copy], { measureMemory: true });
  expect(download.stderr).toBe('');
  expect(download.code).toBe(0);
  expect(await sha256Of(copy)).toBe(sent);
  await rm(local);
  await rm(copy);
  return { uploadPeak: upload.peakRss!, downloadPeak: download.peakRss! };
}

test('a 20 MiB file uploads and downloads back identical, in memory that does not grow with the size', async () => {
  const small = await roundTrip('twenty.bin', 20 * mib);
  const large = await roundTrip('sixty.bin', 60 * mib);
  const report = `peak RSS upload ${(small.uploadPeak / mib) | 0} -> ${(large.uploadPeak / mib) | 0} MiB, download ${(small.downloadPeak / mib) | 0} -> ${(large.downloadPeak / mib) | 0} MiB`;
  expect(large.uploadPeak - small.uploadPeak, report).toBeLessThan(maxGrowthBytes);
  expect(large.downloadPeak - small.downloadPeak, report).toBeLessThan(maxGrowthBytes);

  const listing = JSON.parse((await terminal.run(['files', 'ls', '/transfers', '--json'])).stdout) as { files: { name: string }[] };
  expect(listing.files.map((file) => file.name).sort()).toEqual(['sixty.bin', 'twenty.bin']);
}, 90_000);
