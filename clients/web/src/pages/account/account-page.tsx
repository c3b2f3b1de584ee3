import { Badge, Card, Group, SimpleGrid, Stack, Text, Title } from '@mantine/core';
import { Role } from '@gen/yardmaster/v1/common_pb.ts';
import { useSession } from '../../app/session.tsx';
import { formatDateTime } from '../../ui/format.ts';
import { PageHeader } from '../../ui/page-header.tsx';
import { Loading } from '../../ui/states.tsx';
import { ApiKeysCard } from './api-keys-card.tsx';
import { PasswordCard } from './password-card.tsx';
import { SessionsCard } from './sessions-card.tsx';

const roleNames: Record<number, string> = { [Role.USER]: 'User', [Role.ADMIN]: 'Admin', [Role.WORKER]: 'Worker' };

/** The signed-in account: who it is, its password, its API keys and where it is signed in. */
export function AccountPage() {
  const { user } = useSession();
  if (!user) return <Loading />;
  const facts: [string, string][] = [
    ['E-mail', user.email],
    ['Member since', formatDateTime(user.createTime)],
    ['Last sign-in', formatDateTime(user.lastLoginTime)],
  ];
  return (
    <>
      <PageHeader title="Account and security" description="Your account, password, API keys and signed-in devices." />
      <Stack gap="lg">
        <SimpleGrid cols={{ base: 1, md: 2 }}>
          <Card withBorder radius="md" padding="lg">
            <Group gap="sm" mb="md">
              <Title order={3} fz={16}>
                {user.username}
              </Title>
              <Badge variant="light" color={user.role === Role.ADMIN ? 'violet' : 'gray'}>
                {roleNames[user.role] ?? 'Unknown'}
              </Badge>
            </Group>
            <Stack gap="xs">
              {facts.map(([label, value]) => (
                <Group key={label} gap="md" wrap="nowrap">
                  <Text size="sm" c="dimmed" w={120}>
                    {label}
                  </Text>
                  <Text size="sm">{value}</Text>
                </Group>
              ))}
            </Stack>
          </Card>
          <PasswordCard />
        </SimpleGrid>
        <ApiKeysCard />
        <SessionsCard />
      </Stack>
    </>
  );
}
