import { useMutation } from '@connectrpc/connect-query';
import { Button, Group, Modal, Stack, TextInput } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useState } from 'react';
import { type File as StoredFile, FilesService } from '@gen/yardmaster/v1/files_pb.ts';
import { problemOf } from '../../api/errors.ts';
import { normalizeTypedDirectory, pathOf } from './file-paths.ts';

/** Moves and/or renames a file (MoveFile); the form is shown for `file`, closed when undefined. */
export function MoveFileModal({ file, onClose, onMoved }: { file: StoredFile | undefined; onClose(): void; onMoved(): void }) {
  return (
    <Modal opened={file !== undefined} onClose={onClose} title="Move or rename" centered>
      {/* Keyed by file, so each opening starts from that file's place and name. */}
      {file && <MoveFileForm key={file.id} file={file} onClose={onClose} onMoved={onMoved} />}
    </Modal>
  );
}

function MoveFileForm({ file, onClose, onMoved }: { file: StoredFile; onClose(): void; onMoved(): void }) {
  const [directory, setDirectory] = useState(file.directory);
  const [name, setName] = useState(file.name);
  const move = useMutation(FilesService.method.moveFile);
  const problem = move.error ? problemOf(move.error) : undefined;
  const fieldError = (field: string) => problem?.fields.find((violation) => violation.field === field)?.description;

  return (
    <form
      onSubmit={(event) => {
        event.preventDefault();
        move.mutate(
          { id: file.id, directory: normalizeTypedDirectory(directory), name: name.trim() },
          {
            onSuccess: ({ file: moved }) => {
              notifications.show({ color: 'teal', title: 'File moved', message: moved ? pathOf(moved.directory, moved.name) : name });
              onMoved();
              onClose();
            },
          },
        );
      }}
    >
      <Stack>
        <TextInput
          label="Directory"
          description="A path such as /reports/2026; it is created if it does not exist"
          value={directory}
          onChange={(event) => setDirectory(event.currentTarget.value)}
          error={fieldError('directory')}
          data-autofocus
        />
        <TextInput
          label="Name"
          value={name}
          onChange={(event) => setName(event.currentTarget.value)}
          error={fieldError('name') ?? (problem && problem.fields.length === 0 ? problem.message : undefined)}
          required
        />
        <Group justify="flex-end">
          <Button variant="default" onClick={onClose}>
            Cancel
          </Button>
          <Button type="submit" loading={move.isPending} disabled={name.trim() === ''}>
            Move
          </Button>
        </Group>
      </Stack>
    </form>
  );
}
