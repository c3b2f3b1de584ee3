import { useMutation, useQuery } from '@connectrpc/connect-query';
import {
  ActionIcon,
  Alert,
  Badge,
  Button,
  Card,
  Code,
  CopyButton,
  Group,
  Menu,
  Modal,
  PasswordInput,
  Select,
  Stack,
  Switch,
  Table,
  Text,
  TextInput,
} from '@mantine/core';
import { useDebouncedValue } from '@mantine/hooks';
import { notifications } from '@mantine/notifications';
import { IconDots, IconKey, IconPencil, IconSearch, IconTrash, IconUserPlus } from '@tabler/icons-react';
import { type FormEvent, useState } from 'react';
import { AdminService } from '@gen/yardmaster/v1/admin_pb.ts';
import { Role, type User } from '@gen/yardmaster/v1/common_pb.ts';
import { problemOf } from '../../api/errors.ts';
import { useSession } from '../../app/session.tsx';
import { ConfirmActionModal } from '../../ui/confirm-action-modal.tsx';
import { fieldViolations } from '../../ui/field-violations.ts';
import { formatDateTime, formatRelative } from '../../ui/format.ts';
import { PageHeader } from '../../ui/page-header.tsx';
import { TokenPager, usePageTokens } from '../../ui/page-token-pager.tsx';
import { RequirePermission } from '../../ui/require-permission.tsx';
import { EmptyState, ErrorState, Loading } from '../../ui/states.tsx';

const roleOptions = [
  { value: String(Role.USER), label: 'User' },
  { value: String(Role.ADMIN), label: 'Admin' },
  { value: String(Role.WORKER), label: 'Worker' },
];
const roleNames: Record<number, string> = { [Role.USER]: 'User', [Role.ADMIN]: 'Admin', [Role.WORKER]: 'Worker' };
const roleColors: Record<number, string> = { [Role.USER]: 'gray', [Role.ADMIN]: 'violet', [Role.WORKER]: 'cyan' };

export function UsersPage() {
  return (
    <RequirePermission method="yardmaster.v1.AdminService.ListUsers">
      <Users />
    </RequirePermission>
  );
}

type Dialog = { kind: 'create' } | { kind: 'edit' | 'reset' | 'delete'; user: User } | undefined;

