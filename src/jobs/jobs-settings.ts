import { bytesSetting, durationSetting } from '../platform/settings/setting-types.ts';

const second = 1000;
const hour = 3_600_000;
const day = 24 * hour;

/** Runtime settings of jobs and their streams. */
export const jobsSettings = {
  'jobs.max_params_bytes': bytesSetting(64 * 1024, 'Largest accepted job params, as JSON', { min: 1024, max: 1024 * 1024 }),
  'jobs.event_retention': durationSetting(7 * day, 'How long job events are kept for streams that resume with after_sequence', {
    minMs: hour,
    maxMs: 90 * day,
  }),
  'jobs.stream_heartbeat_interval': durationSetting(15 * second, 'Longest silence on a job or queue stream before a heartbeat message', {
    minMs: 100,
    maxMs: 15 * second,
  }),
  'jobs.pool_drain_time': durationSetting(
    60 * second,
    'How long a worker pool stopped by an admin lets its running jobs finish before it hands them back to their queue',
    { minMs: second, maxMs: day },
  ),
};
