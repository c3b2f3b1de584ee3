/**
 * `yard` against a real server, run as a child process: signing in from standard input,
 * the session file's mode, a wrong password, jobs submitted and followed to their end
 * (the exit code follows the job), logs tailed until the job ends, --json output, and a
 * queue paused by an admin but not by a user.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { Role } from '../../gen/yardmaster/v1/common_pb.ts';
import { JobStatus } from '../../gen/yardmaster/v1/jobs_pb.ts';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { adminPassword, startTestServer, type TestServer } from '../support/test-server.ts';
import { openTerminal, signedInTerminal, type Terminal } from './support.ts';

let server: TestServer;
let admin: Terminal;

beforeAll(async () => {
  server = await startTestServer();
  admin = await signedInTerminal(server.url, 'admin', adminPassword);
});
afterAll(async () => {
  await admin?.close();
  await server?.close();
});

describe('signing in', () => {
  test('login reads the password from standard input and keeps the session in a file only its owner can read', async () => {
    const terminal = await openTerminal(server.url);
    try {
      const login = await terminal.run(['login', '--username', 'admin', '--password-stdin'], { input: `${adminPassword}\n` });
      expect(login.stderr).toBe('');
      expect(login.code).toBe(0);
      expect(login.stdout).toContain('Signed in');

      const sessionFile = path.join(terminal.configDir, 'sessions', 'default.json');
      expect((await stat(sessionFile)).mode & 0o777).toBe(0o600);
      expect((await stat(path.dirname(sessionFile))).mode & 0o777).toBe(0o700);
      expect((await stat(path.join(terminal.configDir, 'config.json'))).mode & 0o777).toBe(0o600);

      const whoami = await terminal.run(['whoami', '--json']);
      expect(whoami.code).toBe(0);
      expect(JSON.parse(whoami.stdout)).toMatchObject({ username: 'admin', role: 'ROLE_ADMIN' });
      // The session says where it comes from.
      const { sessions } = await (await server.adminClient()).auth.listSessions({});
      expect(sessions.map((session) => session.userAgent)).toContainEqual(expect.stringMatching(/^yard\/\d+\.\d+\.\d+ \(node v\d+/));

      expect((await terminal.run(['logout'])).code).toBe(0);
      await expect(stat(sessionFile)).rejects.toMatchObject({ code: 'ENOENT' });
      const after = await terminal.run(['whoami']);
      expect(after.code).toBe(3);
      expect(after.stderr).toMatch(/^yard: not signed in: run `yard login`/);
    } finally {
      await terminal.close();
    }
  });

  test('a wrong password exits 3 with one line naming the Connect code, and saves nothing', async () => {
    const terminal = await openTerminal(server.url);
    try {
      const login = await terminal.run(['login', '--username', 'admin', '--password-stdin'], { input: 'not-the-password\n' });
      expect(login.code).toBe(3);
      expect(login.stdout).toBe('');
      expect(login.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(/^yard: Unauthenticated: .+/)]);
      await expect(stat(path.join(terminal.configDir, 'sessions', 'default.json'))).rejects.toMatchObject({ code: 'ENOENT' });
    } finally {
      await terminal.close();
    }
  });
});

describe('jobs', () => {
  test('submit --wait exits 0 when the job succeeds (printing it as JSON with --json) and 10 when it fails', async () => {
    const [submit, failing] = await Promise.all([
      admin.run(['jobs', 'submit', 'sleep', '--param', 'seconds=1', '--wait', '--json']),
      admin.run(['jobs', 'submit', 'sleep', '--param', 'seconds=0', '--param', 'fail=true', '--wait']),
    ]);
    expect(submit.stderr).toBe('');
    expect(submit.code).toBe(0);
    expect(JSON.parse(submit.stdout)).toMatchObject({ type: 'sleep', status: 'JOB_STATUS_SUCCEEDED', result: { sleptSeconds: 1 } });
    expect(failing.code).toBe(10);
    expect(failing.stdout).toMatch(/failed/);
  });

  test('watch exits 0 for a job that succeeds and 10 for one that fails', async () => {
    const [succeeding, failing] = await Promise.all([
      admin.run(['jobs', 'submit', 'sleep', '--param', 'seconds=1']),
      admin.run(['jobs', 'submit', 'sleep', '--param', 'seconds=1', '--param', 'fail=true']),
    ]);
    expect([succeeding.code, failing.code]).toEqual([0, 0]);
    const [succeeded, failed] = await Promise.all([
      admin.run(['jobs', 'watch', succeeding.stdout.trim()]),
      admin.run(['jobs', 'watch', failing.stdout.trim()]),
    ]);
    expect(succeeded.code).toBe(0);
    expect(succeeded.stdout).toMatch(/succeeded/);
    expect(failed.code).toBe(10);
    expect(failed.stdout).toMatch(/failed/);
    expect(failed.stdout).toContain('failing as asked');
    // Without a terminal, progress comes as one line per change on standard error.
    expect(succeeded.stderr).toMatch(/succeeded 100% slept 1 of 1 s/);
  });

  test('logs --follow prints the lines as they come and ends when the job does', async () => {
    const client = await server.adminClient();
    const { job: submitted } = await client.jobs.createJob({ type: 'sleep', params: { seconds: 2 } });
    const id = submitted!.id;
    const logs = await admin.run(['jobs', 'logs', id, '--follow']);
    expect(logs.code).toBe(0);
    const lines = logs.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/info\s+sleeping for 2 s$/);
    expect(lines.at(-1)).toMatch(/info\s+done$/);
    expect((await client.jobs.getJob({ id })).job?.status).toBe(JobStatus.SUCCEEDED);

    const asJson = await admin.run(['jobs', 'logs', id, '--json']);
    expect(
      asJson.stdout
        .trimEnd()
        .split('\n')
        .map((line) => JSON.parse(line).message),
    ).toEqual(lines.map((line) => line.replace(/^.*?info\s+/, '')));
  });

  test('list --json is the ListJobs page, parsable', async () => {
    const list = await admin.run(['jobs', 'list', '--type', 'sleep', '--status', 'succeeded', '--json']);
    expect(list.code).toBe(0);
    const page = JSON.parse(list.stdout) as { jobs: { type: string; status: string }[] };
    expect(page.jobs.length).toBeGreaterThan(0);
    expect(page.jobs.every((job) => job.type === 'sleep' && job.status === 'JOB_STATUS_SUCCEEDED')).toBe(true);
  });

  test('invalid params exit 6 with the field at fault; a bad command line exits 2', async () => {
    const [invalid, missing, misspelt, unknown] = await Promise.all([
      admin.run(['jobs', 'submit', 'sleep', '--param', 'seconds=soon']),
      admin.run(['jobs', 'submit']),
      admin.run(['jobs', 'sbumit', 'sleep']),
      admin.run(['jobs', 'get', '01a23c35-0000-7000-8000-000000000000']),
    ]);
    expect(invalid.code).toBe(6);
    expect(invalid.stderr).toMatch(/^yard: InvalidArgument: .*params\.seconds/);
    expect([missing.code, misspelt.code, unknown.code]).toEqual([2, 2, 5]);
    expect(misspelt.stderr).toContain('Did you mean submit?');
  });
});

test('queue pause works for an admin and is refused to a user (exit 4)', async () => {
  const { user, password } = await server.createUser({ role: Role.USER });
  const userTerminal = await signedInTerminal(server.url, user.username, password);
  try {
    const refused = await userTerminal.run(['queue', 'pause', 'sleep']);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toMatch(/^yard: PermissionDenied: /);

    const paused = await admin.run(['queue', 'pause', 'sleep', '--json']);
    expect(paused.code).toBe(0);
    const { queues } = JSON.parse(paused.stdout) as { queues: { name: string; paused?: boolean }[] };
    expect(queues.find((queue) => queue.name === 'sleep')?.paused).toBe(true);
    const client = await server.adminClient();
    expect((await client.queue.getQueueStatus({})).pausedQueues).toEqual(['sleep']);
    await client.queue.resumeQueue({ queue: 'sleep' });
  } finally {
    await userTerminal.close();
  }
});
