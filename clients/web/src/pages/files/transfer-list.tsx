import { ActionIcon, Badge, Button, Card, Group, Progress, Stack, Text, Tooltip } from '@mantine/core';
import { IconX } from '@tabler/icons-react';
import { formatBytes } from '../../ui/format.ts';
import type { TransferRow, TransferState } from './use-transfers.ts';

const stateLabels: Record<TransferState, { label: string; color: string }> = {
  preparing: { label: 'Preparing', color: 'gray' },
  sending: { label: 'Uploading', color: 'blue' },
  completing: { label: 'Checking', color: 'blue' },
  done: { label: 'Done', color: 'teal' },
  failed: { label: 'Failed', color: 'red' },
  cancelled: { label: 'Cancelled', color: 'orange' },
};

const inProgress = (state: TransferState) => state === 'preparing' || state === 'sending' || state === 'completing';

/** Each upload of this visit: a progress bar, what happened, and a way to stop it. */
export function TransferList({ rows, onDismiss }: { rows: TransferRow[]; onDismiss(): void }) {
  if (rows.length === 0) return null;
  const finished = rows.filter((row) => !inProgress(row.state)).length;
  return (
    <Card withBorder padding="md" radius="md" aria-label="Uploads" component="section">
      <Group justify="space-between" mb="xs">
        <Text fw={600} size="sm">
          Uploads
        </Text>
        {finished > 0 && (
          <Button size="compact-xs" variant="subtle" color="gray" onClick={onDismiss}>
            Clear finished
          </Button>
        )}
      </Group>
      <Stack gap="sm">
        {rows.map((row) => {
          const state = stateLabels[row.state];
          const percent = row.size === 0 ? (row.state === 'done' ? 100 : 0) : Math.round((row.loaded / row.size) * 100);
          return (
            <div key={row.key} data-testid="transfer" data-state={row.state}>
              <Group justify="space-between" wrap="nowrap" gap="sm">
                <Text size="sm" truncate="end" title={`${row.directory === '/' ? '' : row.directory}/${row.name}`} style={{ minWidth: 0 }}>
                  {row.name}
                  <Text span size="xs" c="dimmed" ml={6}>
                    to {row.directory}
                  </Text>
                </Text>
                <Group gap="xs" wrap="nowrap">
                  <Text size="xs" c="dimmed" style={{ fontVariantNumeric: 'tabular-nums' }}>
                    {formatBytes(row.loaded)} of {formatBytes(row.size)}
                  </Text>
                  <Badge size="sm" variant="light" color={state.color}>
                    {state.label}
                  </Badge>
                  {inProgress(row.state) ? (
                    <Tooltip label="Cancel upload">
                      <ActionIcon size="sm" variant="subtle" color="gray" aria-label={`Cancel upload of ${row.name}`} onClick={row.abort}>
                        <IconX size={14} />
                      </ActionIcon>
                    </Tooltip>
                  ) : (
                    <div style={{ width: 22 }} />
                  )}
                </Group>
              </Group>
              <Progress
                mt={6}
                size="sm"
                value={percent}
                color={state.color}
                animated={row.state === 'completing'}
                aria-label={`Upload of ${row.name}`}
              />
              {row.error && (
                <Text size="xs" c="red" mt={4} role="alert">
                  {row.error}
                </Text>
              )}
            </div>
          );
        })}
      </Stack>
    </Card>
  );
}
