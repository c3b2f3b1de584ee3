import { createConnectQueryKey } from '@connectrpc/connect-query';
import { useQueryClient } from '@tanstack/react-query';
import { useCallback, useState } from 'react';
import { FilesService } from '@gen/yardmaster/v1/files_pb.ts';
import { problemOf } from '../../api/errors.ts';
import { isCancelled, startUpload, type UploadPhase } from '../../api/uploads.ts';

export type TransferState = UploadPhase | 'done' | 'failed' | 'cancelled';

export interface TransferRow {
  key: string;
  name: string;
  directory: string;
  size: number;
  loaded: number;
  state: TransferState;
  error: string | undefined;
  abort(): void;
}

/** The uploads started on the files page, with their progress; the file list is refreshed as each ends. */
export function useTransfers() {
  const queryClient = useQueryClient();
  const [rows, setRows] = useState<TransferRow[]>([]);

  const refreshFiles = useCallback(
    () => queryClient.invalidateQueries({ queryKey: createConnectQueryKey({ schema: FilesService, cardinality: undefined }) }),
    [queryClient],
  );

  const update = useCallback((key: string, change: Partial<TransferRow>) => {
    setRows((current) => current.map((row) => (row.key === key ? { ...row, ...change } : row)));
  }, []);

  const upload = useCallback(
    (files: File[], directory: string) => {
      for (const file of files) {
        const key = crypto.randomUUID();
        const transfer = startUpload(file, directory, {
          onPhase: (state) => {
            update(key, { state });
            // Storage is receiving the bytes: the file is listed (UPLOADING) and counts in the usage.
            if (state === 'sending') void refreshFiles();
          },
          onProgress: ({ loaded }) => update(key, { loaded }),
        });
        setRows((current) => [
          ...current,
          { key, name: file.name, directory, size: file.size, loaded: 0, state: 'preparing', error: undefined, abort: transfer.abort },
        ]);
        transfer.done.then(
          () => update(key, { state: 'done', loaded: file.size }),
          (error: unknown) => {
            if (isCancelled(error)) update(key, { state: 'cancelled' });
            else update(key, { state: 'failed', error: problemOf(error).message });
          },
        );
        // Whatever the outcome, the listing and the usage have changed (or a reservation is gone).
        void transfer.done.catch(() => undefined).then(refreshFiles);
      }
    },
    [refreshFiles, update],
  );

  const dismissFinished = useCallback(() => {
    setRows((current) => current.filter((row) => !['done', 'failed', 'cancelled'].includes(row.state)));
  }, []);

  return { rows, upload, dismissFinished };
}
