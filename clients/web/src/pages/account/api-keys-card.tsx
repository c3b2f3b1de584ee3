import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { useMutation, useQuery } from '@connectrpc/connect-query';
import {
  Alert,
  Badge,
  Button,
  Card,
  Code,
  CopyButton,
  Group,
  Modal,
  Select,
  Stack,
  Switch,
  Table,
  Text,
  TextInput,
  Title,
} from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { IconAlertTriangle, IconCopy, IconKey, IconPlus } from '@tabler/icons-react';
import { type FormEvent, useState } from 'react';
import { type ApiKey, AuthService } from '@gen/yardmaster/v1/auth_pb.ts';
import { problemOf } from '../../api/errors.ts';
import { ConfirmActionModal } from '../../ui/confirm-action-modal.tsx';
import { fieldViolations } from '../../ui/field-violations.ts';
import { formatDateTime, formatRelative } from '../../ui/format.ts';
import { TokenPager, usePageTokens } from '../../ui/page-token-pager.tsx';
import { EmptyState, ErrorState, Loading } from '../../ui/states.tsx';

const day = 86_400_000;
const lifetimes = [
  { value: '0', label: 'Never expires' },
  { value: String(30 * day), label: '30 days' },
  { value: String(90 * day), label: '90 days' },
  { value: String(365 * day), label: 'One year' },
];

