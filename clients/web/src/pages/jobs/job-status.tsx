import { Badge } from '@mantine/core';
import { JobStatus } from '@gen/yardmaster/v1/jobs_pb.ts';

interface StatusLook {
  /** As the URL and people say it: `running`. */
  slug: string;
  label: string;
  color: string;
}

export const jobStatuses: Record<number, StatusLook> = {
  [JobStatus.QUEUED]: { slug: 'queued', label: 'Queued', color: 'gray' },
  [JobStatus.RUNNING]: { slug: 'running', label: 'Running', color: 'blue' },
  [JobStatus.SUCCEEDED]: { slug: 'succeeded', label: 'Succeeded', color: 'teal' },
  [JobStatus.FAILED]: { slug: 'failed', label: 'Failed', color: 'red' },
  [JobStatus.CANCELLED]: { slug: 'cancelled', label: 'Cancelled', color: 'orange' },
};

export const statusOptions = Object.entries(jobStatuses).map(([value, look]) => ({
  slug: look.slug,
  value: look.slug,
  label: look.label,
  status: Number(value),
}));

export function statusOfSlug(slug: string): JobStatus | undefined {
  return statusOptions.find((option) => option.slug === slug)?.status as JobStatus | undefined;
}

export function isFinished(status: JobStatus): boolean {
  return status === JobStatus.SUCCEEDED || status === JobStatus.FAILED || status === JobStatus.CANCELLED;
}

export function JobStatusBadge({
  status,
  cancelRequested = false,
  size = 'md',
}: {
  status: JobStatus;
  cancelRequested?: boolean;
  size?: 'sm' | 'md' | 'lg';
}) {
  const look = jobStatuses[status] ?? { label: 'Unknown', color: 'gray' };
  const cancelling = cancelRequested && !isFinished(status);
  return (
    <Badge color={cancelling ? 'orange' : look.color} variant="light" size={size} data-testid="job-status">
      {cancelling ? 'Cancelling' : look.label}
    </Badge>
  );
}
