import { JobStatus, type Job } from '@yardmaster/client';
import cliProgress from 'cli-progress';
import { formatBytes, formatMs, type Output } from './output.ts';

/** Draws on standard error, so that standard output stays the command's result. */
const barOptions = {
  stream: process.stderr,
  hideCursor: true,
  barsize: 30,
  barCompleteChar: '█',
  barIncompleteChar: '░',
  fps: 8,
} as const;

export interface TransferBar {
  update(loaded: number): void;
  stop(): void;
}

/** A bar with bytes, rate and ETA for one upload or download; nothing when standard error is not a terminal (or with --json). */
export function transferBar(out: Output, label: string, total: number): TransferBar {
  if (!out.live) return { update() {}, stop() {} };
  const started = performance.now();
  const bar = new cliProgress.SingleBar({
    ...barOptions,
    format: `${label} {bar} {percentage}% | {loadedText} / {totalText} | {rateText} | ETA {etaText}`,
  });
  const payload = (loaded: number) => {
    const seconds = (performance.now() - started) / 1000;
    const rate = seconds > 0 ? loaded / seconds : 0;
    return {
      loadedText: formatBytes(loaded),
      totalText: formatBytes(total),
      rateText: `${formatBytes(Math.round(rate))}/s`,
      etaText: rate > 0 && loaded < total ? formatMs(((total - loaded) / rate) * 1000) : loaded >= total ? 'done' : '-',
    };
  };
  bar.start(Math.max(total, 1), 0, payload(0));
  return {
    update: (loaded) => bar.update(Math.min(loaded, Math.max(total, 1)), payload(loaded)),
    stop: () => bar.stop(),
  };
}

export interface JobDisplay {
  show(job: Job): void;
  stop(): void;
}

/**
 * A job's progress as it runs: a live bar with its status and progress message on a
 * terminal, otherwise one line per change of status, percent or message.
 */
export function jobDisplay(out: Output): JobDisplay {
  if (out.json) return { show() {}, stop() {} };
  if (out.live) {
    const bar = new cliProgress.SingleBar({ ...barOptions, format: '{id} {bar} {percentage}% {status} {message}' });
    let started = false;
    return {
      show(job) {
        const payload = { id: job.id.slice(0, 8), status: out.status(job.status), message: job.progress?.message ?? '' };
        const percent = job.status === JobStatus.SUCCEEDED ? 100 : (job.progress?.percent ?? 0);
        if (!started) bar.start(100, percent, payload);
        else bar.update(percent, payload);
        started = true;
      },
      stop: () => {
        if (started) bar.stop();
      },
    };
  }
  let previous = '';
  return {
    show(job) {
      const line = `${job.id} ${out.status(job.status)} ${job.progress?.percent ?? 0}%${job.progress?.message ? ` ${job.progress.message}` : ''}`;
      if (line !== previous) process.stderr.write(`${line}\n`);
      previous = line;
    },
    stop() {},
  };
}
