/**
 * The `text-stats` job: line, word and character counts of one text or CSV input file,
 * read as a stream (FilesService.Download) and counted as the chunks arrive, with the
 * counts of every word uploaded as `word-counts.csv` (FilesService.Upload).
 */
import { Code, ConnectError } from '@connectrpc/connect';
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { UploadRequestSchema } from '../../../gen/yardmaster/v1/files_pb.ts';
import { backoffMs, isTransient, sleep } from './call-retries.ts';
import { type JobContext, JobFailure, type JobOutcome } from './external-worker.ts';
import { NotTextError, TextStatistics, type TextSummary } from './text-statistics.ts';

/** The params schema the type is declared with (see setup.ts). */
export const textStatsParamsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    top_words: {
      type: 'integer',
      minimum: 0,
      maximum: 1000,
      default: 10,
      description: 'How many of the most frequent words the result lists',
    },
    delay_ms_per_chunk: {
      type: 'integer',
      minimum: 0,
      maximum: 10_000,
      default: 0,
      description: 'A pause after each chunk read (1 MiB), to watch a job run (demos and tests)',
    },
  },
};

const textTypes = /^(text\/|application\/(json|x-ndjson|xml|yaml|x-yaml)$)/;
const uploadChunkBytes = 1024 * 1024;
const maxDownloadFailures = 5;

export async function runTextStats({ claimed, client, signal, log, progress }: JobContext): Promise<JobOutcome> {
  const job = claimed.job!;
  const topWords = integerParam(job.params?.top_words, 10);
  const delayMs = integerParam(job.params?.delay_ms_per_chunk, 0);
  const input = claimed.inputFiles[0];
  if (!input) throw new JobFailure('MISSING_INPUT', 'the job has no input file: submit it with one text or CSV file');
  if (!textTypes.test(input.contentType)) {
    throw new JobFailure('NOT_TEXT', `${input.name} is ${input.contentType}, not text: submit a text or CSV file`);
  }
  log(`counting ${input.directory === '/' ? '' : input.directory}/${input.name} (${input.size} bytes, ${input.contentType})`);

  const statistics = new TextStatistics();
  const size = Number(input.size);
  let offset = 0;
  let failures = 0;
  // A dropped stream resumes where it stopped: the counts so far stay valid.
  while (offset < size || size === 0) {
    try {
      for await (const { chunk } of client.files.download({ id: input.id, offset: BigInt(offset) }, { signal })) {
        statistics.add(chunk);
        offset += chunk.byteLength;
        await progress(size === 0 ? 100 : Math.floor((offset * 100) / size), `read ${offset} of ${size} bytes`);
        if (delayMs > 0) await sleep(delayMs, signal);
        signal.throwIfAborted();
      }
      break;
    } catch (error) {
      if (error instanceof NotTextError) throw new JobFailure('NOT_TEXT', `${input.name}: ${error.message}`);
      if (error instanceof ConnectError && error.code === Code.NotFound) {
        throw new JobFailure('MISSING_INPUT', `${input.name} (${input.id}) cannot be read: ${error.rawMessage}`);
      }
      if (signal.aborted || !isTransient(error) || ++failures >= maxDownloadFailures) throw error;
      log(`reading ${input.name} stopped at byte ${offset} (${error instanceof Error ? error.message : error}): resuming`);
      await sleep(backoffMs(failures), signal);
    }
  }
  let summary: TextSummary;
  try {
    summary = statistics.finish();
  } catch (error) {
    throw error instanceof NotTextError ? new JobFailure('NOT_TEXT', `${input.name}: ${error.message}`) : error;
  }
  log(`${summary.lines} lines, ${summary.words} words (${summary.distinctWords} distinct), ${summary.characters} characters`);

  const csv = new TextEncoder().encode(`word,count\n${summary.wordCounts.map(([word, count]) => `${word},${count}\n`).join('')}`);
  const { file } = await client.files.upload(uploadMessages(`/text-stats/${job.id}/attempt-${job.attempt}`, 'word-counts.csv', csv), {
    signal,
  });
  log(`wrote word-counts.csv (${csv.byteLength} bytes)`);
  return {
    result: {
      input_file_id: input.id,
      bytes: summary.bytes,
      lines: summary.lines,
      words: summary.words,
      characters: summary.characters,
      distinct_words: summary.distinctWords,
      top_words: summary.wordCounts.slice(0, topWords).map(([word, count]) => ({ word, count })),
    },
    outputFileIds: [file!.id],
  };
}

function integerParam(value: unknown, fallback: number): number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 ? value : fallback;
}

async function* uploadMessages(
  directory: string,
  name: string,
  bytes: Uint8Array,
): AsyncGenerator<MessageInitShape<typeof UploadRequestSchema>> {
  yield { content: { case: 'metadata', value: { directory, name, size: BigInt(bytes.byteLength), contentType: 'text/csv' } } };
  for (let at = 0; at < bytes.byteLength; at += uploadChunkBytes) {
    yield { content: { case: 'chunk', value: bytes.subarray(at, at + uploadChunkBytes) } };
  }
}
