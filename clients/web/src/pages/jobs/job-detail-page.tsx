import { createConnectQueryKey, useMutation, useQuery, useTransport } from '@connectrpc/connect-query';
import {
  ActionIcon,
  Alert,
  Anchor,
  Badge,
  Button,
  Card,
  Code,
  CopyButton,
  Grid,
  Group,
  Modal,
  Progress,
  SimpleGrid,
  Stack,
  Table,
  Text,
  Textarea,
  Title,
  Tooltip,
} from '@mantine/core';
import { notifications } from '@mantine/notifications';
import {
  IconAlertTriangle,
  IconArrowLeft,
  IconCheck,
  IconCopy,
  IconDownload,
  IconPlayerStop,
  IconRotateClockwise,
  IconTrash,
} from '@tabler/icons-react';
import { useQueryClient } from '@tanstack/react-query';
import { type ReactNode, useEffect, useState } from 'react';
import { Link, useNavigate, useParams } from 'react-router';
import { FilesService } from '@gen/yardmaster/v1/files_pb.ts';
import { type Job, JobStatus, JobsService } from '@gen/yardmaster/v1/jobs_pb.ts';
import { client } from '../../api/client.ts';
import { isNotFound, problemOf } from '../../api/errors.ts';
import { useSession } from '../../app/session.tsx';
import { formatBytes, formatDateTime, formatRelative } from '../../ui/format.ts';
import { ErrorState, Loading } from '../../ui/states.tsx';
import { NotFoundPage } from '../not-found-page.tsx';
import { jobQueryKey, putJob } from './job-cache.ts';
import { JobLogPanel } from './job-log-panel.tsx';
import { isFinished, JobStatusBadge } from './job-status.tsx';
import { followStream } from './resumable-stream.ts';

const jobMethod = (name: string) => `yardmaster.v1.JobsService.${name}`;

function failed(title: string, error: unknown) {
  notifications.show({ color: 'red', title, message: problemOf(error).message || 'The server did not answer.' });
}

/** Keeps the cached GetJob current through WatchJob until the job reaches a final status. */
function useWatchJob(id: string, watching: boolean) {
  const queryClient = useQueryClient();
  const transport = useTransport();
  useEffect(() => {
    if (!watching) return;
    const controller = new AbortController();
    const key = jobQueryKey(transport, id);
    void followStream(
      {
        open: (signal) => client.jobs.watchJob({ id }, { signal }),
        onMessage: (message) => {
          if (message.job) putJob(queryClient, transport, message.job);
        },
        // Deleted meanwhile, or no longer visible: the page shows what GetJob now says.
        onFatal: () => void queryClient.invalidateQueries({ queryKey: key }),
        endsWhenComplete: true,
      },
      controller.signal,
    );
    return () => controller.abort();
  }, [id, watching, queryClient, transport]);
}

function Field({ label, children }: { label: string; children: ReactNode }) {
  return (
    <Table.Tr>
      <Table.Th w={120} fw={500} c="dimmed" fz="sm" style={{ verticalAlign: 'top' }}>
        {label}
      </Table.Th>
      <Table.Td fz="sm">{children}</Table.Td>
    </Table.Tr>
  );
}

function Time({ value }: { value: Job['createTime'] }) {
  if (!value) return <Text size="sm">–</Text>;
  return (
    <Text size="sm">
      {formatDateTime(value)}{' '}
      <Text span c="dimmed" size="xs">
        ({formatRelative(value)})
      </Text>
    </Text>
  );
}

/** One input or output file: its name (GetFile) and a download (a presigned URL, then the browser takes over). */
function FileRow({ id }: { id: string }) {
  const file = useQuery(FilesService.method.getFile, { id }, { staleTime: 60_000, retry: false });
  const download = useMutation(FilesService.method.getDownloadUrl, {
    onSuccess: ({ url }) => window.location.assign(url),
    onError: (error) => failed('The download could not start', error),
  });
  return (
    <Group justify="space-between" wrap="nowrap" py={4}>
      <div style={{ minWidth: 0 }}>
        <Text size="sm" fw={500} truncate>
          {file.data?.file ? file.data.file.name : file.isError ? 'File no longer available' : '…'}
        </Text>
        <Text size="xs" c="dimmed" truncate>
          {file.data?.file ? `${file.data.file.directory} · ${formatBytes(file.data.file.size)}` : id}
        </Text>
      </div>
      <Tooltip label="Download">
        <ActionIcon
          variant="light"
          aria-label={`Download ${file.data?.file?.name ?? id}`}
          disabled={!file.data?.file}
          loading={download.isPending}
          onClick={() => download.mutate({ id })}
        >
          <IconDownload size={16} />
        </ActionIcon>
      </Tooltip>
    </Group>
  );
}

