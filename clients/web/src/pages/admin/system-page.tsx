import { useMutation, useQuery } from '@connectrpc/connect-query';
import { Badge, Button, Card, Group, SimpleGrid, Stack, Table, Text, Title } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { IconPlayerPlay, IconPlayerStop, IconRefresh } from '@tabler/icons-react';
import { useState } from 'react';
import { HealthStatus, InstanceRole, type Service, ServiceKind, ServiceState, SystemService } from '@gen/yardmaster/v1/system_pb.ts';
import { problemOf } from '../../api/errors.ts';
import { ConfirmActionModal } from '../../ui/confirm-action-modal.tsx';
import { dateOf, formatDuration, formatMs, formatRelative } from '../../ui/format.ts';
import { PageHeader } from '../../ui/page-header.tsx';
import { RequirePermission } from '../../ui/require-permission.tsx';
import { EmptyState, ErrorState, Loading } from '../../ui/states.tsx';

export function SystemPage() {
  return (
    <RequirePermission method="yardmaster.v1.SystemService.GetSystemStatus">
      <System />
    </RequirePermission>
  );
}

const refreshMs = 3_000;
const healthColors: Record<number, string> = { [HealthStatus.OK]: 'teal', [HealthStatus.DOWN]: 'red', [HealthStatus.DEGRADED]: 'yellow' };
const healthNames: Record<number, string> = { [HealthStatus.OK]: 'OK', [HealthStatus.DOWN]: 'Down', [HealthStatus.DEGRADED]: 'Degraded' };
const roleNames: Record<number, string> = { [InstanceRole.API]: 'API', [InstanceRole.WORKER]: 'Worker', [InstanceRole.ALL]: 'API + jobs' };
const stateColors: Record<number, string> = {
  [ServiceState.RUNNING]: 'teal',
  [ServiceState.STOPPED]: 'gray',
  [ServiceState.DRAINING]: 'yellow',
  [ServiceState.UNHEALTHY]: 'red',
};
const stateNames: Record<number, string> = {
  [ServiceState.RUNNING]: 'Running',
  [ServiceState.STOPPED]: 'Stopped',
  [ServiceState.DRAINING]: 'Draining',
  [ServiceState.UNHEALTHY]: 'Unhealthy',
};

const short = (id: string) => id.slice(0, 8);

/** How the system is doing (dependencies, instances) and its worker pools and external workers, controlled. */
function System() {
  const status = useQuery(SystemService.method.getSystemStatus, {}, { refetchInterval: refreshMs });
  const services = useQuery(SystemService.method.listServices, {}, { refetchInterval: refreshMs });
  return (
    <>
      <PageHeader
        title="System"
        description={`Dependencies, server instances and workers; refreshed every ${refreshMs / 1000} s.`}
        actions={
          status.data && (
            <Badge size="lg" color={healthColors[status.data.status] ?? 'gray'} variant="light" data-testid="system-status">
              {healthNames[status.data.status] ?? 'Unknown'}
            </Badge>
          )
        }
      />
      <Stack gap="lg">
        {status.isPending ? (
          <Loading />
        ) : status.isError ? (
          <ErrorState error={status.error} onRetry={() => void status.refetch()} />
        ) : (
          <>
            <SimpleGrid cols={{ base: 1, sm: 2, lg: 4 }}>
              {status.data.dependencies.map((dependency) => (
                <Card key={dependency.name} withBorder radius="md" padding="md" data-testid={`dependency-${dependency.name}`}>
                  <Group justify="space-between" wrap="nowrap">
                    <Text fw={600} tt="capitalize">
                      {dependency.name}
                    </Text>
                    <Badge color={healthColors[dependency.status] ?? 'gray'} variant="dot">
                      {healthNames[dependency.status] ?? 'Unknown'}
                    </Badge>
                  </Group>
                  <Text size="xs" c="dimmed" mt={6}>
                    {formatDuration(dependency.latency)} · checked {formatRelative(dependency.checkTime)}
                  </Text>
                  {dependency.detail && (
                    <Text size="xs" c={dependency.status === HealthStatus.OK ? 'dimmed' : 'red'} mt={4} lineClamp={2}>
                      {dependency.detail}
                    </Text>
                  )}
                </Card>
              ))}
            </SimpleGrid>
            <Card withBorder radius="md" padding={0}>
              <Group p="md" pb="xs" justify="space-between">
                <Title order={3} fz={16}>
                  Instances
                </Title>
                <Text size="xs" c="dimmed">
                  Answered by {short(status.data.instanceId)} · version {status.data.version}
                  {status.data.commit ? ` (${status.data.commit.slice(0, 7)})` : ''} · up {formatDuration(status.data.uptime)}
                </Text>
              </Group>
              <Table verticalSpacing="xs">
                <Table.Thead>
                  <Table.Tr>
                    <Table.Th>Instance</Table.Th>
                    <Table.Th>Role</Table.Th>
                    <Table.Th>Host</Table.Th>
                    <Table.Th>Version</Table.Th>
                    <Table.Th ta="right">Uptime</Table.Th>
                    <Table.Th ta="right">Last heartbeat</Table.Th>
                  </Table.Tr>
                </Table.Thead>
                <Table.Tbody>
                  {status.data.instances.map((instance) => (
                    <Table.Tr key={instance.id}>
                      <Table.Td>
                        <Text size="sm" ff="monospace" title={instance.id} component="div">
                          {short(instance.id)}
                          {instance.id === status.data.instanceId && (
                            <Badge ml="xs" size="xs" variant="light">
                              this one
                            </Badge>
                          )}
                        </Text>
                      </Table.Td>
                      <Table.Td>
                        <Text size="sm">{roleNames[instance.role] ?? '–'}</Text>
                      </Table.Td>
                      <Table.Td>
                        <Text size="sm" ff="monospace">
                          {instance.host}:{instance.pid}
                        </Text>
                      </Table.Td>
                      <Table.Td>
                        <Text size="sm">{instance.version}</Text>
                      </Table.Td>
                      <Table.Td ta="right">
                        <Text size="sm">{instance.startTime ? formatMs(Date.now() - dateOf(instance.startTime)!.getTime()) : '–'}</Text>
                      </Table.Td>
                      <Table.Td ta="right">
                        <Text size="sm">{formatRelative(instance.lastHeartbeatTime)}</Text>
                      </Table.Td>
                    </Table.Tr>
                  ))}
                </Table.Tbody>
              </Table>
            </Card>
          </>
        )}
        {services.isPending ? (
          <Loading />
        ) : services.isError ? (
          <ErrorState error={services.error} onRetry={() => void services.refetch()} />
        ) : (
          <Services services={services.data.services} onChanged={() => void services.refetch()} />
        )}
      </Stack>
    </>
  );
}

