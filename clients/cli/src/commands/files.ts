import { stat } from 'node:fs/promises';
import path from 'node:path';
import { downloadFile, FileStatus, uploadFile, type File as StoredFile, type YardmasterClient } from '@yardmaster/client';
import type { Command } from 'commander';
import { duration, examples, integer } from '../arguments.ts';
import type { ContextFactory } from '../context.ts';
import { CliFailure, ExitCode } from '../exit-codes.ts';
import { enumName, formatBytes, formatTime } from '../output.ts';
import { transferBar } from '../progress.ts';
import { confirmByTyping } from '../prompts.ts';

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * A file's id from what a person types: an id as is, or a path (`/dir/name`, the leading
 * slash optional) looked up in its directory.
 */
export async function resolveFileId(client: YardmasterClient, reference: string, signal?: AbortSignal): Promise<string> {
  if (uuidPattern.test(reference)) return reference;
  return (await findFileByPath(client, reference, signal)).id;
}

async function findFileByPath(client: YardmasterClient, reference: string, signal?: AbortSignal): Promise<StoredFile> {
  const full = path.posix.join('/', reference);
  const directory = path.posix.dirname(full);
  const name = path.posix.basename(full);
  let pageToken = '';
  do {
    const page = await client.files.listFiles({ directory, pageSize: 1000, pageToken }, { signal });
    const found = page.files.find((file) => file.name === name);
    if (found) return found;
    pageToken = page.nextPageToken;
  } while (pageToken);
  throw new CliFailure(`no file ${full}`, ExitCode.notFound);
}

async function resolveFile(client: YardmasterClient, reference: string, signal: AbortSignal): Promise<StoredFile> {
  if (uuidPattern.test(reference)) return (await client.files.getFile({ id: reference }, { signal })).file!;
  return findFileByPath(client, reference, signal);
}

function filePath(file: StoredFile): string {
  return path.posix.join(file.directory, file.name);
}