function FilesCard({ title, ids, empty }: { title: string; ids: string[]; empty: string }) {
  return (
    <Card withBorder radius="md" padding="md">
      <Title order={3} fz={16} mb="xs">
        {title}
      </Title>
      {ids.length === 0 ? (
        <Text size="sm" c="dimmed">
          {empty}
        </Text>
      ) : (
        ids.map((id) => <FileRow key={id} id={id} />)
      )}
    </Card>
  );
}

function JsonCard({ title, value, empty }: { title: string; value: unknown; empty: string }) {
  const hasValue = value !== undefined && !(typeof value === 'object' && value !== null && Object.keys(value).length === 0);
  return (
    <Card withBorder radius="md" padding="md">
      <Title order={3} fz={16} mb="xs">
        {title}
      </Title>
      {hasValue ? (
        <Code block fz={12} style={{ maxHeight: 260, overflow: 'auto' }}>
          {JSON.stringify(value, null, 2)}
        </Code>
      ) : (
        <Text size="sm" c="dimmed">
          {empty}
        </Text>
      )}
    </Card>
  );
}

function CancelModal({ job, opened, onClose }: { job: Job; opened: boolean; onClose: () => void }) {
  const queryClient = useQueryClient();
  const transport = useTransport();
  const [reason, setReason] = useState('');
  const cancel = useMutation(JobsService.method.cancelJob, {
    onSuccess: ({ job: cancelled }) => {
      if (cancelled) putJob(queryClient, transport, cancelled);
      notifications.show({
        color: 'orange',
        title: 'Cancellation requested',
        message: job.status === JobStatus.RUNNING ? 'The job stops within its grace period.' : 'The job will not run.',
      });
      onClose();
    },
    onError: (error) => failed('The job could not be cancelled', error),
  });
  return (
    <Modal opened={opened} onClose={onClose} title="Cancel this job?" centered>
      <Stack>
        <Text size="sm">
          {job.status === JobStatus.RUNNING
            ? 'The job is sent its cancellation signal and ends CANCELLED. Work it has done so far is not undone.'
            : 'The job leaves its queue and will not run.'}
        </Text>
        <Textarea
          label="Reason"
          description="Kept with the job and in the audit log."
          placeholder="Why it is being cancelled"
          maxLength={500}
          autosize
          minRows={2}
          value={reason}
          onChange={(event) => setReason(event.currentTarget.value)}
          data-autofocus
        />
        <Group justify="flex-end">
          <Button variant="default" onClick={onClose}>
            Keep it running
          </Button>
          <Button color="red" loading={cancel.isPending} onClick={() => cancel.mutate({ id: job.id, reason: reason.trim() })}>
            Cancel job
          </Button>
        </Group>
      </Stack>
    </Modal>
  );
}

function DeleteModal({ job, opened, onClose }: { job: Job; opened: boolean; onClose: () => void }) {
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const remove = useMutation(JobsService.method.deleteJob, {
    onSuccess: () => {
      notifications.show({ color: 'teal', title: 'Job deleted', message: `${job.name || job.type} and its log are gone.` });
      void queryClient.invalidateQueries({
        queryKey: createConnectQueryKey({ schema: JobsService.method.listJobs, cardinality: undefined }),
      });
      void navigate('/jobs');
    },
    onError: (error) => failed('The job could not be deleted', error),
  });
  return (
    <Modal opened={opened} onClose={onClose} title="Delete this job?" centered>
      <Stack>
        <Text size="sm">The job and its log are deleted for good. Its output files stay in your files.</Text>
        <Group justify="flex-end">
          <Button variant="default" onClick={onClose}>
            Keep it
          </Button>
          <Button color="red" loading={remove.isPending} onClick={() => remove.mutate({ id: job.id })}>
            Delete job
          </Button>
        </Group>
      </Stack>
    </Modal>
  );
}

