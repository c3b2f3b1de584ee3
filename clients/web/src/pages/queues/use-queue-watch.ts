import { create } from '@bufbuild/protobuf';
import { createClient } from '@connectrpc/connect';
import { createConnectQueryKey, useTransport } from '@connectrpc/connect-query';
import { useQueryClient } from '@tanstack/react-query';
import { useEffect, useState } from 'react';
import {
  GetQueueStatusResponseSchema,
  ListQueuesResponseSchema,
  QueueService,
  type WatchQueuesResponse,
} from '@gen/yardmaster/v1/queue_pb.ts';

const maxBackoffMs = 15_000;

/**
 * Keeps ListQueues and GetQueueStatus current from the WatchQueues stream: each message
 * replaces what those queries hold, so every component reading them (the table, the
 * banner) follows the stream. A dropped stream is opened again with a growing delay.
 * Returns whether the stream is connected.
 */
export function useQueueWatch(): boolean {
  const transport = useTransport();
  const queryClient = useQueryClient();
  const [live, setLive] = useState(false);

  useEffect(() => {
    const abort = new AbortController();
    const queueClient = createClient(QueueService, transport);
    const apply = (update: WatchQueuesResponse) => {
      queryClient.setQueryData(
        createConnectQueryKey({ schema: QueueService.method.listQueues, input: {}, transport, cardinality: 'finite' }),
        create(ListQueuesResponseSchema, { queues: update.queues }),
      );
      queryClient.setQueryData(
        createConnectQueryKey({ schema: QueueService.method.getQueueStatus, input: {}, transport, cardinality: 'finite' }),
        create(GetQueueStatusResponseSchema, {
          totals: update.totals,
          pausedGlobally: update.pausedGlobally,
          pausedQueues: update.queues.filter((queue) => queue.paused).map((queue) => queue.name),
        }),
      );
    };
    void (async () => {
      let backoffMs = 500;
      while (!abort.signal.aborted) {
        try {
          for await (const update of queueClient.watchQueues({}, { signal: abort.signal })) {
            setLive(true);
            backoffMs = 500;
            apply(update);
          }
        } catch {
          // Dropped (or ended by the server): open it again below, unless the page closed it.
        }
        if (abort.signal.aborted) return;
        setLive(false);
        await new Promise((resolve) => setTimeout(resolve, backoffMs));
        backoffMs = Math.min(backoffMs * 2, maxBackoffMs);
      }
    })();
    return () => abort.abort();
  }, [transport, queryClient]);

  return live;
}
