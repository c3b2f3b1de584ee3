import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { useQuery } from '@connectrpc/connect-query';
import { Badge, Card, Code, Drawer, Group, Select, Table, Text, TextInput } from '@mantine/core';
import { useDebouncedValue } from '@mantine/hooks';
import { type ReactNode, useState } from 'react';
import { type AuditEvent, AuditOutcome, AdminService } from '@gen/yardmaster/v1/admin_pb.ts';
import { formatDateTime, formatRelative } from '../../ui/format.ts';
import { PageHeader } from '../../ui/page-header.tsx';
import { TokenPager, usePageTokens } from '../../ui/page-token-pager.tsx';
import { RequirePermission } from '../../ui/require-permission.tsx';
import { EmptyState, ErrorState, Loading } from '../../ui/states.tsx';

export function AuditPage() {
  return (
    <RequirePermission method="yardmaster.v1.AdminService.ListAuditEvents">
      <Audit />
    </RequirePermission>
  );
}

const periods = [
  { value: '3600', label: 'Last hour' },
  { value: '86400', label: 'Last 24 hours' },
  { value: '604800', label: 'Last 7 days' },
  { value: '2592000', label: 'Last 30 days' },
];
const outcomes = [
  { value: String(AuditOutcome.SUCCESS), label: 'Succeeded' },
  { value: String(AuditOutcome.FAILURE), label: 'Failed' },
];

/** "AdminService.UpdateUser" for `yardmaster.v1.AdminService.UpdateUser`. */
const shortAction = (action: string) => action.replace(/^yardmaster\.v1\./, '');

