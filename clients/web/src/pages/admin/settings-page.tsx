import { fromJson, type JsonValue, toJson } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { useMutation, useQuery } from '@connectrpc/connect-query';
import { Badge, Button, Card, Group, NumberInput, Select, Stack, Switch, TagsInput, Text, TextInput, Title, Tooltip } from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { IconRestore } from '@tabler/icons-react';
import { useState } from 'react';
import { AdminService, type Setting, SettingType } from '@gen/yardmaster/v1/admin_pb.ts';
import { problemOf } from '../../api/errors.ts';
import { formatBytes, formatDateTime } from '../../ui/format.ts';
import { PageHeader } from '../../ui/page-header.tsx';
import { RequirePermission } from '../../ui/require-permission.tsx';
import { EmptyState, ErrorState, Loading } from '../../ui/states.tsx';

export function SettingsPage() {
  return (
    <RequirePermission method="yardmaster.v1.AdminService.ListSettings">
      <Settings />
    </RequirePermission>
  );
}

const groupTitles: Record<string, string> = {
  auth: 'Sign-in and credentials',
  files: 'Files and storage',
  jobs: 'Jobs',
  limits: 'Limits',
};
const titleOf = (prefix: string) => groupTitles[prefix] ?? prefix.charAt(0).toUpperCase() + prefix.slice(1);

/** The runtime settings, grouped by their key's prefix, each with an editor of its type. */
function Settings() {
  const settings = useQuery(AdminService.method.listSettings, {});
  const groups = new Map<string, Setting[]>();
  for (const setting of settings.data?.settings ?? []) {
    const prefix = setting.key.split('.')[0]!;
    groups.set(prefix, [...(groups.get(prefix) ?? []), setting]);
  }
  return (
    <>
      <PageHeader title="Settings" description="Runtime settings: a change applies to every server instance within a second." />
      {settings.isPending ? (
        <Loading />
      ) : settings.isError ? (
        <ErrorState error={settings.error} onRetry={() => void settings.refetch()} />
      ) : groups.size === 0 ? (
        <EmptyState title="No settings">This server has no runtime settings.</EmptyState>
      ) : (
        <Stack gap="xl">
          {[...groups].map(([prefix, members]) => (
            <section key={prefix} aria-label={titleOf(prefix)}>
              <Group gap="xs" mb="xs">
                <Title order={3} fz={16}>
                  {titleOf(prefix)}
                </Title>
                <Text size="sm" c="dimmed" ff="monospace">
                  {prefix}.*
                </Text>
              </Group>
              <Card withBorder radius="md" padding={0}>
                {members.map((setting, index) => (
                  <SettingRow key={setting.key} setting={setting} divider={index > 0} onSaved={() => void settings.refetch()} />
                ))}
              </Card>
            </section>
          ))}
        </Stack>
      )}
    </>
  );
}

const json = (setting: Setting, field: 'value' | 'defaultValue'): JsonValue => {
  const value = setting[field];
  return value ? toJson(ValueSchema, value) : null;
};

/** A value as the person reads it: bytes with their unit, lists joined. */
function display(setting: Setting, value: JsonValue): string {
  if (value === null) return '–';
  if (setting.type === SettingType.BYTES && typeof value === 'number') return `${formatBytes(value)} (${value.toLocaleString()} B)`;
  if (Array.isArray(value)) return value.length === 0 ? '(empty list)' : value.join(', ');
  return String(value);
}

function SettingRow({ setting, divider, onSaved }: { setting: Setting; divider: boolean; onSaved(): void }) {
  const current = json(setting, 'value');
  const fallback = json(setting, 'defaultValue');
  const [draft, setDraft] = useState<JsonValue>(current);
  const [draftError, setDraftError] = useState<string | undefined>();
  const saved = (verb: string) => (response: { setting?: Setting }) => {
    const value = response.setting ? json(response.setting, 'value') : null;
    setDraft(value);
    setDraftError(undefined);
    notifications.show({
      color: 'teal',
      title: `${setting.key} ${verb}`,
      message: `Now ${response.setting ? display(response.setting, value) : '–'}.`,
    });
    onSaved();
  };
  const update = useMutation(AdminService.method.updateSetting, { onSuccess: saved('saved') });
  const reset = useMutation(AdminService.method.updateSetting, {
    onSuccess: saved('reset to its default'),
    onError: (error) => notifications.show({ color: 'red', title: `${setting.key} not reset`, message: problemOf(error).message }),
  });
  const serverError = update.error
    ? problemOf(update.error)
        .fields.map((field) => field.description)
        .join('; ') || problemOf(update.error).message
    : undefined;
  const changed = JSON.stringify(draft) !== JSON.stringify(current);
  const isDefault = !setting.updateTime;
  const save = () => update.mutate({ key: setting.key, value: fromJson(ValueSchema, draft) });

  return (
    <Group
      p="md"
      align="flex-start"
      justify="space-between"
      wrap="nowrap"
      gap="xl"
      style={divider ? { borderTop: '1px solid var(--mantine-color-default-border)' } : undefined}
      data-testid={`setting-${setting.key}`}
    >
      <Stack gap={4} style={{ flex: 1, minWidth: 0 }}>
        <Group gap="xs">
          <Text fw={600} size="sm" ff="monospace">
            {setting.key}
          </Text>
          <Badge size="xs" variant="light" color="gray">
            {typeNames[setting.type] ?? 'value'}
          </Badge>
          {!isDefault && (
            <Tooltip label={`Changed by ${setting.updatedBy || 'an admin'} on ${formatDateTime(setting.updateTime)}`}>
              <Badge size="xs" variant="light" color="blue">
                changed
              </Badge>
            </Tooltip>
          )}
        </Group>
        <Text size="sm" c="dimmed">
          {setting.description}
        </Text>
        <Text size="xs" c="dimmed">
          Default: {display(setting, fallback)}
        </Text>
      </Stack>
      <form
        onSubmit={(event) => {
          event.preventDefault();
          if (!draftError && changed) save();
        }}
      >
        <Group gap="xs" align="flex-start" wrap="nowrap" w={420} justify="flex-end">
          <SettingEditor setting={setting} value={draft} onChange={setDraft} onInvalid={setDraftError} error={draftError ?? serverError} />
          <Button type="submit" disabled={!changed || draftError !== undefined} loading={update.isPending}>
            Save
          </Button>
          <Tooltip label="Reset to the default">
            <Button
              variant="default"
              px="xs"
              aria-label={`Reset ${setting.key} to its default`}
              disabled={isDefault}
              loading={reset.isPending}
              onClick={() => reset.mutate({ key: setting.key, value: fromJson(ValueSchema, null) })}
            >
              <IconRestore size={16} />
            </Button>
          </Tooltip>
        </Group>
      </form>
    </Group>
  );
}

