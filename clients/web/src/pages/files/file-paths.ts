/** Directories as the files page shows them in its URL: `/files/photos/2024` is the directory `/photos/2024`. */

/** The directory of a `/files/*` URL's splat (already decoded by the router); `/` for none. */
export function directoryOfSplat(splat: string | undefined): string {
  const segments = (splat ?? '').split('/').filter((segment) => segment !== '');
  return `/${segments.join('/')}`;
}

/** The page of a directory. */
export function filesUrl(directory: string): string {
  const segments = directory.split('/').filter((segment) => segment !== '');
  return segments.length === 0 ? '/files' : `/files/${segments.map(encodeURIComponent).join('/')}`;
}

/** `/photos/2024` → [{ name: 'Files', directory: '/' }, { name: 'photos', ... }, { name: '2024', ... }]. */
export function breadcrumbsOf(directory: string): { name: string; directory: string }[] {
  const segments = directory.split('/').filter((segment) => segment !== '');
  return [
    { name: 'All files', directory: '/' },
    ...segments.map((name, index) => ({ name, directory: `/${segments.slice(0, index + 1).join('/')}` })),
  ];
}

/** The last segment of a directory path. */
export function baseName(directory: string): string {
  return (
    directory
      .split('/')
      .filter((segment) => segment !== '')
      .at(-1) ?? '/'
  );
}

/** A directory as typed by a person (`photos/2024/`, ` /a//b `) in the form the server keeps (`/photos/2024`). */
export function normalizeTypedDirectory(typed: string): string {
  return directoryOfSplat(typed.trim());
}

/** The full path of a file: `/photos/cat.png`, `/cat.png`. */
export function pathOf(directory: string, name: string): string {
  return `${directory === '/' ? '' : directory}/${name}`;
}
