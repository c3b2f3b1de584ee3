import type { JsonObject } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { useMutation, useQuery, useTransport } from '@connectrpc/connect-query';
import {
  Alert,
  Badge,
  Button,
  Card,
  Divider,
  Grid,
  Group,
  JsonInput,
  MultiSelect,
  NumberInput,
  SegmentedControl,
  Select,
  Stack,
  TagsInput,
  Text,
  TextInput,
  Title,
} from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { IconAlertTriangle, IconSend } from '@tabler/icons-react';
import { useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useMemo, useState } from 'react';
import { Link, useNavigate, useSearchParams } from 'react-router';
import { FileStatus, FilesService } from '@gen/yardmaster/v1/files_pb.ts';
import { JobTypeRuntime } from '@gen/yardmaster/v1/job_types_pb.ts';
import { JobsService } from '@gen/yardmaster/v1/jobs_pb.ts';
import { problemOf } from '../../api/errors.ts';
import { formatBytes, formatDuration } from '../../ui/format.ts';
import { PageHeader } from '../../ui/page-header.tsx';
import { ErrorState, Loading } from '../../ui/states.tsx';
import { putJob } from './job-cache.ts';
import { parseLabel } from './job-filter-params.ts';
import { defaultParams, ParamsForm, paramsSchemaOf } from './params-form.tsx';

/** An idempotency key for this form (AIP-155): a double submit queues one job. */
function newRequestId(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (byte) => byte.toString(16).padStart(2, '0')).join('');
}

function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The caller's available files, to pick a job's inputs from (FilesService.ListFiles, recursive). */
function InputFilesField({
  value,
  onChange,
  error,
  min,
  max,
}: {
  value: string[];
  onChange: (ids: string[]) => void;
  error?: string;
  min: number;
  max: number;
}) {
  const files = useQuery(FilesService.method.listFiles, { directory: '/', recursive: true, pageSize: 1000 }, { staleTime: 30_000 });
  const options = useMemo(
    () =>
      (files.data?.files ?? [])
        .filter((file) => file.status === FileStatus.AVAILABLE)
        .map((file) => ({
          value: file.id,
          label: `${file.directory === '/' ? '' : file.directory}/${file.name} (${formatBytes(file.size)})`,
        })),
    [files.data],
  );
  return (
    <MultiSelect
      label="Input files"
      description={min === max ? `Exactly ${min}` : `${min} to ${max} of your files`}
      placeholder={files.isPending ? 'Loading your files…' : options.length === 0 ? 'You have no files yet' : 'Search your files'}
      data={options}
      value={value}
      onChange={onChange}
      searchable
      clearable
      maxValues={max}
      required={min > 0}
      error={error ?? (files.isError ? problemOf(files.error).message : undefined)}
      nothingFoundMessage="No file matches"
      name="input_file_ids"
    />
  );
}

