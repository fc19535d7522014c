import 'reflect-metadata';
import { existsSync } from 'node:fs';
import { Logger } from '@nestjs/common';
import { createApp } from './app.setup';
import { ConfigError, loadConfig } from './config/configuration';

/** Prints one clear line for a start-up failure and exits non-zero (API.md §1). */
function die(reason: string): never {
  process.stderr.write(`credits-service failed to start: ${reason}\n`);
  process.exit(1);
}

async function bootstrap(): Promise<void> {
  if (existsSync('.env')) process.loadEnvFile('.env');
  const config = (() => {
    try {
      return loadConfig(process.env);
    } catch (error) {
      if (error instanceof ConfigError) die(`configuration: ${error.message}`);
      throw error;
    }
  })();
  const app = await createApp(config);
  await app.listen(config.port, '0.0.0.0');
  new Logger('Bootstrap').log(`credits-service listening on http://localhost:${config.port} (OpenAPI at /docs, health at /health/ready)`);
}

bootstrap().catch((error: unknown) => die(startupReason(error)));

function startupReason(error: unknown): string {
  const e = error as { message?: string; code?: string; address?: string; port?: number };
  const message = e?.message ?? String(error);
  if (
    /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|timeout|password authentication|does not exist|terminated/i.test(message) &&
    !/amqp/i.test(message)
  ) {
    return `database unreachable (${message})`;
  }
  if (e?.code === 'EADDRINUSE') return `port ${e.port ?? ''} is already in use`;
  return message;
}