/** The caller's API keys: created (the secret shown once), listed, revoked. */
export function ApiKeysCard() {
  const [showRevoked, setShowRevoked] = useState(false);
  const pager = usePageTokens(String(showRevoked));
  const keys = useQuery(AuthService.method.listApiKeys, { showRevoked, pageSize: 20, pageToken: pager.pageToken });
  const [creating, setCreating] = useState(false);
  const [revoking, setRevoking] = useState<ApiKey | undefined>();
  const revoke = useMutation(AuthService.method.revokeApiKey, {
    onSuccess: (response) => {
      setRevoking(undefined);
      notifications.show({ color: 'teal', title: 'API key revoked', message: `${response.apiKey?.name} stopped working.` });
      void keys.refetch();
    },
    onError: (error) => notifications.show({ color: 'red', title: 'Could not revoke', message: problemOf(error).message }),
  });

  return (
    <Card withBorder radius="md" padding="lg">
      <Group justify="space-between" mb="md">
        <div>
          <Title order={3} fz={16}>
            API keys
          </Title>
          <Text size="sm" c="dimmed">
            For scripts and pipelines: send one as <Code>Authorization: Bearer ym_…</Code>
          </Text>
        </div>
        <Group gap="md">
          <Switch label="Show revoked" checked={showRevoked} onChange={(event) => setShowRevoked(event.currentTarget.checked)} />
          <Button leftSection={<IconPlus size={16} />} onClick={() => setCreating(true)}>
            New API key
          </Button>
        </Group>
      </Group>
      {keys.isPending ? (
        <Loading />
      ) : keys.isError ? (
        <ErrorState error={keys.error} onRetry={() => void keys.refetch()} />
      ) : keys.data.apiKeys.length === 0 ? (
        <EmptyState title="No API keys">Create one to call the API from a script.</EmptyState>
      ) : (
        <Table verticalSpacing="xs" highlightOnHover>
          <Table.Thead>
            <Table.Tr>
              <Table.Th>Name</Table.Th>
              <Table.Th>Key</Table.Th>
              <Table.Th>Created</Table.Th>
              <Table.Th>Last used</Table.Th>
              <Table.Th>Expires</Table.Th>
              <Table.Th ta="right" />
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {keys.data.apiKeys.map((key) => (
              <Table.Tr key={key.id} data-testid={`api-key-${key.name}`}>
                <Table.Td>
                  <Group gap="xs">
                    <IconKey size={16} color="var(--mantine-color-dimmed)" />
                    <Text size="sm" fw={600}>
                      {key.name}
                    </Text>
                    {key.revokeTime && (
                      <Badge size="xs" color="red" variant="light">
                        revoked
                      </Badge>
                    )}
                  </Group>
                </Table.Td>
                <Table.Td>
                  <Code>{key.prefix}…</Code>
                </Table.Td>
                <Table.Td>
                  <Text size="sm" title={formatDateTime(key.createTime)}>
                    {formatRelative(key.createTime)}
                  </Text>
                </Table.Td>
                <Table.Td>
                  <Text size="sm" c={key.lastUsedTime ? undefined : 'dimmed'}>
                    {key.lastUsedTime ? formatRelative(key.lastUsedTime) : 'Never'}
                  </Text>
                </Table.Td>
                <Table.Td>
                  <Text size="sm" c={key.expireTime ? undefined : 'dimmed'} title={formatDateTime(key.expireTime)}>
                    {key.expireTime ? formatRelative(key.expireTime) : 'Never'}
                  </Text>
                </Table.Td>
                <Table.Td ta="right">
                  {!key.revokeTime && (
                    <Button
                      size="compact-sm"
                      variant="subtle"
                      color="red"
                      onClick={() => setRevoking(key)}
                      aria-label={`Revoke ${key.name}`}
                    >
                      Revoke
                    </Button>
                  )}
                </Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      )}
      <TokenPager pager={pager} nextPageToken={keys.data?.nextPageToken} />
      <Modal opened={creating} onClose={() => setCreating(false)} title={<Text fw={700}>New API key</Text>} centered size="lg">
        <CreateApiKey onClose={() => setCreating(false)} onCreated={() => void keys.refetch()} />
      </Modal>
      <ConfirmActionModal
        opened={revoking !== undefined}
        onClose={() => setRevoking(undefined)}
        title={`Revoke ${revoking?.name ?? ''}`}
        confirmLabel="Revoke key"
        loading={revoke.isPending}
        onConfirm={() => revoking && revoke.mutate({ id: revoking.id })}
      >
        <Text size="sm">Every program using this key loses access at once. This cannot be undone.</Text>
      </ConfirmActionModal>
    </Card>
  );
}

function CreateApiKey({ onClose, onCreated }: { onClose(): void; onCreated(): void }) {
  const [name, setName] = useState('');
  const [lifetime, setLifetime] = useState('0');
  const create = useMutation(AuthService.method.createApiKey, { onSuccess: onCreated });
  const violations = fieldViolations(create.error);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const ms = Number(lifetime);
    create.mutate({ name: name.trim(), expireTime: ms > 0 ? timestampFromDate(new Date(Date.now() + ms)) : undefined });
  };

  if (create.data) {
    const secret = create.data.secret;
    return (
      <Stack>
        <Alert color="yellow" variant="light" icon={<IconAlertTriangle size={18} />} title="Copy the key now">
          This is the only time it is shown: Yardmaster keeps only a hash of it. Store it where your program reads secrets.
        </Alert>
        <Group gap="sm" wrap="nowrap">
          <Code block fz="sm" style={{ flex: 1, wordBreak: 'break-all', whiteSpace: 'pre-wrap' }} data-testid="api-key-secret">
            {secret}
          </Code>
          <CopyButton value={secret}>
            {({ copied, copy }) => (
              <Button variant="light" color={copied ? 'teal' : 'blue'} leftSection={<IconCopy size={16} />} onClick={copy}>
                {copied ? 'Copied' : 'Copy'}
              </Button>
            )}
          </CopyButton>
        </Group>
        <Group justify="flex-end">
          <Button onClick={onClose}>I have stored it</Button>
        </Group>
      </Stack>
    );
  }
  return (
    <form onSubmit={submit}>
      <Stack>
        {create.isError && violations.size === 0 && (
          <Alert color="red" variant="light" role="alert">
            {problemOf(create.error).message}
          </Alert>
        )}
        <TextInput
          label="Name"
          name="name"
          description="What uses it, e.g. nightly pipeline"
          required
          data-autofocus
          value={name}
          onChange={(event) => setName(event.currentTarget.value)}
          error={violations.get('name')}
        />
        <Select
          label="Expires"
          data={lifetimes}
          value={lifetime}
          onChange={(value) => value && setLifetime(value)}
          allowDeselect={false}
          error={violations.get('expire_time')}
        />
        <Group justify="flex-end">
          <Button variant="default" onClick={onClose}>
            Cancel
          </Button>
          <Button type="submit" loading={create.isPending}>
            Create key
          </Button>
        </Group>
      </Stack>
    </form>
  );
}
