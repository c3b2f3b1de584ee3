import type { ReactNode } from 'react';
import { useSession } from '../app/session.tsx';
import { NotFoundPage } from '../pages/not-found-page.tsx';
import { Loading } from './states.tsx';

/**
 * A page only callers allowed `method` may see. Anyone else gets the not-found page, as
 * the server would answer for a resource that is not theirs: an admin URL tells a plain
 * user nothing.
 */
export function RequirePermission({ method, children }: { method: string; children: ReactNode }) {
  const session = useSession();
  if (!session.permissionsLoaded) return <Loading />;
  if (!session.can(method)) return <NotFoundPage />;
  return children;
}
