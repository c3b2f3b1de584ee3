import { createConnectQueryKey, useInfiniteQuery, useMutation } from '@connectrpc/connect-query';
import {
  ActionIcon,
  Anchor,
  Badge,
  Breadcrumbs,
  Button,
  Card,
  Group,
  Menu,
  SimpleGrid,
  Stack,
  Table,
  Text,
  Tooltip,
  VisuallyHidden,
} from '@mantine/core';
import { notifications } from '@mantine/notifications';
import {
  IconDots,
  IconDownload,
  IconFile,
  IconFileTypePdf,
  IconFileZip,
  IconFolder,
  IconFolderPlus,
  IconPencil,
  IconPhoto,
  IconTrash,
} from '@tabler/icons-react';
import { useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { Link, useNavigate, useParams } from 'react-router';
import { type File as StoredFile, FileStatus, FilesService } from '@gen/yardmaster/v1/files_pb.ts';
import { problemOf } from '../../api/errors.ts';
import { formatBytes, formatDateTime, formatRelative } from '../../ui/format.ts';
import { PageHeader } from '../../ui/page-header.tsx';
import { ErrorState, Loading } from '../../ui/states.tsx';
import { DeleteFileModal } from './delete-file-modal.tsx';
import { DropZone } from './drop-zone.tsx';
import { baseName, breadcrumbsOf, directoryOfSplat, filesUrl } from './file-paths.ts';
import { MoveFileModal } from './move-file-modal.tsx';
import { StorageUsage } from './storage-usage.tsx';
import { TransferList } from './transfer-list.tsx';
import { UploadToModal } from './upload-to-modal.tsx';
import { useTransfers } from './use-transfers.ts';

const pageSize = 50;

const statusBadges: Record<number, { label: string; color: string }> = {
  [FileStatus.UPLOADING]: { label: 'Uploading', color: 'blue' },
  [FileStatus.AVAILABLE]: { label: 'Available', color: 'teal' },
  [FileStatus.FAILED]: { label: 'Failed', color: 'red' },
};

function FileIcon({ contentType }: { contentType: string }) {
  const props = { size: 18, stroke: 1.6, color: 'var(--mantine-color-dimmed)' };
  if (contentType.startsWith('image/')) return <IconPhoto {...props} />;
  if (contentType === 'application/pdf') return <IconFileTypePdf {...props} />;
  if (/zip|gzip|x-tar|compressed/.test(contentType)) return <IconFileZip {...props} />;
  return <IconFile {...props} />;
}

/** The caller's files, one directory at a time (`/files/<directory>`), with uploads straight to storage. */
export function FilesPage() {
  const { '*': splat } = useParams();
  const directory = directoryOfSplat(splat);
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const transfers = useTransfers();
  const [moving, setMoving] = useState<StoredFile>();
  const [deleting, setDeleting] = useState<StoredFile>();
  const [uploadToOpen, setUploadToOpen] = useState(false);

  const listing = useInfiniteQuery(
    FilesService.method.listFiles,
    { directory, pageSize, pageToken: '' },
    { pageParamKey: 'pageToken', getNextPageParam: (page) => page.nextPageToken || undefined },
  );
  const download = useMutation(FilesService.method.getDownloadUrl);

  const refresh = () =>
    queryClient.invalidateQueries({ queryKey: createConnectQueryKey({ schema: FilesService, cardinality: undefined }) });
  const uploadHere = (files: File[]) => transfers.upload(files, directory);

  const startDownload = (file: StoredFile) =>
    download.mutate(
      { id: file.id },
      {
        // The URL answers with the file as an attachment: the page stays where it is.
        onSuccess: ({ url }) => window.location.assign(url),
        onError: (error) =>
          notifications.show({ color: 'red', title: `Could not download ${file.name}`, message: problemOf(error).message }),
      },
    );

  const directories = listing.data?.pages[0]?.directories ?? [];
  const files = listing.data?.pages.flatMap((page) => page.files) ?? [];
  const empty = listing.isSuccess && directories.length === 0 && files.length === 0;

  return (
    <>
      <PageHeader
        title="Files"
        description="Your files, uploaded from this browser straight to storage."
        actions={
          <Button variant="default" leftSection={<IconFolderPlus size={16} />} onClick={() => setUploadToOpen(true)}>
            Upload to…
          </Button>
        }
      />
      <Stack gap="md">
        <nav aria-label="Directory">
          <Breadcrumbs separatorMargin={6}>
            {breadcrumbsOf(directory).map((crumb, index, all) =>
              index === all.length - 1 ? (
                <Text key={crumb.directory} fw={600} size="sm" aria-current="page">
                  {crumb.name}
                </Text>
              ) : (
                <Anchor key={crumb.directory} component={Link} to={filesUrl(crumb.directory)} size="sm">
                  {crumb.name}
                </Anchor>
              ),
            )}
          </Breadcrumbs>
        </nav>
        <SimpleGrid cols={{ base: 1, md: empty ? 1 : 2 }}>
          <StorageUsage />
          {!empty && <DropZone directory={directory} onFiles={uploadHere} />}
        </SimpleGrid>
        <TransferList rows={transfers.rows} onDismiss={transfers.dismissFinished} />
        {listing.isPending ? (
          <Loading label="Loading files…" />
        ) : listing.isError ? (
          <ErrorState error={listing.error} onRetry={() => void listing.refetch()} />
        ) : empty ? (
          <DropZone directory={directory} large onFiles={uploadHere} />
        ) : (
          <Card withBorder padding={0} radius="md">
            <Table.ScrollContainer minWidth={760} type="native">
              <Table highlightOnHover verticalSpacing="xs" horizontalSpacing="md" aria-label={`Contents of ${directory}`}>
                <Table.Thead>
                  <Table.Tr>
                    <Table.Th>Name</Table.Th>
                    <Table.Th ta="right" w={110}>
                      Size
                    </Table.Th>
                    <Table.Th w={200}>Type</Table.Th>
                    <Table.Th w={120}>Status</Table.Th>
                    <Table.Th w={150}>Modified</Table.Th>
                    <Table.Th w={52}>
                      <VisuallyHidden>Actions</VisuallyHidden>
                    </Table.Th>
                  </Table.Tr>
                </Table.Thead>
                <Table.Tbody>
                  {directories.map((child) => (
                    <Table.Tr key={child} data-testid="directory-row">
                      <Table.Td>
                        <Group gap="sm" wrap="nowrap">
                          <IconFolder size={18} stroke={1.6} color="var(--mantine-color-blue-6)" />
                          <Anchor component={Link} to={filesUrl(child)} size="sm" fw={500}>
                            {baseName(child)}
                          </Anchor>
                        </Group>
                      </Table.Td>
                      <Table.Td ta="right" c="dimmed">
                        –
                      </Table.Td>
                      <Table.Td c="dimmed">
                        <Text size="sm">Directory</Text>
                      </Table.Td>
                      <Table.Td />
                      <Table.Td />
                      <Table.Td />
                    </Table.Tr>
                  ))}
                  {files.map((file) => {
                    const status = statusBadges[file.status] ?? { label: 'Unknown', color: 'gray' };
                    return (
                      <Table.Tr key={file.id} data-testid="file-row" data-name={file.name}>
                        <Table.Td>
                          <Group gap="sm" wrap="nowrap">
                            <FileIcon contentType={file.contentType} />
                            <Text size="sm" truncate="end" title={file.name} maw={420}>
                              {file.name}
                            </Text>
                          </Group>
                        </Table.Td>
                        <Table.Td ta="right" style={{ fontVariantNumeric: 'tabular-nums' }}>
                          <Text size="sm" title={`${file.size.toLocaleString()} bytes`}>
                            {formatBytes(file.size)}
                          </Text>
                        </Table.Td>
                        <Table.Td>
                          <Text size="sm" c="dimmed" truncate="end" title={file.contentType} maw={190}>
                            {file.contentType || '–'}
                          </Text>
                        </Table.Td>
                        <Table.Td>
                          <Badge variant="light" color={status.color} size="sm">
                            {status.label}
                          </Badge>
                        </Table.Td>
                        <Table.Td>
                          <Tooltip label={formatDateTime(file.updateTime)} openDelay={300}>
                            <Text size="sm" c="dimmed">
                              {formatRelative(file.updateTime)}
                            </Text>
                          </Tooltip>
                        </Table.Td>
                        <Table.Td>
                          <Menu position="bottom-end" width={190} shadow="md">
                            <Menu.Target>
                              <ActionIcon variant="subtle" color="gray" aria-label={`Actions for ${file.name}`}>
                                <IconDots size={16} />
                              </ActionIcon>
                            </Menu.Target>
                            <Menu.Dropdown>
                              <Menu.Item
                                leftSection={<IconDownload size={16} />}
                                disabled={file.status !== FileStatus.AVAILABLE}
                                onClick={() => startDownload(file)}
                              >
                                Download
                              </Menu.Item>
                              <Menu.Item leftSection={<IconPencil size={16} />} onClick={() => setMoving(file)}>
                                Move or rename
                              </Menu.Item>
                              <Menu.Divider />
                              <Menu.Item color="red" leftSection={<IconTrash size={16} />} onClick={() => setDeleting(file)}>
                                Delete
                              </Menu.Item>
                            </Menu.Dropdown>
                          </Menu>
                        </Table.Td>
                      </Table.Tr>
                    );
                  })}
                </Table.Tbody>
              </Table>
            </Table.ScrollContainer>
            <Group justify="space-between" px="md" py="xs" style={{ borderTop: '1px solid var(--mantine-color-default-border)' }}>
              <Text size="xs" c="dimmed">
                {directories.length > 0 && `${directories.length} director${directories.length === 1 ? 'y' : 'ies'}, `}
                {files.length} file{files.length === 1 ? '' : 's'}
                {listing.hasNextPage ? ' shown' : ''}
              </Text>
              {listing.hasNextPage && (
                <Button size="xs" variant="light" loading={listing.isFetchingNextPage} onClick={() => void listing.fetchNextPage()}>
                  Load more
                </Button>
              )}
            </Group>
          </Card>
        )}
      </Stack>
      <MoveFileModal file={moving} onClose={() => setMoving(undefined)} onMoved={() => void refresh()} />
      <DeleteFileModal file={deleting} onClose={() => setDeleting(undefined)} onDeleted={() => void refresh()} />
      <UploadToModal
        opened={uploadToOpen}
        directory={directory}
        onClose={() => setUploadToOpen(false)}
        onFiles={(chosen, target) => {
          transfers.upload(chosen, target);
          if (target !== directory) navigate(filesUrl(target));
        }}
      />
    </>
  );
}
