import { useMutation, useQuery } from '@connectrpc/connect-query';
import { ActionIcon, Alert, Badge, Button, Card, Group, Table, Text, Tooltip } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { IconPlayerPause, IconPlayerPlay, IconPlayerPauseFilled, IconTrash } from '@tabler/icons-react';
import { type ReactNode, useState } from 'react';
import { type Queue, QueueService } from '@gen/yardmaster/v1/queue_pb.ts';
import { problemOf } from '../../api/errors.ts';
import { useSession } from '../../app/session.tsx';
import { ConfirmActionModal } from '../../ui/confirm-action-modal.tsx';
import { formatDuration } from '../../ui/format.ts';
import { PageHeader } from '../../ui/page-header.tsx';
import { EmptyState, ErrorState, Loading } from '../../ui/states.tsx';
import { useQueueWatch } from './use-queue-watch.ts';

const method = (name: string) => `yardmaster.v1.QueueService.${name}`;

function failed(title: string) {
  return (error: unknown) => notifications.show({ color: 'red', title, message: problemOf(error).message });
}

/** A clear under way: the dry-run count, then the typed confirmation. */
interface PendingClear {
  queue: string;
  count: bigint;
}

/** The queues with their live counts; admins pause, resume and clear them. */
export function QueuesPage() {
  const session = useSession();
  const live = useQueueWatch();
  const queues = useQuery(QueueService.method.listQueues, {});
  const status = useQuery(QueueService.method.getQueueStatus, {});
  const canPause = session.can(method('PauseQueue'));
  const canResume = session.can(method('ResumeQueue'));
  const canClear = session.can(method('ClearQueue'));
  const [pendingClear, setPendingClear] = useState<PendingClear | undefined>();

  const pause = useMutation(QueueService.method.pauseQueue, {
    onSuccess: (_, request) =>
      notifications.show({
        title: request.queue ? `Queue ${request.queue} paused` : 'Every queue paused',
        message: 'Running jobs finish; no new job starts.',
      }),
    onError: failed('Could not pause'),
    onSettled: () => void Promise.all([queues.refetch(), status.refetch()]),
  });
  const resume = useMutation(QueueService.method.resumeQueue, {
    onSuccess: (_, request) =>
      notifications.show({
        color: 'teal',
        title: request.queue ? `Queue ${request.queue} resumed` : 'Every queue resumed',
        message: 'Jobs start again.',
      }),
    onError: failed('Could not resume'),
    onSettled: () => void Promise.all([queues.refetch(), status.refetch()]),
  });
  const dryRun = useMutation(QueueService.method.clearQueue, {
    onSuccess: (response, request) => setPendingClear({ queue: request.queue ?? '', count: response.count }),
    onError: failed('Could not count the queued jobs'),
  });
  const clear = useMutation(QueueService.method.clearQueue, {
    onSuccess: (response, request) => {
      setPendingClear(undefined);
      notifications.show({
        color: 'teal',
        title: `Queue ${request.queue || 'all'} cleared`,
        message: `${response.count.toLocaleString()} queued job${response.count === 1n ? '' : 's'} cancelled.`,
      });
    },
    onError: failed('Could not clear'),
    onSettled: () => void queues.refetch(),
  });

  const pausedGlobally = status.data?.pausedGlobally ?? false;
  const busy = pause.isPending || resume.isPending;

  return (
    <>
      <PageHeader
        title="Queues"
        description="Where each job type's jobs wait and run, counted live."
        actions={
          <>
            <Badge variant="dot" color={live ? 'teal' : 'gray'} size="lg" data-testid="queues-live">
              {live ? 'Live' : 'Connecting…'}
            </Badge>
            {pausedGlobally
              ? canResume && (
                  <Button
                    leftSection={<IconPlayerPlay size={16} />}
                    color="teal"
                    loading={busy}
                    onClick={() => resume.mutate({ queue: '' })}
                  >
                    Resume all
                  </Button>
                )
              : canPause && (
                  <Button
                    variant="default"
                    leftSection={<IconPlayerPause size={16} />}
                    loading={busy}
                    onClick={() => pause.mutate({ queue: '' })}
                  >
                    Pause all
                  </Button>
                )}
          </>
        }
      />
      {pausedGlobally && (
        <Alert color="yellow" variant="light" icon={<IconPlayerPauseFilled size={18} />} title="Processing is paused" mb="lg">
          No queue starts a new job until {canResume ? 'you resume them' : 'an admin resumes them'}; running jobs finish.
        </Alert>
      )}
      {queues.isPending ? (
        <Loading />
      ) : queues.isError ? (
        <ErrorState error={queues.error} onRetry={() => void queues.refetch()} />
      ) : queues.data.queues.length === 0 ? (
        <EmptyState title="No queues">Each job type has a queue; none is registered on this server.</EmptyState>
      ) : (
        <Card withBorder padding={0} radius="md">
          <Table.ScrollContainer minWidth={900}>
            <Table verticalSpacing="sm" highlightOnHover style={{ whiteSpace: 'nowrap' }}>
              <Table.Thead>
                <Table.Tr>
                  <Table.Th>Queue</Table.Th>
                  <Table.Th>State</Table.Th>
                  <Table.Th ta="right">Queued</Table.Th>
                  <Table.Th ta="right">Running</Table.Th>
                  <Table.Th ta="right">Last hour</Table.Th>
                  <Table.Th ta="right">Oldest queued</Table.Th>
                  <Table.Th ta="right">Concurrency</Table.Th>
                  <Table.Th ta="right">Workers</Table.Th>
                  {(canPause || canClear) && <Table.Th ta="right">Actions</Table.Th>}
                </Table.Tr>
              </Table.Thead>
              <Table.Tbody>
                {queues.data.queues.map((queue) => (
                  <QueueRow
                    key={queue.name}
                    queue={queue}
                    pausedGlobally={pausedGlobally}
                    actions={
                      (canPause || canClear) && (
                        <Group gap={4} justify="flex-end" wrap="nowrap">
                          {queue.paused
                            ? canResume && (
                                <Tooltip label="Resume">
                                  <ActionIcon
                                    variant="subtle"
                                    color="teal"
                                    aria-label={`Resume ${queue.name}`}
                                    loading={resume.isPending && resume.variables.queue === queue.name}
                                    onClick={() => resume.mutate({ queue: queue.name })}
                                  >
                                    <IconPlayerPlay size={18} />
                                  </ActionIcon>
                                </Tooltip>
                              )
                            : canPause && (
                                <Tooltip label="Pause">
                                  <ActionIcon
                                    variant="subtle"
                                    color="gray"
                                    aria-label={`Pause ${queue.name}`}
                                    loading={pause.isPending && pause.variables.queue === queue.name}
                                    onClick={() => pause.mutate({ queue: queue.name })}
                                  >
                                    <IconPlayerPause size={18} />
                                  </ActionIcon>
                                </Tooltip>
                              )}
                          {canClear && (
                            <Tooltip label="Clear queued jobs">
                              <ActionIcon
                                variant="subtle"
                                color="red"
                                aria-label={`Clear ${queue.name}`}
                                loading={dryRun.isPending && dryRun.variables.queue === queue.name}
                                onClick={() => dryRun.mutate({ queue: queue.name, confirm: queue.name, dryRun: true })}
                              >
                                <IconTrash size={18} />
                              </ActionIcon>
                            </Tooltip>
                          )}
                        </Group>
                      )
                    }
                  />
                ))}
              </Table.Tbody>
            </Table>
          </Table.ScrollContainer>
        </Card>
      )}
      {status.data?.totals && (
        <Text size="xs" c="dimmed" mt="sm">
          In all: {status.data.totals.queued.toLocaleString()} queued, {status.data.totals.running.toLocaleString()} running,{' '}
          {status.data.totals.succeededLastHour.toLocaleString()} succeeded and {status.data.totals.failedLastHour.toLocaleString()} failed
          in the last hour.
        </Text>
      )}
      <ConfirmActionModal
        opened={pendingClear !== undefined}
        onClose={() => setPendingClear(undefined)}
        title={`Clear queue ${pendingClear?.queue ?? ''}`}
        confirmLabel={`Cancel ${pendingClear?.count.toLocaleString() ?? ''} jobs`}
        typeToConfirm={pendingClear?.queue}
        loading={clear.isPending}
        onConfirm={() => pendingClear && clear.mutate({ queue: pendingClear.queue, confirm: pendingClear.queue })}
      >
        <Text size="sm" data-testid="clear-count">
          {pendingClear?.count === 0n
            ? 'No job is queued here: there is nothing to cancel.'
            : `${pendingClear?.count.toLocaleString()} queued job${pendingClear?.count === 1n ? '' : 's'} will be cancelled.`}{' '}
          Running jobs are not touched. This cannot be undone.
        </Text>
      </ConfirmActionModal>
    </>
  );
}

