/**
 * Real pages in a real Chromium (Debian's, driven by playwright-core): a browser per test
 * file, a fresh context per test, and a record of everything that went wrong in the
 * page (uncaught errors, console errors, failed requests) for the test to assert empty.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, expect } from 'vitest';

export const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** Where screenshots go (not committed): look at them. */
export const screenshotDir = path.resolve(import.meta.dirname, '../../test-artifacts/screenshots');

let browser: Browser | undefined;

/** One Chromium for the file's tests. */
export function useBrowser(): void {
  beforeAll(async () => {
    browser = await chromium.launch({
      executablePath: chromiumPath,
      // What Chromium needs as root on a closed network (see environment notes).
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-dev-shm-usage',
      ],
    });
  });
  afterAll(() => browser?.close());
}

export interface ConsolePage {
  page: Page;
  context: BrowserContext;
  /** Uncaught errors, console errors and warnings, failed requests and HTTP errors the page saw. */
  problems: string[];
  /** Saves a screenshot named `name` under test-artifacts/screenshots. */
  screenshot(name: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * A new browser context (its own storage: a new visitor) on `baseUrl`. Responses with
 * the statuses in `expectedStatuses` (e.g. a 404 the test provokes) are not problems.
 */
export async function openPage(baseUrl: string, options: { expectedStatuses?: number[] } = {}): Promise<ConsolePage> {
  if (!browser) throw new Error('useBrowser() first');
  const context = await browser.newContext({ baseURL: baseUrl, viewport: { width: 1366, height: 820 } });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(`uncaught: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning') problems.push(`console ${message.type()}: ${message.text()}`);
  });
  page.on('requestfailed', (request) => {
    const reason = request.failure()?.errorText ?? '';
    // A stream the page closes on purpose (navigation, unmount) is aborted, not failed.
    if (!reason.includes('ERR_ABORTED')) problems.push(`request failed: ${request.method()} ${request.url()} ${reason}`);
  });
  page.on('response', (response) => {
    if (response.status() >= 400 && !(options.expectedStatuses ?? []).includes(response.status())) {
      problems.push(`HTTP ${response.status()}: ${response.request().method()} ${response.url()}`);
    }
  });
  return {
    page,
    context,
    problems,
    async screenshot(name) {
      mkdirSync(screenshotDir, { recursive: true });
      await page.screenshot({ path: path.join(screenshotDir, `${name}.png`), fullPage: true });
    },
    close: () => context.close(),
  };
}

/**
 * Runs `steps` in a new visitor's page (see openPage), then checks that nothing went wrong
 * in the page, and closes it whatever happened.
 */
export async function inConsole(
  baseUrl: string,
  steps: (consolePage: ConsolePage) => Promise<void>,
  options: { expectedStatuses?: number[] } = {},
): Promise<void> {
  const consolePage = await openPage(baseUrl, options);
  try {
    await steps(consolePage);
    expectNoProblems(consolePage);
  } finally {
    await consolePage.close();
  }
}

/** Signs in through the form and waits for the overview. */
export async function signIn(page: Page, username: string, password: string): Promise<void> {
  await page.goto('/sign-in');
  await page.locator('input[name=username]').fill(username);
  await page.locator('input[name=password]').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: `Welcome, ${username}` }).waitFor();
}

/** Nothing went wrong in the page. */
export function expectNoProblems(consolePage: ConsolePage): void {
  expect(consolePage.problems).toEqual([]);
}
