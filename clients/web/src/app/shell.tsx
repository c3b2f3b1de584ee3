import {
  ActionIcon,
  AppShell,
  Avatar,
  Burger,
  Group,
  Menu,
  NavLink as MantineNavLink,
  ScrollArea,
  Text,
  ThemeIcon,
  Title,
  Tooltip,
  UnstyledButton,
  useComputedColorScheme,
  useMantineColorScheme,
} from '@mantine/core';
import { useDisclosure } from '@mantine/hooks';
import { IconBuildingWarehouse, IconChevronDown, IconLogout, IconMoon, IconSun, IconUserCircle } from '@tabler/icons-react';
import { Suspense } from 'react';
import { NavLink, Navigate, Outlet, useLocation, useNavigate } from 'react-router';
import { Role } from '@gen/yardmaster/v1/common_pb.ts';
import { Loading } from '../ui/states.tsx';
import { navigation } from './navigation.tsx';
import { useSession } from './session.tsx';

const roleNames: Record<number, string> = { [Role.USER]: 'User', [Role.ADMIN]: 'Admin', [Role.WORKER]: 'Worker' };

/** The frame of every signed-in page: header, navigation (only what the caller may use), content. */
export function Shell() {
  const session = useSession();
  const location = useLocation();
  const navigate = useNavigate();
  const [opened, { toggle, close }] = useDisclosure();
  const { setColorScheme } = useMantineColorScheme();
  const scheme = useComputedColorScheme('light');

  if (!session.signedIn) {
    const next = location.pathname + location.search;
    return <Navigate to={next === '/' ? '/sign-in' : `/sign-in?next=${encodeURIComponent(next)}`} replace />;
  }

  const isActive = (to: string) =>
    to === '/' ? location.pathname === '/' : location.pathname === to || location.pathname.startsWith(`${to}/`);

  return (
    <AppShell header={{ height: 56 }} navbar={{ width: 232, breakpoint: 'sm', collapsed: { mobile: !opened } }} padding="lg">
      <AppShell.Header>
        <Group h="100%" px="md" justify="space-between">
          <Group gap="sm">
            <Burger opened={opened} onClick={toggle} hiddenFrom="sm" size="sm" aria-label="Toggle navigation" />
            <ThemeIcon size={30} radius="md">
              <IconBuildingWarehouse size={18} />
            </ThemeIcon>
            <Title order={1} fz={18} fw={700}>
              Yardmaster
            </Title>
          </Group>
          <Group gap="xs">
            <Tooltip label={scheme === 'dark' ? 'Light theme' : 'Dark theme'}>
              <ActionIcon
                variant="subtle"
                color="gray"
                size="lg"
                aria-label="Toggle color scheme"
                onClick={() => setColorScheme(scheme === 'dark' ? 'light' : 'dark')}
              >
                {scheme === 'dark' ? <IconSun size={18} /> : <IconMoon size={18} />}
              </ActionIcon>
            </Tooltip>
            <Menu position="bottom-end" width={220} shadow="md">
              <Menu.Target>
                <UnstyledButton aria-label="Account menu" data-testid="account-menu">
                  <Group gap={8}>
                    <Avatar size={30} radius="xl" color="blue">
                      {session.user?.username.slice(0, 2).toUpperCase()}
                    </Avatar>
                    <div style={{ lineHeight: 1 }}>
                      <Text size="sm" fw={600}>
                        {session.user?.username ?? '…'}
                      </Text>
                      <Text size="xs" c="dimmed">
                        {session.user ? roleNames[session.user.role] : ''}
                      </Text>
                    </div>
                    <IconChevronDown size={14} />
                  </Group>
                </UnstyledButton>
              </Menu.Target>
              <Menu.Dropdown>
                <Menu.Item leftSection={<IconUserCircle size={16} />} onClick={() => navigate('/account')}>
                  Account and security
                </Menu.Item>
                <Menu.Divider />
                <Menu.Item
                  color="red"
                  leftSection={<IconLogout size={16} />}
                  onClick={() => {
                    void session.signOut().then(() => navigate('/sign-in'));
                  }}
                >
                  Sign out
                </Menu.Item>
              </Menu.Dropdown>
            </Menu>
          </Group>
        </Group>
      </AppShell.Header>
      <AppShell.Navbar p="sm">
        <AppShell.Section grow component={ScrollArea}>
          <nav aria-label="Main">
            {navigation.map((section) => {
              const items = section.items.filter((item) => session.can(item.requires));
              if (items.length === 0) return null;
              return (
                <div key={section.title ?? 'main'}>
                  {section.title && (
                    <Text size="xs" fw={700} c="dimmed" tt="uppercase" px="sm" mt="md" mb={4}>
                      {section.title}
                    </Text>
                  )}
                  {items.map((item) => (
                    <MantineNavLink
                      key={item.to}
                      component={NavLink}
                      to={item.to}
                      end={item.to === '/'}
                      label={item.label}
                      leftSection={item.icon}
                      active={isActive(item.to)}
                      onClick={close}
                      style={{ borderRadius: 'var(--mantine-radius-md)' }}
                    />
                  ))}
                </div>
              );
            })}
          </nav>
        </AppShell.Section>
      </AppShell.Navbar>
      <AppShell.Main>
        <Suspense fallback={<Loading />}>
          <Outlet />
        </Suspense>
      </AppShell.Main>
    </AppShell>
  );
}
