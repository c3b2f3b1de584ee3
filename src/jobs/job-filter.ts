import { raw, type FilterQuery } from '@mikro-orm/core';
import type { Caller } from '../platform/caller.ts';
import { invalidField, Violations } from '../platform/domain-errors.ts';
import { isUuid } from '../platform/ids.ts';
import { checkLabels } from './job-labels.ts';
import { jobStatuses, type Job, type JobStatusName } from './entities.ts';
import type { JobView } from './job-view.ts';
import { escapeLike } from '../platform/db/like-patterns.ts';

/** Which jobs a list, a count or a stream covers; every field set must match. */
export interface JobFilter {
  statuses: JobStatusName[];
  types: string[];
  ownerId: string;
  labels: Record<string, string>;
  createdAfter: Date | undefined;
  createdBefore: Date | undefined;
  search: string;
}

/** The owner whose jobs the caller may see: their own, or (admins) anyone's or a chosen account's. */
function visibleOwner(filter: JobFilter, caller: Caller, field: string): string | undefined {
  if (filter.ownerId !== '' && !isUuid(filter.ownerId)) throw invalidField(`${field}.owner_id`, 'must be a UUID');
  if (caller.role === 'admin') return filter.ownerId || undefined;
  if (filter.ownerId !== '' && filter.ownerId !== caller.userId) {
    throw invalidField(`${field}.owner_id`, "only admins can see other accounts' jobs");
  }
  return caller.userId;
}

function searchWords(search: string): string[] {
  return search
    .toLowerCase()
    .split(/\s+/)
    .filter((word) => word !== '')
    .slice(0, 10);
}

function checkJobFilter(filter: JobFilter, field: string): void {
  const violations = new Violations();
  violations.check(
    filter.statuses.every((status) => jobStatuses.includes(status)),
    `${field}.statuses`,
    'must be job statuses',
  );
  violations.check(filter.statuses.length <= jobStatuses.length, `${field}.statuses`, `must be at most ${jobStatuses.length}`);
  violations.check(filter.types.length <= maxFilterTypes, `${field}.types`, `must be at most ${maxFilterTypes}`);
  violations.check(
    filter.types.every((type) => type.length <= 64),
    `${field}.types`,
    'must be at most 64 characters each',
  );
  violations.check(filter.search.length <= 200, `${field}.search`, 'must be at most 200 characters');
  checkLabels(filter.labels, `${field}.labels`, violations);
  violations.throwIfAny();
}

const maxFilterTypes = 100;

/** The filter as a query over the jobs the caller may see. */
export function jobWhere(filter: JobFilter, caller: Caller, field = 'filter'): FilterQuery<Job> {
  checkJobFilter(filter, field);
  const owner = visibleOwner(filter, caller, field);
  const conditions: FilterQuery<Job>[] = [];
  if (owner) conditions.push({ owner });
  if (filter.statuses.length > 0) conditions.push({ status: { $in: filter.statuses } });
  if (filter.types.length > 0) conditions.push({ type: { $in: filter.types } });
  for (const [key, value] of Object.entries(filter.labels)) conditions.push({ labels: { [key]: value } } as FilterQuery<Job>);
  if (filter.createdAfter) conditions.push({ createdAt: { $gte: filter.createdAfter } });
  if (filter.createdBefore) conditions.push({ createdAt: { $lt: filter.createdBefore } });
  const words = searchWords(filter.search);
  if (words.length > 0) {
    // A semi-join on the search table (its trigram index finds the ids).
    const likes = words.map(() => 's.search_text like ?').join(' and ');
    conditions.push({
      [raw(
        (alias) => `${alias}.id in (select s.job_id from job_search s where ${likes})`,
        words.map((word) => `%${escapeLike(word)}%`),
      )]: [],
    } as FilterQuery<Job>);
  }
  return conditions.length > 0 ? { $and: conditions } : {};
}

/** The filter as a test on a job's state, for streams, with the owner and types it is limited to. */
export interface JobMatch {
  /** The only owner whose jobs can match; undefined for any (admins). */
  ownerId: string | undefined;
  /** The only types that can match; empty for any. */
  types: readonly string[];
  matches(job: JobView): boolean;
}

/** The filter as a test on a job's state, for streams. Throws InvalidArgument for a filter the caller may not use. */
export function jobMatch(filter: JobFilter, caller: Caller, field = 'filter'): JobMatch {
  checkJobFilter(filter, field);
  const owner = visibleOwner(filter, caller, field);
  const words = searchWords(filter.search);
  const labels = Object.entries(filter.labels);
  return {
    ownerId: owner,
    types: [...new Set(filter.types)],
    matches: (job) =>
      (!owner || job.ownerId === owner) &&
      (filter.statuses.length === 0 || filter.statuses.includes(job.status)) &&
      (filter.types.length === 0 || filter.types.includes(job.type)) &&
      labels.every(([key, value]) => job.labels[key] === value) &&
      (!filter.createdAfter || job.createdAt >= filter.createdAfter) &&
      (!filter.createdBefore || job.createdAt < filter.createdBefore) &&
      (words.length === 0 || containsAll(searchTextOf(job), words)),
  };
}

/** The search text of a job as an event carries it, made once per event however many streams test it. */
const searchTexts = new WeakMap<JobView, string>();

function searchTextOf(job: JobView): string {
  let text = searchTexts.get(job);
  if (text === undefined) {
    text = jobSearchText(job.name, job.labels, job.params);
    searchTexts.set(job, text);
  }
  return text;
}

function containsAll(text: string, words: string[]): boolean {
  return words.every((word) => text.includes(word));
}

/** Lower-cased text that searches match: the name, the labels and every scalar of the params. */
export function jobSearchText(name: string, labels: Record<string, string>, params: unknown): string {
  const parts: string[] = [name];
  for (const [key, value] of Object.entries(labels)) parts.push(`${key}=${value}`, key, value);
  const collect = (value: unknown) => {
    if (value === null || value === undefined) return;
    if (typeof value === 'object') {
      for (const [key, inner] of Object.entries(value)) {
        if (!Array.isArray(value)) parts.push(key);
        collect(inner);
      }
    } else {
      parts.push(String(value));
    }
  };
  collect(params);
  return parts.join(' ').toLowerCase().slice(0, 100_000);
}
