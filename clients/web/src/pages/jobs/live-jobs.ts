import type { MessageInitShape } from '@bufbuild/protobuf';
import { timestampMs } from '@bufbuild/protobuf/wkt';
import { createConnectQueryKey, useTransport } from '@connectrpc/connect-query';
import { useQueryClient } from '@tanstack/react-query';
import { useEffect, useRef, useState } from 'react';
import { type Job, JobEventKind, JobsService, type ListJobsRequestSchema, type ListJobsResponse } from '@gen/yardmaster/v1/jobs_pb.ts';
import { client } from '../../api/client.ts';
import { isNewerOrSame, putJob } from './job-cache.ts';
import { followStream } from './resumable-stream.ts';

const createdMs = (job: Job) => (job.createTime ? timestampMs(job.createTime) : 0);

/**
 * Keeps the jobs table current through WatchJobs: changed jobs are updated in place in
 * every cached page of ListJobs (and in a cached GetJob), new matching jobs go to the top
 * of the first page, or are counted for a "new jobs" notice on later pages. The stream
 * watches without the status filter, so that a row whose status moves out of the filter
 * still shows its new status instead of freezing; `statuses` decides which new jobs join.
 * A dropped stream resumes after the last sequence seen; when the server no longer holds
 * that point, the lists are fetched again and the watch starts afresh.
 */
export function useLiveJobs(
  input: MessageInitShape<typeof ListJobsRequestSchema>,
  watchFilter: MessageInitShape<typeof ListJobsRequestSchema>['filter'],
  statuses: number[],
): { newJobs: number; clearNewJobs: () => void } {
  const queryClient = useQueryClient();
  const transport = useTransport();
  const [newJobs, setNewJobs] = useState(0);
  // The view changes more often than the watch must restart (paging): read it when an event comes.
  const view = useRef({ input, statuses });
  view.current = { input, statuses };
  const filterKey = JSON.stringify(watchFilter);

  // biome-ignore lint/correctness/useExhaustiveDependencies: the watch restarts when the filter changes (filterKey), not on every render
  useEffect(() => {
    setNewJobs(0);
    const controller = new AbortController();
    const lists = createConnectQueryKey({ schema: JobsService.method.listJobs, cardinality: 'finite' });
    let afterSequence = 0n;
    let startedAt = Date.now();
    let caughtUp = false;

    const refetchListsOlderThan = (time: number) =>
      void queryClient.invalidateQueries({ queryKey: lists, predicate: (query) => query.state.dataUpdatedAt < time });

    const apply = (kind: JobEventKind, job: Job) => {
      const { input: current, statuses: wanted } = view.current;
      const onFirstPage = !current.pageToken;
      const wantedStatus = wanted.length === 0 || wanted.includes(job.status);
      let shown = false;
      queryClient.setQueriesData<ListJobsResponse>({ queryKey: lists }, (page) => {
        if (!page?.jobs.some((row) => row.id === job.id)) return page;
        shown = true;
        const jobs =
          kind === JobEventKind.DELETED
            ? page.jobs.filter((row) => row.id !== job.id)
            : page.jobs.map((row) => (row.id === job.id && isNewerOrSame(job, row) ? job : row));
        return { ...page, jobs };
      });
      if (kind !== JobEventKind.DELETED) putJob(queryClient, transport, job, { onlyIfCached: true });
      if (shown || kind === JobEventKind.DELETED || !wantedStatus) return;
      if (!onFirstPage) {
        if (kind === JobEventKind.CREATED) setNewJobs((count) => count + 1);
        return;
      }
      queryClient.setQueryData(
        createConnectQueryKey({ schema: JobsService.method.listJobs, transport, input: current, cardinality: 'finite' }),
        (page) => {
          if (!page) return page;
          const last = page.jobs.at(-1);
          const pageSize = current.pageSize ?? 50;
          // A job older than a full page's last row belongs to a later page.
          if (page.jobs.length >= pageSize && last && createdMs(job) < createdMs(last)) return page;
          const jobs = [...page.jobs, job].sort((a, b) => createdMs(b) - createdMs(a));
          return { ...page, jobs };
        },
      );
    };

    void followStream(
      {
        open: (signal) => client.jobs.watchJobs({ filter: watchFilter, afterSequence }, { signal }),
        onMessage: (message) => {
          if (message.sequence > afterSequence) afterSequence = message.sequence;
          if (message.kind === JobEventKind.HEARTBEAT) {
            // The first heartbeat of a fresh watch: from here on nothing is missed, so a
            // list fetched before it may lack what happened in between.
            if (!caughtUp) refetchListsOlderThan(startedAt);
            caughtUp = true;
            return;
          }
          if (message.job) apply(message.kind, message.job);
        },
        onResync: () => {
          afterSequence = 0n;
          startedAt = Date.now();
          caughtUp = false;
        },
        endsWhenComplete: false,
      },
      controller.signal,
    );
    return () => controller.abort();
  }, [filterKey, queryClient, transport]);

  return { newJobs, clearNewJobs: () => setNewJobs(0) };
}
