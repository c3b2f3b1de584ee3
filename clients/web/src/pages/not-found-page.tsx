import { Button, Center, Stack, Text, Title } from '@mantine/core';
import { Link } from 'react-router';

/** A page that does not exist, or that the caller may not see (never told apart). */
export function NotFoundPage({ what = 'page' }: { what?: string }) {
  return (
    <Center py={80}>
      <Stack align="center" gap="xs">
        <Text fz={48} fw={800} c="dimmed">
          404
        </Text>
        <Title order={2} fz={20}>
          No such {what}
        </Title>
        <Text c="dimmed" size="sm">
          It does not exist, or it is not yours to see.
        </Text>
        <Button component={Link} to="/" variant="light" mt="sm">
          Back to the overview
        </Button>
      </Stack>
    </Center>
  );
}
