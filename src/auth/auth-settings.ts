import { boolSetting, durationSetting, integerSetting } from '../platform/settings/setting-types.ts';

const second = 1000;
const minute = 60 * second;
const hour = 60 * minute;

/** Runtime settings of sign-in and credentials. */
export const authSettings = {
  'auth.open_registration': boolSetting(false, 'Whether anyone may create a ROLE_USER account with AuthService.Register'),
  'auth.password_min_length': integerSetting(12, 'Minimum number of characters of a new password', { min: 12, max: 128 }),
  'auth.refresh_reuse_grace': durationSetting(
    10 * second,
    'How long after a rotation the spent refresh token still returns the same new pair (racing tabs) instead of counting as reuse',
    { minMs: 0, maxMs: minute },
  ),
  'auth.account_failure_limit': integerSetting(
    5,
    'Failed sign-ins on one account from one client address within auth.account_failure_window before that address is refused for that account',
    { min: 1, max: 1000 },
  ),
  'auth.account_failure_window': durationSetting(
    15 * minute,
    'Window over which failed sign-ins on one account from one client address are counted',
    { minMs: second, maxMs: 24 * hour },
  ),
  'auth.account_throttle_threshold': integerSetting(
    10,
    'Consecutive failed sign-ins on one account (from any address, within a day) after which each further attempt waits a delay that doubles from 1 s',
    { min: 1, max: 1000 },
  ),
  'auth.account_throttle_max_delay': durationSetting(15 * minute, 'Longest wait between attempts on a throttled account', {
    minMs: second,
    maxMs: 24 * hour,
  }),
  'auth.address_failure_limit': integerSetting(20, 'Failed sign-in, registration and refresh calls per client address per minute', {
    min: 1,
    max: 100_000,
  }),
  'auth.address_request_limit': integerSetting(
    300,
    'Sign-in, registration and refresh calls (failed or not) per client address per minute',
    { min: 1, max: 1_000_000 },
  ),
};