/** Upload, download, browse and organise files. */
export function registerFileCommands(program: Command, context: ContextFactory): void {
  const files = program.command('files').description('Upload, download, browse and organise files');

  examples(
    files
      .command('upload <paths...>')
      .description('Upload files with a progress bar (bytes, rate, ETA); prints each file id')
      .option('-d, --dir <directory>', 'directory to put them in', '/')
      .option('--method <method>', 'presigned (straight to storage, default) or stream (through the server)', 'presigned')
      .option('--parallel <n>', 'parts in flight for large (multipart) uploads', integer, 4)
      .action(async (paths: string[], options: { dir: string; method: string; parallel: number }, command: Command) => {
        const ctx = context(command);
        const client = ctx.signedInClient;
        if (options.method !== 'presigned' && options.method !== 'stream') throw new CliFailure(`--method must be presigned or stream`);
        const uploaded: StoredFile[] = [];
        for (const local of paths) {
          const { size } = await stat(local).catch(() => {
            throw new CliFailure(`cannot read ${local}`, ExitCode.notFound);
          });
          const bar = transferBar(ctx.out, path.basename(local), size);
          try {
            const file = await uploadFile(client, {
              path: local,
              directory: options.dir,
              sha256: true,
              method: options.method,
              parallelParts: options.parallel,
              signal: ctx.signal,
              onProgress: ({ loaded }) => bar.update(loaded),
            });
            uploaded.push(file);
          } finally {
            bar.stop();
          }
          if (!ctx.out.json) ctx.out.line(`${uploaded.at(-1)!.id}  ${filePath(uploaded.at(-1)!)}  ${formatBytes(size)}`);
        }
        if (ctx.out.json) ctx.out.printJson(uploaded);
      }),
    ['yard files upload ./big.iso --dir /isos', 'yard files upload *.csv --dir /incoming --json | jq -r ".[].id"'],
  );

  examples(
    files
      .command('download <file>')
      .description('Download a file (id or /path) with a progress bar; the SHA-256 is checked')
      .option('-o, --output <file>', 'where to write it ("-" for standard output); default: its name, here')
      .option('--method <method>', 'url (straight from storage, default) or stream (through the server)', 'url')
      .action(async (reference: string, options: { output?: string; method: string }, command: Command) => {
        const ctx = context(command);
        const client = ctx.signedInClient;
        if (options.method !== 'url' && options.method !== 'stream') throw new CliFailure(`--method must be url or stream`);
        const file = await resolveFile(client, reference, ctx.signal);
        const total = Number(file.size);
        if (options.output === '-') {
          await downloadFile(client, {
            id: file.id,
            method: options.method,
            sha256: true,
            signal: ctx.signal,
            sink: (chunk) =>
              new Promise<void>((resolve, reject) => process.stdout.write(chunk, (error) => (error ? reject(error) : resolve()))),
          });
          return;
        }
        const target = options.output ?? file.name;
        const bar = transferBar(ctx.out, file.name, total);
        try {
          await downloadFile(client, {
            id: file.id,
            path: target,
            method: options.method,
            sha256: true,
            signal: ctx.signal,
            onProgress: ({ loaded }) => bar.update(loaded),
          });
        } finally {
          bar.stop();
        }
        if (ctx.out.json) return ctx.out.printJson({ file, path: target });
        ctx.out.line(`${target}  ${formatBytes(total)}  sha256 ${file.sha256}`);
      }),
    ['yard files download /isos/big.iso -o copy.iso', 'yard files download 0193a5c2-... -o - | tar xz'],
  );

  examples(
    files
      .command('ls [directory]')
      .description('List a directory: its subdirectories, then its files')
      .option('-r, --recursive', 'every file below the directory')
      .option('--owner <userId>', "another user's files (admins)")
      .option('--limit <n>', 'files per page (default 50, at most 1000)', integer)
      .option('--page-token <token>', 'the next page, as printed after the previous one')
      .action(
        async (
          directory: string | undefined,
          options: { recursive?: boolean; owner?: string; limit?: number; pageToken?: string },
          command: Command,
        ) => {
          const ctx = context(command);
          const page = await ctx.signedInClient.files.listFiles({
            directory: directory ?? '/',
            recursive: options.recursive ?? false,
            ownerId: options.owner ?? '',
            pageSize: options.limit ?? 0,
            pageToken: options.pageToken ?? '',
          });
          if (ctx.out.json) return ctx.out.printJson(page);
          const out = ctx.out;
          out.table(
            ['NAME', 'SIZE', 'TYPE', 'STATUS', 'UPDATED', 'ID'],
            [
              ...page.directories.map((sub) => [out.colors.blue(`${sub.replace(/\/$/, '')}/`), '-', 'directory', '', '', '']),
              ...page.files.map((file) => [
                options.recursive ? filePath(file) : file.name,
                formatBytes(file.size),
                file.contentType || '-',
                file.status === FileStatus.AVAILABLE ? 'available' : out.colors.yellow(enumName(FileStatus, file.status)),
                formatTime(file.updateTime),
                file.id,
              ]),
            ],
          );
          if (page.nextPageToken) out.note(`more: --page-token ${page.nextPageToken}`);
        },
      ),
    ['yard files ls /isos', 'yard files ls / --recursive --json'],
  );

  files
    .command('get <file>')
    .alias('stat')
    .description("Show a file's metadata (id or /path)")
    .action(async (reference: string, _options: unknown, command: Command) => {
      const ctx = context(command);
      const file = await resolveFile(ctx.signedInClient, reference, ctx.signal);
      if (ctx.out.json) return ctx.out.printJson(file);
      ctx.out.fields([
        ['id', file.id],
        ['path', filePath(file)],
        ['size', `${formatBytes(file.size)} (${file.size} bytes)`],
        ['type', file.contentType || '-'],
        ['sha256', file.sha256 || '-'],
        ['status', enumName(FileStatus, file.status)],
        ['job', file.jobId || '-'],
        ['created', formatTime(file.createTime)],
        ['updated', formatTime(file.updateTime)],
      ]);
    });

  examples(
    files
      .command('mv <file> <destination>')
      .description('Move or rename a file; a destination ending in "/" keeps the name')
      .action(async (reference: string, destination: string, _options: unknown, command: Command) => {
        const ctx = context(command);
        const client = ctx.signedInClient;
        const file = await resolveFile(client, reference, ctx.signal);
        const target = destination.endsWith('/') ? { directory: destination, name: file.name } : splitPath(destination);
        const moved = (await client.files.moveFile({ id: file.id, ...target })).file!;
        if (ctx.out.json) return ctx.out.printJson(moved);
        ctx.out.line(`${filePath(file)} -> ${filePath(moved)}`);
      }),
    ['yard files mv /incoming/a.csv /archive/', 'yard files mv /incoming/a.csv /incoming/b.csv'],
  );

  files
    .command('rm <files...>')
    .description('Delete files (ids or /paths)')
    .action(async (references: string[], _options: unknown, command: Command) => {
      const ctx = context(command);
      const client = ctx.signedInClient;
      const deleted: string[] = [];
      for (const reference of references) {
        const id = await resolveFileId(client, reference, ctx.signal);
        await client.files.deleteFile({ id });
        deleted.push(id);
        if (!ctx.out.json) ctx.out.line(`deleted ${reference}`);
      }
      if (ctx.out.json) ctx.out.printJson({ deleted });
    });

  files
    .command('rmdir <directory>')
    .description('Delete a directory and every file below it')
    .option('-y, --yes', 'do not ask to confirm')
    .option('--owner <userId>', "another user's directory (admins)")
    .action(async (directory: string, options: { yes?: boolean; owner?: string }, command: Command) => {
      const ctx = context(command);
      const client = ctx.signedInClient;
      if (!options.yes) await confirmByTyping(`Every file below ${directory} will be deleted`, directory, ctx.signal);
      const { deletedFiles } = await client.files.deleteDirectory({ directory, confirm: directory, ownerId: options.owner ?? '' });
      if (ctx.out.json) return ctx.out.printJson({ directory, deletedFiles: Number(deletedFiles) });
      ctx.out.line(`deleted ${directory} (${deletedFiles} files)`);
    });

  files
    .command('url <file>')
    .description('A presigned download URL (id or /path)')
    .option('--expires <duration>', 'how long it stays valid, e.g. 15m or 1h')
    .action(async (reference: string, options: { expires?: string }, command: Command) => {
      const ctx = context(command);
      const client = ctx.signedInClient;
      const id = await resolveFileId(client, reference, ctx.signal);
      const response = await client.files.getDownloadUrl({ id, expires: options.expires ? duration(options.expires) : undefined });
      if (ctx.out.json) return ctx.out.printJson(response);
      ctx.out.line(response.url);
    });

  files
    .command('usage')
    .description('Storage used: bytes, files, quota, by content type')
    .option('--user <userId>', "another user's usage (admins)")
    .action(async (options: { user?: string }, command: Command) => {
      const ctx = context(command);
      const usage = await ctx.signedInClient.files.getStorageUsage({ userId: options.user ?? '' });
      if (ctx.out.json) return ctx.out.printJson(usage);
      ctx.out.fields([
        ['used', `${formatBytes(usage.bytes)} in ${usage.fileCount} files`],
        ['quota', usage.quotaBytes > 0n ? formatBytes(usage.quotaBytes) : 'none'],
        ['uploading', formatBytes(usage.uploadingBytes)],
      ]);
      if (usage.byContentType.length > 0) {
        ctx.out.line();
        ctx.out.table(
          ['CONTENT TYPE', 'SIZE', 'FILES'],
          usage.byContentType.map((entry) => [entry.contentType || '-', formatBytes(entry.bytes), String(entry.fileCount)]),
        );
      }
    });
}

function splitPath(destination: string): { directory: string; name: string } {
  const full = path.posix.join('/', destination);
  return { directory: path.posix.dirname(full), name: path.posix.basename(full) };
}