/** Submits a job: a type, its params (a form from the type's JSON Schema, or JSON), name, labels, priority, inputs and a start time. */
export function SubmitJobPage() {
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const transport = useTransport();
  const [searchParams] = useSearchParams();
  const types = useQuery(JobsService.method.listJobTypes, {}, { staleTime: 60_000 });
  const [typeName, setTypeName] = useState<string | null>(searchParams.get('type'));
  const [name, setName] = useState('');
  const [labels, setLabels] = useState<string[]>([]);
  const [priority, setPriority] = useState<number>(0);
  const [inputFileIds, setInputFileIds] = useState<string[]>([]);
  const [runAfter, setRunAfter] = useState('');
  const [mode, setMode] = useState<'form' | 'json'>('form');
  const [params, setParams] = useState<JsonObject>({});
  const [paramsText, setParamsText] = useState('{}');
  const [problem, setProblem] = useState<{ message: string; fields: Record<string, string> } | undefined>();
  const [requestId, setRequestId] = useState(newRequestId);

  const jobType = types.data?.jobTypes.find((type) => type.name === typeName);
  const schema = paramsSchemaOf(jobType?.paramsSchema);
  // A schema the form builder cannot read (no object properties) is edited as JSON only.
  const formMode = schema ? mode : 'json';

  const chooseType = (next: string | null) => {
    setTypeName(next);
    const chosen = types.data?.jobTypes.find((type) => type.name === next);
    const initial = defaultParams(paramsSchemaOf(chosen?.paramsSchema));
    setParams(initial);
    setParamsText(JSON.stringify(initial, null, 2));
    setInputFileIds([]);
    setProblem(undefined);
  };

  const switchMode = (next: string) => {
    if (next === 'json') {
      setParamsText(JSON.stringify(params, null, 2));
      setMode('json');
      return;
    }
    try {
      const parsed: unknown = JSON.parse(paramsText);
      if (!isJsonObject(parsed)) throw new Error('not an object');
      setParams(parsed);
      setMode('form');
    } catch {
      setProblem({ message: 'The params are not a JSON object: fix them before going back to the form.', fields: {} });
    }
  };

  const submit = useMutation(JobsService.method.createJob, {
    onSuccess: ({ job }) => {
      if (!job) return;
      putJob(queryClient, transport, job);
      notifications.show({ color: 'teal', title: 'Job submitted', message: `${job.name || job.type} is queued.` });
      void navigate(`/jobs/${job.id}`);
    },
    onError: (error) => {
      const { message, fields } = problemOf(error);
      setProblem({ message, fields: Object.fromEntries(fields.map((field) => [field.field, field.description])) });
      // A rejected call queued nothing: the corrected one is a new request.
      setRequestId(newRequestId());
    },
  });

  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    if (!typeName) return;
    let jobParams: JsonObject = params;
    if (formMode === 'json') {
      try {
        const parsed: unknown = JSON.parse(paramsText || '{}');
        if (!isJsonObject(parsed)) throw new Error('not an object');
        jobParams = parsed;
      } catch {
        setProblem({ message: 'The params must be a JSON object.', fields: { params: 'Not a JSON object' } });
        return;
      }
    }
    const labelMap: Record<string, string> = {};
    for (const label of labels) {
      const pair = parseLabel(label);
      if (pair) labelMap[pair[0]] = pair[1];
    }
    setProblem(undefined);
    submit.mutate({
      type: typeName,
      name: name.trim(),
      params: jobParams,
      labels: labelMap,
      priority,
      inputFileIds,
      runAfter: runAfter ? timestampFromDate(new Date(runAfter)) : undefined,
      requestId,
    });
  };

  if (types.isPending) return <Loading label="Loading the job types…" />;
  if (types.isError)
    return <ErrorState error={types.error} onRetry={() => void types.refetch()} title="The job types could not be loaded" />;

  const fieldErrors = problem?.fields ?? {};
  const paramErrors = Object.fromEntries(
    Object.entries(fieldErrors)
      .filter(([field]) => field.startsWith('params.'))
      .map(([field, message]) => [field.slice('params.'.length).split('.')[0]!, message]),
  );
  const labelError = Object.entries(fieldErrors).find(([field]) => field.startsWith('labels'))?.[1];
  const inputError = Object.entries(fieldErrors).find(([field]) => field.startsWith('input_file_ids'))?.[1];
  const jsonErrors = Object.entries(fieldErrors)
    .filter(([field]) => field === 'params' || field.startsWith('params.'))
    .map(([field, message]) => `${field}: ${message}`)
    .join('\n');
  const takesFiles = (jobType?.maxInputFiles ?? 0) > 0;
  // Violations no field of the form shows (the form has one for each request field it sends).
  const placed = ['type', 'name', 'params', 'labels', 'priority', 'input_file_ids', 'run_after'];
  const unplacedErrors = Object.entries(fieldErrors).filter(
    ([field]) => !placed.some((name) => field === name || field.startsWith(`${name}.`) || field.startsWith(`${name}[`)),
  );

  return (
    <>
      <PageHeader title="Submit a job" description="Choose a job type, fill in its parameters, and follow it on its page." />
      <Grid gap="lg">
        <Grid.Col span={{ base: 12, md: 8 }}>
          <Card withBorder radius="md" padding="lg">
            <form onSubmit={onSubmit} noValidate>
              <Stack gap="md">
                {problem && (
                  <Alert color="red" variant="light" icon={<IconAlertTriangle size={18} />} title="The job was not submitted" role="alert">
                    {unplacedErrors.length > 0
                      ? unplacedErrors.map(([field, message]) => `${field}: ${message}`).join('; ')
                      : Object.keys(fieldErrors).length > 0
                        ? 'Correct the fields marked below.'
                        : problem.message}
                  </Alert>
                )}
                <Select
                  label="Job type"
                  placeholder="Choose a type"
                  name="type"
                  required
                  searchable
                  data={types.data.jobTypes.map((type) => ({ value: type.name, label: type.name }))}
                  value={typeName}
                  onChange={chooseType}
                  error={fieldErrors.type}
                  nothingFoundMessage="No such type"
                />
                {jobType && (
                  <>
                    <TextInput
                      label="Name"
                      description="For people: shown in the jobs table and searchable."
                      placeholder={`${jobType.name} job`}
                      name="name"
                      maxLength={200}
                      value={name}
                      onChange={(event) => setName(event.currentTarget.value)}
                      error={fieldErrors.name}
                    />
                    <Divider
                      label={
                        <Text size="sm" fw={600} c="var(--mantine-color-text)">
                          Parameters
                        </Text>
                      }
                      labelPosition="left"
                    />
                    {schema && (
                      <SegmentedControl
                        size="xs"
                        w="fit-content"
                        value={formMode}
                        onChange={switchMode}
                        data={[
                          { value: 'form', label: 'Form' },
                          { value: 'json', label: 'Edit as JSON' },
                        ]}
                      />
                    )}
                    {formMode === 'form' && schema ? (
                      <ParamsForm schema={schema} value={params} onChange={setParams} errors={paramErrors} />
                    ) : (
                      <JsonInput
                        label="Params (JSON)"
                        name="params"
                        autosize
                        minRows={4}
                        maxRows={16}
                        formatOnBlur
                        validationError="Not valid JSON"
                        value={paramsText}
                        onChange={setParamsText}
                        error={jsonErrors || undefined}
                        styles={{ error: { whiteSpace: 'pre-line' } }}
                      />
                    )}
                    <Divider
                      label={
                        <Text size="sm" fw={600} c="var(--mantine-color-text)">
                          Options
                        </Text>
                      }
                      labelPosition="left"
                    />
                    <Group grow align="flex-start">
                      <TagsInput
                        label="Labels"
                        description="key=value, Enter after each"
                        placeholder={labels.length ? undefined : 'team=data'}
                        value={labels}
                        onChange={(next) => setLabels(next.filter((label) => parseLabel(label) !== undefined))}
                        error={labelError}
                        name="labels"
                      />
                      <NumberInput
                        label="Priority"
                        description="-100 to 100; higher runs first"
                        min={-100}
                        max={100}
                        allowDecimal={false}
                        value={priority}
                        onChange={(next) => setPriority(typeof next === 'number' ? next : 0)}
                        error={fieldErrors.priority}
                        name="priority"
                      />
                    </Group>
                    {takesFiles && (
                      <InputFilesField
                        value={inputFileIds}
                        onChange={setInputFileIds}
                        error={inputError}
                        min={jobType.minInputFiles}
                        max={jobType.maxInputFiles}
                      />
                    )}
                    <TextInput
                      type="datetime-local"
                      label="Run after"
                      description="Optional: it waits in its queue until then."
                      value={runAfter}
                      onChange={(event) => setRunAfter(event.currentTarget.value)}
                      error={fieldErrors.run_after}
                      name="run_after"
                      w={320}
                    />
                  </>
                )}
                <Group justify="flex-end" mt="sm">
                  <Button component={Link} to="/jobs" variant="default">
                    Back to jobs
                  </Button>
                  <Button type="submit" leftSection={<IconSend size={16} />} disabled={!jobType} loading={submit.isPending}>
                    Submit job
                  </Button>
                </Group>
              </Stack>
            </form>
          </Card>
        </Grid.Col>
        <Grid.Col span={{ base: 12, md: 4 }}>
          <Card withBorder radius="md" padding="lg">
            {jobType ? (
              <Stack gap="xs">
                <Group justify="space-between">
                  <Title order={3} fz={16} ff="monospace">
                    {jobType.name}
                  </Title>
                  <Badge variant="light" color={jobType.runtime === JobTypeRuntime.EXTERNAL ? 'grape' : 'blue'}>
                    {jobType.runtime === JobTypeRuntime.EXTERNAL ? 'External worker' : 'In-process'}
                  </Badge>
                </Group>
                <Text size="sm">{jobType.description || 'No description.'}</Text>
                <Text size="xs" c="dimmed">
                  Up to {jobType.maxAttempts} attempt{jobType.maxAttempts === 1 ? '' : 's'} · timeout {formatDuration(jobType.timeout)}
                  {takesFiles ? ` · ${jobType.minInputFiles} to ${jobType.maxInputFiles} input files` : ''}
                </Text>
              </Stack>
            ) : (
              <Stack gap="xs">
                <Title order={3} fz={16}>
                  Job types
                </Title>
                {types.data.jobTypes.map((type) => (
                  <div key={type.name}>
                    <Text size="sm" fw={600} ff="monospace">
                      {type.name}
                    </Text>
                    <Text size="xs" c="dimmed">
                      {type.description}
                    </Text>
                  </div>
                ))}
              </Stack>
            )}
          </Card>
        </Grid.Col>
      </Grid>
    </>
  );
}