/** Who did what to which target, when, from where, and how it ended. */
function Audit() {
  const [actorText, setActorText] = useState('');
  const [actionText, setActionText] = useState('');
  const [targetText, setTargetText] = useState('');
  const [filters] = useDebouncedValue({ actor: actorText.trim(), action: actionText.trim(), target: targetText.trim() }, 300);
  const [outcome, setOutcome] = useState<string | null>(null);
  const [period, setPeriod] = useState<string | null>(null);
  // The period's start, fixed when chosen so that paging keeps the same filter.
  const [since, setSince] = useState<Date | undefined>();
  const action = filters.action && !filters.action.startsWith('yardmaster.') ? `yardmaster.v1.${filters.action}` : filters.action;
  const pager = usePageTokens(JSON.stringify([filters, outcome, since?.getTime()]));
  const events = useQuery(AdminService.method.listAuditEvents, {
    actor: filters.actor,
    action,
    target: filters.target,
    outcome: outcome ? (Number(outcome) as AuditOutcome) : AuditOutcome.UNSPECIFIED,
    startTime: since ? timestampFromDate(since) : undefined,
    pageSize: 50,
    pageToken: pager.pageToken,
  });
  const [selected, setSelected] = useState<AuditEvent | undefined>();

  return (
    <>
      <PageHeader title="Audit log" description="Every change and sign-in, newest first: who did what, to what, and how it ended." />
      <Group mb="md" gap="sm" align="flex-end">
        <TextInput
          label="Actor"
          placeholder="Username or id"
          value={actorText}
          onChange={(event) => setActorText(event.currentTarget.value)}
          w={180}
        />
        <TextInput
          label="Action"
          placeholder="e.g. AdminService.UpdateUser"
          value={actionText}
          onChange={(event) => setActionText(event.currentTarget.value)}
          w={240}
        />
        <TextInput
          label="Target"
          placeholder="Id, name or key"
          value={targetText}
          onChange={(event) => setTargetText(event.currentTarget.value)}
          w={180}
        />
        <Select label="Outcome" placeholder="Any" data={outcomes} value={outcome} onChange={setOutcome} clearable w={130} />
        <Select
          label="Period"
          placeholder="Any time"
          data={periods}
          value={period}
          onChange={(value) => {
            setPeriod(value);
            setSince(value ? new Date(Date.now() - Number(value) * 1000) : undefined);
          }}
          clearable
          w={160}
        />
      </Group>
      {events.isPending ? (
        <Loading />
      ) : events.isError ? (
        <ErrorState error={events.error} onRetry={() => void events.refetch()} />
      ) : events.data.auditEvents.length === 0 ? (
        <EmptyState title="No events">Nothing recorded matches these filters.</EmptyState>
      ) : (
        <Card withBorder padding={0} radius="md">
          <Table.ScrollContainer minWidth={900}>
            <Table verticalSpacing="xs" highlightOnHover>
              <Table.Thead>
                <Table.Tr>
                  <Table.Th>When</Table.Th>
                  <Table.Th>Actor</Table.Th>
                  <Table.Th>Action</Table.Th>
                  <Table.Th>Target</Table.Th>
                  <Table.Th>Outcome</Table.Th>
                  <Table.Th>Client</Table.Th>
                </Table.Tr>
              </Table.Thead>
              <Table.Tbody>
                {events.data.auditEvents.map((event) => (
                  <Table.Tr key={event.id} onClick={() => setSelected(event)} style={{ cursor: 'pointer' }} data-testid="audit-row">
                    <Table.Td>
                      <Text size="sm" title={formatDateTime(event.createTime)}>
                        {formatRelative(event.createTime)}
                      </Text>
                    </Table.Td>
                    <Table.Td>
                      <Text size="sm" c={event.actorUsername ? undefined : 'dimmed'}>
                        {event.actorUsername || 'anonymous'}
                      </Text>
                    </Table.Td>
                    <Table.Td>
                      <Text size="sm" ff="monospace">
                        {shortAction(event.action)}
                      </Text>
                    </Table.Td>
                    <Table.Td>
                      <Text size="sm" ff="monospace" lineClamp={1} maw={240}>
                        {event.target || '–'}
                      </Text>
                    </Table.Td>
                    <Table.Td>
                      <OutcomeBadge event={event} />
                    </Table.Td>
                    <Table.Td>
                      <Text size="sm" c="dimmed" ff="monospace">
                        {event.clientAddress}
                      </Text>
                    </Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          </Table.ScrollContainer>
        </Card>
      )}
      <TokenPager pager={pager} nextPageToken={events.data?.nextPageToken} />
      <Drawer
        opened={selected !== undefined}
        onClose={() => setSelected(undefined)}
        position="right"
        size="md"
        title={<Text fw={700}>Audit event</Text>}
      >
        {selected && <EventDetail event={selected} />}
      </Drawer>
    </>
  );
}

function OutcomeBadge({ event }: { event: AuditEvent }) {
  return event.outcome === AuditOutcome.FAILURE ? (
    <Badge color="red" variant="light">
      {event.errorCode || 'failed'}
    </Badge>
  ) : (
    <Badge color="teal" variant="light">
      ok
    </Badge>
  );
}

function EventDetail({ event }: { event: AuditEvent }) {
  const rows: [string, ReactNode][] = [
    ['When', formatDateTime(event.createTime)],
    ['Actor', event.actorUsername ? `${event.actorUsername}` : 'anonymous'],
    ['Actor id', <Code key="actor">{event.actorId || '–'}</Code>],
    ['Action', <Code key="action">{event.action}</Code>],
    ['Target', <Code key="target">{event.target || '–'}</Code>],
    ['Outcome', <OutcomeBadge key="outcome" event={event} />],
    ['Reason', event.reason ? <Code key="reason">{event.reason}</Code> : '–'],
    ['Client address', <Code key="client">{event.clientAddress || '–'}</Code>],
    ['Request id', <Code key="request">{event.requestId || '–'}</Code>],
    ['Event id', <Code key="id">{event.id}</Code>],
  ];
  return (
    <Table variant="vertical" layout="fixed" withTableBorder>
      <Table.Tbody>
        {rows.map(([label, value]) => (
          <Table.Tr key={label}>
            <Table.Th w={130}>{label}</Table.Th>
            <Table.Td style={{ wordBreak: 'break-all' }}>{value}</Table.Td>
          </Table.Tr>
        ))}
      </Table.Tbody>
    </Table>
  );
}
