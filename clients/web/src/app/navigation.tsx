import {
  IconAdjustments,
  IconFiles,
  IconGauge,
  IconHistory,
  IconListDetails,
  IconServer,
  IconStack2,
  IconUsers,
} from '@tabler/icons-react';
import type { ReactNode } from 'react';

export interface NavItem {
  label: string;
  to: string;
  icon: ReactNode;
  /** Shown only to callers allowed to call this method (GetMyPermissions). */
  requires: string;
}

export interface NavSection {
  title: string | undefined;
  items: NavItem[];
}

const icon = (Icon: typeof IconGauge) => <Icon size={18} stroke={1.6} />;

/** The console's pages, as the navigation shows them; a section with nothing allowed is hidden. */
export const navigation: NavSection[] = [
  {
    title: undefined,
    items: [
      { label: 'Overview', to: '/', icon: icon(IconGauge), requires: 'yardmaster.v1.AuthService.GetMe' },
      { label: 'Jobs', to: '/jobs', icon: icon(IconListDetails), requires: 'yardmaster.v1.JobsService.ListJobs' },
      { label: 'Files', to: '/files', icon: icon(IconFiles), requires: 'yardmaster.v1.FilesService.ListFiles' },
      { label: 'Queues', to: '/queues', icon: icon(IconStack2), requires: 'yardmaster.v1.QueueService.ListQueues' },
    ],
  },
  {
    title: 'Administration',
    items: [
      { label: 'Users', to: '/admin/users', icon: icon(IconUsers), requires: 'yardmaster.v1.AdminService.ListUsers' },
      { label: 'Settings', to: '/admin/settings', icon: icon(IconAdjustments), requires: 'yardmaster.v1.AdminService.ListSettings' },
      { label: 'Audit log', to: '/admin/audit', icon: icon(IconHistory), requires: 'yardmaster.v1.AdminService.ListAuditEvents' },
      { label: 'System', to: '/admin/system', icon: icon(IconServer), requires: 'yardmaster.v1.SystemService.GetSystemStatus' },
    ],
  },
];
