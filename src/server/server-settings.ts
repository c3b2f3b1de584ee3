import { integerSetting } from '../platform/settings/setting-types.ts';

/** Runtime settings of the RPC server itself. */
export const serverSettings = {
  'limits.heavy_calls_per_account': integerSetting(
    4,
    'Heavy calls (declared heavy in the contract) one account may run at once on one server instance',
    {
      min: 1,
      max: 1000,
    },
  ),
};
