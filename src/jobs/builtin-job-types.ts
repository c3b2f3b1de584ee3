import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { pipeline } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { createGzip } from 'node:zlib';
import { pack } from 'tar-stream';
import { z } from 'zod';
import { cleanFileName } from '../platform/file-paths.ts';
import { defineJobType, JobFailure, type JobInputFile } from './job-types.ts';
import { jobErrorCodes } from './job-reasons.ts';

const second = 1000;
const minute = 60 * second;

/** Finishes at once: for benchmarks and health checks of the job path. */
export const noopJobType = defineJobType({
  name: 'noop',
  description: 'Does nothing and succeeds at once; measures the job path itself.',
  paramsSchema: z.object({}).strict(),
  concurrency: 50,
  batchSize: 25,
  timeoutMs: 30 * second,
  cancelGraceMs: second,
  retry: { defaultMaxAttempts: 1, delayMs: second, backoff: false, maxDelayMs: second },
  async run() {
    return {};
  },
});

/** Sleeps, reporting progress every second; honours cancellation; can be told to fail. */
export const sleepJobType = defineJobType({
  name: 'sleep',
  description: 'Sleeps for `seconds` (0 to 3600), reporting progress every second; with `fail`, fails at the end.',
  paramsSchema: z
    .object({
      seconds: z.number().min(0).max(3600),
      fail: z.boolean().default(false),
    })
    .strict(),
  concurrency: 20,
  batchSize: 1,
  timeoutMs: 65 * minute,
  cancelGraceMs: 5 * second,
  retry: { defaultMaxAttempts: 1, delayMs: second, backoff: true, maxDelayMs: minute },
  async run({ params, signal, progress, log }) {
    const totalMs = params.seconds * 1000;
    const started = Date.now();
    log(`sleeping for ${params.seconds} s`);
    while (Date.now() - started < totalMs) {
      const elapsed = Date.now() - started;
      await sleep(Math.min(second, totalMs - elapsed), undefined, { signal });
      const done = Math.min(totalMs, Date.now() - started);
      progress(totalMs === 0 ? 100 : Math.floor((done / totalMs) * 100), `slept ${Math.floor(done / 1000)} of ${params.seconds} s`);
    }
    if (params.fail) throw new Error('failing as asked (fail: true)');
    log('done');
    return { sleptSeconds: params.seconds };
  },
});

/** Reports progress as a share of `total` bytes, at most once per percent. */
function byteProgress(total: number, progress: (percent: number, message?: string) => void, label: string) {
  let done = 0;
  let reported = -1;
  return (bytes: number) => {
    done += bytes;
    const percent = total === 0 ? 100 : Math.floor((done / total) * 100);
    if (percent !== reported) {
      reported = percent;
      progress(percent, `${label} ${done} of ${total} bytes`);
    }
  };
}

const totalSize = (inputs: JobInputFile[]) => inputs.reduce((sum, input) => sum + input.size, 0);

/** SHA-256 of each input file. */
export const checksumJobType = defineJobType({
  name: 'checksum',
  description: 'Computes the SHA-256 of each input file; the result lists them.',
  paramsSchema: z.object({}).strict(),
  concurrency: 4,
  batchSize: 1,
  inputFiles: { min: 1, max: 100 },
  timeoutMs: 60 * minute,
  cancelGraceMs: 5 * second,
  retry: { defaultMaxAttempts: 3, delayMs: 5 * second, backoff: true, maxDelayMs: minute },
  async run({ inputs, signal, progress, log }) {
    const advance = byteProgress(totalSize(inputs), progress, 'hashed');
    const files = [];
    for (const input of inputs) {
      const hash = createHash('sha256');
      let size = 0;
      const bytes = await input.open();
      try {
        for await (const chunk of bytes as AsyncIterable<Buffer>) {
          signal.throwIfAborted();
          hash.update(chunk);
          size += chunk.byteLength;
          advance(chunk.byteLength);
        }
      } finally {
        bytes.destroy();
      }
      const sha256 = hash.digest('hex');
      log(`${input.name}: ${sha256}`);
      files.push({ id: input.id, name: input.name, size, sha256 });
    }
    return { files };
  },
});

/** Packs the input files into one .tar.gz output, streamed. */
export const archiveJobType = defineJobType({
  name: 'archive',
  description: 'Packs the input files into one .tar.gz output file (`name`, default archive.tar.gz), streamed.',
  paramsSchema: z
    .object({
      name: z.string().min(1).max(200).default('archive.tar.gz'),
    })
    .strict(),
  concurrency: 4,
  batchSize: 1,
  inputFiles: { min: 1, max: 1000 },
  timeoutMs: 120 * minute,
  cancelGraceMs: 5 * second,
  retry: { defaultMaxAttempts: 3, delayMs: 5 * second, backoff: true, maxDelayMs: minute },
  async run({ params, inputs, signal, progress, log, writeOutput }) {
    const name = cleanFileName(params.name);
    if (name === '')
      throw new JobFailure('params.name leaves no usable file name', { code: jobErrorCodes.INVALID_PARAMS, retryable: false });
    const advance = byteProgress(totalSize(inputs), progress, 'archived');
    const archive = pack();
    const packing = (async () => {
      const used = new Set<string>();
      for (const input of inputs) {
        const entryName = uniqueEntryName(input.name, used);
        const bytes = await input.open();
        try {
          await new Promise<void>((resolve, reject) => {
            const entry = archive.entry({ name: entryName, size: input.size, mtime: new Date() }, (error) =>
              error ? reject(error) : resolve(),
            );
            entry.on('error', reject);
            void (async () => {
              try {
                // A tar entry must hold exactly the size in its header: storage that disagrees
                // with the file's record fails the job instead of the archive.
                let written = 0;
                for await (const chunk of bytes as AsyncIterable<Buffer>) {
                  signal.throwIfAborted();
                  written += chunk.byteLength;
                  if (written > input.size) throw inputSizeMismatch(input.name);
                  advance(chunk.byteLength);
                  if (!entry.write(chunk)) await once(entry, 'drain');
                }
                if (written !== input.size) throw inputSizeMismatch(input.name);
                entry.end(undefined);
              } catch (error) {
                entry.destroy(error as Error);
                reject(error);
              }
            })();
          });
        } finally {
          bytes.destroy();
        }
        log(`added ${entryName} (${input.size} bytes)`);
      }
      archive.finalize();
    })();
    packing.catch((error: unknown) => archive.destroy(error as Error));
    const gzip = pipeline(archive as unknown as NodeJS.ReadableStream, createGzip(), () => {});
    // When storing fails, packing fails too (its reader went away): the storing error says why.
    const [stored, packed] = await Promise.allSettled([writeOutput({ name, contentType: 'application/gzip' }, gzip), packing]);
    if (stored.status === 'rejected') throw stored.reason;
    if (packed.status === 'rejected') throw packed.reason;
    return { archiveFileId: stored.value.id, files: inputs.length };
  },
});

function inputSizeMismatch(name: string): JobFailure {
  return new JobFailure(`the stored bytes of ${name} do not match its recorded size`, {
    code: jobErrorCodes.INPUT_CORRUPT,
    retryable: false,
  });
}

function uniqueEntryName(name: string, used: Set<string>): string {
  let candidate = name;
  for (let copy = 2; used.has(candidate); copy++) candidate = `${name} (${copy})`;
  used.add(candidate);
  return candidate;
}

export const builtinJobTypes = [noopJobType, sleepJobType, checksumJobType, archiveJobType];
