/**
 * The jobs pages in Chromium against a real server: the table kept live by WatchJobs,
 * submitting from the schema-built form, the detail page's live progress and log tail,
 * cancelling from it, filters that live in the URL, and another user's job staying hidden.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Role } from '../../gen/yardmaster/v1/common_pb.ts';
import { JobStatus } from '../../gen/yardmaster/v1/jobs_pb.ts';
import { inConsole, openPage, signIn, useBrowser } from '../support/browser.ts';
import { adminPassword, startTestServer, type TestServer, type TestUser } from '../support/test-server.ts';

let server: TestServer;
let user: TestUser;

beforeAll(async () => {
  server = await startTestServer();
  user = await server.createUser({ role: Role.USER });
});
afterAll(() => server?.close());
useBrowser();

describe('jobs table', () => {
  test('a job created over the API appears without a reload and goes RUNNING then SUCCEEDED on screen', async () => {
    await inConsole(server.url, async (browser) => {
      const { page } = browser;
      page.setDefaultTimeout(10_000);
      await signIn(page, user.user.username, user.password);
      await page.goto('/jobs');
      await page.getByRole('heading', { name: 'Jobs' }).waitFor();
      await page
        .getByText(/No jobs yet|seconds? ago|minutes? ago/)
        .first()
        .waitFor();
      const { job } = await user.client.jobs.createJob({ type: 'sleep', name: 'nightly report', params: { seconds: 2 } });
      const row = page.locator(`tr[data-job-id="${job!.id}"]`);
      await row.getByText('nightly report').waitFor();
      await row.getByTestId('job-status').getByText('Running').waitFor();
      await row.getByRole('progressbar').waitFor();
      await browser.screenshot('jobs-list');
      await row.getByTestId('job-status').getByText('Succeeded').waitFor({ timeout: 15_000 });
    });
  });

  test('filters live in the URL and survive a reload', async () => {
    await user.client.jobs.createJob({ type: 'noop', name: 'filtered-noop', labels: { team: 'data' } });
    await user.client.jobs.createJob({ type: 'noop', name: 'other-noop', labels: { team: 'web' } });
    await inConsole(server.url, async (browser) => {
      const { page } = browser;
      page.setDefaultTimeout(10_000);
      await signIn(page, user.user.username, user.password);
      await page.goto('/jobs');
      await page.getByText('other-noop').waitFor();
      const labels = page.getByRole('combobox', { name: 'Labels' });
      await labels.fill('team=data');
      await labels.press('Enter');
      await page.getByLabel('Search', { exact: true }).fill('noop');
      await page.waitForURL((url) => url.searchParams.get('label') === 'team=data' && url.searchParams.get('q') === 'noop');
      await page.getByText('other-noop').waitFor({ state: 'detached' });
      await page.reload();
      await page.getByText('filtered-noop').waitFor();
      expect(await page.getByText('other-noop').count()).toBe(0);
      expect(await page.getByLabel('Search', { exact: true }).inputValue()).toBe('noop');
      await page.getByText('team=data').first().waitFor();
    });
  });
});

describe('as an admin', () => {
  test("the table shows every user's jobs with their owner's username", async () => {
    const { job } = await user.client.jobs.createJob({ type: 'noop', name: 'owned by a user' });
    await inConsole(server.url, async (browser) => {
      const { page } = browser;
      page.setDefaultTimeout(10_000);
      await signIn(page, 'admin', adminPassword);
      await page.goto('/jobs');
      await page.getByRole('columnheader', { name: 'Owner' }).waitFor();
      await page.locator(`tr[data-job-id="${job!.id}"]`).getByText(user.user.username).waitFor();
    });
  });
});

describe('submitting and following a job', () => {
  test('a sleep job submitted from the form shows progress and log lines, and is cancelled from its page', async () => {
    await inConsole(server.url, async (browser) => {
      const { page } = browser;
      page.setDefaultTimeout(10_000);
      await signIn(page, user.user.username, user.password);
      await page.goto('/jobs');
      await page.getByRole('link', { name: 'Submit a job' }).click();
      await page.getByRole('combobox', { name: 'Job type' }).click();
      await page.getByRole('option', { name: 'sleep', exact: true }).click();
      await page.getByLabel('Name', { exact: true }).fill('long sleep from the form');
      await page.getByLabel('seconds').fill('30');
      const labels = page.getByRole('combobox', { name: 'Labels' });
      await labels.fill('origin=console');
      await labels.press('Enter');
      await browser.screenshot('job-submit');
      await page.getByRole('button', { name: 'Submit job' }).click();

      await page.waitForURL(/\/jobs\/[0-9a-f-]{36}$/);
      const id = new URL(page.url()).pathname.split('/').at(-1)!;
      await page.getByRole('heading', { name: 'long sleep from the form' }).waitFor();
      await page.getByTestId('job-status').getByText('Running').waitFor();
      await page
        .getByTestId('job-progress-message')
        .getByText(/slept [1-9]\d* of 30 s/)
        .waitFor({ timeout: 10_000 });
      await page.getByTestId('job-log').getByText('sleeping for 30 s').waitFor();
      await browser.screenshot('job-detail-running');

      const created = (await user.client.jobs.getJob({ id })).job!;
      expect(created.params).toEqual({ seconds: 30, fail: false });
      expect(created.labels).toEqual({ origin: 'console' });

      await page.getByRole('button', { name: 'Cancel', exact: true }).click();
      await page.getByLabel('Reason').fill('not needed after all');
      await page.getByRole('button', { name: 'Cancel job' }).click();
      await page.getByTestId('job-status').getByText('Cancelled').waitFor({ timeout: 15_000 });
      await page.getByText('Reason: not needed after all').waitFor();
      await page.getByRole('button', { name: 'Retry' }).waitFor();
      await browser.screenshot('job-detail-finished');

      const cancelled = (await user.client.jobs.getJob({ id })).job!;
      expect(cancelled.status).toBe(JobStatus.CANCELLED);
      expect(cancelled.cancelReason).toBe('not needed after all');
    });
  }, 60_000);

  test("the server's params violations are shown on the matching form field, and nothing is queued", async () => {
    const browser = await openPage(server.url, { expectedStatuses: [400] });
    try {
      const { page } = browser;
      page.setDefaultTimeout(10_000);
      await signIn(page, user.user.username, user.password);
      await page.goto('/jobs/new?type=sleep');
      await page.getByText('Edit as JSON').click();
      await page.getByLabel('Params (JSON)').fill('{ "seconds": 5000 }');
      await page.getByRole('button', { name: 'Submit job' }).click();
      await page.getByRole('alert').getByText('The job was not submitted').waitFor();
      await page.getByText(/params\.seconds/).waitFor();
      await page.getByText('Form', { exact: true }).click();
      await expect.poll(() => page.getByLabel('seconds').getAttribute('aria-invalid')).toBe('true');
      expect(new URL(page.url()).pathname).toBe('/jobs/new');
      const { jobs } = await user.client.jobs.listJobs({ filter: { search: '5000' } });
      expect(jobs).toEqual([]);
      expect(browser.problems.filter((problem) => !problem.includes('400'))).toEqual([]);
    } finally {
      await browser.close();
    }
  });

  test("another user's job URL shows the not-found page", async () => {
    const other = await server.createUser({ role: Role.USER });
    const { job } = await other.client.jobs.createJob({ type: 'noop', name: 'not yours' });
    const browser = await openPage(server.url, { expectedStatuses: [404] });
    try {
      const { page } = browser;
      page.setDefaultTimeout(10_000);
      await signIn(page, user.user.username, user.password);
      await page.goto(`/jobs/${job!.id}`);
      await page.getByText('No such job').waitFor();
      expect(await page.getByText('not yours', { exact: true }).count()).toBe(0);
      expect(browser.problems.filter((problem) => !problem.includes('404'))).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});
