import { expect, test } from 'vitest';
import { clientAddressOf } from './client-address.ts';
import type { HttpRequest } from './http-handler.ts';

const request = (remoteAddress: string, forwardedFor?: string) =>
  ({ socket: { remoteAddress }, headers: forwardedFor ? { 'x-forwarded-for': forwardedFor } : {} }) as unknown as HttpRequest;

test('without trusted proxies the peer address counts, whatever the headers say', () => {
  expect(clientAddressOf(request('::ffff:10.0.0.5', '1.2.3.4'), 0)).toBe('10.0.0.5');
});

test('behind one proxy, the entry that proxy appended counts, not what the client wrote', () => {
  expect(clientAddressOf(request('10.0.0.1', 'spoofed, 203.0.113.9'), 1)).toBe('203.0.113.9');
  expect(clientAddressOf(request('10.0.0.1', 'spoofed, 203.0.113.9, 10.0.0.2'), 2)).toBe('203.0.113.9');
  expect(clientAddressOf(request('10.0.0.1'), 1)).toBe('10.0.0.1');
});
