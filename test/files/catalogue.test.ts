/**
 * FilesService catalogue: names and directories, other users' files, browsing, moving and deleting.
 */
import { randomBytes } from 'node:crypto';
import { Code } from '@connectrpc/connect';
import { describe, expect, test } from 'vitest';
import type { YardmasterClient } from '../../clients/ts/src/node.ts';
import type { File } from '../../gen/yardmaster/v1/files_pb.ts';
import { JobStatus } from '../../gen/yardmaster/v1/jobs_pb.ts';
import { connectErrorOf, expectConnectError, violatedFields } from '../support/assertions.ts';
import {
  kib,
  mib,
  server,
  admin,
  bucket,
  text,
  createUpload,
  put,
  uploadPresigned,
  uploadStream,
  download,
  fileRow,
  fileRowsOf,
  objectSize,
  storedFor,
  stagingPrefixOf,
  objectKeyPattern,
  expectSafeName,
  useFilesServer,
} from './support.ts';

useFilesServer();

// =======================================================================================

describe('names and directories', () => {
  test('a NUL in a name is InvalidArgument naming the field (PostgreSQL text cannot hold it), and nothing is written', async () => {
    const { user, client } = await server.createUser();
    const error = await expectConnectError(createUpload(client, { name: 'bad\u0000name.txt' }, text('x')), Code.InvalidArgument);
    expect(violatedFields(error)).toEqual(['name']);
    expect(await server.query('select id from files where owner_id = $1', [user.id])).toEqual([]);
  });

  test.each([
    ['../../etc/passwd', ['etc', 'passwd']],
    ['a/b', ['a', 'b']],
    ['a\\b', ['a', 'b']],
    ['con', ['con']],
    ['CON.txt', ['CON']],
    ['lpt1', ['lpt1']],
    ['  .hidden', ['hidden']],
    ['line\nbreak\ttab\u0007.txt', ['line', 'break', 'tab']],
    ['\u001b[31mred\u007f', ['red']],
    ['trailing dots...', ['trailing dots']],
    ['/leading/slash.txt', ['leading', 'slash.txt']],
  ])(
    'the name %j is cleaned (no separator, control character, `..`, leading dot or reserved name) and keeps what it can',
    async (name, kept) => {
      const { user, client } = await server.createUser();
      const bytes = text('x');
      const plan = await createUpload(client, { name }, bytes);
      const stored = plan.file!.name;
      expectSafeName(stored);
      expect(stored).not.toBe('..');
      for (const part of kept) expect(stored).toContain(part);
      expect(plan.file!.directory).toBe('/');
      const row = (await fileRow(plan.file!.id))!;
      expect(row.name).toBe(stored);
      expect(row.object_key).toBe(`files/${user.id}/${plan.file!.id}`);
      expect(row.object_key).toMatch(objectKeyPattern);
      expect(new URL(plan.uploadUrl).pathname).toBe(`/${bucket}/${stagingPrefixOf(user.id)}${plan.file!.id}`);
      await put(plan.uploadUrl, bytes);
      await client.files.completeUpload({ fileId: plan.file!.id });
      // The streamed path cleans the same way.
      expect((await uploadStream(client, { directory: '/streamed', name }, bytes)).name).toBe(stored);
    },
  );

  test.each(['..', '.', '///', '   ', '\u0000', '', '\\\\', '. .', '\u0001\u0002'])(
    'the name %j leaves nothing usable: InvalidArgument `name`, nothing written',
    async (name) => {
      const { user, client } = await server.createUser();
      const error = await expectConnectError(createUpload(client, { name, size: 1 }), Code.InvalidArgument);
      expect(violatedFields(error)).toEqual(['name']);
      const streamed = await expectConnectError(uploadStream(client, { name }, text('x')), Code.InvalidArgument);
      expect(violatedFields(streamed)).toEqual(['metadata.name']);
      expect(await fileRowsOf(user.id)).toEqual([]);
    },
  );

  test('directories are normalised: `..`, `.` and empty segments dropped, backslashes as separators, segments cleaned; too deep is InvalidArgument `directory`', async () => {
    const { client } = await server.createUser();
    const cases: [string, string][] = [
      ['/a/../../b', '/a/b'],
      ['/../..', '/'],
      ['', '/'],
      ['x\\y', '/x/y'],
      ['//p///q//', '/p/q'],
      ['/./c/.', '/c'],
      ['/con/d', '/_con/d'],
    ];
    for (const [index, [directory, expected]] of cases.entries()) {
      const plan = await createUpload(client, { directory, name: `f${index}.txt`, size: 1 });
      const stored = plan.file!.directory;
      expect(stored, `directory ${JSON.stringify(directory)}`).toBe(expected);
      expect(
        stored
          .split('/')
          .slice(1)
          .filter((segment) => segment !== ''),
      ).not.toContain('..');
      expect((await fileRow(plan.file!.id))!.directory).toBe(expected);
    }
    const deep = `/${Array.from({ length: 33 }, (_, index) => `d${index}`).join('/')}`;
    const error = await expectConnectError(createUpload(client, { directory: deep, name: 'deep.txt', size: 1 }), Code.InvalidArgument);
    expect(violatedFields(error)).toEqual(['directory']);
  });

  test('the same name twice in one directory is AlreadyExists FILE_EXISTS (also after cleaning, and while the first is still uploading); another directory is fine', async () => {
    const { user, client } = await server.createUser();
    await createUpload(client, { directory: '/dup', name: 'same.txt', size: 5 });
    for (const [directory, name] of [
      ['/dup', 'same.txt'],
      ['dup/', 'same.txt'],
      ['/dup/./', '  same.txt  '],
    ]) {
      const error = await expectConnectError(createUpload(client, { directory, name, size: 5 }), Code.AlreadyExists, 'FILE_EXISTS');
      expect(violatedFields(error)).toEqual(['name']);
    }
    await expectConnectError(
      uploadStream(client, { directory: '/dup', name: 'same.txt' }, text('12345')),
      Code.AlreadyExists,
      'FILE_EXISTS',
    );
    await uploadPresigned(client, { directory: '/dup', name: 'a_b' }, text('1'));
    await expectConnectError(createUpload(client, { directory: '/dup', name: 'a/b', size: 1 }), Code.AlreadyExists, 'FILE_EXISTS');
    await createUpload(client, { directory: '/elsewhere', name: 'same.txt', size: 5 });
    expect((await fileRowsOf(user.id)).map((row) => `${row.directory}/${row.name}`)).toEqual([
      '/dup/a_b',
      '/dup/same.txt',
      '/elsewhere/same.txt',
    ]);
    // Another account has a tree of its own.
    const { client: other } = await server.createUser();
    await createUpload(other, { directory: '/dup', name: 'same.txt', size: 5 });
  });
});

