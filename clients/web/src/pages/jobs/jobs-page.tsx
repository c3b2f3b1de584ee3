import { timestampMs } from '@bufbuild/protobuf/wkt';
import { useQuery } from '@connectrpc/connect-query';
import {
  Alert,
  Anchor,
  Button,
  Group,
  MultiSelect,
  Paper,
  Progress,
  Skeleton,
  Table,
  TagsInput,
  Text,
  TextInput,
  Tooltip,
} from '@mantine/core';
import { useDebouncedCallback } from '@mantine/hooks';
import { IconChevronLeft, IconChevronRight, IconFilterOff, IconPlus, IconRefresh, IconSearch } from '@tabler/icons-react';
import { useEffect, useMemo, useState } from 'react';
import { Link, useNavigate, useSearchParams } from 'react-router';
import { AdminService } from '@gen/yardmaster/v1/admin_pb.ts';
import { type Job, JobStatus, JobsService } from '@gen/yardmaster/v1/jobs_pb.ts';
import { useSession } from '../../app/session.tsx';
import { formatDateTime, formatMs, formatRelative } from '../../ui/format.ts';
import { PageHeader } from '../../ui/page-header.tsx';
import { EmptyState, ErrorState } from '../../ui/states.tsx';
import { filterParamsOf, type JobFilterParams, jobFilterOf, parseLabel, searchOf } from './job-filter-params.ts';
import { isFinished, JobStatusBadge, statusOfSlug, statusOptions } from './job-status.tsx';
import { useLiveJobs } from './live-jobs.ts';

const pageSize = 25;

/** Who submitted a job, by username (admins only: GetUser, cached for the session). */
function OwnerName({ id }: { id: string }) {
  const owner = useQuery(AdminService.method.getUser, { id }, { staleTime: Number.POSITIVE_INFINITY, retry: false });
  if (owner.isPending) return <Skeleton h={14} w={70} />;
  return (
    <Text size="sm" c={owner.data?.user ? undefined : 'dimmed'}>
      {owner.data?.user?.username ?? 'deleted user'}
    </Text>
  );
}

/** How long a job ran (or has been running: ticking). */
function JobDuration({ job }: { job: Job }) {
  const running = job.status === JobStatus.RUNNING;
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    if (!running) return;
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [running]);
  if (!job.startTime) return <Text size="sm">–</Text>;
  const end = job.finishTime ? timestampMs(job.finishTime) : isFinished(job.status) ? undefined : now;
  return <Text size="sm">{end === undefined ? '–' : formatMs(Math.max(0, end - timestampMs(job.startTime)))}</Text>;
}

function JobProgressCell({ job }: { job: Job }) {
  if (job.status !== JobStatus.RUNNING) return <Text size="sm">–</Text>;
  const percent = job.progress?.percent ?? 0;
  return (
    <Tooltip label={job.progress?.message || `${percent}%`} disabled={!job.progress?.message}>
      <Group gap="xs" wrap="nowrap">
        <Progress value={percent} w={90} size="sm" animated aria-label="Progress" />
        <Text size="xs" c="dimmed" w={34}>
          {percent}%
        </Text>
      </Group>
    </Tooltip>
  );
}

