const unitMs: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

const wholePattern = /^(\d+(ms|s|m|h|d))+$/;
const partPattern = /(\d+)(ms|s|m|h|d)/g;

/**
 * Parses a duration written as number-unit pairs ("500ms", "10s", "15m", "1h30m", "7d")
 * into milliseconds. Returns undefined when the text is not such a duration.
 */
export function parseDuration(text: string): number | undefined {
  const trimmed = text.trim();
  if (!wholePattern.test(trimmed)) return undefined;
  let total = 0;
  for (const [, amount, unit] of trimmed.matchAll(partPattern)) {
    total += Number(amount) * unitMs[unit!]!;
  }
  return Number.isSafeInteger(total) ? total : undefined;
}

/** Writes milliseconds in the form parseDuration reads, largest units first ("1h30m"). */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  let rest = ms;
  let text = '';
  for (const unit of ['d', 'h', 'm', 's', 'ms']) {
    const size = unitMs[unit]!;
    const amount = Math.floor(rest / size);
    if (amount > 0) {
      text += `${amount}${unit}`;
      rest -= amount * size;
    }
  }
  return text;
}
