import { expect, test } from 'vitest';
import type { PgNotifications } from '../platform/events/pg-notifications.ts';
import { CheckedCredentials } from './checked-credentials.ts';

const listening = { subscribe: async () => {}, onReconnect: () => {}, connected: true } as unknown as PgNotifications;
const callerOf = (name: string) => ({ userId: name, username: name, role: 'user' as const });

test('a credential in use stays remembered while many others come and go; the least recently used are forgotten first', async () => {
  const checked = new CheckedCredentials(8);
  await checked.start(listening);
  const later = Date.now() + 60_000;
  checked.remember('in-use', callerOf('in-use'), later, checked.generation);
  for (let index = 0; index < 100; index++) {
    checked.remember(`other-${index}`, callerOf(`other-${index}`), later, checked.generation);
    expect(checked.get('in-use')?.userId).toBe('in-use');
  }
  // Eight entries at most: the in-use one and the seven most recent others.
  expect(checked.get('other-92')).toBeUndefined();
  for (let index = 93; index < 100; index++) expect(checked.get(`other-${index}`)?.userId).toBe(`other-${index}`);
});

test('an entry past its re-check time is not served, and nothing is served while not listening', async () => {
  const checked = new CheckedCredentials(8);
  const notifications = { ...listening, connected: true } as { connected: boolean };
  await checked.start(notifications as unknown as PgNotifications);
  checked.remember('expired', callerOf('expired'), Date.now() - 1, checked.generation);
  checked.remember('fresh', callerOf('fresh'), Date.now() + 60_000, checked.generation);
  expect(checked.get('expired')).toBeUndefined();
  expect(checked.get('fresh')?.userId).toBe('fresh');
  notifications.connected = false;
  expect(checked.get('fresh')).toBeUndefined();
});
