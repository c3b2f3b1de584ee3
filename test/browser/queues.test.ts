/**
 * The queues page in Chromium: live counts, pause and resume, clearing with a dry-run count
 * and a typed confirmation (admins), and the same page read-only for a plain user.
 */
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type Job, JobStatus } from '../../gen/yardmaster/v1/jobs_pb.ts';
import type { YardmasterClient } from '../../clients/ts/src/node.ts';
import { inConsole, signIn, useBrowser } from '../support/browser.ts';
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

describe('queues page', () => {
  test('an admin pauses a queue and resumes it; the page follows the server live', async () => {
    await inConsole(server.url, async (browser) => {
      const { page } = browser;
      await signIn(page, 'admin', adminPassword);
      await page.goto('/queues');
      await page.getByTestId('queues-live').getByText('Live').waitFor();
      const row = page.getByTestId('queue-noop');
      await row.getByText('Active').waitFor();
      await browser.screenshot('queues-admin');

      await row.getByRole('button', { name: 'Pause noop' }).click();
      await row.getByText('Paused').waitFor();
      await seeNotification(page, 'Queue noop paused');
      expect((await admin.queue.getQueueStatus({})).pausedQueues).toContain('noop');

      // A pause made elsewhere shows up through the stream, without a reload.
      await admin.queue.pauseQueue({ queue: 'sleep' });
      await page.getByTestId('queue-sleep').getByText('Paused').waitFor();
      await admin.queue.resumeQueue({ queue: 'sleep' });
      await page.getByTestId('queue-sleep').getByText('Active').waitFor();

      await row.getByRole('button', { name: 'Resume noop' }).click();
      await row.getByText('Active').waitFor();
      await seeNotification(page, 'Queue noop resumed');
      expect((await admin.queue.getQueueStatus({})).pausedQueues).not.toContain('noop');

      await page.getByRole('button', { name: 'Pause all' }).click();
      await page.getByText('Processing is paused').waitFor();
      await seeNotification(page, 'Every queue paused');
      expect((await admin.queue.getQueueStatus({})).pausedGlobally).toBe(true);
      await browser.screenshot('queues-paused-globally');
      await page.getByRole('button', { name: 'Resume all' }).click();
      await page.getByRole('button', { name: 'Pause all' }).waitFor();
      expect((await admin.queue.getQueueStatus({})).pausedGlobally).toBe(false);
    });
  });

  test('clearing a queue shows the dry-run count, asks for the queue name, and cancels the queued jobs', async () => {
    // Due in a day: they stay queued while the test looks at them.
    const runAfter = timestampFromDate(new Date(Date.now() + 86_400_000));
    const jobs: Job[] = [];
    for (let index = 0; index < 3; index++) {
      jobs.push((await admin.jobs.createJob({ type: 'noop', params: {}, runAfter })).job!);
    }
    await inConsole(server.url, async (browser) => {
      const { page } = browser;
      await signIn(page, 'admin', adminPassword);
      await page.goto('/queues');
      const row = page.getByTestId('queue-noop');
      await row.getByRole('cell', { name: '3', exact: true }).first().waitFor();
      await row.getByRole('button', { name: 'Clear noop' }).click();
      const dialog = page.getByRole('dialog');
      await dialog.getByTestId('clear-count').getByText('3 queued jobs will be cancelled').waitFor();
      const confirm = dialog.getByRole('button', { name: 'Cancel 3 jobs' });
      expect(await confirm.isDisabled()).toBe(true);
      await dialog.getByLabel('Type noop to confirm').fill('noo');
      expect(await confirm.isDisabled()).toBe(true);
      await dialog.getByLabel('Type noop to confirm').fill('noop');
      await browser.screenshot('queues-clear-confirm');
      await confirm.click();
      await seeNotification(page, '3 queued jobs cancelled.');
      await dialog.waitFor({ state: 'hidden' });
      for (const job of jobs) {
        expect((await admin.jobs.getJob({ id: job.id })).job!.status).toBe(JobStatus.CANCELLED);
      }
    });
  });

  test('a plain user sees the queues, read-only', async () => {
    const user = await server.createUser();
    await inConsole(server.url, async (browser) => {
      const { page } = browser;
      await signIn(page, user.user.username, user.password);
      await page.goto('/queues');
      await page.getByTestId('queue-noop').waitFor();
      await page.getByTestId('queues-live').getByText('Live').waitFor();
      expect(await page.getByRole('button', { name: /^(Pause|Resume|Clear)/ }).count()).toBe(0);
      expect(await page.getByRole('columnheader', { name: 'Actions' }).count()).toBe(0);
      await browser.screenshot('queues-user');
    });
  });
});
