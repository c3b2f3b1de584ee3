/**
 * The files page in Chromium: uploads from the page straight to the embedded store (a
 * different origin: its CORS answers), single and multipart, downloads compared byte for
 * byte, move/rename, delete, directory URLs that survive a reload, and cancelling an upload
 * in flight. What the server then holds is checked through the API.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Code } from '@connectrpc/connect';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { FileStatus } from '../../gen/yardmaster/v1/files_pb.ts';
import { expectConnectError } from '../support/assertions.ts';
import { inConsole, signIn, useBrowser } from '../support/browser.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';

const mib = 1024 * 1024;

let server: TestServer;
let scratch: string;

beforeAll(async () => {
  server = await startTestServer();
  // Multipart from 8 MiB on (parts stay 16 MiB): a 34 MiB file goes in three parallel parts.
  await server.setSetting('files.multipart_threshold_bytes', 8 * mib);
  scratch = mkdtempSync(path.join(os.tmpdir(), 'yardmaster-files-page-'));
});
afterAll(async () => {
  await server?.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});
useBrowser();

const fileRow = (page: Page, name: string) => page.locator(`[data-testid=file-row][data-name="${name}"]`);

async function openActions(page: Page, name: string) {
  await page.getByRole('button', { name: `Actions for ${name}` }).click();
}

describe('files page', () => {
  test('upload (single and multipart), download, rename into a new directory, reload it, delete', async () => {
    const { user, password, client } = await server.createUser();
    const small = Buffer.from('notes uploaded from a page on another origin than storage\n'.repeat(50));
    const large = randomBytes(34 * mib);
    const largePath = path.join(scratch, 'large.bin');
    writeFileSync(largePath, large);
    const smallPath = path.join(scratch, 'notes.txt');
    writeFileSync(smallPath, small);

    await inConsole(server.url, async (browser) => {
      const { page } = browser;
      await signIn(page, user.username, password);
      await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Files', exact: true }).click();
      await page.waitForURL(/\/files$/);
      await page.getByText('This directory is empty').waitFor();
      await page.getByText('no quota').waitFor();
      await browser.screenshot('files-empty');

      await page.getByTestId('file-input').setInputFiles([smallPath, largePath]);
      await fileRow(page, 'notes.txt').getByText('Available').waitFor();
      await fileRow(page, 'large.bin').getByText('Available').waitFor({ timeout: 20_000 });
      await page.locator('[data-testid=transfer][data-state=done]').nth(1).waitFor();
      expect(await fileRow(page, 'notes.txt').textContent()).toContain('2.8 KiB');
      expect(await fileRow(page, 'large.bin').textContent()).toContain('34 MiB');
      await page.getByText('34 MiB used · no quota').waitFor();
      await browser.screenshot('files-uploaded');

      // What the server holds: both AVAILABLE with their sizes, the large one sent in parts.
      const { files } = await client.files.listFiles({ directory: '/' });
      const byName = new Map(files.map((file) => [file.name, file]));
      expect(byName.get('notes.txt')).toMatchObject({
        status: FileStatus.AVAILABLE,
        size: BigInt(small.length),
        contentType: 'text/plain',
      });
      expect(byName.get('large.bin')).toMatchObject({ status: FileStatus.AVAILABLE, size: BigInt(large.length) });
      const [row] = await server.query<{ upload_mode: string }>('select upload_mode from files where id = $1', [
        byName.get('large.bin')!.id,
      ]);
      expect(row!.upload_mode).toBe('multipart');

      // Download: the page navigates to the presigned URL, which answers with an attachment.
      const downloaded = page.waitForEvent('download');
      await openActions(page, 'large.bin');
      await page.getByRole('menuitem', { name: 'Download' }).click();
      const download = await downloaded;
      expect(download.suggestedFilename()).toBe('large.bin');
      expect(readFileSync((await download.path())!).equals(large)).toBe(true);
      expect(page.url()).toMatch(/\/files$/);

      // Move and rename into a directory that does not exist yet.
      await openActions(page, 'notes.txt');
      await page.getByRole('menuitem', { name: 'Move or rename' }).click();
      const dialog = page.getByRole('dialog', { name: 'Move or rename' });
      await dialog.getByLabel('Directory').fill('/archive/2026');
      await dialog.getByLabel('Name').fill('renamed notes.txt');
      await dialog.getByRole('button', { name: 'Move' }).click();
      await page.getByText('File moved').waitFor();
      await fileRow(page, 'notes.txt').waitFor({ state: 'detached' });
      await page.locator('[data-testid=directory-row]').getByRole('link', { name: 'archive' }).click();
      await page.waitForURL(/\/files\/archive$/, { waitUntil: 'commit' });
      await page.getByRole('link', { name: '2026' }).click();
      await page.waitForURL(/\/files\/archive\/2026$/, { waitUntil: 'commit' });
      await page.reload();
      await fileRow(page, 'renamed notes.txt').getByText('Available').waitFor();
      await page.getByRole('navigation', { name: 'Directory' }).getByRole('link', { name: 'archive' }).waitFor();
      const moved = (await client.files.getFile({ id: byName.get('notes.txt')!.id })).file!;
      expect(moved).toMatchObject({ directory: '/archive/2026', name: 'renamed notes.txt' });

      // Delete, after a confirmation; the directory is then empty (and so it no longer exists).
      await openActions(page, 'renamed notes.txt');
      await page.getByRole('menuitem', { name: 'Delete' }).click();
      await page.getByRole('dialog', { name: 'Delete file' }).getByRole('button', { name: 'Delete' }).click();
      await page.getByText('File deleted').waitFor();
      await page.getByText('This directory is empty').waitFor();
      await expectConnectError(client.files.getFile({ id: moved.id }), Code.NotFound);
    });
  });

  test('an upload in flight shows its progress and can be cancelled: the server keeps nothing', async () => {
    const { user, password, client } = await server.createUser();
    await inConsole(server.url, async (browser) => {
      const { page } = browser;
      await signIn(page, user.username, password);
      await page.goto('/files/slow/uploads');
      await page.getByText('This directory is empty').waitFor();
      // Slow the page's uploads (Chromium's network emulation) so that one is seen mid-way.
      const cdp = await browser.context.newCDPSession(page);
      await cdp.send('Network.enable');
      await cdp.send('Network.emulateNetworkConditions', {
        offline: false,
        latency: 0,
        downloadThroughput: -1,
        uploadThroughput: 1 * mib,
      });
      await page
        .getByTestId('file-input')
        .setInputFiles({ name: 'slow.bin', mimeType: 'application/octet-stream', buffer: randomBytes(6 * mib) });
      const transfer = page.locator('[data-testid=transfer]');
      await transfer.and(page.locator('[data-state=sending]')).waitFor();
      await expect
        .poll(async () => Number(await page.getByRole('progressbar', { name: 'Upload of slow.bin' }).getAttribute('aria-valuenow')))
        .toBeGreaterThan(0);
      await expect
        .poll(() => client.files.listFiles({ directory: '/slow/uploads' }).then((reply) => reply.files.map((file) => file.status)))
        .toEqual([FileStatus.UPLOADING]);
      await browser.screenshot('files-upload-in-progress');
      await page.getByRole('button', { name: 'Cancel upload of slow.bin' }).click();
      await transfer.and(page.locator('[data-state=cancelled]')).waitFor();
      await expect.poll(() => client.files.listFiles({ directory: '/slow/uploads' }).then((reply) => reply.files.length)).toBe(0);
    });
  });
});
