import { useMutation, useQuery } from '@connectrpc/connect-query';
import { Badge, Button, Card, Group, Table, Text, Title } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useState } from 'react';
import { AuthService, type Session } from '@gen/yardmaster/v1/auth_pb.ts';
import { problemOf } from '../../api/errors.ts';
import { ConfirmActionModal } from '../../ui/confirm-action-modal.tsx';
import { formatDateTime, formatRelative } from '../../ui/format.ts';
import { TokenPager, usePageTokens } from '../../ui/page-token-pager.tsx';
import { EmptyState, ErrorState, Loading } from '../../ui/states.tsx';

/** "Chromium 140 on Linux" from a User-Agent header, or the header itself when it is not a browser's. */
function describeAgent(userAgent: string): string {
  const browser = /(Edg|Firefox|Chrome|Chromium|Safari)\/(\d+)/.exec(userAgent);
  const system = /(Windows|Mac OS X|Android|iPhone|Linux)/.exec(userAgent);
  if (!browser) return userAgent || 'Unknown client';
  const names: Record<string, string> = { Edg: 'Edge' };
  return `${names[browser[1]!] ?? browser[1]} ${browser[2]}${system ? ` on ${system[1] === 'Mac OS X' ? 'macOS' : system[1]}` : ''}`;
}

/** Where the caller is signed in; any other session can be ended from here. */
export function SessionsCard() {
  const pager = usePageTokens('');
  const sessions = useQuery(AuthService.method.listSessions, { pageSize: 20, pageToken: pager.pageToken });
  const [revoking, setRevoking] = useState<Session | undefined>();
  const revoke = useMutation(AuthService.method.revokeSession, {
    onSuccess: () => {
      setRevoking(undefined);
      notifications.show({ color: 'teal', title: 'Session ended', message: 'That device is signed out.' });
      void sessions.refetch();
    },
    onError: (error) => notifications.show({ color: 'red', title: 'Could not end the session', message: problemOf(error).message }),
  });
  return (
    <Card withBorder radius="md" padding="lg">
      <Title order={3} fz={16}>
        Sessions
      </Title>
      <Text size="sm" c="dimmed" mb="md">
        The browsers and programs signed in as you, most recently used first.
      </Text>
      {sessions.isPending ? (
        <Loading />
      ) : sessions.isError ? (
        <ErrorState error={sessions.error} onRetry={() => void sessions.refetch()} />
      ) : sessions.data.sessions.length === 0 ? (
        <EmptyState title="No open sessions" />
      ) : (
        <Table verticalSpacing="xs" highlightOnHover>
          <Table.Thead>
            <Table.Tr>
              <Table.Th>Client</Table.Th>
              <Table.Th>Address</Table.Th>
              <Table.Th>Signed in</Table.Th>
              <Table.Th>Last used</Table.Th>
              <Table.Th>Expires</Table.Th>
              <Table.Th />
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {sessions.data.sessions.map((session) => (
              <Table.Tr key={session.id} data-testid={session.current ? 'session-current' : 'session'}>
                <Table.Td>
                  <Group gap="xs">
                    <Text size="sm" title={session.userAgent}>
                      {describeAgent(session.userAgent)}
                    </Text>
                    {session.current && (
                      <Badge size="xs" color="teal" variant="light">
                        this browser
                      </Badge>
                    )}
                  </Group>
                </Table.Td>
                <Table.Td>
                  <Text size="sm" ff="monospace" c="dimmed">
                    {session.clientAddress}
                  </Text>
                </Table.Td>
                <Table.Td>
                  <Text size="sm" title={formatDateTime(session.createTime)}>
                    {formatRelative(session.createTime)}
                  </Text>
                </Table.Td>
                <Table.Td>
                  <Text size="sm">{formatRelative(session.lastUsedTime)}</Text>
                </Table.Td>
                <Table.Td>
                  <Text size="sm" title={formatDateTime(session.expireTime)}>
                    {formatRelative(session.expireTime)}
                  </Text>
                </Table.Td>
                <Table.Td ta="right">
                  {!session.current && (
                    <Button size="compact-sm" variant="subtle" color="red" onClick={() => setRevoking(session)}>
                      Sign out
                    </Button>
                  )}
                </Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      )}
      <TokenPager pager={pager} nextPageToken={sessions.data?.nextPageToken} />
      <ConfirmActionModal
        opened={revoking !== undefined}
        onClose={() => setRevoking(undefined)}
        title="End this session"
        confirmLabel="Sign it out"
        loading={revoke.isPending}
        onConfirm={() => revoking && revoke.mutate({ id: revoking.id })}
      >
        <Text size="sm">
          {revoking ? `${describeAgent(revoking.userAgent)} at ${revoking.clientAddress}` : ''} is signed out at once and must sign in
          again.
        </Text>
      </ConfirmActionModal>
    </Card>
  );
}
