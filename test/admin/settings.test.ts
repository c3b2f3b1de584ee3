/**
 * AdminService runtime settings: listing, updating, validation and their effect.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Code } from '@connectrpc/connect';
import type { JsonValue } from '@bufbuild/protobuf';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { SettingType } from '../../gen/yardmaster/v1/admin_pb.ts';
import { Role } from '../../gen/yardmaster/v1/common_pb.ts';
import type { YardmasterClient } from '../../clients/ts/src/node.ts';
import { expectConnectError, randomHex, violatedFields } from '../support/assertions.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';
import { service, requestId, withRequestId, jsonValue, plain, auditRowsByRequestId, useAdminServer } from './support.ts';

useAdminServer();

// ---------------------------------------------------------------------------------------
// Settings (a server of its own, so that the settings table starts empty)
// ---------------------------------------------------------------------------------------

describe('settings', () => {
  let fresh: TestServer;
  let freshAdmin: YardmasterClient;
  let freshAdminId: string;

  const catalog: Record<string, [SettingType, JsonValue]> = {
    'auth.account_failure_limit': [SettingType.INTEGER, 5],
    'auth.account_failure_window': [SettingType.DURATION, '15m'],
    'auth.account_throttle_max_delay': [SettingType.DURATION, '15m'],
    'auth.account_throttle_threshold': [SettingType.INTEGER, 10],
    'auth.address_failure_limit': [SettingType.INTEGER, 20],
    'auth.address_request_limit': [SettingType.INTEGER, 300],
    'auth.open_registration': [SettingType.BOOL, false],
    'auth.password_min_length': [SettingType.INTEGER, 12],
    'auth.refresh_reuse_grace': [SettingType.DURATION, '10s'],
    'files.allowed_content_types': [SettingType.STRING_LIST, []],
    'files.max_upload_bytes': [SettingType.BYTES, 5 * 1024 ** 3],
    'files.multipart_threshold_bytes': [SettingType.BYTES, 64 * 1024 ** 2],
    'files.upload_expiry': [SettingType.DURATION, '1d'],
    'files.user_quota_bytes': [SettingType.BYTES, 0],
    'jobs.event_retention': [SettingType.DURATION, '7d'],
    'jobs.max_params_bytes': [SettingType.BYTES, 65536],
    'jobs.pool_drain_time': [SettingType.DURATION, '1m'],
    'jobs.stream_heartbeat_interval': [SettingType.DURATION, '15s'],
    'limits.heavy_calls_per_account': [SettingType.INTEGER, 4],
  };

  beforeAll(async () => {
    fresh = await startTestServer();
    freshAdmin = await fresh.adminClient();
    freshAdminId = (await freshAdmin.auth.getMe({})).user!.id;
  });
  afterAll(() => fresh?.close());

  const settingRows = () =>
    fresh.query<{ key: string; value: unknown; updated_by_id: string | null; updated_by_username: string | null; updated_at: Date }>(
      'select * from settings order by key',
    );

  test('ListSettings lists every setting, sorted by key, with type, value, default and description', async () => {
    const { settings } = await freshAdmin.admin.listSettings({});
    expect(settings.map((s) => s.key)).toEqual(Object.keys(catalog).sort());
    for (const setting of settings) {
      const [type, defaultValue] = catalog[setting.key]!;
      expect(setting.type, setting.key).toBe(type);
      expect(plain(setting.defaultValue), setting.key).toEqual(defaultValue);
      expect(plain(setting.value), setting.key).toEqual(defaultValue);
      expect(setting.description.length, setting.key).toBeGreaterThan(10);
      expect(setting.updatedBy, setting.key).toBe('');
      expect(setting.updateTime, setting.key).toBeUndefined();
    }
    // Ranges are part of the description.
    expect(settings.find((s) => s.key === 'auth.password_min_length')!.description).toContain('12 to 128');
  });

  test('GetSetting returns one setting; an unknown key is NotFound for GetSetting and UpdateSetting, and nothing is written', async () => {
    const { setting } = await freshAdmin.admin.getSetting({ key: 'auth.refresh_reuse_grace' });
    expect(setting).toMatchObject({ key: 'auth.refresh_reuse_grace', type: SettingType.DURATION, updatedBy: '' });
    expect(plain(setting!.value)).toBe('10s');
    for (const key of ['auth.nope', '', 'AUTH.OPEN_REGISTRATION', 'constructor', '__proto__']) {
      await expectConnectError(freshAdmin.admin.getSetting({ key }), Code.NotFound);
      await expectConnectError(freshAdmin.admin.updateSetting({ key, value: jsonValue(true) }), Code.NotFound);
    }
    expect(await settingRows()).toEqual([]);
  });

  test('UpdateSetting validates type and range: InvalidArgument naming value, and nothing is written', async () => {
    const cases: [string, JsonValue][] = [
      ['auth.open_registration', 1],
      ['auth.open_registration', 'true'],
      ['auth.open_registration', []],
      ['auth.open_registration', {}],
      ['auth.password_min_length', 11],
      ['auth.password_min_length', 129],
      ['auth.password_min_length', 12.5],
      ['auth.password_min_length', '16'],
      ['auth.password_min_length', true],
      ['auth.address_request_limit', 0],
      ['auth.refresh_reuse_grace', '10 seconds'],
      ['auth.refresh_reuse_grace', 'soon'],
      ['auth.refresh_reuse_grace', '-5s'],
      ['auth.refresh_reuse_grace', ''],
      ['auth.refresh_reuse_grace', 10],
      ['auth.refresh_reuse_grace', '2m'],
      ['auth.account_failure_window', '0s'],
      ['auth.account_throttle_max_delay', '2d'],
      ['auth.account_throttle_threshold', 0],
    ];
    for (const [key, value] of cases) {
      const rid = requestId('bad-setting');
      const err = await expectConnectError(
        freshAdmin.admin.updateSetting({ key, value: jsonValue(value) }, withRequestId(rid)),
        Code.InvalidArgument,
      );
      expect(violatedFields(err), `${key} = ${JSON.stringify(value)}`).toEqual(['value']);
      expect(await auditRowsByRequestId(fresh, rid)).toEqual([
        expect.objectContaining({ outcome: 'failure', error_code: 'invalid_argument', target: key }),
      ]);
    }
    expect(await settingRows()).toEqual([]);
    for (const [key] of cases) {
      const { setting } = await freshAdmin.admin.getSetting({ key });
      expect(plain(setting!.value), key).toEqual(catalog[key]![1]);
    }
  });

  test('a valid update records the value, updated_by and update_time, and takes effect', async () => {
    const before = new Date();
    const rid = requestId('set-min-length');
    const { setting } = await freshAdmin.admin.updateSetting({ key: 'auth.password_min_length', value: jsonValue(16) }, withRequestId(rid));
    const after = new Date();
    expect(plain(setting!.value)).toBe(16);
    expect(plain(setting!.defaultValue)).toBe(12);
    expect(setting!.updatedBy).toBe('admin');
    const updateTime = timestampDate(setting!.updateTime!).getTime();
    expect(updateTime).toBeGreaterThanOrEqual(before.getTime());
    expect(updateTime).toBeLessThanOrEqual(after.getTime());

    const [row] = await settingRows();
    expect(row).toMatchObject({ key: 'auth.password_min_length', value: 16, updated_by_id: freshAdminId, updated_by_username: 'admin' });
    expect(row!.updated_at.getTime()).toBe(updateTime);
    expect((await freshAdmin.admin.getSetting({ key: 'auth.password_min_length' })).setting).toEqual(setting);
    expect(await auditRowsByRequestId(fresh, rid)).toEqual([
      expect.objectContaining({
        action: `${service}.UpdateSetting`,
        target: 'auth.password_min_length',
        outcome: 'success',
        actor_id: freshAdminId,
      }),
    ]);

    // It takes effect: a 15-character password is now too short, 16 is enough.
    const name = `minlen-${randomHex()}`;
    const err = await expectConnectError(
      freshAdmin.admin.createUser({ username: name, email: `${name}@example.com`, password: '15-chars-passwd', role: Role.USER }),
      Code.InvalidArgument,
    );
    expect(violatedFields(err)).toEqual(['password']);
    await freshAdmin.admin.createUser({ username: name, email: `${name}@example.com`, password: '16-chars-passwrd', role: Role.USER });

    // Durations are stored in canonical form.
    const { setting: grace } = await freshAdmin.admin.updateSetting({ key: 'auth.refresh_reuse_grace', value: jsonValue('30s500ms') });
    expect(plain(grace!.value)).toBe('30s500ms');
    const { setting: window } = await freshAdmin.admin.updateSetting({ key: 'auth.account_failure_window', value: jsonValue('90m') });
    expect(plain(window!.value)).toBe('1h30m');
    expect((await fresh.query<{ value: unknown }>("select value from settings where key = 'auth.account_failure_window'"))[0]!.value).toBe(
      '1h30m',
    );

    // Setting it again to another value updates the same row.
    await freshAdmin.admin.updateSetting({ key: 'auth.password_min_length', value: jsonValue(13) });
    expect(await fresh.countRows("select count(*) as n from settings where key = 'auth.password_min_length'")).toBe(1);
    expect((await fresh.query<{ value: unknown }>("select value from settings where key = 'auth.password_min_length'"))[0]!.value).toBe(13);
  });

  test('a null (or absent) value restores the default and deletes the row', async () => {
    await freshAdmin.admin.updateSetting({ key: 'auth.open_registration', value: jsonValue(true) });
    expect(await fresh.countRows("select count(*) as n from settings where key = 'auth.open_registration'")).toBe(1);

    const { setting } = await freshAdmin.admin.updateSetting({ key: 'auth.open_registration', value: jsonValue(null) });
    expect(plain(setting!.value)).toBe(false);
    expect(setting!.updatedBy).toBe('');
    expect(setting!.updateTime).toBeUndefined();
    expect(await fresh.countRows("select count(*) as n from settings where key = 'auth.open_registration'")).toBe(0);
    await expectConnectError(
      fresh
        .client()
        .auth.register({ username: `reg-${randomHex()}`, email: `reg-${randomHex()}@example.com`, password: 'a-long-enough-password' }),
      Code.PermissionDenied,
    );

    await freshAdmin.admin.updateSetting({ key: 'auth.password_min_length', value: jsonValue(20) });
    const { setting: absent } = await freshAdmin.admin.updateSetting({ key: 'auth.password_min_length' });
    expect(plain(absent!.value)).toBe(12);
    expect(await fresh.countRows("select count(*) as n from settings where key = 'auth.password_min_length'")).toBe(0);

    // Restoring a setting that has its default already is harmless.
    await freshAdmin.admin.updateSetting({ key: 'auth.password_min_length', value: jsonValue(null) });
    expect(plain((await freshAdmin.admin.getSetting({ key: 'auth.password_min_length' })).setting!.value)).toBe(12);
  });
});
