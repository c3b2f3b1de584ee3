import { authSettings } from './auth/auth-settings.ts';
import { filesSettings } from './files/files-settings.ts';
import { jobsSettings } from './jobs/jobs-settings.ts';
import { serverSettings } from './server/server-settings.ts';

/** Every runtime setting, by key. Each area declares its own; this is where they meet. */
export const settingsCatalog = {
  ...authSettings,
  ...jobsSettings,
  ...filesSettings,
  ...serverSettings,
};
