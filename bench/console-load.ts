/**
 * How fast the web console becomes usable in this machine's Chromium (Debian's, through
 * playwright-core), against a server process as deployed: the sign-in page on a first
 * visit (empty cache), and the overview and jobs pages of a signed-in visitor, first with
 * an empty cache and then on a reload. Each figure is the median of the rounds, read from
 * the page's own clock (navigation start = 0): first contentful paint, DOMContentLoaded,
 * and "usable": the moment the page's controls are on screen with their data (the
 * sign-in form; the overview's dependency checks; the jobs table's first rows). Also the
 * JavaScript the first visit transfers (what the network carried: compressed) and the
 * long tasks (> 50 ms) the main thread ran until then.
 *
 *   npx node bench/console-load.ts [--rounds 5] [--screenshots docs]   (saves console-<page>.png there)
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type Browser, chromium, type Page } from 'playwright-core';
import { createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { JobsService } from '../gen/yardmaster/v1/jobs_pb.ts';
import { adminPassword, median, positiveFlag, repoRoot, startBenchPostgres, startServerProcess } from './support.ts';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' }, screenshots: { type: 'string' } } });
const rounds = positiveFlag(values, 'rounds', 5);

interface Load {
  fcp: number;
  domContentLoaded: number;
  usable: number;
  scriptBytes: number;
  longTasks: number;
}

/** Records long tasks from the first moment of every page of the context. */
const observeLongTasks = () => {
  const seen: number[] = [];
  (globalThis as unknown as { longTasks: number[] }).longTasks = seen;
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) seen.push(entry.duration);
  }).observe({ type: 'longtask', buffered: true });
};

async function timingsOf(page: Page): Promise<Load> {
  return page.evaluate(() => {
    const usable = performance.now();
    const navigation = performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming;
    const fcp = performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? Number.NaN;
    const scripts = (performance.getEntriesByType('resource') as PerformanceResourceTiming[]).filter((entry) => entry.name.endsWith('.js'));
    const longTasks = (globalThis as unknown as { longTasks: number[] }).longTasks ?? [];
    return {
      fcp,
      domContentLoaded: navigation.domContentLoadedEventEnd,
      usable,
      scriptBytes: scripts.reduce((sum, entry) => sum + entry.transferSize, 0),
      longTasks: longTasks.length,
    };
  });
}

function summary(name: string, loads: Load[]): string {
  const ms = (pick: (load: Load) => number) => `${median(loads.map(pick)).toFixed(0)} ms`;
  const kib = (median(loads.map((load) => load.scriptBytes)) / 1024).toFixed(0);
  return `${name.padEnd(34)} FCP ${ms((l) => l.fcp).padStart(7)}   DOMContentLoaded ${ms((l) => l.domContentLoaded).padStart(7)}   usable ${ms((l) => l.usable).padStart(7)}   JS over the wire ${kib.padStart(4)} KiB   long tasks ${median(loads.map((l) => l.longTasks))}`;
}

const postgres = await startBenchPostgres();
const server = await startServerProcess(await postgres.createDatabase('console_load'));
let browser: Browser | undefined;
try {
  // A few jobs, so the jobs table has rows to show.
  const transport = createConnectTransport({ baseUrl: server.url, httpVersion: '1.1' });
  const login = await fetch(`${server.url}/yardmaster.v1.AuthService/Login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: adminPassword }),
  });
  const { accessToken } = (await login.json()) as { accessToken: string };
  const jobs = createClient(JobsService, transport);
  for (let index = 0; index < 30; index++) {
    await jobs.createJob({ type: 'noop', name: `report ${index}` }, { headers: { authorization: `Bearer ${accessToken}` } });
  }

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  });
  const viewport = { width: 1366, height: 820 };

  const signInLoads: Load[] = [];
  for (let round = 0; round < rounds; round++) {
    const context = await browser.newContext({ baseURL: server.url, viewport });
    await context.addInitScript(observeLongTasks);
    const page = await context.newPage();
    await page.goto('/sign-in');
    await page.locator('input[name=username]').waitFor();
    signInLoads.push(await timingsOf(page));
    await context.close();
  }

  // A signed-in visitor: sign in once, then open pages in fresh contexts holding the tokens.
  const signing = await browser.newContext({ baseURL: server.url, viewport });
  const signingPage = await signing.newPage();
  await signingPage.goto('/sign-in');
  await signingPage.locator('input[name=username]').fill('admin');
  await signingPage.locator('input[name=password]').fill(adminPassword);
  await signingPage.getByRole('button', { name: 'Sign in' }).click();
  await signingPage.getByRole('heading', { name: 'Welcome, admin' }).waitFor();
  const storageState = await signing.storageState();
  await signing.close();

  const pages = [
    { name: 'overview', route: '/', ready: (page: Page) => page.getByText('object storage').waitFor() },
    { name: 'jobs', route: '/jobs', ready: (page: Page) => page.getByText('report 29').waitFor() },
  ];
  const lines = [summary('sign-in, first visit', signInLoads)];
  for (const { name, route, ready } of pages) {
    const cold: Load[] = [];
    const warm: Load[] = [];
    for (let round = 0; round < rounds; round++) {
      const context = await browser.newContext({ baseURL: server.url, viewport, storageState });
      await context.addInitScript(observeLongTasks);
      const page = await context.newPage();
      await page.goto(route);
      await ready(page);
      cold.push(await timingsOf(page));
      await page.reload();
      await ready(page);
      warm.push(await timingsOf(page));
      if (values.screenshots && round === rounds - 1) {
        await page.screenshot({ path: path.resolve(repoRoot, values.screenshots, `console-${name}.png`) });
      }
      await context.close();
    }
    lines.push(summary(`${name}, signed in, empty cache`, cold), summary(`${name}, signed in, reload`, warm));
  }
  console.log(`web console load in ${browser.version()} (median of ${rounds} rounds, server: node src/main.ts)\n`);
  for (const line of lines) console.log(line);
} finally {
  await browser?.close();
  await server.stop();
  await postgres.stop();
}