function QueueRow({ queue, pausedGlobally, actions }: { queue: Queue; pausedGlobally: boolean; actions: ReactNode }) {
  const paused = queue.paused || pausedGlobally;
  return (
    <Table.Tr data-testid={`queue-${queue.name}`}>
      <Table.Td>
        <Text fw={600} size="sm" ff="monospace">
          {queue.name}
        </Text>
        {queue.description && (
          <Text size="xs" c="dimmed" truncate maw={220} title={queue.description}>
            {queue.description}
          </Text>
        )}
      </Table.Td>
      <Table.Td>
        <Badge color={paused ? 'yellow' : 'teal'} variant="light">
          {paused ? 'Paused' : 'Active'}
        </Badge>
      </Table.Td>
      <Table.Td ta="right" ff="monospace">
        {queue.queued.toLocaleString()}
      </Table.Td>
      <Table.Td ta="right" ff="monospace">
        {queue.running.toLocaleString()}
      </Table.Td>
      <Table.Td ta="right">
        <Text size="sm" ff="monospace" span title="Succeeded in the last hour">
          {queue.succeededLastHour.toLocaleString()} ok
        </Text>
        <Text size="sm" c="dimmed" span>
          {' · '}
        </Text>
        <Text size="sm" ff="monospace" span c={queue.failedLastHour > 0n ? 'red' : 'dimmed'} title="Failed in the last hour">
          {queue.failedLastHour.toLocaleString()} failed
        </Text>
      </Table.Td>
      <Table.Td ta="right">{queue.queued > 0n ? formatDuration(queue.oldestQueuedAge) : '–'}</Table.Td>
      <Table.Td ta="right" ff="monospace">
        {queue.concurrency}
      </Table.Td>
      <Table.Td ta="right" ff="monospace">
        {queue.workersAttached}
      </Table.Td>
      {actions && <Table.Td>{actions}</Table.Td>}
    </Table.Tr>
  );
}