// =======================================================================================

describe("another user's files", () => {
  test('GetFile, Download, GetDownloadUrl, MoveFile, DeleteFile, CompleteUpload and AbortUpload are NotFound, exactly as for no file, and nothing changes', async () => {
    const { user: owner, client: ownerClient } = await server.createUser();
    const { client: stranger } = await server.createUser();
    const available = await uploadPresigned(ownerClient, { directory: '/private', name: 'secret.txt' }, text('top secret\n'));
    const uploadingPlan = await createUpload(ownerClient, { directory: '/private', name: 'coming.txt' }, text('soon'));
    await put(uploadingPlan.uploadUrl, text('soon'));
    const uploading = uploadingPlan.file!;
    const before = await fileRowsOf(owner.id);
    const nobody = '01a20540-c425-76c3-9669-8051ead8987d';

    const calls: [string, (id: string) => Promise<unknown>][] = [
      ['GetFile', (id) => stranger.files.getFile({ id })],
      ['Download', (id) => download(stranger, id)],
      ['GetDownloadUrl', (id) => stranger.files.getDownloadUrl({ id })],
      ['MoveFile', (id) => stranger.files.moveFile({ id, directory: '/mine', name: 'taken.txt' })],
      ['DeleteFile', (id) => stranger.files.deleteFile({ id })],
      ['CompleteUpload', (id) => stranger.files.completeUpload({ fileId: id })],
      ['AbortUpload', (id) => stranger.files.abortUpload({ fileId: id })],
    ];
    for (const [method, call] of calls) {
      const absent = await expectConnectError(() => call(nobody), Code.NotFound);
      for (const target of [available, uploading]) {
        const error = await connectErrorOf(() => call(target.id));
        expect(`${method}: ${Code[error.code]} ${error.rawMessage}`).toBe(`${method}: ${Code[absent.code]} ${absent.rawMessage}`);
      }
    }
    expect(await fileRowsOf(owner.id)).toEqual(before);
    expect(await objectSize(`files/${owner.id}/${available.id}`)).toBe(11);
    expect(await objectSize(`${stagingPrefixOf(owner.id)}${uploading.id}`)).toBe(4);

    for (const recursive of [false, true]) {
      for (const directory of ['/', '/private']) {
        const listing = await stranger.files.listFiles({ directory, recursive });
        expect(listing.files).toEqual([]);
        expect(listing.directories).toEqual([]);
      }
    }
    const listOther = await expectConnectError(stranger.files.listFiles({ ownerId: owner.id }), Code.InvalidArgument);
    expect(violatedFields(listOther)).toEqual(['owner_id']);
    const deleteOther = await expectConnectError(
      stranger.files.deleteDirectory({ directory: '/private', confirm: '/private', ownerId: owner.id }),
      Code.InvalidArgument,
    );
    expect(violatedFields(deleteOther)).toEqual(['owner_id']);
    const usageOther = await expectConnectError(stranger.files.getStorageUsage({ userId: owner.id }), Code.InvalidArgument);
    expect(violatedFields(usageOther)).toEqual(['user_id']);
    // Deleting the same path in one's own tree touches only one's own files.
    expect((await stranger.files.deleteDirectory({ directory: '/private', confirm: '/private' })).deletedFiles).toBe(0n);
    expect(await fileRowsOf(owner.id)).toEqual(before);
    // And the owner's job inputs cannot be another user's file.
    const job = await expectConnectError(stranger.jobs.createJob({ type: 'checksum', inputFileIds: [available.id] }), Code.InvalidArgument);
    expect(violatedFields(job)).toEqual(['input_file_ids[0]']);
  });

  test("admins see, list, download, move and delete anyone's files; an admin's MoveFile and DeleteFile are audited with the file id as target", async () => {
    const { user: owner, client: ownerClient } = await server.createUser();
    const bytes = text('owned by a user\n');
    const file = await uploadPresigned(ownerClient, { directory: '/mine', name: 'note.txt' }, bytes);
    const other = await uploadPresigned(ownerClient, { directory: '/mine/sub', name: 'other.txt' }, bytes);
    const { user: adminUser } = await admin.auth.getMe({});

    expect((await admin.files.getFile({ id: file.id })).file).toMatchObject({ id: file.id, ownerId: owner.id });
    const listing = await admin.files.listFiles({ ownerId: owner.id, directory: '/mine' });
    expect(listing.files.map((listed) => listed.id)).toEqual([file.id]);
    expect(listing.directories).toEqual(['/mine/sub']);
    expect((await admin.files.listFiles({ directory: '/mine' })).files).toEqual([]);
    expect((await download(admin, file.id)).bytes).toEqual(bytes);
    const usage = await admin.files.getStorageUsage({ userId: owner.id });
    expect(usage).toMatchObject({ bytes: BigInt(bytes.length * 2), fileCount: 2n });

    await admin.files.moveFile({ id: other.id, directory: '/mine/sub', name: 'renamed.txt' });
    expect(await fileRow(other.id)).toMatchObject({ name: 'renamed.txt', owner_id: owner.id });
    const moves = await server.query<{ actor_id: string; outcome: string }>(
      'select actor_id, outcome from audit_events where action = $1 and target = $2',
      ['yardmaster.v1.FilesService.MoveFile', other.id],
    );
    expect(moves).toEqual([{ actor_id: adminUser!.id, outcome: 'success' }]);

    await admin.files.deleteFile({ id: file.id });
    expect(await fileRow(file.id)).toBeUndefined();
    expect(await objectSize(`files/${owner.id}/${file.id}`)).toBeUndefined();
    const audits = await server.query<{ actor_id: string; target: string; outcome: string }>(
      'select actor_id, target, outcome from audit_events where action = $1 and target = $2',
      ['yardmaster.v1.FilesService.DeleteFile', file.id],
    );
    expect(audits).toEqual([{ actor_id: adminUser!.id, target: file.id, outcome: 'success' }]);

    // Reading another account's bytes is audited for admins; owners reading their own are not.
    await admin.files.getDownloadUrl({ id: other.id });
    await ownerClient.files.getDownloadUrl({ id: other.id });
    await download(ownerClient, other.id);
    const reads = await server.query<{ action: string; actor_id: string }>(
      'select action, actor_id from audit_events where target = $1 and action like $2 order by id',
      [other.id, 'yardmaster.v1.FilesService.%Download%'],
    );
    expect(reads).toEqual([{ action: 'yardmaster.v1.FilesService.GetDownloadUrl', actor_id: adminUser!.id }]);
    // The admin's Download of the first file, earlier.
    expect(
      await server.query('select actor_id from audit_events where action = $1 and target = $2', [
        'yardmaster.v1.FilesService.Download',
        file.id,
      ]),
    ).toEqual([{ actor_id: adminUser!.id }]);

    const { deletedFiles } = await admin.files.deleteDirectory({ directory: '/mine', confirm: '/mine', ownerId: owner.id });
    expect(deletedFiles).toBe(1n);
    expect(
      await server.query('select actor_id from audit_events where action = $1 and target = $2', [
        'yardmaster.v1.FilesService.DeleteDirectory',
        `${owner.id}:/mine`,
      ]),
    ).toEqual([{ actor_id: adminUser!.id }]);
    expect(await fileRow(other.id)).toBeUndefined();
    expect(await storedFor(owner.id)).toEqual({ objects: [], multipart: [] });
  });
});

