/**
 * The web console as served at /: headers, the SPA fallback, signing in and out, a
 * session kept across reloads, and navigation that shows each caller only what they may use.
 */
import { get, type IncomingHttpHeaders } from 'node:http';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Role } from '../../gen/yardmaster/v1/common_pb.ts';
import { inConsole, openPage, signIn, useBrowser } from '../support/browser.ts';
import { adminPassword, startTestServer, type TestServer } from '../support/test-server.ts';

let server: TestServer;

/** A GET whose body arrives as sent (fetch would decode it). */
function rawGet(url: string, acceptEncoding: string): Promise<{ headers: IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    get(url, { headers: { 'accept-encoding': acceptEncoding } }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ headers: response.headers, body: Buffer.concat(chunks) }));
      response.on('error', reject);
    }).on('error', reject);
  });
}

beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server?.close());
useBrowser();

describe('serving', () => {
  test('index.html is never cached and carries a CSP allowing only the page and the storage endpoint', async () => {
    for (const route of ['/', '/jobs', '/jobs/01a23b85-14e6-75ac-ada6-a639700f7993', '/admin/users']) {
      const response = await fetch(`${server.url}${route}`);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toContain('text/html');
      expect(response.headers.get('cache-control')).toBe('no-cache');
      const csp = response.headers.get('content-security-policy')!;
      expect(csp).toContain("default-src 'self'");
      expect(csp).toContain("script-src 'self'");
      expect(csp).toContain("frame-ancestors 'none'");
      expect(csp).toMatch(/connect-src 'self' http:\/\/127\.0\.0\.1:\d+/);
      expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    }
    const html = await (await fetch(server.url)).text();
    const script = /src="(\/assets\/[^"]+\.js)"/.exec(html)![1]!;
    const asset = await fetch(`${server.url}${script}`);
    expect(asset.status).toBe(200);
    expect(asset.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(asset.headers.get('content-type')).toContain('text/javascript');
  });

  test('assets go precompressed in the best encoding the browser accepts, and plain to one that accepts none', async () => {
    const html = await (await fetch(server.url)).text();
    const script = /src="(\/assets\/[^"]+\.js)"/.exec(html)![1]!;
    const plain = await rawGet(`${server.url}${script}`, 'identity');
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(plain.headers.vary).toBe('accept-encoding');
    const brotli = await rawGet(`${server.url}${script}`, 'gzip, deflate, br, zstd');
    expect(brotli.headers['content-encoding']).toBe('br');
    expect(Number(brotli.headers['content-length'])).toBe(brotli.body.byteLength);
    expect(brotli.body.byteLength).toBeLessThan(plain.body.byteLength / 2);
    expect(brotliDecompressSync(brotli.body).equals(plain.body)).toBe(true);
    const gzipped = await rawGet(`${server.url}${script}`, 'gzip, br;q=0');
    expect(gzipped.headers['content-encoding']).toBe('gzip');
    expect(gunzipSync(gzipped.body).equals(plain.body)).toBe(true);
  });

  test('the fallback never shadows an RPC, a plain route or a missing asset', async () => {
    expect((await fetch(`${server.url}/assets/missing-0000.js`)).status).toBe(404);
    expect((await fetch(`${server.url}/no/such/route`)).status).toBe(404);
    expect((await fetch(`${server.url}/metricz`)).status).toBe(404);
    expect((await fetch(`${server.url}/favicon-missing.png`)).status).toBe(404);
    expect((await fetch(`${server.url}/yardmaster.v1.NoSuchService/Nope`)).status).toBe(404);
    expect((await fetch(`${server.url}/healthz`)).headers.get('content-type')).toContain('application/json');
    const rpc = await fetch(`${server.url}/yardmaster.v1.AuthService/GetMe`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(rpc.status).toBe(401);
    expect((await fetch(`${server.url}/..%2f..%2fpackage.json`)).status).toBe(404);
  });
});

describe('signing in', () => {
  test('an admin signs in, sees every section, keeps the session across a reload, and signs out', async () => {
    await inConsole(server.url, async (browser) => {
      const { page } = browser;
      await page.goto('/jobs');
      await page.waitForURL(/\/sign-in\?next=%2Fjobs/);
      await browser.screenshot('sign-in');
      await signIn(page, 'admin', adminPassword);
      const nav = page.getByRole('navigation', { name: 'Main' });
      for (const section of ['Overview', 'Jobs', 'Files', 'Queues', 'Users', 'Settings', 'Audit log', 'System']) {
        await nav.getByRole('link', { name: section, exact: true }).waitFor();
      }
      await page.getByText('object storage').waitFor();
      await browser.screenshot('overview-admin');
      await page.reload();
      await page.getByRole('heading', { name: 'Welcome, admin' }).waitFor();
      await page.getByTestId('account-menu').click();
      await page.getByRole('menuitem', { name: 'Sign out' }).click();
      await page.waitForURL(/\/sign-in/);
      await page.goto('/');
      await page.waitForURL(/\/sign-in/);
    });
  });

  test('tabs share the session: a second tab is signed in, and signing out in one signs out the other', async () => {
    await inConsole(server.url, async (browser) => {
      const { page } = browser;
      await signIn(page, 'admin', adminPassword);
      const other = await browser.context.newPage();
      const otherErrors: string[] = [];
      other.on('response', (response) => {
        if (response.status() >= 400) otherErrors.push(`${response.status()} ${response.url()}`);
      });
      await other.goto('/jobs');
      await other.getByRole('heading', { name: 'Jobs' }).waitFor();
      await page.getByTestId('account-menu').click();
      await page.getByRole('menuitem', { name: 'Sign out' }).click();
      await page.waitForURL(/\/sign-in/);
      // The other tab learns it from the shared storage, without a reload or a failed call.
      await other.waitForURL(/\/sign-in/);
      expect(otherErrors).toEqual([]);
    });
  });

  test('a wrong password is shown on the form, and nothing else breaks', async () => {
    const browser = await openPage(server.url, { expectedStatuses: [401] });
    try {
      const { page } = browser;
      await page.goto('/sign-in');
      await page.locator('input[name=username]').fill('admin');
      await page.locator('input[name=password]').fill('not the password');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('alert').waitFor();
      expect(await page.getByRole('alert').textContent()).toMatch(/password/i);
      expect(browser.problems.filter((problem) => !problem.includes('401'))).toEqual([]);
    } finally {
      await browser.close();
    }
  });

  test('a plain user sees no administration and gets the not-found page at an admin URL', async () => {
    const user = await server.createUser({ role: Role.USER });
    await inConsole(server.url, async (browser) => {
      const { page } = browser;
      await signIn(page, user.user.username, user.password);
      const nav = page.getByRole('navigation', { name: 'Main' });
      await nav.getByRole('link', { name: 'Jobs', exact: true }).waitFor();
      expect(await nav.getByText('Administration').count()).toBe(0);
      expect(await nav.getByRole('link', { name: 'Users' }).count()).toBe(0);
      await browser.screenshot('overview-user');
      await page.goto('/admin/users');
      await page.getByText('No such page').waitFor();
    });
  });
});