function JobFilters({ params, onChange }: { params: JobFilterParams; onChange: (params: JobFilterParams) => void }) {
  const types = useQuery(JobsService.method.listJobTypes, {}, { staleTime: 60_000 });
  const [text, setText] = useState(params.search);
  const pushSearch = useDebouncedCallback((search: string) => onChange({ ...params, search }), 300);
  // The URL wins when it changes from outside (back button, a shared link, clearing the filters).
  useEffect(() => setText(params.search), [params.search]);
  const filtered = params.statuses.length + params.types.length + params.labels.length > 0 || params.search !== '';

  return (
    <Group gap="sm" align="flex-end" mb="md" wrap="wrap">
      <TextInput
        label="Search"
        placeholder="Name, labels or params"
        leftSection={<IconSearch size={16} />}
        value={text}
        onChange={(event) => {
          setText(event.currentTarget.value);
          pushSearch(event.currentTarget.value);
        }}
        w={240}
      />
      <MultiSelect
        label="Status"
        placeholder={params.statuses.length ? undefined : 'Any status'}
        data={statusOptions.map(({ value, label }) => ({ value, label }))}
        value={params.statuses}
        onChange={(statuses) => onChange({ ...params, statuses })}
        clearable
        w={260}
      />
      <MultiSelect
        label="Type"
        placeholder={params.types.length ? undefined : 'Any type'}
        data={types.data?.jobTypes.map((type) => type.name) ?? params.types}
        value={params.types}
        onChange={(selected) => onChange({ ...params, types: selected })}
        searchable
        clearable
        w={220}
      />
      <TagsInput
        label="Labels"
        placeholder={params.labels.length ? undefined : 'key=value, Enter'}
        value={params.labels}
        onChange={(labels) => onChange({ ...params, labels: labels.filter((label) => parseLabel(label) !== undefined) })}
        clearable
        w={240}
      />
      {filtered && (
        <Button
          variant="subtle"
          color="gray"
          leftSection={<IconFilterOff size={16} />}
          onClick={() => {
            pushSearch.cancel();
            onChange({ statuses: [], types: [], labels: [], search: '' });
          }}
        >
          Clear filters
        </Button>
      )}
    </Group>
  );
}

