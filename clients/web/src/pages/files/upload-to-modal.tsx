import { Button, Group, Modal, Stack, TextInput } from '@mantine/core';
import { IconCloudUpload } from '@tabler/icons-react';
import { useRef, useState } from 'react';
import { normalizeTypedDirectory } from './file-paths.ts';

/**
 * Uploads into a directory typed by the person: directories exist as long as files are in
 * them, so this is also how a new directory is made.
 */
export function UploadToModal({
  opened,
  directory,
  onClose,
  onFiles,
}: {
  opened: boolean;
  directory: string;
  onClose(): void;
  onFiles(files: File[], directory: string): void;
}) {
  return (
    <Modal opened={opened} onClose={onClose} title="Upload to a directory" centered>
      {opened && <UploadToForm initialDirectory={directory} onClose={onClose} onFiles={onFiles} />}
    </Modal>
  );
}

function UploadToForm({
  initialDirectory,
  onClose,
  onFiles,
}: {
  initialDirectory: string;
  onClose(): void;
  onFiles(files: File[], directory: string): void;
}) {
  const [directory, setDirectory] = useState(initialDirectory === '/' ? '/' : `${initialDirectory}/`);
  const input = useRef<HTMLInputElement>(null);
  return (
    <Stack>
      <TextInput
        label="Directory"
        description="Type a new path to create a directory, e.g. /reports/2026"
        value={directory}
        onChange={(event) => setDirectory(event.currentTarget.value)}
        data-autofocus
      />
      <input
        ref={input}
        type="file"
        multiple
        hidden
        data-testid="upload-to-input"
        onChange={(event) => {
          const files = [...(event.currentTarget.files ?? [])];
          if (files.length === 0) return;
          onFiles(files, normalizeTypedDirectory(directory));
          onClose();
        }}
      />
      <Group justify="flex-end">
        <Button variant="default" onClick={onClose}>
          Cancel
        </Button>
        <Button leftSection={<IconCloudUpload size={16} />} onClick={() => input.current?.click()}>
          Choose files
        </Button>
      </Group>
    </Stack>
  );
}
