import { Code, ConnectError } from '@connectrpc/connect';
import { ConnectionException, DriverException, UniqueConstraintViolationException } from '@mikro-orm/core';
import { describe, expect, test } from 'vitest';
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from '../../gen/yardmaster/v1/common_pb.ts';
import { DomainError, invalidArgument, resourceExhausted } from '../platform/domain-errors.ts';
import { toConnectError } from './error-mapping.ts';

test('domain errors keep their message and become details', () => {
  const mapped = toConnectError(invalidArgument([{ field: 'email', description: 'must be an e-mail address' }]), undefined);
  expect(mapped.code).toBe(Code.InvalidArgument);
  expect(mapped.findDetails(BadRequestSchema)[0]?.fieldViolations).toMatchObject([
    { field: 'email', description: 'must be an e-mail address' },
  ]);
});

test('rate limits carry a retry delay as detail and header', () => {
  const mapped = toConnectError(resourceExhausted('slow down', 2500, 'RATE_LIMITED'), undefined);
  expect(mapped.code).toBe(Code.ResourceExhausted);
  const delay = mapped.findDetails(RetryInfoSchema)[0]?.retryDelay;
  expect(delay?.seconds).toBe(2n);
  expect(delay?.nanos).toBe(500_000_000);
  expect(mapped.metadata.get('retry-after')).toBe('3');
  expect(mapped.findDetails(ErrorInfoSchema)[0]?.reason).toBe('RATE_LIMITED');
});

test('database errors get a fixed message without SQL', () => {
  const driverError = Object.assign(
    new Error('duplicate key value violates unique constraint "users_username_unique" insert into "users"'),
    { code: '23505' },
  );
  const mapped = toConnectError(new UniqueConstraintViolationException(driverError), undefined);
  expect(mapped.code).toBe(Code.AlreadyExists);
  expect(mapped.rawMessage).not.toMatch(/insert|users|constraint/);
});

test('unknown errors are Internal with nothing of the original', () => {
  const mapped = toConnectError(new TypeError('secret internals at /srv/app/x.ts:12'), undefined);
  expect(mapped.code).toBe(Code.Internal);
  expect(mapped.rawMessage).toBe('internal error');
  expect(mapped.details).toEqual([]);
});

test('connect errors pass through', () => {
  const original = new ConnectError('bad', Code.DataLoss);
  expect(toConnectError(original, undefined)).toBe(original);
  expect(toConnectError(new DomainError('aborted', 'retry'), undefined).code).toBe(Code.Aborted);
});

describe('an unreachable or overloaded dependency is Unavailable with a retry delay', () => {
  const socketError = (code: string) => Object.assign(new Error(`connect ${code} 127.0.0.1:5432`), { code });
  const sqlError = (code: string, message: string) => Object.assign(new Error(message), { code, severity: 'FATAL' });
  const shapes: [string, unknown][] = [
    ['a refused connection, as MikroORM wraps it', new DriverException(socketError('ECONNREFUSED'))],
    [
      'a refused connection to every address of a host (AggregateError)',
      Object.assign(new AggregateError([socketError('ECONNREFUSED'), socketError('ECONNREFUSED')], ''), { code: 'ECONNREFUSED' }),
    ],
    ['a reset or timed-out socket', socketError('ECONNRESET')],
    [
      'a server shutting down (57P01) or not yet accepting (57P03)',
      new DriverException(sqlError('57P03', 'the database system is starting up')),
    ],
    ['an administrator command ending the session', sqlError('57P01', 'terminating connection due to administrator command')],
    ['too many connections (53300)', sqlError('53300', 'sorry, too many clients already')],
    ['a connection exception (class 08)', sqlError('08006', 'connection failure')],
    ['a statement timeout (57014)', sqlError('57014', 'canceling statement due to statement timeout')],
    ['a connection pg lost mid-query', new Error('Connection terminated unexpectedly')],
    ['a pool that could not hand out a connection in time', new Error('timeout exceeded when trying to connect')],
    ['a client already broken by a connection error', new Error('Client has encountered a connection error and is not queryable')],
    [
      'a pg-boss error caused by a lost connection',
      new Error('pg-boss: fetch failed', { cause: new Error('Connection terminated due to connection timeout') }),
    ],
    ["MikroORM's own connection exception", new ConnectionException(new Error('connection lost'))],
  ];
  test.each(shapes)('%s', (_name, error) => {
    const mapped = toConnectError(error, undefined);
    expect(Code[mapped.code]).toBe(Code[Code.Unavailable]);
    expect(mapped.findDetails(RetryInfoSchema)[0]?.retryDelay?.seconds).toBe(1n);
    expect(mapped.metadata.get('retry-after')).toBe('1');
    expect(mapped.findDetails(ErrorInfoSchema)[0]?.reason).toBe('DEPENDENCY_UNAVAILABLE');
    expect(mapped.rawMessage).not.toMatch(/127\.0\.0\.1|ECONN|terminat|pg-boss/);
  });

  test('other database errors stay Internal', () => {
    expect(toConnectError(new DriverException(sqlError('42P01', 'relation "x" does not exist')), undefined).code).toBe(Code.Internal);
    expect(toConnectError(new Error('Connection string is invalid'), undefined).code).toBe(Code.Internal);
  });
});
