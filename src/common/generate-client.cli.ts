import 'reflect-metadata';
import { writeFile } from 'node:fs/promises';
import { CLIENT_TYPES_FILE, clientTypesPath, openApiDocumentWithoutServices, renderClientTypes } from './client-types';

/** `npm run generate:client`: rewrites client/openapi.ts from the service's OpenAPI document. */
async function main(): Promise<void> {
  const source = await renderClientTypes(await openApiDocumentWithoutServices());
  await writeFile(clientTypesPath(process.cwd()), source);
  process.stdout.write(`wrote ${CLIENT_TYPES_FILE}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`generate:client failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
