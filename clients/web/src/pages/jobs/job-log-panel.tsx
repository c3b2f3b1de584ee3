import { timestampDate } from '@bufbuild/protobuf/wkt';
import { Badge, Box, Button, Card, Group, ScrollArea, Text, Title } from '@mantine/core';
import { IconArrowDown } from '@tabler/icons-react';
import { useEffect, useLayoutEffect, useRef, useState } from 'react';
import { JobLogLevel, type JobLogLine } from '@gen/yardmaster/v1/jobs_pb.ts';
import { client } from '../../api/client.ts';
import { ErrorState } from '../../ui/states.tsx';
import { followStream } from './resumable-stream.ts';

/** The most lines the panel keeps; older ones drop off the top. */
const keptLines = 5000;

const levels: Record<number, { label: string; color: string | undefined }> = {
  [JobLogLevel.DEBUG]: { label: 'DEBUG', color: 'dimmed' },
  [JobLogLevel.INFO]: { label: 'INFO', color: 'blue' },
  [JobLogLevel.WARN]: { label: 'WARN', color: 'yellow' },
  [JobLogLevel.ERROR]: { label: 'ERROR', color: 'red' },
};

const clock = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });

/**
 * A job's log, tailed through StreamJobLogs (follow): stored lines, then live ones until
 * the job ends. After a dropped connection it resumes after the last line it holds. The
 * panel sticks to the bottom unless the reader scrolled up.
 */
export function JobLogPanel({ jobId, finished }: { jobId: string; finished: boolean }) {
  const [lines, setLines] = useState<JobLogLine[]>([]);
  const [following, setFollowing] = useState(false);
  const [failure, setFailure] = useState<unknown>();
  const [stuck, setStuck] = useState(true);
  const viewport = useRef<HTMLDivElement>(null);
  const lastSequence = useRef(0n);

  // A finished job's stored lines are read once; a job that runs (again, after RetryJob) is followed.
  useEffect(() => {
    const controller = new AbortController();
    setFailure(undefined);
    setFollowing(true);
    void followStream(
      {
        open: (signal) => client.jobs.streamJobLogs({ id: jobId, follow: !finished, afterSequence: lastSequence.current }, { signal }),
        onMessage: (message) => {
          const fresh = message.lines.filter((line) => line.sequence > lastSequence.current);
          if (fresh.length === 0) return;
          lastSequence.current = fresh.at(-1)!.sequence;
          setLines((held) => [...held, ...fresh].slice(-keptLines));
        },
        onFatal: setFailure,
        endsWhenComplete: true,
      },
      controller.signal,
    ).finally(() => {
      if (!controller.signal.aborted) setFollowing(false);
    });
    return () => controller.abort();
  }, [jobId, finished]);

  useLayoutEffect(() => {
    const element = viewport.current;
    if (stuck && element && lines.length > 0) element.scrollTop = element.scrollHeight;
  }, [lines, stuck]);

  const scrollToEnd = () => {
    setStuck(true);
    const element = viewport.current;
    if (element) element.scrollTop = element.scrollHeight;
  };

  return (
    <Card withBorder padding={0} radius="md">
      <Group justify="space-between" px="md" py="sm" style={{ borderBottom: '1px solid var(--mantine-color-default-border)' }}>
        <Group gap="xs">
          <Title order={3} fz={16}>
            Log
          </Title>
          {following && !finished && (
            <Badge size="sm" variant="dot" color="teal">
              live
            </Badge>
          )}
        </Group>
        <Group gap="xs">
          <Text size="xs" c="dimmed">
            {lines.length.toLocaleString()} line{lines.length === 1 ? '' : 's'}
          </Text>
          {!stuck && (
            <Button size="compact-xs" variant="light" leftSection={<IconArrowDown size={12} />} onClick={scrollToEnd}>
              Latest
            </Button>
          )}
        </Group>
      </Group>
      {failure !== undefined ? (
        <Box p="md">
          <ErrorState error={failure} title="The log could not be read" />
        </Box>
      ) : (
        <ScrollArea
          h={280}
          viewportRef={viewport}
          onScrollPositionChange={({ y }) => {
            const element = viewport.current;
            if (element) setStuck(y + element.clientHeight >= element.scrollHeight - 8);
          }}
          bg="var(--mantine-color-default-hover)"
        >
          <Box
            component="pre"
            m={0}
            p="sm"
            ff="monospace"
            fz={12}
            lh={1.6}
            data-testid="job-log"
            style={{ whiteSpace: 'pre-wrap', wordBreak: 'break-word' }}
          >
            {lines.length === 0 && (
              <Text span c="dimmed" ff="monospace" fz={12}>
                {finished ? 'This job wrote no log lines.' : 'Waiting for the first log line…'}
              </Text>
            )}
            {lines.map((line) => {
              const level = levels[line.level] ?? { label: 'LOG', color: undefined };
              return (
                <div key={line.sequence.toString()} data-level={level.label.toLowerCase()}>
                  <Text span c="dimmed" ff="monospace" fz={12}>
                    {line.time ? clock.format(timestampDate(line.time)) : ''}{' '}
                  </Text>
                  <Text span c={level.color} fw={600} ff="monospace" fz={12} display="inline-block" w={46}>
                    {level.label}
                  </Text>
                  <Text span ff="monospace" fz={12} c={line.level === JobLogLevel.ERROR ? 'red' : undefined}>
                    {line.message}
                  </Text>
                </div>
              );
            })}
          </Box>
        </ScrollArea>
      )}
    </Card>
  );
}
