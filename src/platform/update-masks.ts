import { invalidField, type Violations } from './domain-errors.ts';

/**
 * The fields an update names (AIP-134): at least one, each of them updatable. Unknown
 * fields are added to `violations`, so that a call reports them with its other faults.
 */
export function checkUpdateMask<Path extends string>(
  updateMask: string[],
  updatablePaths: readonly Path[],
  violations: Violations,
): Set<Path> {
  if (updateMask.length === 0) throw invalidField('update_mask', `is required: name the fields to change (${updatablePaths.join(', ')})`);
  for (const path of updateMask) {
    violations.check(
      (updatablePaths as readonly string[]).includes(path),
      'update_mask',
      `"${path}" cannot be updated; updatable fields: ${updatablePaths.join(', ')}`,
    );
  }
  return new Set(updateMask as Path[]);
}
