import { Code, ConnectError } from '@connectrpc/connect';
import { UniqueConstraintViolationException } from '@mikro-orm/core';
import { expect, test } from 'vitest';
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from '../../gen/yardmaster/v1/common_pb.ts';
import { DomainError, invalidArgument, resourceExhausted } from '../domain-errors.ts';
import { toConnectError } from './error-mapping.ts';

test('domain errors keep their message and become details', () => {
  const mapped = toConnectError(invalidArgument([{ field: 'email', description: 'must be an e-mail address' }]), undefined);
  expect(mapped.code).toBe(Code.InvalidArgument);
  expect(mapped.findDetails(BadRequestSchema)[0]?.fieldViolations).toMatchObject([{ field: 'email', description: 'must be an e-mail address' }]);
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
  const driverError = Object.assign(new Error('duplicate key value violates unique constraint "users_username_unique" insert into "users"'), { code: '23505' });
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
