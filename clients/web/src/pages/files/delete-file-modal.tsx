import { useMutation } from '@connectrpc/connect-query';
import { Alert, Button, Group, Modal, Stack, Text } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { type File as StoredFile, FilesService } from '@gen/yardmaster/v1/files_pb.ts';
import { problemOf } from '../../api/errors.ts';
import { formatBytes } from '../../ui/format.ts';
import { pathOf } from './file-paths.ts';

/** Asks before DeleteFile: the bytes are gone for good. */
export function DeleteFileModal({ file, onClose, onDeleted }: { file: StoredFile | undefined; onClose(): void; onDeleted(): void }) {
  const remove = useMutation(FilesService.method.deleteFile);
  const close = () => {
    remove.reset();
    onClose();
  };
  return (
    <Modal opened={file !== undefined} onClose={close} title="Delete file" centered>
      {file && (
        <Stack>
          <Text size="sm">
            Delete <b>{pathOf(file.directory, file.name)}</b> ({formatBytes(file.size)})? Its bytes are removed from storage; this cannot be
            undone.
          </Text>
          {remove.error && (
            <Alert color="red" variant="light" role="alert">
              {problemOf(remove.error).message}
            </Alert>
          )}
          <Group justify="flex-end">
            <Button variant="default" onClick={close}>
              Cancel
            </Button>
            <Button
              color="red"
              loading={remove.isPending}
              onClick={() =>
                remove.mutate(
                  { id: file.id },
                  {
                    onSuccess: () => {
                      notifications.show({ color: 'teal', title: 'File deleted', message: file.name });
                      onDeleted();
                      close();
                    },
                  },
                )
              }
            >
              Delete
            </Button>
          </Group>
        </Stack>
      )}
    </Modal>
  );
}
