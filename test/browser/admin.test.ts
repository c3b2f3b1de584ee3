/**
 * The administration pages and the account page in Chromium: users, settings, the audit
 * log, system status and services; a person's password, API keys and sessions. Each change
 * made in the page is checked over the API.
 */
import { toJson } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { YardmasterClient } from '../../clients/ts/src/node.ts';
import { Role } from '../../gen/yardmaster/v1/common_pb.ts';
import { ServiceState } from '../../gen/yardmaster/v1/system_pb.ts';
import { uniqueName } from '../support/assertions.ts';
import { expectNoProblems, inConsole, openPage, signIn, useBrowser } from '../support/browser.ts';
import { seeNotification } from '../support/notifications.ts';
import { adminPassword, startTestServer, type TestServer } from '../support/test-server.ts';

let server: TestServer;
let admin: YardmasterClient;

beforeAll(async () => {
  server = await startTestServer();
  admin = await server.adminClient();
});
afterAll(() => server?.close());
useBrowser();

const settingValue = async (key: string) => toJson(ValueSchema, (await admin.admin.getSetting({ key })).setting!.value!);

describe('users', () => {
  test('an admin creates a user (field errors on the form), changes their role, and deletes them', async () => {
    const browser = await openPage(server.url, { expectedStatuses: [400] });
    try {
      const { page } = browser;
      await signIn(page, 'admin', adminPassword);
      await page.goto('/admin/users');
      await page.getByTestId('user-admin').waitFor();
      await browser.screenshot('admin-users');

      const username = uniqueName('carol');
      await page.getByRole('button', { name: 'New user' }).click();
      const dialog = page.getByRole('dialog');
      await dialog.getByLabel('Username').fill('x');
      await dialog.getByLabel('E-mail').fill(`${username}@example.com`);
      await dialog.getByLabel('Initial password').fill('short');
      await dialog.getByRole('button', { name: 'Create user' }).click();
      // The server's field violations, each under its input.
      await dialog.locator('input[name=username][aria-invalid=true]').waitFor();
      expect(await dialog.getByLabel('Username').getAttribute('aria-invalid')).toBe('true');
      await browser.screenshot('admin-users-create-errors');
      await dialog.getByLabel('Username').fill(username);
      await dialog.getByLabel('Initial password').fill(`password-of-${username}`);
      await dialog.getByRole('button', { name: 'Create user' }).click();
      await seeNotification(page, 'Account created');
      const row = page.getByTestId(`user-${username}`);
      await row.getByText('User', { exact: true }).waitFor();
      const created = (await admin.admin.listUsers({ query: username })).users[0]!;
      expect(created).toMatchObject({ username, role: Role.USER, active: true });

      await row.getByRole('button', { name: `Actions for ${username}` }).click();
      await page.getByRole('menuitem', { name: 'Edit role and state' }).click();
      await page.getByRole('dialog').getByRole('combobox', { name: 'Role' }).click();
      await page.getByRole('option', { name: 'Admin' }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Save' }).click();
      await seeNotification(page, 'Account saved');
      await row.getByText('Admin', { exact: true }).waitFor();
      expect((await admin.admin.getUser({ id: created.id })).user!.role).toBe(Role.ADMIN);

      await row.getByRole('button', { name: `Actions for ${username}` }).click();
      await page.getByRole('menuitem', { name: 'Reset password' }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Reset password' }).click();
      const generated = await page.getByTestId('generated-password').textContent();
      await server.signIn(username, generated!);
      await page.getByRole('dialog').getByRole('button', { name: 'Done' }).click();
      await seeNotification(page, 'Password reset');

      await row.getByRole('button', { name: `Actions for ${username}` }).click();
      await page.getByRole('menuitem', { name: 'Delete' }).click();
      const confirm = page.getByRole('dialog').getByRole('button', { name: 'Delete account' });
      expect(await confirm.isDisabled()).toBe(true);
      await page.getByRole('dialog').getByLabel(`Type ${username} to confirm`).fill(username);
      await confirm.click();
      await seeNotification(page, 'Account deleted');
      await row.waitFor({ state: 'detached' });
      expect((await admin.admin.listUsers({ query: username })).users).toEqual([]);
      expect(browser.problems.filter((problem) => !problem.includes('HTTP 400') && !problem.includes('400 (Bad Request)'))).toEqual([]);
    } finally {
      await browser.close();
    }
  });

  test('search and role filter narrow the table', async () => {
    const worker = await server.createUser({ role: Role.WORKER, username: uniqueName('robot') });
    await inConsole(server.url, async (browser) => {
      const { page } = browser;
      await signIn(page, 'admin', adminPassword);
      await page.goto('/admin/users');
      await page.getByRole('combobox', { name: 'Role' }).click();
      await page.getByRole('option', { name: 'Worker' }).click();
      await page.getByTestId(`user-${worker.user.username}`).waitFor();
      await page.getByTestId('user-admin').waitFor({ state: 'detached' });
      await page.getByLabel('Search users').fill('no-such-account');
      await page.getByText('No matching accounts').waitFor();
    });
  });
});

describe('settings', () => {
  test('typed editors save a setting (checked over the API), reject a bad duration, and reset to the default', async () => {
    const browser = await openPage(server.url);
    try {
      const { page } = browser;
      await signIn(page, 'admin', adminPassword);
      await page.goto('/admin/settings');
      const minLength = page.getByTestId('setting-auth.password_min_length');
      await minLength.waitFor();
      await browser.screenshot('admin-settings');

      await minLength.getByLabel('Value of auth.password_min_length').fill('16');
      await minLength.getByRole('button', { name: 'Save' }).click();
      await seeNotification(page, 'auth.password_min_length saved');
      expect(await settingValue('auth.password_min_length')).toBe(16);

      const registration = page.getByTestId('setting-auth.open_registration');
      await registration.getByRole('switch').check({ force: true });
      await registration.getByRole('button', { name: 'Save' }).click();
      await seeNotification(page, 'auth.open_registration saved');
      expect(await settingValue('auth.open_registration')).toBe(true);

      const retention = page.getByTestId('setting-jobs.event_retention');
      await retention.getByLabel('Value of jobs.event_retention').fill('3 days');
      await retention.getByText('A duration such as').waitFor();
      expect(await retention.getByRole('button', { name: 'Save' }).isDisabled()).toBe(true);
      await retention.getByLabel('Value of jobs.event_retention').fill('3d');
      await retention.getByRole('button', { name: 'Save' }).click();
      await seeNotification(page, 'jobs.event_retention saved');
      expect(await settingValue('jobs.event_retention')).toMatch(/^(3d|72h)$/);

      const upload = page.getByTestId('setting-files.max_upload_bytes');
      await upload.getByRole('combobox', { name: 'Unit of Value of files.max_upload_bytes' }).click();
      await page.getByRole('option', { name: 'MiB', exact: true }).click();
      await upload.getByLabel('Value of files.max_upload_bytes', { exact: true }).fill('5');
      await upload.getByRole('button', { name: 'Save' }).click();
      await seeNotification(page, 'files.max_upload_bytes saved');
      expect(await settingValue('files.max_upload_bytes')).toBe(5 * 1024 * 1024);

      await minLength.getByRole('button', { name: 'Reset auth.password_min_length to its default' }).click();
      await seeNotification(page, 'auth.password_min_length reset to its default');
      expect(await settingValue('auth.password_min_length')).toBe(12);
      await browser.screenshot('admin-settings-changed');
      expectNoProblems(browser);
    } finally {
      await server.setSetting('auth.open_registration', null);
      await browser.close();
    }
  });
});

describe('audit log', () => {
  test('filters by action and shows an event in detail', async () => {
    const target = uniqueName('audited');
    await admin.admin.createUser({ username: target, email: `${target}@example.com`, password: `password-of-${target}`, role: Role.USER });
    await inConsole(server.url, async (browser) => {
      const { page } = browser;
      await signIn(page, 'admin', adminPassword);
      await page.goto('/admin/audit');
      await page.getByTestId('audit-row').first().waitFor();
      await page.getByLabel('Action').fill('AdminService.CreateUser');
      await page.getByLabel('Target').fill(target);
      await expect.poll(() => page.getByTestId('audit-row').count()).toBe(1);
      await page.getByTestId('audit-row').filter({ hasText: target }).waitFor();
      await browser.screenshot('admin-audit');
      await page.getByTestId('audit-row').click();
      const drawer = page.getByRole('dialog');
      await drawer.getByText('yardmaster.v1.AdminService.CreateUser').waitFor();
      await drawer.getByText('Request id').waitFor();
      // The drawer has slid in.
      await page.waitForFunction(() => document.querySelector('.mantine-Drawer-content')?.getAnimations().length === 0);
      await browser.screenshot('admin-audit-detail');
      await page.keyboard.press('Escape');
      await page.getByLabel('Target').fill('nothing-has-this-target');
      await page.getByText('No events').waitFor();
    });
  });
});

describe('system', () => {
  test('shows dependencies, instances and services; stops and starts a worker pool', async () => {
    await inConsole(server.url, async (browser) => {
      const { page } = browser;
      await signIn(page, 'admin', adminPassword);
      await page.goto('/admin/system');
      for (const dependency of ['database', 'queue', 'object storage']) await page.getByTestId(`dependency-${dependency}`).waitFor();
      const pool = page.getByTestId('service-pool/noop');
      await pool.getByText('Running').waitFor();
      await browser.screenshot('admin-system');

      await pool.getByRole('button', { name: 'Stop pool/noop', exact: true }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Stop' }).click();
      await seeNotification(page, 'pool/noop stopped');
      await pool.getByText('Stopped').waitFor();
      const states = async () =>
        (await admin.system.listServices({})).services.filter((service) => service.name === 'pool/noop').map((service) => service.state);
      expect(await states()).toEqual([ServiceState.STOPPED]);

      await pool.getByRole('button', { name: 'Start pool/noop', exact: true }).click();
      await seeNotification(page, 'pool/noop started');
      await pool.getByText('Running').waitFor();
      expect(await states()).toEqual([ServiceState.RUNNING]);
    });
  });
});

describe('account', () => {
  test('a user creates an API key (its secret shown once) that works over the API, and revokes it', async () => {
    const user = await server.createUser();
    await inConsole(server.url, async (browser) => {
      const { page } = browser;
      await signIn(page, user.user.username, user.password);
      await page.getByTestId('account-menu').click();
      await page.getByRole('menuitem', { name: 'Account and security' }).click();
      await page.getByTestId('session-current').waitFor();
      await page.getByText('No API keys').waitFor();
      await browser.screenshot('account');

      await page.getByRole('button', { name: 'New API key' }).click();
      await page.getByRole('dialog').getByLabel('Name').fill('nightly pipeline');
      await page.getByRole('dialog').getByRole('button', { name: 'Create key' }).click();
      const secret = (await page.getByTestId('api-key-secret').textContent())!;
      expect(secret).toMatch(/^ym_/);
      await page.getByText('This is the only time it is shown').waitFor();
      await browser.screenshot('account-api-key-secret');
      expect((await server.bearerClient(secret).auth.getMe({})).user!.username).toBe(user.user.username);
      await page.getByRole('dialog').getByRole('button', { name: 'I have stored it' }).click();
      const row = page.getByTestId('api-key-nightly pipeline');
      await row.waitFor();
      await page.getByTestId('api-key-secret').waitFor({ state: 'detached' });
      expect(await page.getByText(secret).count()).toBe(0);

      await row.getByRole('button', { name: 'Revoke nightly pipeline' }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Revoke key' }).click();
      await seeNotification(page, 'API key revoked');
      await row.waitFor({ state: 'detached' });
      await expect(server.bearerClient(secret).auth.getMe({})).rejects.toThrow();
    });
  });

  test('a user changes their password (field errors first) and signs in with the new one; another session can be ended', async () => {
    const user = await server.createUser();
    const browser = await openPage(server.url, { expectedStatuses: [400, 401] });
    try {
      const { page } = browser;
      await signIn(page, user.user.username, user.password);
      await page.goto('/account');
      await page.getByText('Sessions').first().waitFor();
      // The session createUser signed in is another one, which this page can end.
      await page.getByTestId('session').getByRole('button', { name: 'Sign out' }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Sign it out' }).click();
      await seeNotification(page, 'Session ended');
      await page.getByTestId('session').waitFor({ state: 'detached' });

      const newPassword = `new-password-of-${user.user.username}`;
      await page.getByLabel('Current password').fill('not-the-password');
      await page.locator('input[name=new-password]').fill(newPassword);
      await page.getByLabel('Repeat the new password').fill(`${newPassword}-typo`);
      await page.getByRole('button', { name: 'Change password' }).click();
      await page.getByText('The two new passwords differ').waitFor();
      await page.getByLabel('Repeat the new password').fill(newPassword);
      await page.getByRole('button', { name: 'Change password' }).click();
      await page.getByText('Is not the current password').waitFor();
      await browser.screenshot('account-password-errors');
      await page.getByLabel('Current password').fill(user.password);
      await page.getByRole('button', { name: 'Change password' }).click();
      await seeNotification(page, 'Password changed');
      await server.signIn(user.user.username, newPassword);
      await expect(server.signIn(user.user.username, user.password)).rejects.toThrow();
      expect(browser.problems.filter((problem) => !/\b(400|401)\b/.test(problem))).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});
