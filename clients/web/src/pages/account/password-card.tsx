import { useMutation } from '@connectrpc/connect-query';
import { Alert, Button, Card, Group, PasswordInput, Stack, Title } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { type FormEvent, useState } from 'react';
import { AuthService } from '@gen/yardmaster/v1/auth_pb.ts';
import { problemOf } from '../../api/errors.ts';
import { fieldViolations } from '../../ui/field-violations.ts';

/** Changing one's own password: the current one, the new one twice. */
export function PasswordCard() {
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [repeat, setRepeat] = useState('');
  const [mismatch, setMismatch] = useState(false);
  const change = useMutation(AuthService.method.changePassword, {
    onSuccess: (response) => {
      setCurrent('');
      setNext('');
      setRepeat('');
      notifications.show({
        color: 'teal',
        title: 'Password changed',
        message:
          response.revokedSessions > 0
            ? `Signed out of ${response.revokedSessions} other session${response.revokedSessions === 1 ? '' : 's'}.`
            : 'Use it the next time you sign in.',
      });
    },
  });
  const violations = fieldViolations(change.error);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    setMismatch(next !== repeat);
    if (next !== repeat) return;
    change.mutate({ currentPassword: current, newPassword: next });
  };
  // A wrong current password is Unauthenticated or PermissionDenied with no field: show it on that field.
  const otherError = change.isError && violations.size === 0 ? problemOf(change.error).message : undefined;
  return (
    <Card withBorder radius="md" padding="lg">
      <Title order={3} fz={16} mb="md">
        Change password
      </Title>
      <form onSubmit={submit}>
        <Stack gap="sm">
          <PasswordInput
            label="Current password"
            name="current-password"
            autoComplete="current-password"
            required
            value={current}
            onChange={(event) => setCurrent(event.currentTarget.value)}
            error={violations.get('current_password') ?? otherError}
          />
          <PasswordInput
            label="New password"
            name="new-password"
            autoComplete="new-password"
            required
            value={next}
            onChange={(event) => setNext(event.currentTarget.value)}
            error={violations.get('new_password')}
          />
          <PasswordInput
            label="Repeat the new password"
            name="repeat-password"
            autoComplete="new-password"
            required
            value={repeat}
            onChange={(event) => {
              setRepeat(event.currentTarget.value);
              setMismatch(false);
            }}
            error={mismatch ? 'The two new passwords differ' : undefined}
          />
          {change.isSuccess && (
            <Alert color="teal" variant="light">
              Your password is changed.
            </Alert>
          )}
          <Group justify="flex-end">
            <Button type="submit" loading={change.isPending}>
              Change password
            </Button>
          </Group>
        </Stack>
      </form>
    </Card>
  );
}
