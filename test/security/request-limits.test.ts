/**
 * Slow request bodies and values out of range.
 */
import http2 from 'node:http2';
import net from 'node:net';
import { describe, expect, test } from 'vitest';
import { Code } from '@connectrpc/connect';
import { BadRequestSchema } from '../../gen/yardmaster/v1/common_pb.ts';
import { expectConnectError } from '../support/assertions.ts';
import { bodyDeadlineMs, server, userA, useSecurityServer } from './support.ts';

useSecurityServer();

describe('slow request bodies', () => {
  const login = '/yardmaster.v1.AuthService/Login';
  const started = () => performance.now();

  test('over HTTP/2, a single-message body that stalls is cut after the deadline, and the server answers others meanwhile', async () => {
    const session = http2.connect(server.url);
    try {
      const stream = session.request({
        ':method': 'POST',
        ':path': login,
        'content-type': 'application/json',
        'content-length': String(4 * 1024 * 1024),
      });
      stream.write(Buffer.alloc(256 * 1024, 0x20));
      const t0 = started();
      const closed = await new Promise<number>((resolve) => {
        stream.on('error', () => {});
        stream.on('close', () => resolve(performance.now() - t0));
      });
      expect(closed).toBeGreaterThanOrEqual(bodyDeadlineMs - 200);
      expect((await userA.client.auth.getMe({})).user?.id).toBe(userA.user.id);
    } finally {
      session.close();
    }
  });

  test('over HTTP/1.1, the connection of a stalled body is closed after the deadline', async () => {
    const { hostname, port } = new URL(server.url);
    const socket = net.connect(Number(port), hostname);
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(`POST ${login} HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/json\r\nContent-Length: 4194304\r\n\r\n`);
    socket.write(Buffer.alloc(256 * 1024, 0x20));
    const t0 = started();
    const closed = await new Promise<number>((resolve) => {
      socket.on('error', () => {});
      socket.on('close', () => resolve(performance.now() - t0));
      socket.resume();
    });
    expect(closed).toBeGreaterThanOrEqual(bodyDeadlineMs - 200);
  });
});

describe('values out of range', () => {
  test('times outside the years 1 to 9999 are InvalidArgument naming the field, on every call that takes one', async () => {
    const far = { seconds: 10n ** 15n, nanos: 0 };
    // Binary protobuf: JSON cannot even carry such a time.
    const user = await server.signIn(userA.user.username, userA.password, { protocol: 'grpc' });
    const grpcAdmin = await server.adminClient({ protocol: 'grpc' });
    const cases: [string, () => Promise<unknown>][] = [
      ['run_after', () => user.jobs.createJob({ type: 'noop', runAfter: far })],
      ['requests[1].run_after', () => user.jobs.batchCreateJobs({ requests: [{ type: 'noop' }, { type: 'noop', runAfter: far }] })],
      ['filter.created_after', () => user.jobs.listJobs({ filter: { createdAfter: far } })],
      ['filter.created_before', () => user.jobs.getJobStats({ filter: { createdBefore: { seconds: -(10n ** 15n), nanos: 0 } } })],
      ['expire_time', () => user.auth.createApiKey({ name: 'far', expireTime: far })],
      ['start_time', () => grpcAdmin.admin.listAuditEvents({ startTime: far })],
    ];
    for (const [field, call] of cases) {
      const error = await expectConnectError(call, Code.InvalidArgument);
      expect(
        error.findDetails(BadRequestSchema)[0]?.fieldViolations.map((violation) => violation.field),
        field,
      ).toEqual([field]);
    }
  });

  test('a setting value of NaN or Infinity (possible in binary protobuf) is InvalidArgument `value`, and the setting keeps its value', async () => {
    const grpcAdmin = await server.adminClient({ protocol: 'grpc' });
    const before = (await grpcAdmin.admin.getSetting({ key: 'auth.account_failure_limit' })).setting?.value;
    for (const value of [Number.NaN, Number.POSITIVE_INFINITY]) {
      const error = await expectConnectError(
        grpcAdmin.admin.updateSetting({ key: 'auth.account_failure_limit', value: { kind: { case: 'numberValue', value } } }),
        Code.InvalidArgument,
      );
      expect(error.findDetails(BadRequestSchema)[0]?.fieldViolations.map((violation) => violation.field)).toEqual(['value']);
    }
    expect((await grpcAdmin.admin.getSetting({ key: 'auth.account_failure_limit' })).setting?.value).toEqual(before);
  });
});