/** The caller's jobs (every job, for admins), filtered, in keyset pages, kept current through WatchJobs. */
export function JobsPage() {
  const session = useSession();
  const navigate = useNavigate();
  const [searchParams, setSearchParams] = useSearchParams();
  const params = useMemo(() => filterParamsOf(searchParams), [searchParams]);
  const filterKey = searchOf(params).toString();
  // Tokens of the pages before the current one, and the current one's; reset when the filter changes.
  const [paging, setPaging] = useState<{ filterKey: string; tokens: string[] }>({ filterKey, tokens: [] });
  const tokens = paging.filterKey === filterKey ? paging.tokens : [];
  const pageToken = tokens.at(-1) ?? '';
  const filter = useMemo(() => jobFilterOf(params), [params]);
  const watchFilter = useMemo(() => jobFilterOf(params, { withStatuses: false }), [params]);
  const statuses = useMemo(() => params.statuses.map(statusOfSlug).filter((status) => status !== undefined), [params]);
  const input = useMemo(() => ({ pageSize, pageToken, filter }), [pageToken, filter]);
  const jobs = useQuery(JobsService.method.listJobs, input, { placeholderData: (previous) => previous });
  const live = useLiveJobs(input, watchFilter, statuses);
  const showOwner = session.isAdmin;

  const setParams = useMemo(() => (next: JobFilterParams) => setSearchParams(searchOf(next), { replace: true }), [setSearchParams]);
  const goToFirstPage = () => {
    setPaging({ filterKey, tokens: [] });
    live.clearNewJobs();
    void jobs.refetch();
  };

  return (
    <>
      <PageHeader
        title="Jobs"
        description={
          session.isAdmin ? 'Every job of every user, live.' : 'Your jobs, live: new ones appear and running ones move on their own.'
        }
        actions={
          session.can('yardmaster.v1.JobsService.CreateJob') && (
            <Button component={Link} to="/jobs/new" leftSection={<IconPlus size={16} />}>
              Submit a job
            </Button>
          )
        }
      />
      <JobFilters params={params} onChange={setParams} />
      {live.newJobs > 0 && (
        <Alert color="blue" variant="light" mb="md" icon={<IconRefresh size={18} />}>
          <Group justify="space-between">
            <Text size="sm">
              {live.newJobs} new job{live.newJobs === 1 ? '' : 's'} since this page was loaded.
            </Text>
            <Button size="xs" variant="light" onClick={goToFirstPage}>
              Show the newest
            </Button>
          </Group>
        </Alert>
      )}
      {jobs.isError ? (
        <ErrorState error={jobs.error} onRetry={() => void jobs.refetch()} title="The jobs could not be listed" />
      ) : (
        <Paper withBorder radius="md">
          <Table.ScrollContainer minWidth={820} type="native">
            <Table highlightOnHover verticalSpacing="sm" horizontalSpacing="md" aria-label="Jobs">
              <Table.Thead>
                <Table.Tr>
                  <Table.Th w={130}>Status</Table.Th>
                  <Table.Th w={120}>Type</Table.Th>
                  <Table.Th>Name</Table.Th>
                  {showOwner && <Table.Th w={130}>Owner</Table.Th>}
                  <Table.Th w={150}>Progress</Table.Th>
                  <Table.Th w={150}>Created</Table.Th>
                  <Table.Th w={100}>Duration</Table.Th>
                </Table.Tr>
              </Table.Thead>
              <Table.Tbody>
                {jobs.isPending &&
                  Array.from({ length: 5 }, (_, row) => (
                    // biome-ignore lint/suspicious/noArrayIndexKey: placeholder rows have nothing else to key on
                    <Table.Tr key={row}>
                      {Array.from({ length: showOwner ? 7 : 6 }, (_, cell) => (
                        // biome-ignore lint/suspicious/noArrayIndexKey: placeholder cells have nothing else to key on
                        <Table.Td key={cell}>
                          <Skeleton h={14} />
                        </Table.Td>
                      ))}
                    </Table.Tr>
                  ))}
                {jobs.data?.jobs.map((job) => (
                  <Table.Tr key={job.id} data-job-id={job.id} style={{ cursor: 'pointer' }} onClick={() => navigate(`/jobs/${job.id}`)}>
                    <Table.Td>
                      <JobStatusBadge status={job.status} cancelRequested={job.cancelRequested} size="sm" />
                    </Table.Td>
                    <Table.Td>
                      <Text size="sm" ff="monospace">
                        {job.type}
                      </Text>
                    </Table.Td>
                    <Table.Td>
                      <Anchor component={Link} to={`/jobs/${job.id}`} size="sm" fw={500} onClick={(event) => event.stopPropagation()}>
                        {job.name || <Text span c="dimmed" size="sm">{`${job.type} ${job.id.slice(-8)}`}</Text>}
                      </Anchor>
                    </Table.Td>
                    {showOwner && (
                      <Table.Td>
                        <OwnerName id={job.ownerId} />
                      </Table.Td>
                    )}
                    <Table.Td>
                      <JobProgressCell job={job} />
                    </Table.Td>
                    <Table.Td>
                      <Tooltip label={formatDateTime(job.createTime)}>
                        <Text size="sm" span>
                          {formatRelative(job.createTime)}
                        </Text>
                      </Tooltip>
                    </Table.Td>
                    <Table.Td>
                      <JobDuration job={job} />
                    </Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          </Table.ScrollContainer>
          {jobs.data && jobs.data.jobs.length === 0 && (
            <EmptyState
              title={filterKey ? 'No job matches these filters' : 'No jobs yet'}
              action={
                !filterKey &&
                session.can('yardmaster.v1.JobsService.CreateJob') && (
                  <Button component={Link} to="/jobs/new" variant="light" mt="xs">
                    Submit your first job
                  </Button>
                )
              }
            >
              {filterKey ? 'Change or clear the filters to see more.' : 'Jobs you submit show up here, and update as they run.'}
            </EmptyState>
          )}
          {jobs.data && (tokens.length > 0 || jobs.data.nextPageToken) && (
            <Group justify="space-between" px="md" py="sm" style={{ borderTop: '1px solid var(--mantine-color-default-border)' }}>
              <Text size="sm" c="dimmed">
                Page {tokens.length + 1}
              </Text>
              <Group gap="xs">
                <Button
                  variant="default"
                  size="xs"
                  leftSection={<IconChevronLeft size={14} />}
                  disabled={tokens.length === 0}
                  onClick={() => setPaging({ filterKey, tokens: tokens.slice(0, -1) })}
                >
                  Previous
                </Button>
                <Button
                  variant="default"
                  size="xs"
                  rightSection={<IconChevronRight size={14} />}
                  disabled={!jobs.data.nextPageToken}
                  onClick={() => setPaging({ filterKey, tokens: [...tokens, jobs.data.nextPageToken] })}
                >
                  Next
                </Button>
              </Group>
            </Group>
          )}
        </Paper>
      )}
    </>
  );
}