type PendingStop = { name: string; kind: ServiceKind } | undefined;

function Services({ services, onChanged }: { services: Service[]; onChanged(): void }) {
  const [pendingStop, setPendingStop] = useState<PendingStop>();
  const done = (verb: string) => (_: unknown, request: { name?: string }) => {
    notifications.show({ color: 'teal', title: `${request.name} ${verb}`, message: 'Every instance follows within a few seconds.' });
    onChanged();
  };
  const failed = (error: unknown) =>
    notifications.show({ color: 'red', title: 'The service did not change', message: problemOf(error).message });
  const start = useMutation(SystemService.method.startService, { onSuccess: done('started'), onError: failed });
  const restart = useMutation(SystemService.method.restartService, { onSuccess: done('restarted'), onError: failed });
  const stop = useMutation(SystemService.method.stopService, {
    onSuccess: (response, request) => {
      setPendingStop(undefined);
      done('stopped')(response, request);
    },
    onError: failed,
  });
  // A pool has one row per instance but one name: the buttons act on the name, so show them once.
  const pools = services.filter((service) => service.kind === ServiceKind.WORKER_POOL);
  const workers = services.filter((service) => service.kind === ServiceKind.EXTERNAL_WORKER);
  const busy = (name: string) =>
    (start.isPending && start.variables.name === name) ||
    (stop.isPending && stop.variables.name === name) ||
    (restart.isPending && restart.variables.name === name);

  const controls = (service: Service) => (
    <Group gap={4} justify="flex-end" wrap="nowrap">
      {service.state === ServiceState.STOPPED ? (
        <Button
          size="compact-sm"
          variant="light"
          color="teal"
          leftSection={<IconPlayerPlay size={14} />}
          loading={busy(service.name)}
          onClick={() => start.mutate({ name: service.name })}
          aria-label={`Start ${service.name}`}
        >
          Start
        </Button>
      ) : (
        <Button
          size="compact-sm"
          variant="light"
          color="red"
          leftSection={<IconPlayerStop size={14} />}
          disabled={busy(service.name)}
          onClick={() => setPendingStop({ name: service.name, kind: service.kind })}
          aria-label={`Stop ${service.name}`}
        >
          Stop
        </Button>
      )}
      <Button
        size="compact-sm"
        variant="default"
        leftSection={<IconRefresh size={14} />}
        disabled={busy(service.name)}
        onClick={() => restart.mutate({ name: service.name })}
        aria-label={`Restart ${service.name}`}
      >
        Restart
      </Button>
    </Group>
  );

  return (
    <>
      <Card withBorder radius="md" padding={0}>
        <Title order={3} fz={16} p="md" pb="xs">
          Worker pools
        </Title>
        {pools.length === 0 ? (
          <EmptyState title="No worker pools">No instance of this system runs jobs in-process.</EmptyState>
        ) : (
          <Table verticalSpacing="xs" highlightOnHover>
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Pool</Table.Th>
                <Table.Th>Instance</Table.Th>
                <Table.Th>State</Table.Th>
                <Table.Th ta="right">Running</Table.Th>
                <Table.Th ta="right">Concurrency</Table.Th>
                <Table.Th ta="right">Done</Table.Th>
                <Table.Th ta="right">Actions</Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {pools.map((service, index) => (
                <Table.Tr key={`${service.name}@${service.instanceId}`} data-testid={`service-${service.name}`}>
                  <Table.Td>
                    <Text size="sm" ff="monospace" fw={600}>
                      {service.name}
                    </Text>
                  </Table.Td>
                  <Table.Td>
                    <Text size="sm" ff="monospace" c="dimmed">
                      {short(service.instanceId)}
                    </Text>
                  </Table.Td>
                  <Table.Td>
                    <Badge color={stateColors[service.state] ?? 'gray'} variant="light">
                      {stateNames[service.state] ?? 'Unknown'}
                    </Badge>
                  </Table.Td>
                  <Table.Td ta="right" ff="monospace">
                    {service.jobsRunning}
                  </Table.Td>
                  <Table.Td ta="right" ff="monospace">
                    {service.concurrency}
                  </Table.Td>
                  <Table.Td ta="right" ff="monospace">
                    {service.jobsDone.toLocaleString()}
                  </Table.Td>
                  <Table.Td>{pools.findIndex((other) => other.name === service.name) === index && controls(service)}</Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        )}
      </Card>
      <Card withBorder radius="md" padding={0}>
        <Title order={3} fz={16} p="md" pb="xs">
          External workers
        </Title>
        {workers.length === 0 ? (
          <EmptyState title="No external workers">Workers that run jobs over WorkerService appear here once they call in.</EmptyState>
        ) : (
          <Table verticalSpacing="xs" highlightOnHover>
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Worker</Table.Th>
                <Table.Th>Account</Table.Th>
                <Table.Th>Queues</Table.Th>
                <Table.Th>State</Table.Th>
                <Table.Th ta="right">Running</Table.Th>
                <Table.Th ta="right">Last call</Table.Th>
                <Table.Th ta="right">Actions</Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {workers.map((service) => (
                <Table.Tr key={service.name} data-testid={`service-${service.name}`}>
                  <Table.Td>
                    <Text size="sm" ff="monospace" fw={600}>
                      {service.name}
                    </Text>
                  </Table.Td>
                  <Table.Td>
                    <Text size="sm">{service.accountUsername}</Text>
                  </Table.Td>
                  <Table.Td>
                    <Text size="sm" ff="monospace">
                      {service.queues.join(', ') || '–'}
                    </Text>
                  </Table.Td>
                  <Table.Td>
                    <Badge color={stateColors[service.state] ?? 'gray'} variant="light">
                      {stateNames[service.state] ?? 'Unknown'}
                    </Badge>
                  </Table.Td>
                  <Table.Td ta="right" ff="monospace">
                    {service.jobsRunning}
                  </Table.Td>
                  <Table.Td ta="right">
                    <Text size="sm">{formatRelative(service.lastHeartbeatTime)}</Text>
                  </Table.Td>
                  <Table.Td>{controls(service)}</Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        )}
      </Card>
      <ConfirmActionModal
        opened={pendingStop !== undefined}
        onClose={() => setPendingStop(undefined)}
        title={`Stop ${pendingStop?.name ?? ''}`}
        confirmLabel="Stop"
        loading={stop.isPending}
        onConfirm={() => pendingStop && stop.mutate({ name: pendingStop.name })}
      >
        <Text size="sm">
          {pendingStop?.kind === ServiceKind.EXTERNAL_WORKER
            ? 'The worker claims no more jobs, finishes the ones it holds, then stops. It takes jobs again once started here.'
            : 'The pool stops on every instance: it takes no new job and finishes the ones it runs. Its queue keeps filling, and external workers keep claiming from it.'}
        </Text>
      </ConfirmActionModal>
    </>
  );
}
