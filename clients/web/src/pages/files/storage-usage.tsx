import { useQuery } from '@connectrpc/connect-query';
import { Card, Group, Progress, Skeleton, Text } from '@mantine/core';
import { FilesService } from '@gen/yardmaster/v1/files_pb.ts';
import { formatBytes } from '../../ui/format.ts';

/** The caller's storage against their quota (GetStorageUsage). */
export function StorageUsage() {
  const usage = useQuery(FilesService.method.getStorageUsage, {});
  if (usage.isPending) return <Skeleton h={74} radius="md" />;
  // Usage is a side note of the page: a failure shows as a line, not as the page's error.
  if (usage.isError) {
    return (
      <Card withBorder padding="md" radius="md">
        <Text size="sm" c="red">
          Storage usage is unavailable: {usage.error.rawMessage}
        </Text>
      </Card>
    );
  }
  const { bytes, fileCount, quotaBytes, uploadingBytes } = usage.data;
  const used = bytes + uploadingBytes;
  const percent = quotaBytes > 0n ? Math.min(100, (Number(used) / Number(quotaBytes)) * 100) : 0;
  const files = `${fileCount.toLocaleString()} file${fileCount === 1n ? '' : 's'}`;
  return (
    <Card withBorder padding="md" radius="md" data-testid="storage-usage">
      <Group justify="space-between" mb={quotaBytes > 0n ? 8 : 0}>
        <Text size="sm" fw={600}>
          {quotaBytes > 0n ? `${formatBytes(used)} of ${formatBytes(quotaBytes)} used` : `${formatBytes(used)} used · no quota`}
        </Text>
        <Text size="xs" c="dimmed">
          {files}
          {uploadingBytes > 0n ? ` · ${formatBytes(uploadingBytes)} uploading` : ''}
        </Text>
      </Group>
      {quotaBytes > 0n && (
        <Progress
          value={percent}
          color={percent >= 90 ? 'red' : percent >= 75 ? 'yellow' : 'blue'}
          size="md"
          aria-label="Storage used of the quota"
        />
      )}
    </Card>
  );
}
