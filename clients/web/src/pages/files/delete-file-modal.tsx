import { useMutation } from '@connectrpc/connect-query';
import { Alert, Stack, Text } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { type File as StoredFile, FilesService } from '@gen/yardmaster/v1/files_pb.ts';
import { problemOf } from '../../api/errors.ts';
import { ConfirmActionModal } from '../../ui/confirm-action-modal.tsx';
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
    <ConfirmActionModal
      opened={file !== undefined}
      onClose={close}
      title="Delete file"
      confirmLabel="Delete"
      loading={remove.isPending}
      onConfirm={() => {
        if (!file) return;
        remove.mutate(
          { id: file.id },
          {
            onSuccess: () => {
              notifications.show({ color: 'teal', title: 'File deleted', message: file.name });
              onDeleted();
              close();
            },
          },
        );
      }}
    >
      {file && (
        <Stack gap="sm">
          <Text size="sm">
            Delete <b>{pathOf(file.directory, file.name)}</b> ({formatBytes(file.size)})? Its bytes are removed from storage; this cannot be
            undone.
          </Text>
          {remove.error && (
            <Alert color="red" variant="light" role="alert">
              {problemOf(remove.error).message}
            </Alert>
          )}
        </Stack>
      )}
    </ConfirmActionModal>
  );
}