// =======================================================================================

describe('browsing, moving and deleting', () => {
  async function tree(client: YardmasterClient): Promise<Map<string, File>> {
    const files = new Map<string, File>();
    for (const [directory, name] of [
      ['/', 'top.txt'],
      ['/docs', 'a.txt'],
      ['/docs', 'b.txt'],
      ['/docs/sub', 'c.txt'],
      ['/docs/sub/deeper', 'd.txt'],
      ['/docs2', 'e.txt'],
      ['/a_b', 'f.txt'],
      ['/axb', 'g.txt'],
    ] as const) {
      files.set(
        `${directory === '/' ? '' : directory}/${name}`,
        await uploadStream(client, { directory, name }, text(`${directory} ${name}\n`)),
      );
    }
    return files;
  }

  test('ListFiles: the files of one directory and its immediate subdirectories as full paths; recursive: everything below, never a sibling that shares a prefix', async () => {
    const { client } = await server.createUser();
    await tree(client);
    const paths = (files: File[]) => files.map((file) => `${file.directory === '/' ? '' : file.directory}/${file.name}`);

    const root = await client.files.listFiles({});
    expect(paths(root.files)).toEqual(['/top.txt']);
    expect(root.directories).toEqual(['/a_b', '/axb', '/docs', '/docs2']);
    const docs = await client.files.listFiles({ directory: '/docs' });
    expect(paths(docs.files)).toEqual(['/docs/a.txt', '/docs/b.txt']);
    expect(docs.directories).toEqual(['/docs/sub']);
    expect(docs.nextPageToken).toBe('');
    expect((await client.files.listFiles({ directory: 'docs/' })).directories).toEqual(['/docs/sub']);
    const recursive = await client.files.listFiles({ directory: '/docs', recursive: true });
    expect(paths(recursive.files)).toEqual(['/docs/a.txt', '/docs/b.txt', '/docs/sub/c.txt', '/docs/sub/deeper/d.txt']);
    expect(recursive.directories).toEqual(['/docs/sub']);
    expect(paths((await client.files.listFiles({ directory: '/a_b', recursive: true })).files)).toEqual(['/a_b/f.txt']);
    const empty = await client.files.listFiles({ directory: '/nothing/here' });
    expect(empty).toMatchObject({ files: [], directories: [], nextPageToken: '' });
  });

  test("ListFiles pages: keyset pages of 3 visit every file once, in order; subdirectories come with the first page only; another listing's token is InvalidArgument", async () => {
    const { client } = await server.createUser();
    const files = await tree(client);
    const seen: string[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const page = await client.files.listFiles({ directory: '/', recursive: true, pageSize: 3, pageToken });
      expect(page.files.length).toBeLessThanOrEqual(3);
      expect(page.directories, `directories on page ${pages + 1}`).toEqual(pages === 0 ? ['/a_b', '/axb', '/docs', '/docs2'] : []);
      seen.push(...page.files.map((file) => file.id));
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken !== '' && pages < 10);
    expect(pages).toBe(3);
    expect([...seen].sort()).toEqual([...files.values()].map((file) => file.id).sort());
    // The same order as one page of everything.
    expect(seen).toEqual((await client.files.listFiles({ directory: '/', recursive: true, pageSize: 1000 })).files.map((file) => file.id));
    const first = await client.files.listFiles({ directory: '/', recursive: true, pageSize: 3 });
    const error = await expectConnectError(
      client.files.listFiles({ directory: '/docs', recursive: true, pageSize: 3, pageToken: first.nextPageToken }),
      Code.InvalidArgument,
    );
    expect(violatedFields(error)).toEqual(['page_token']);
  });

  test('MoveFile renames and moves (path cleaned, bytes untouched); a taken path is AlreadyExists FILE_EXISTS and nothing changes; a name with nothing usable is InvalidArgument', async () => {
    const { user, client } = await server.createUser();
    const bytes = text('moving bytes\n');
    const file = await uploadPresigned(client, { directory: '/inbox', name: 'draft.txt' }, bytes);
    const taken = await uploadPresigned(client, { directory: '/archive/2024', name: 'final.txt' }, text('taken'));
    const key = `files/${user.id}/${file.id}`;

    const renamed = (await client.files.moveFile({ id: file.id, name: 'renamed.txt' })).file!;
    expect(renamed).toMatchObject({ directory: '/inbox', name: 'renamed.txt' });
    const moved = (await client.files.moveFile({ id: file.id, directory: 'archive/.//2024/' })).file!;
    expect(moved).toMatchObject({ directory: '/archive/2024', name: 'renamed.txt' });
    const both = (await client.files.moveFile({ id: file.id, directory: '/x', name: '../y.txt' })).file!;
    expect(both.directory).toBe('/x');
    expectSafeName(both.name);

    const before = await fileRow(file.id);
    const clash = await expectConnectError(
      client.files.moveFile({ id: file.id, directory: '/archive/2024', name: 'final.txt' }),
      Code.AlreadyExists,
      'FILE_EXISTS',
    );
    expect(violatedFields(clash)).toEqual(['name']);
    expect(await fileRow(file.id)).toEqual(before);
    expect((await client.files.getFile({ id: taken.id })).file).toMatchObject({ directory: '/archive/2024', name: 'final.txt' });
    const nameless = await expectConnectError(client.files.moveFile({ id: file.id, name: '..' }), Code.InvalidArgument);
    expect(violatedFields(nameless)).toEqual(['name']);
    expect(await fileRow(file.id)).toEqual(before);

    expect((await fileRow(file.id))!.object_key).toBe(key);
    expect((await download(client, file.id)).bytes).toEqual(bytes);
    expect((await client.files.listFiles({ directory: '/x' })).files.map((listed) => listed.id)).toEqual([file.id]);
  });

  test('DeleteFile removes the row and the object; a second DeleteFile is NotFound', async () => {
    const { user, client } = await server.createUser();
    const file = await uploadPresigned(client, { name: 'doomed.bin' }, randomBytes(4 * kib));
    const keep = await uploadPresigned(client, { name: 'kept.bin' }, randomBytes(4 * kib));
    await client.files.deleteFile({ id: file.id });
    expect(await fileRow(file.id)).toBeUndefined();
    expect(await storedFor(user.id)).toEqual({ objects: [`files/${user.id}/${keep.id}`], multipart: [] });
    await expectConnectError(client.files.deleteFile({ id: file.id }), Code.NotFound);
    await expectConnectError(client.files.getFile({ id: file.id }), Code.NotFound);
    const bad = await expectConnectError(client.files.deleteFile({ id: 'not-a-uuid' }), Code.InvalidArgument);
    expect(violatedFields(bad)).toEqual(['id']);
  });

  test('DeleteDirectory needs confirm equal to the directory, refuses `/`, and deletes every file below it (rows, objects, uploads in progress) and nothing else', async () => {
    const { user, client } = await server.createUser();
    const files = await tree(client);
    const uploading = await createUpload(client, { directory: '/docs/sub', name: 'partial.txt' }, text('partial'));
    await put(uploading.uploadUrl, text('partial'));
    const multipart = await createUpload(client, { directory: '/docs', name: 'large.bin', size: 70 * mib });
    await put(multipart.parts[0]!.url, randomBytes(mib));

    const mismatch = await expectConnectError(client.files.deleteDirectory({ directory: '/docs', confirm: '/doc' }), Code.InvalidArgument);
    expect(violatedFields(mismatch)).toEqual(['confirm']);
    const unconfirmed = await expectConnectError(client.files.deleteDirectory({ directory: '/docs' }), Code.InvalidArgument);
    expect(violatedFields(unconfirmed)).toEqual(['confirm']);
    for (const directory of ['/', '', '/../']) {
      const root = await expectConnectError(client.files.deleteDirectory({ directory, confirm: directory }), Code.InvalidArgument);
      expect(violatedFields(root)).toEqual(['directory']);
    }
    expect(await fileRowsOf(user.id)).toHaveLength(files.size + 2);

    const { deletedFiles } = await client.files.deleteDirectory({ directory: '/docs', confirm: '/docs' });
    expect(deletedFiles).toBe(6n);
    const left = (await fileRowsOf(user.id)).map((row) => `${row.directory}/${row.name}`);
    expect(left).toEqual(['//top.txt', '/a_b/f.txt', '/axb/g.txt', '/docs2/e.txt']);
    const keys = [...files.entries()]
      .filter(([filePath]) => !filePath.startsWith('/docs/'))
      .map(([, file]) => `files/${user.id}/${file.id}`);
    expect(await storedFor(user.id)).toEqual({ objects: keys.sort(), multipart: [] });
    expect((await client.files.listFiles({})).directories).toEqual(['/a_b', '/axb', '/docs2']);
    const { deletedFiles: none } = await client.files.deleteDirectory({ directory: '/docs', confirm: '/docs' });
    expect(none).toBe(0n);
  });

  test('a file that is an input of a queued job cannot be deleted (FailedPrecondition FILE_IN_USE), alone or with its directory; once the job is cancelled it can', async () => {
    const { user, client } = await server.createUser();
    const input = await uploadPresigned(client, { directory: '/inputs', name: 'data.bin' }, randomBytes(kib));
    const sibling = await uploadPresigned(client, { directory: '/inputs', name: 'other.bin' }, randomBytes(kib));
    await admin.queue.pauseQueue({ queue: 'checksum' });
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      const { job } = await client.jobs.createJob({ type: 'checksum', inputFileIds: [input.id] });
      expect((await client.jobs.getJob({ id: job!.id })).job!.status).toBe(JobStatus.QUEUED);
      await expectConnectError(client.files.deleteFile({ id: input.id }), Code.FailedPrecondition, 'FILE_IN_USE');
      await expectConnectError(
        client.files.deleteDirectory({ directory: '/inputs', confirm: '/inputs' }),
        Code.FailedPrecondition,
        'FILE_IN_USE',
      );
      await expectConnectError(admin.files.deleteFile({ id: input.id }), Code.FailedPrecondition, 'FILE_IN_USE');
      expect((await fileRowsOf(user.id)).map((row) => row.id).sort()).toEqual([input.id, sibling.id].sort());
      expect((await storedFor(user.id)).objects).toHaveLength(2);
      // Moving it is fine: jobs refer to files by id.
      await client.files.moveFile({ id: input.id, name: 'renamed.bin' });

      await client.jobs.cancelJob({ id: job!.id });
      await client.files.deleteFile({ id: input.id });
      expect(await fileRow(input.id)).toBeUndefined();
      expect(await storedFor(user.id)).toEqual({ objects: [`files/${user.id}/${sibling.id}`], multipart: [] });
    } finally {
      await admin.queue.resumeQueue({ queue: 'checksum' });
    }
  });
});
