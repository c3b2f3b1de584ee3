/**
 * Preloaded into a `yard` child (node --import) by the memory test: writes the process's
 * peak resident memory (bytes) to YARD_TEST_PEAK_FILE when it exits.
 */
import { writeFileSync } from 'node:fs';

process.on('exit', () => {
  writeFileSync(process.env.YARD_TEST_PEAK_FILE!, String(process.resourceUsage().maxRSS * 1024));
});