function ProgressCard({ job }: { job: Job }) {
  const percent = job.status === JobStatus.SUCCEEDED ? 100 : (job.progress?.percent ?? 0);
  const color =
    { [JobStatus.SUCCEEDED]: 'teal', [JobStatus.FAILED]: 'red', [JobStatus.CANCELLED]: 'orange' }[job.status as number] ?? 'blue';
  const message =
    job.progress?.message ||
    (job.status === JobStatus.QUEUED
      ? job.runAfter
        ? `Waiting to run after ${formatDateTime(job.runAfter)}`
        : 'Waiting in the queue for a free worker'
      : job.status === JobStatus.RUNNING
        ? 'Started'
        : '');
  return (
    <Card withBorder radius="md" padding="md">
      <Group justify="space-between" mb={6}>
        <Text size="sm" fw={500} data-testid="job-progress-message">
          {message || 'Progress'}
        </Text>
        <Text size="sm" fw={600} data-testid="job-progress-percent">
          {percent}%
        </Text>
      </Group>
      <Progress value={percent} color={color} size="lg" radius="xl" animated={job.status === JobStatus.RUNNING} aria-label="Job progress" />
    </Card>
  );
}

/** One job: state, progress, parameters, result or error, files and its live log; cancel, retry, delete. */
export function JobDetailPage() {
  const { id = '' } = useParams();
  const session = useSession();
  const queryClient = useQueryClient();
  const transport = useTransport();
  const [cancelOpened, setCancelOpened] = useState(false);
  const [deleteOpened, setDeleteOpened] = useState(false);
  const query = useQuery(JobsService.method.getJob, { id }, { retry: (failures, error) => !isNotFound(error) && failures < 1 });
  const job = query.data?.job;
  const finished = job ? isFinished(job.status) : false;
  useWatchJob(id, job !== undefined && !finished);
  const retry = useMutation(JobsService.method.retryJob, {
    onSuccess: ({ job: retried }) => {
      if (retried) putJob(queryClient, transport, retried);
      notifications.show({ color: 'blue', title: 'Job queued again', message: 'It runs with a fresh set of attempts.' });
    },
    onError: (error) => failed('The job could not be retried', error),
  });

  if (query.isPending) return <Loading label="Loading the job…" />;
  if (query.isError) {
    if (isNotFound(query.error)) return <NotFoundPage what="job" />;
    return <ErrorState error={query.error} onRetry={() => void query.refetch()} title="The job could not be loaded" />;
  }
  if (!job) return <NotFoundPage what="job" />;

  const canCancel = !finished && !job.cancelRequested && session.can(jobMethod('CancelJob'));
  const canRetry = (job.status === JobStatus.FAILED || job.status === JobStatus.CANCELLED) && session.can(jobMethod('RetryJob'));
  const canDelete = finished && session.can(jobMethod('DeleteJob'));
  const labels = Object.entries(job.labels);

  return (
    <>
      <Anchor component={Link} to="/jobs" size="sm" c="dimmed">
        <Group gap={4}>
          <IconArrowLeft size={14} /> Jobs
        </Group>
      </Anchor>
      <Group justify="space-between" align="flex-start" mt="xs" mb="lg" wrap="nowrap">
        <Stack gap={4} style={{ minWidth: 0 }}>
          <Group gap="sm" wrap="nowrap">
            <Title order={2} fz={24} lineClamp={1}>
              {job.name || `${job.type} job`}
            </Title>
            <JobStatusBadge status={job.status} cancelRequested={job.cancelRequested} size="lg" />
          </Group>
          <Group gap="xs">
            <Badge variant="outline" color="gray" radius="sm" tt="none" ff="monospace">
              {job.type}
            </Badge>
            <Text size="sm" c="dimmed" ff="monospace" data-testid="job-id">
              {job.id}
            </Text>
            <CopyButton value={job.id}>
              {({ copied, copy }) => (
                <Tooltip label={copied ? 'Copied' : 'Copy the id'}>
                  <ActionIcon variant="subtle" color={copied ? 'teal' : 'gray'} size="sm" onClick={copy} aria-label="Copy the job id">
                    {copied ? <IconCheck size={14} /> : <IconCopy size={14} />}
                  </ActionIcon>
                </Tooltip>
              )}
            </CopyButton>
          </Group>
        </Stack>
        <Group gap="sm" wrap="nowrap">
          {canRetry && (
            <Button
              variant="light"
              leftSection={<IconRotateClockwise size={16} />}
              loading={retry.isPending}
              onClick={() => retry.mutate({ id })}
            >
              Retry
            </Button>
          )}
          {canCancel && (
            <Button color="red" variant="light" leftSection={<IconPlayerStop size={16} />} onClick={() => setCancelOpened(true)}>
              Cancel
            </Button>
          )}
          {canDelete && (
            <Button color="red" variant="subtle" leftSection={<IconTrash size={16} />} onClick={() => setDeleteOpened(true)}>
              Delete
            </Button>
          )}
        </Group>
      </Group>

      <Stack gap="md">
        {job.status === JobStatus.FAILED && job.error && (
          <Alert color="red" variant="light" icon={<IconAlertTriangle size={18} />} title={`Failed: ${job.error.code || 'error'}`}>
            <Text size="sm" ff="monospace">
              {job.error.message}
            </Text>
          </Alert>
        )}
        {job.status === JobStatus.CANCELLED && (
          <Alert color="orange" variant="light" title="Cancelled">
            <Text size="sm">
              {job.cancelReason ? `Reason: ${job.cancelReason}` : 'No reason was given.'}
              {job.abandoned ? ' The handler did not stop in time and was abandoned.' : ''}
            </Text>
          </Alert>
        )}
        <ProgressCard job={job} />
        <Grid gap="md">
          <Grid.Col span={{ base: 12, md: 7 }}>
            <JobLogPanel key={job.id} jobId={job.id} finished={finished} />
          </Grid.Col>
          <Grid.Col span={{ base: 12, md: 5 }}>
            <Card withBorder radius="md" padding="md" h="100%">
              <Title order={3} fz={16} mb="xs">
                Details
              </Title>
              <Table withRowBorders={false} verticalSpacing={4} horizontalSpacing={0}>
                <Table.Tbody>
                  <Field label="Attempts">
                    {job.attempt} of {job.maxAttempts}
                  </Field>
                  <Field label="Priority">{job.priority}</Field>
                  <Field label="Created">
                    <Time value={job.createTime} />
                  </Field>
                  {job.runAfter && (
                    <Field label="Run after">
                      <Time value={job.runAfter} />
                    </Field>
                  )}
                  <Field label="Started">
                    <Time value={job.startTime} />
                  </Field>
                  <Field label="Finished">
                    <Time value={job.finishTime} />
                  </Field>
                  <Field label="Labels">
                    {labels.length === 0 ? (
                      <Text size="sm" c="dimmed">
                        None
                      </Text>
                    ) : (
                      <Group gap={6}>
                        {labels.map(([key, value]) => (
                          <Badge key={key} variant="light" color="gray" tt="none" radius="sm">
                            {key}={value}
                          </Badge>
                        ))}
                      </Group>
                    )}
                  </Field>
                </Table.Tbody>
              </Table>
            </Card>
          </Grid.Col>
        </Grid>
        <SimpleGrid cols={{ base: 1, md: 2 }}>
          <JsonCard title="Parameters" value={job.params} empty="No parameters." />
          <JsonCard
            title="Result"
            value={job.result}
            empty={
              job.status === JobStatus.SUCCEEDED
                ? 'The job returned nothing.'
                : finished
                  ? 'None: the job did not succeed.'
                  : 'Comes when the job succeeds.'
            }
          />
        </SimpleGrid>
        {(job.inputFileIds.length > 0 || job.outputFileIds.length > 0) && (
          <SimpleGrid cols={{ base: 1, md: 2 }}>
            <FilesCard title="Input files" ids={job.inputFileIds} empty="None." />
            <FilesCard title="Output files" ids={job.outputFileIds} empty={finished ? 'None.' : 'Written when the job finishes.'} />
          </SimpleGrid>
        )}
      </Stack>
      <CancelModal job={job} opened={cancelOpened} onClose={() => setCancelOpened(false)} />
      <DeleteModal job={job} opened={deleteOpened} onClose={() => setDeleteOpened(false)} />
    </>
  );
}
