import { createBrowserRouter } from 'react-router';
import { NotFoundPage } from '../pages/not-found-page.tsx';
import { SignInPage } from '../pages/sign-in-page.tsx';
import { Loading } from '../ui/states.tsx';
import { Shell } from './shell.tsx';

/** A page loaded when first visited: each page is its own chunk. */
function page<T extends Record<string, unknown>>(load: () => Promise<T>, name: keyof T) {
  return async () => ({ Component: (await load())[name] as React.ComponentType });
}

export const router = createBrowserRouter([
  { path: '/sign-in', Component: SignInPage },
  {
    path: '/',
    Component: Shell,
    // Shown while the first page's chunk loads.
    HydrateFallback: Loading,
    children: [
      { index: true, lazy: page(() => import('../pages/overview-page.tsx'), 'OverviewPage') },
      { path: 'jobs', lazy: page(() => import('../pages/jobs/jobs-page.tsx'), 'JobsPage') },
      { path: 'jobs/new', lazy: page(() => import('../pages/jobs/submit-job-page.tsx'), 'SubmitJobPage') },
      { path: 'jobs/:id', lazy: page(() => import('../pages/jobs/job-detail-page.tsx'), 'JobDetailPage') },
      { path: 'queues', lazy: page(() => import('../pages/queues/queues-page.tsx'), 'QueuesPage') },
      { path: 'admin/users', lazy: page(() => import('../pages/admin/users-page.tsx'), 'UsersPage') },
      { path: 'admin/settings', lazy: page(() => import('../pages/admin/settings-page.tsx'), 'SettingsPage') },
      { path: 'admin/audit', lazy: page(() => import('../pages/admin/audit-page.tsx'), 'AuditPage') },
      { path: 'admin/system', lazy: page(() => import('../pages/admin/system-page.tsx'), 'SystemPage') },
      { path: 'account', lazy: page(() => import('../pages/account/account-page.tsx'), 'AccountPage') },
      // `/files` and `/files/<directory>`: a directory can be linked and reloaded.
      { path: 'files/*', lazy: page(() => import('../pages/files/files-page.tsx'), 'FilesPage') },
      { path: '*', Component: NotFoundPage },
    ],
  },
]);
