import { useQuery } from '@connectrpc/connect-query';
import { Badge, Card, Group, SimpleGrid, Stack, Text, Title } from '@mantine/core';
import { JobsService } from '@gen/yardmaster/v1/jobs_pb.ts';
import { QueueService } from '@gen/yardmaster/v1/queue_pb.ts';
import { HealthStatus, SystemService } from '@gen/yardmaster/v1/system_pb.ts';
import { Link } from 'react-router';
import { useSession } from '../app/session.tsx';
import { formatDuration } from '../ui/format.ts';
import { PageHeader } from '../ui/page-header.tsx';
import { ErrorState, Loading } from '../ui/states.tsx';

const statusColors: Record<string, string> = {
  JOB_STATUS_QUEUED: 'gray',
  JOB_STATUS_RUNNING: 'blue',
  JOB_STATUS_SUCCEEDED: 'teal',
  JOB_STATUS_FAILED: 'red',
  JOB_STATUS_CANCELLED: 'orange',
};

function Figure({ label, value, hint }: { label: string; value: string; hint?: string }) {
  return (
    <Card withBorder padding="lg" radius="md">
      <Text size="xs" c="dimmed" tt="uppercase" fw={700}>
        {label}
      </Text>
      <Text fz={28} fw={700} mt={4}>
        {value}
      </Text>
      {hint && (
        <Text size="xs" c="dimmed">
          {hint}
        </Text>
      )}
    </Card>
  );
}

const healthColors: Record<number, string> = { [HealthStatus.OK]: 'teal', [HealthStatus.DOWN]: 'red', [HealthStatus.DEGRADED]: 'yellow' };
const healthNames: Record<number, string> = { [HealthStatus.OK]: 'OK', [HealthStatus.DOWN]: 'Down', [HealthStatus.DEGRADED]: 'Degraded' };

function SystemCard() {
  const status = useQuery(SystemService.method.getSystemStatus, {}, { refetchInterval: 10_000 });
  if (status.isPending) return <Loading />;
  if (status.isError) return <ErrorState error={status.error} onRetry={() => void status.refetch()} />;
  return (
    <Card withBorder padding="lg" radius="md">
      <Group justify="space-between" mb="sm">
        <Title order={3} fz={16}>
          System
        </Title>
        <Badge color={healthColors[status.data.status] ?? 'gray'} variant="light">
          {healthNames[status.data.status] ?? 'Unknown'}
        </Badge>
      </Group>
      <Stack gap={6}>
        {status.data.dependencies.map((dependency) => (
          <Group key={dependency.name} justify="space-between">
            <Text size="sm">{dependency.name}</Text>
            <Group gap="xs">
              <Text size="xs" c="dimmed">
                {dependency.detail || formatDuration(dependency.latency)}
              </Text>
              <Badge size="sm" color={healthColors[dependency.status] ?? 'gray'} variant="dot">
                {healthNames[dependency.status] ?? 'Unknown'}
              </Badge>
            </Group>
          </Group>
        ))}
        <Text size="xs" c="dimmed" mt="xs">
          {status.data.instances.length} live instance{status.data.instances.length === 1 ? '' : 's'} · version {status.data.version}
        </Text>
      </Stack>
    </Card>
  );
}

/** The landing page: the caller's jobs at a glance, the queues, and (for admins) the system's health. */
export function OverviewPage() {
  const session = useSession();
  const stats = useQuery(JobsService.method.getJobStats, {}, { refetchInterval: 5_000 });
  const queues = useQuery(QueueService.method.getQueueStatus, {}, { refetchInterval: 5_000 });

  return (
    <>
      <PageHeader
        title={session.user ? `Welcome, ${session.user.username}` : 'Overview'}
        description={session.isAdmin ? 'Every job and queue of the system.' : 'Your jobs and the queues they run in.'}
      />
      <Stack gap="lg">
        {stats.isError ? (
          <ErrorState error={stats.error} onRetry={() => void stats.refetch()} />
        ) : stats.isPending ? (
          <Loading />
        ) : (
          <SimpleGrid cols={{ base: 1, xs: 2, md: 4 }}>
            <Figure
              label="Jobs"
              value={stats.data.total.toLocaleString()}
              hint={`${stats.data.finishedLastHour} finished in the last hour`}
            />
            <Figure label="Running" value={(stats.data.countsByStatus.JOB_STATUS_RUNNING ?? 0n).toLocaleString()} />
            <Figure label="Queued" value={(stats.data.countsByStatus.JOB_STATUS_QUEUED ?? 0n).toLocaleString()} />
            <Figure
              label="Median run time"
              value={formatDuration(stats.data.durationP50)}
              hint={`p95 ${formatDuration(stats.data.durationP95)}`}
            />
          </SimpleGrid>
        )}
        <SimpleGrid cols={{ base: 1, md: session.isAdmin ? 2 : 1 }}>
          <Card withBorder padding="lg" radius="md">
            <Group justify="space-between" mb="sm">
              <Title order={3} fz={16}>
                Jobs by status
              </Title>
              <Text component={Link} to="/jobs" size="sm" c="blue">
                All jobs →
              </Text>
            </Group>
            {stats.data ? (
              <Group gap="xs">
                {Object.entries(stats.data.countsByStatus).map(([status, count]) => (
                  <Badge key={status} color={statusColors[status] ?? 'gray'} variant="light" size="lg">
                    {status.replace('JOB_STATUS_', '').toLowerCase()} {count.toLocaleString()}
                  </Badge>
                ))}
                {Object.keys(stats.data.countsByStatus).length === 0 && (
                  <Text size="sm" c="dimmed">
                    No jobs yet.
                  </Text>
                )}
              </Group>
            ) : null}
            {queues.data && (
              <Text size="sm" c="dimmed" mt="md">
                Queues: {queues.data.totals?.queued.toLocaleString() ?? 0} waiting, {queues.data.totals?.running.toLocaleString() ?? 0}{' '}
                running
                {queues.data.pausedGlobally ? ' · processing is paused' : ''}
                {queues.data.pausedQueues.length > 0 ? ` · paused: ${queues.data.pausedQueues.join(', ')}` : ''}
              </Text>
            )}
          </Card>
          {session.can('yardmaster.v1.SystemService.GetSystemStatus') && <SystemCard />}
        </SimpleGrid>
      </Stack>
    </>
  );
}