/** The accounts: find them, create them, change their role or state, reset passwords, delete them. */
function Users() {
  const session = useSession();
  const [search, setSearch] = useState('');
  const [query] = useDebouncedValue(search.trim(), 300);
  const [role, setRole] = useState<string | null>(null);
  const pager = usePageTokens(`${query}|${role}`);
  const users = useQuery(AdminService.method.listUsers, {
    query,
    role: role ? (Number(role) as Role) : Role.UNSPECIFIED,
    pageSize: 25,
    pageToken: pager.pageToken,
    orderBy: 'username',
  });
  const [dialog, setDialog] = useState<Dialog>();
  const close = () => setDialog(undefined);

  return (
    <>
      <PageHeader
        title="Users"
        description="Accounts of people and service workers, and what each may do."
        actions={
          <Button leftSection={<IconUserPlus size={16} />} onClick={() => setDialog({ kind: 'create' })}>
            New user
          </Button>
        }
      />
      <Group mb="md" gap="sm">
        <TextInput
          placeholder="Search by username or e-mail"
          leftSection={<IconSearch size={16} />}
          value={search}
          onChange={(event) => setSearch(event.currentTarget.value)}
          w={320}
          aria-label="Search users"
        />
        <Select placeholder="Every role" data={roleOptions} value={role} onChange={setRole} clearable w={160} aria-label="Role" />
      </Group>
      {users.isPending ? (
        <Loading />
      ) : users.isError ? (
        <ErrorState error={users.error} onRetry={() => void users.refetch()} />
      ) : users.data.users.length === 0 ? (
        <EmptyState title="No matching accounts">{query || role ? 'Try another search or role.' : 'Create the first account.'}</EmptyState>
      ) : (
        <Card withBorder padding={0} radius="md">
          <Table.ScrollContainer minWidth={860}>
            <Table verticalSpacing="sm" highlightOnHover>
              <Table.Thead>
                <Table.Tr>
                  <Table.Th>Username</Table.Th>
                  <Table.Th>E-mail</Table.Th>
                  <Table.Th>Role</Table.Th>
                  <Table.Th>State</Table.Th>
                  <Table.Th>Created</Table.Th>
                  <Table.Th>Last sign-in</Table.Th>
                  <Table.Th w={60} />
                </Table.Tr>
              </Table.Thead>
              <Table.Tbody>
                {users.data.users.map((user) => (
                  <Table.Tr key={user.id} data-testid={`user-${user.username}`}>
                    <Table.Td>
                      <Text size="sm" fw={600}>
                        {user.username}
                        {user.id === session.user?.id && (
                          <Text span c="dimmed" fw={400} size="xs">
                            {' '}
                            (you)
                          </Text>
                        )}
                      </Text>
                    </Table.Td>
                    <Table.Td>
                      <Text size="sm">{user.email}</Text>
                    </Table.Td>
                    <Table.Td>
                      <Badge color={roleColors[user.role] ?? 'gray'} variant="light">
                        {roleNames[user.role] ?? 'Unknown'}
                      </Badge>
                    </Table.Td>
                    <Table.Td>
                      <Badge color={user.active ? 'teal' : 'red'} variant="dot">
                        {user.active ? 'Active' : 'Deactivated'}
                      </Badge>
                    </Table.Td>
                    <Table.Td>
                      <Text size="sm" title={formatDateTime(user.createTime)}>
                        {formatRelative(user.createTime)}
                      </Text>
                    </Table.Td>
                    <Table.Td>
                      <Text size="sm" c={user.lastLoginTime ? undefined : 'dimmed'} title={formatDateTime(user.lastLoginTime)}>
                        {user.lastLoginTime ? formatRelative(user.lastLoginTime) : 'Never'}
                      </Text>
                    </Table.Td>
                    <Table.Td>
                      <Menu position="bottom-end" shadow="md" width={200}>
                        <Menu.Target>
                          <ActionIcon variant="subtle" color="gray" aria-label={`Actions for ${user.username}`}>
                            <IconDots size={18} />
                          </ActionIcon>
                        </Menu.Target>
                        <Menu.Dropdown>
                          <Menu.Item leftSection={<IconPencil size={16} />} onClick={() => setDialog({ kind: 'edit', user })}>
                            Edit role and state
                          </Menu.Item>
                          <Menu.Item leftSection={<IconKey size={16} />} onClick={() => setDialog({ kind: 'reset', user })}>
                            Reset password
                          </Menu.Item>
                          <Menu.Divider />
                          <Menu.Item color="red" leftSection={<IconTrash size={16} />} onClick={() => setDialog({ kind: 'delete', user })}>
                            Delete
                          </Menu.Item>
                        </Menu.Dropdown>
                      </Menu>
                    </Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          </Table.ScrollContainer>
        </Card>
      )}
      <TokenPager pager={pager} nextPageToken={users.data?.nextPageToken} />
      <CreateUserModal opened={dialog?.kind === 'create'} onClose={close} onDone={() => void users.refetch()} />
      <EditUserModal user={dialog?.kind === 'edit' ? dialog.user : undefined} onClose={close} onDone={() => void users.refetch()} />
      <ResetPasswordModal user={dialog?.kind === 'reset' ? dialog.user : undefined} onClose={close} />
      <DeleteUser user={dialog?.kind === 'delete' ? dialog.user : undefined} onClose={close} onDone={() => void users.refetch()} />
    </>
  );
}

function CreateUserModal({ opened, onClose, onDone }: { opened: boolean; onClose(): void; onDone(): void }) {
  return (
    <Modal opened={opened} onClose={onClose} title={<Text fw={700}>New user</Text>} centered>
      <CreateUserForm onClose={onClose} onDone={onDone} />
    </Modal>
  );
}

function CreateUserForm({ onClose, onDone }: { onClose(): void; onDone(): void }) {
  const [username, setUsername] = useState('');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [role, setRole] = useState(String(Role.USER));
  const create = useMutation(AdminService.method.createUser, {
    onSuccess: (response) => {
      notifications.show({ color: 'teal', title: 'Account created', message: `${response.user?.username} can sign in now.` });
      onDone();
      onClose();
    },
  });
  const violations = fieldViolations(create.error);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    create.mutate({ username: username.trim(), email: email.trim(), password, role: Number(role) as Role });
  };
  return (
    <form onSubmit={submit}>
      <Stack>
        {create.isError && violations.size === 0 && (
          <Alert color="red" variant="light" role="alert">
            {problemOf(create.error).message}
          </Alert>
        )}
        <TextInput
          label="Username"
          name="username"
          description="3 to 64 characters: a-z, 0-9, '.', '_' and '-'"
          required
          data-autofocus
          value={username}
          onChange={(event) => setUsername(event.currentTarget.value)}
          error={violations.get('username')}
        />
        <TextInput
          label="E-mail"
          name="email"
          type="email"
          required
          value={email}
          onChange={(event) => setEmail(event.currentTarget.value)}
          error={violations.get('email')}
        />
        <PasswordInput
          label="Initial password"
          name="password"
          autoComplete="new-password"
          required
          value={password}
          onChange={(event) => setPassword(event.currentTarget.value)}
          error={violations.get('password')}
        />
        <Select
          label="Role"
          name="role"
          data={roleOptions}
          value={role}
          onChange={(value) => value && setRole(value)}
          allowDeselect={false}
          error={violations.get('role')}
        />
        <Group justify="flex-end">
          <Button variant="default" onClick={onClose}>
            Cancel
          </Button>
          <Button type="submit" loading={create.isPending}>
            Create user
          </Button>
        </Group>
      </Stack>
    </form>
  );
}

function EditUserModal({ user, onClose, onDone }: { user: User | undefined; onClose(): void; onDone(): void }) {
  return (
    <Modal opened={user !== undefined} onClose={onClose} title={<Text fw={700}>Edit {user?.username}</Text>} centered>
      {user && <EditUserForm user={user} onClose={onClose} onDone={onDone} />}
    </Modal>
  );
}

function EditUserForm({ user, onClose, onDone }: { user: User; onClose(): void; onDone(): void }) {
  const [email, setEmail] = useState(user.email);
  const [role, setRole] = useState(String(user.role));
  const [active, setActive] = useState(user.active);
  const update = useMutation(AdminService.method.updateUser, {
    onSuccess: () => {
      notifications.show({ color: 'teal', title: 'Account saved', message: `${user.username} is updated.` });
      onDone();
      onClose();
    },
  });
  const violations = fieldViolations(update.error);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const paths = [
      ...(email.trim() !== user.email ? ['email'] : []),
      ...(Number(role) !== user.role ? ['role'] : []),
      ...(active !== user.active ? ['active'] : []),
    ];
    if (paths.length === 0) return onClose();
    update.mutate({
      user: { id: user.id, email: email.trim(), role: Number(role) as Role, active },
      updateMask: { paths },
    });
  };
  return (
    <form onSubmit={submit}>
      <Stack>
        {update.isError && violations.size === 0 && (
          <Alert color="red" variant="light" role="alert">
            {problemOf(update.error).message}
          </Alert>
        )}
        <TextInput
          label="E-mail"
          name="email"
          type="email"
          value={email}
          onChange={(event) => setEmail(event.currentTarget.value)}
          error={violations.get('user.email')}
        />
        <Select
          label="Role"
          name="role"
          data={roleOptions}
          value={role}
          onChange={(value) => value && setRole(value)}
          allowDeselect={false}
          error={violations.get('user.role')}
        />
        <Switch
          label="Active"
          description="A deactivated account cannot sign in; its sessions end and its API keys stop working."
          checked={active}
          onChange={(event) => setActive(event.currentTarget.checked)}
        />
        <Group justify="flex-end">
          <Button variant="default" onClick={onClose}>
            Cancel
          </Button>
          <Button type="submit" loading={update.isPending}>
            Save
          </Button>
        </Group>
      </Stack>
    </form>
  );
}

function ResetPasswordModal({ user, onClose }: { user: User | undefined; onClose(): void }) {
  return (
    <Modal opened={user !== undefined} onClose={onClose} title={<Text fw={700}>Reset the password of {user?.username}</Text>} centered>
      {user && <ResetPasswordForm user={user} onClose={onClose} />}
    </Modal>
  );
}

function ResetPasswordForm({ user, onClose }: { user: User; onClose(): void }) {
  const [password, setPassword] = useState('');
  const reset = useMutation(AdminService.method.resetUserPassword, {
    onSuccess: (response) => {
      notifications.show({ color: 'teal', title: 'Password reset', message: `${user.username}'s sessions and API keys were ended.` });
      if (!response.generatedPassword) onClose();
    },
  });
  const violations = fieldViolations(reset.error);
  if (reset.data?.generatedPassword) {
    return (
      <Stack>
        <Alert color="yellow" variant="light" title="Shown only this once">
          Give this password to {user.username} over a safe channel; it cannot be shown again.
        </Alert>
        <Group gap="sm" wrap="nowrap">
          <Code fz="md" p="xs" style={{ flex: 1 }} data-testid="generated-password">
            {reset.data.generatedPassword}
          </Code>
          <CopyButton value={reset.data.generatedPassword}>
            {({ copied, copy }) => (
              <Button variant="light" color={copied ? 'teal' : 'blue'} onClick={copy}>
                {copied ? 'Copied' : 'Copy'}
              </Button>
            )}
          </CopyButton>
        </Group>
        <Group justify="flex-end">
          <Button onClick={onClose}>Done</Button>
        </Group>
      </Stack>
    );
  }
  return (
    <form
      onSubmit={(event) => {
        event.preventDefault();
        reset.mutate({ id: user.id, newPassword: password });
      }}
    >
      <Stack>
        <Text size="sm" c="dimmed">
          Every session and API key of {user.username} ends. Leave the field empty to have a password generated.
        </Text>
        {reset.isError && violations.size === 0 && (
          <Alert color="red" variant="light" role="alert">
            {problemOf(reset.error).message}
          </Alert>
        )}
        <PasswordInput
          label="New password"
          name="new-password"
          autoComplete="new-password"
          placeholder="Generate one"
          value={password}
          onChange={(event) => setPassword(event.currentTarget.value)}
          error={violations.get('new_password')}
        />
        <Group justify="flex-end">
          <Button variant="default" onClick={onClose}>
            Cancel
          </Button>
          <Button type="submit" color="orange" loading={reset.isPending}>
            Reset password
          </Button>
        </Group>
      </Stack>
    </form>
  );
}

function DeleteUser({ user, onClose, onDone }: { user: User | undefined; onClose(): void; onDone(): void }) {
  const remove = useMutation(AdminService.method.deleteUser, {
    onSuccess: (_, request) => {
      notifications.show({
        color: 'teal',
        title: 'Account deleted',
        message: `${request.confirm} is gone, with its sessions and API keys.`,
      });
      onDone();
      onClose();
    },
    onError: (error) => notifications.show({ color: 'red', title: 'Could not delete', message: problemOf(error).message }),
  });
  return (
    <ConfirmActionModal
      opened={user !== undefined}
      onClose={onClose}
      title={`Delete ${user?.username ?? ''}`}
      confirmLabel="Delete account"
      typeToConfirm={user?.username}
      loading={remove.isPending}
      onConfirm={() => user && remove.mutate({ id: user.id, confirm: user.username })}
    >
      <Text size="sm">The account, its sessions and its API keys are deleted. Its jobs and files stay. This cannot be undone.</Text>
    </ConfirmActionModal>
  );
}
