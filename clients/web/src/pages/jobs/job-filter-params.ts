import type { MessageInitShape } from '@bufbuild/protobuf';
import type { JobFilterSchema, JobStatus } from '@gen/yardmaster/v1/jobs_pb.ts';
import { statusOfSlug } from './job-status.tsx';

/** The filters of the jobs table, as they live in the URL (`?status=running&type=sleep&label=team=a&q=report`). */
export interface JobFilterParams {
  statuses: string[];
  types: string[];
  /** `key=value` each. */
  labels: string[];
  search: string;
}

export function filterParamsOf(search: URLSearchParams): JobFilterParams {
  return {
    statuses: search.getAll('status'),
    types: search.getAll('type'),
    labels: search.getAll('label'),
    search: search.get('q') ?? '',
  };
}

export function searchOf(params: JobFilterParams): URLSearchParams {
  const search = new URLSearchParams();
  for (const status of params.statuses) search.append('status', status);
  for (const type of params.types) search.append('type', type);
  for (const label of params.labels) search.append('label', label);
  if (params.search.trim()) search.set('q', params.search.trim());
  return search;
}

/** `key=value` split at the first `=`; undefined when there is none or no key. */
export function parseLabel(label: string): [string, string] | undefined {
  const at = label.indexOf('=');
  if (at <= 0) return undefined;
  return [label.slice(0, at).trim(), label.slice(at + 1).trim()];
}

/** The filter ListJobs and WatchJobs take; `withStatuses: false` leaves the statuses out (see the live updates). */
export function jobFilterOf(params: JobFilterParams, { withStatuses = true } = {}): MessageInitShape<typeof JobFilterSchema> {
  const labels: Record<string, string> = {};
  for (const label of params.labels) {
    const pair = parseLabel(label);
    if (pair) labels[pair[0]] = pair[1];
  }
  return {
    statuses: withStatuses ? params.statuses.map(statusOfSlug).filter((status): status is JobStatus => status !== undefined) : [],
    types: params.types,
    labels,
    search: params.search.trim(),
  };
}