const typeNames: Record<number, string> = {
  [SettingType.BOOL]: 'bool',
  [SettingType.INTEGER]: 'integer',
  [SettingType.DURATION]: 'duration',
  [SettingType.STRING]: 'string',
  [SettingType.STRING_LIST]: 'string list',
  [SettingType.BYTES]: 'bytes',
};

const durationPattern = /^(\d+(\.\d+)?(ms|s|m|h|d))+$/;
const byteUnits = [
  { value: '1', label: 'B' },
  { value: '1024', label: 'KiB' },
  { value: String(1024 ** 2), label: 'MiB' },
  { value: String(1024 ** 3), label: 'GiB' },
  { value: String(1024 ** 4), label: 'TiB' },
];

/** The largest unit that divides the value exactly, so that 10 MiB reads as 10 MiB. */
function unitOf(bytes: number): number {
  for (const unit of [...byteUnits].reverse()) {
    const size = Number(unit.value);
    if (bytes !== 0 && bytes % size === 0) return size;
  }
  return 1;
}

interface EditorProps {
  setting: Setting;
  value: JsonValue;
  onChange(value: JsonValue): void;
  onInvalid(error: string | undefined): void;
  error: string | undefined;
}

function SettingEditor({ setting, value, onChange, onInvalid, error }: EditorProps) {
  const label = `Value of ${setting.key}`;
  switch (setting.type) {
    case SettingType.BOOL:
      return (
        <Switch
          aria-label={label}
          checked={value === true}
          onChange={(event) => onChange(event.currentTarget.checked)}
          error={error}
          mt={8}
          label={value === true ? 'On' : 'Off'}
        />
      );
    case SettingType.INTEGER:
      return (
        <NumberInput
          aria-label={label}
          value={typeof value === 'number' ? value : ''}
          onChange={(next) => {
            onInvalid(typeof next === 'number' ? undefined : 'A whole number');
            if (typeof next === 'number') onChange(next);
          }}
          allowDecimal={false}
          thousandSeparator=","
          error={error}
          w={180}
        />
      );
    case SettingType.BYTES:
      return (
        <BytesEditor label={label} value={typeof value === 'number' ? value : 0} onChange={onChange} onInvalid={onInvalid} error={error} />
      );
    case SettingType.DURATION:
      return (
        <TextInput
          aria-label={label}
          value={typeof value === 'string' ? value : ''}
          placeholder="e.g. 500ms, 10s, 1h30m"
          onChange={(event) => {
            const next = event.currentTarget.value.trim();
            onInvalid(durationPattern.test(next) ? undefined : 'A duration such as 500ms, 10s, 15m, 1h30m or 7d');
            onChange(next);
          }}
          error={error}
          w={180}
          ff="monospace"
        />
      );
    case SettingType.STRING_LIST:
      return (
        <TagsInput
          aria-label={label}
          value={Array.isArray(value) ? value.map(String) : []}
          onChange={(next) => onChange(next)}
          placeholder="Type and press Enter"
          error={error}
          w={260}
          clearable
        />
      );
    default:
      return (
        <TextInput
          aria-label={label}
          value={typeof value === 'string' ? value : ''}
          onChange={(event) => onChange(event.currentTarget.value)}
          error={error}
          w={260}
        />
      );
  }
}

function BytesEditor({
  label,
  value,
  onChange,
  onInvalid,
  error,
}: {
  label: string;
  value: number;
  onChange(value: number): void;
  onInvalid(error: string | undefined): void;
  error: string | undefined;
}) {
  const [unit, setUnit] = useState(() => unitOf(value));
  return (
    <Group gap={4} wrap="nowrap" align="flex-start">
      <NumberInput
        aria-label={label}
        value={value / unit}
        onChange={(next) => {
          const bytes = typeof next === 'number' ? Math.round(next * unit) : NaN;
          onInvalid(Number.isFinite(bytes) ? undefined : 'A number of bytes');
          if (Number.isFinite(bytes)) onChange(bytes);
        }}
        decimalScale={3}
        error={error}
        w={130}
      />
      <Select
        aria-label={`Unit of ${label}`}
        data={byteUnits}
        value={String(unit)}
        onChange={(next) => next && setUnit(Number(next))}
        allowDeselect={false}
        w={80}
      />
    </Group>
  );
}
