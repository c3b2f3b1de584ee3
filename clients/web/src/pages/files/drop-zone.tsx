import { Button, Group, Paper, Stack, Text, ThemeIcon } from '@mantine/core';
import { IconCloudUpload } from '@tabler/icons-react';
import { type DragEvent, useRef, useState } from 'react';

/**
 * Where files are dropped to be uploaded into `directory`, with a button opening the file
 * picker for those who do not drag (keyboard, screen readers). `large` for an empty directory.
 */
export function DropZone({ directory, large, onFiles }: { directory: string; large?: boolean; onFiles(files: File[]): void }) {
  const input = useRef<HTMLInputElement>(null);
  const [over, setOver] = useState(false);

  const accepts = (event: DragEvent) => event.dataTransfer.types.includes('Files');
  const onDragOver = (event: DragEvent) => {
    if (!accepts(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = 'copy';
    setOver(true);
  };
  const onDrop = (event: DragEvent) => {
    event.preventDefault();
    setOver(false);
    const files = [...event.dataTransfer.files];
    if (files.length > 0) onFiles(files);
  };

  return (
    <Paper
      data-testid="drop-zone"
      aria-label={`Drop files here to upload them to ${directory}`}
      role="region"
      withBorder
      radius="md"
      p={large ? 'xl' : 'md'}
      onDragOver={onDragOver}
      onDragEnter={onDragOver}
      onDragLeave={() => setOver(false)}
      onDrop={onDrop}
      style={{
        borderStyle: 'dashed',
        borderWidth: 2,
        borderColor: over ? 'var(--mantine-color-blue-5)' : undefined,
        background: over ? 'var(--mantine-color-blue-light)' : undefined,
        transition: 'background 120ms, border-color 120ms',
      }}
    >
      <input
        ref={input}
        type="file"
        multiple
        hidden
        data-testid="file-input"
        onChange={(event) => {
          const files = [...(event.currentTarget.files ?? [])];
          // The same file may be chosen again later.
          event.currentTarget.value = '';
          if (files.length > 0) onFiles(files);
        }}
      />
      {large ? (
        <Stack align="center" gap="xs" py="lg">
          <ThemeIcon size={52} radius="xl" variant="light">
            <IconCloudUpload size={28} />
          </ThemeIcon>
          <Text fw={600}>This directory is empty</Text>
          <Text size="sm" c="dimmed" ta="center">
            Drop files here to upload them to <b>{directory}</b>, or choose them.
          </Text>
          <Button mt="xs" leftSection={<IconCloudUpload size={16} />} onClick={() => input.current?.click()}>
            Choose files
          </Button>
        </Stack>
      ) : (
        <Group justify="space-between" wrap="nowrap">
          <Group gap="sm" wrap="nowrap">
            <IconCloudUpload size={22} color="var(--mantine-color-dimmed)" />
            <Text size="sm" c="dimmed">
              {over ? 'Release to upload' : 'Drop files here to upload them to this directory'}
            </Text>
          </Group>
          <Button size="xs" variant="light" onClick={() => input.current?.click()}>
            Choose files
          </Button>
        </Group>
      )}
    </Paper>
  );
}
