import type { Violations } from '../platform/domain-errors.ts';

/**
 * What a label key may be. Keys become JSON paths in SQL that the ORM writes as quoted
 * literals, so nothing outside this set may reach a query, in a job or in a filter.
 */
const labelKeyPattern = /^[a-z0-9][a-z0-9._/-]{0,62}$/;

/** Labels of a job or of a filter: at most 32, keys of `labelKeyPattern`, values up to 256 characters. */
export function checkLabels(labels: Record<string, string>, field: string, violations: Violations): void {
  const entries = Object.entries(labels);
  violations.check(entries.length <= 32, field, 'must be at most 32 labels');
  for (const [key, value] of entries) {
    // A long key is not echoed back as part of a field path.
    const path = key.length <= 64 ? `${field}.${key}` : field;
    violations.check(
      labelKeyPattern.test(key),
      path,
      "keys must be 1 to 63 characters of a-z, 0-9, '.', '_', '-' and '/', starting with a letter or digit",
    );
    violations.check(value.length <= 256, path, 'values must be at most 256 characters');
  }
}
