import { timestampMs } from '@bufbuild/protobuf/wkt';
import { InvalidArgumentError } from 'commander';
import { expect, test } from 'vitest';
import { keyValueJson, keyValueText, milliseconds, pointInTime, repeatable } from './arguments.ts';

test('--param values are JSON when they parse and text otherwise; later ones win', () => {
  let params = keyValueJson('seconds=5');
  params = keyValueJson('fail=true', params);
  params = keyValueJson('name=a=b', params);
  params = keyValueJson('tags=["x",1]', params);
  params = keyValueJson('seconds=7', params);
  expect(params).toEqual({ seconds: 7, fail: true, name: 'a=b', tags: ['x', 1] });
  expect(keyValueText('n=5')).toEqual({ n: '5' });
  expect(() => keyValueJson('seconds')).toThrow(InvalidArgumentError);
  expect(() => keyValueJson('=5')).toThrow(InvalidArgumentError);
});

test('repeatable options take commas and repeats', () => {
  expect(repeatable('b', repeatable('queued,running'))).toEqual(['queued', 'running', 'b']);
});

test('durations and points in time', () => {
  expect([milliseconds('90s'), milliseconds('15m'), milliseconds('2h'), milliseconds('1d'), milliseconds('30')]).toEqual([
    90_000, 900_000, 7_200_000, 86_400_000, 30_000,
  ]);
  expect(() => milliseconds('soon')).toThrow(InvalidArgumentError);
  expect(timestampMs(pointInTime('2026-01-02T03:04:05Z'))).toBe(Date.parse('2026-01-02T03:04:05Z'));
  expect(Math.abs(timestampMs(pointInTime('2h')) - (Date.now() - 7_200_000))).toBeLessThan(5_000);
  expect(() => pointInTime('yesterday-ish')).toThrow(InvalidArgumentError);
});
