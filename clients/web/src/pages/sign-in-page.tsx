import { Alert, Box, Button, Center, Group, Paper, PasswordInput, Stack, Text, TextInput, ThemeIcon, Title } from '@mantine/core';
import { IconAlertTriangle, IconBuildingWarehouse } from '@tabler/icons-react';
import { type FormEvent, useState } from 'react';
import { Navigate, useSearchParams } from 'react-router';
import { problemOf } from '../api/errors.ts';
import { useSession } from '../app/session.tsx';

/** Signing in with a username (or e-mail) and password; back to where the visitor was headed. */
export function SignInPage() {
  const session = useSession();
  const [params] = useSearchParams();
  const next = params.get('next')?.startsWith('/') ? params.get('next')! : '/';
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);

  if (session.signedIn) return <Navigate to={next} replace />;

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await session.signIn(username.trim(), password);
    } catch (caught) {
      const problem = problemOf(caught);
      setError(problem.message || 'Sign-in failed.');
    } finally {
      setBusy(false);
    }
  };

  return (
    <Center mih="100vh" bg="var(--mantine-color-gray-light)" p="md">
      <Box w={400} maw="100%">
        <Group gap="sm" justify="center" mb="lg">
          <ThemeIcon size={40} radius="md">
            <IconBuildingWarehouse size={24} />
          </ThemeIcon>
          <Title order={1} fz={26}>
            Yardmaster
          </Title>
        </Group>
        <Paper withBorder shadow="sm" p="xl" radius="lg">
          <form onSubmit={submit}>
            <Stack>
              <div>
                <Title order={2} fz={20}>
                  Sign in
                </Title>
                <Text c="dimmed" size="sm">
                  Jobs, files and queues of your pipelines.
                </Text>
              </div>
              {error && (
                <Alert color="red" variant="light" icon={<IconAlertTriangle size={18} />} role="alert">
                  {error}
                </Alert>
              )}
              <TextInput
                label="Username or e-mail"
                name="username"
                autoComplete="username"
                required
                autoFocus
                value={username}
                onChange={(event) => setUsername(event.currentTarget.value)}
              />
              <PasswordInput
                label="Password"
                name="password"
                autoComplete="current-password"
                required
                value={password}
                onChange={(event) => setPassword(event.currentTarget.value)}
              />
              <Button type="submit" loading={busy} fullWidth mt="xs">
                Sign in
              </Button>
            </Stack>
          </form>
        </Paper>
        <Text c="dimmed" size="xs" ta="center" mt="md">
          The first admin's password is printed by the server at its first start.
        </Text>
      </Box>
    </Center>
  );
}
