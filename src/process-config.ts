import { ConfigError, loadConfig, type Config } from './config.ts';

/**
 * The configuration of this process: the environment, plus `.env` in the working
 * directory when there is one. Bad configuration ends the process with exit code 2
 * and one line per bad variable: for entry points only (main, migrate).
 */
export function processConfig(): Config {
  try {
    process.loadEnvFile();
  } catch {
    // No .env file: the environment alone configures the server.
  }
  try {
    return loadConfig(process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`yardmaster: bad configuration\n${error.message}`);
    process.exit(2);
  }
}
