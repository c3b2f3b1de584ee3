import { Button, Group, Text } from '@mantine/core';
import { IconChevronLeft, IconChevronRight } from '@tabler/icons-react';
import { useState } from 'react';

/**
 * Keyset paging over a list's opaque page tokens: the tokens of the pages seen so far, so
 * that "Previous" goes back without the server knowing offsets. `resetKey` (the filter)
 * starts again at the first page whenever it changes, as AIP-158 requires.
 */
export function usePageTokens(resetKey: string) {
  const [state, setState] = useState({ key: resetKey, tokens: [''] });
  const tokens = state.key === resetKey ? state.tokens : [''];
  return {
    pageToken: tokens[tokens.length - 1]!,
    pageNumber: tokens.length,
    next: (token: string) => setState({ key: resetKey, tokens: [...tokens, token] }),
    previous: () => setState({ key: resetKey, tokens: tokens.slice(0, -1) }),
  };
}

/** "Page 2", with Previous and Next (Next only when the server gave a next token). */
export function TokenPager({ pager, nextPageToken }: { pager: ReturnType<typeof usePageTokens>; nextPageToken: string | undefined }) {
  if (pager.pageNumber === 1 && !nextPageToken) return null;
  return (
    <Group justify="flex-end" gap="sm" mt="md">
      <Text size="sm" c="dimmed">
        Page {pager.pageNumber}
      </Text>
      <Button
        variant="default"
        size="xs"
        leftSection={<IconChevronLeft size={14} />}
        disabled={pager.pageNumber === 1}
        onClick={pager.previous}
      >
        Previous
      </Button>
      <Button
        variant="default"
        size="xs"
        rightSection={<IconChevronRight size={14} />}
        disabled={!nextPageToken}
        onClick={() => nextPageToken && pager.next(nextPageToken)}
      >
        Next
      </Button>
    </Group>
  );
}
