import { useQuery, useQueryClient } from '@tanstack/react-query';
import { createContext, type ReactNode, useCallback, useContext, useEffect, useMemo, useState } from 'react';
import { Role, type User } from '@gen/yardmaster/v1/common_pb.ts';
import { client, onSessionChange } from '../api/client.ts';

export interface Session {
  /** Signed in (tokens kept); `user` is loaded once the first GetMe answers. */
  signedIn: boolean;
  user: User | undefined;
  isAdmin: boolean;
  /** Whether the caller may call a method, e.g. `yardmaster.v1.QueueService.PauseQueue`. */
  can(method: string): boolean;
  /** Whether `can` answers from the caller's permissions (false while they load). */
  permissionsLoaded: boolean;
  signIn(username: string, password: string): Promise<void>;
  signOut(): Promise<void>;
}

const SessionContext = createContext<Session | undefined>(undefined);

/** Who is signed in, and what they may do (GetMe and GetMyPermissions, loaded once per sign-in). */
export function SessionProvider({ children }: { children: ReactNode }) {
  const queryClient = useQueryClient();
  const [signedIn, setSignedIn] = useState(client.tokens !== undefined);
  useEffect(
    () =>
      onSessionChange((now) => {
        setSignedIn(now);
        if (!now) queryClient.clear();
      }),
    [queryClient],
  );
  const me = useQuery({
    queryKey: ['session', 'me'],
    queryFn: async () => (await client.auth.getMe({})).user,
    enabled: signedIn,
    staleTime: 60_000,
  });
  const permissions = useQuery({
    queryKey: ['session', 'permissions'],
    queryFn: async () => new Set((await client.auth.getMyPermissions({})).methods),
    enabled: signedIn,
    staleTime: 60_000,
  });
  const signIn = useCallback(
    async (username: string, password: string) => {
      queryClient.clear();
      await client.login(username, password);
    },
    [queryClient],
  );
  const signOut = useCallback(async () => {
    try {
      await client.logout();
    } finally {
      queryClient.clear();
      setSignedIn(false);
    }
  }, [queryClient]);
  const value = useMemo<Session>(
    () => ({
      signedIn,
      user: me.data,
      isAdmin: me.data?.role === Role.ADMIN,
      can: (method) => permissions.data?.has(method) ?? false,
      permissionsLoaded: permissions.data !== undefined,
      signIn,
      signOut,
    }),
    [signedIn, me.data, permissions.data, signIn, signOut],
  );
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

export function useSession(): Session {
  const session = useContext(SessionContext);
  if (!session) throw new Error('useSession outside SessionProvider');
  return session;
}
