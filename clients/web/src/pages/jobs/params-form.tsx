import { JsonInput, NumberInput, Select, Stack, Switch, Text, TextInput } from '@mantine/core';
import type { JsonObject, JsonValue } from '@bufbuild/protobuf';

/** The part of JSON Schema the form builder reads; anything else gets a JSON field of its own. */
interface PropertySchema {
  type?: string | string[];
  title?: string;
  description?: string;
  enum?: JsonValue[];
  default?: JsonValue;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minLength?: number;
  maxLength?: number;
}

export interface ParamsSchema {
  properties: Record<string, PropertySchema>;
  required: string[];
}

/** The object schema of a job type's params, or undefined when it has none (no params). */
export function paramsSchemaOf(schema: JsonObject | undefined): ParamsSchema | undefined {
  if (!schema || typeof schema.properties !== 'object' || schema.properties === null || Array.isArray(schema.properties)) return undefined;
  const required = Array.isArray(schema.required) ? schema.required.filter((name): name is string => typeof name === 'string') : [];
  return { properties: schema.properties as Record<string, PropertySchema>, required };
}

/** The params a new form starts with: the schema's defaults. */
export function defaultParams(schema: ParamsSchema | undefined): JsonObject {
  const params: JsonObject = {};
  for (const [name, property] of Object.entries(schema?.properties ?? {})) {
    if (property.default !== undefined) params[name] = property.default;
  }
  return params;
}

type FieldKind = 'string' | 'enum' | 'number' | 'integer' | 'boolean' | 'json';

function kindOf(property: PropertySchema): FieldKind {
  if (Array.isArray(property.enum) && property.enum.every((option) => typeof option === 'string')) return 'enum';
  switch (property.type) {
    case 'string':
    case 'number':
    case 'integer':
    case 'boolean':
      return property.type;
    default:
      return 'json';
  }
}

/** Form fields for a JSON Schema's properties: text, numbers with their bounds, switches, selects, JSON for the rest. */
export function ParamsForm({
  schema,
  value,
  onChange,
  errors,
}: {
  schema: ParamsSchema;
  value: JsonObject;
  onChange: (value: JsonObject) => void;
  /** Messages by property name (from the server's `params.<field>` violations). */
  errors: Record<string, string>;
}) {
  const set = (name: string, next: JsonValue | undefined) => {
    const copy = { ...value };
    if (next === undefined) delete copy[name];
    else copy[name] = next;
    onChange(copy);
  };
  const entries = Object.entries(schema.properties);
  if (entries.length === 0) {
    return (
      <Text size="sm" c="dimmed">
        This job type takes no parameters.
      </Text>
    );
  }
  return (
    <Stack gap="sm">
      {entries.map(([name, property]) => {
        const common = {
          label: property.title ?? name,
          description: property.description,
          required: schema.required.includes(name),
          error: errors[name],
          name: `params.${name}`,
        };
        const current = value[name];
        switch (kindOf(property)) {
          case 'enum':
            return (
              <Select
                key={name}
                {...common}
                data={(property.enum as string[]).map((option) => ({ value: option, label: option }))}
                value={typeof current === 'string' ? current : null}
                onChange={(option) => set(name, option ?? undefined)}
                clearable={!common.required}
              />
            );
          case 'string':
            return (
              <TextInput
                key={name}
                {...common}
                value={typeof current === 'string' ? current : ''}
                minLength={property.minLength}
                maxLength={property.maxLength}
                onChange={(event) => set(name, event.currentTarget.value === '' ? undefined : event.currentTarget.value)}
              />
            );
          case 'number':
          case 'integer': {
            const min = property.minimum ?? property.exclusiveMinimum;
            const max = property.maximum ?? property.exclusiveMaximum;
            const bounds = [min !== undefined && `min ${min}`, max !== undefined && `max ${max}`].filter(Boolean).join(', ');
            return (
              <NumberInput
                key={name}
                {...common}
                description={[property.description, bounds].filter(Boolean).join(' · ') || undefined}
                allowDecimal={property.type !== 'integer'}
                min={min}
                max={max}
                value={typeof current === 'number' ? current : ''}
                onChange={(next) => set(name, typeof next === 'number' ? next : undefined)}
              />
            );
          }
          case 'boolean':
            return (
              <Switch
                key={name}
                label={common.label}
                description={property.description}
                error={common.error}
                name={common.name}
                checked={current === true}
                onChange={(event) => set(name, event.currentTarget.checked)}
              />
            );
          default:
            return (
              <JsonInput
                key={name}
                {...common}
                description={[property.description, 'JSON'].filter(Boolean).join(' · ')}
                autosize
                minRows={2}
                formatOnBlur
                validationError="Not valid JSON"
                defaultValue={current === undefined ? '' : JSON.stringify(current, null, 2)}
                onChange={(text) => {
                  if (text.trim() === '') return set(name, undefined);
                  try {
                    set(name, JSON.parse(text) as JsonValue);
                  } catch {
                    // Kept as typed; the field shows it is not JSON yet.
                  }
                }}
              />
            );
        }
      })}
    </Stack>
  );
}
