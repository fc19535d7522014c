import type { INestApplication } from '@nestjs/common';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { API_KEY_HEADER } from './api-key.guard';

/** Serves the OpenAPI document at /docs-json and the Swagger UI at /docs (both public). */
export function setupOpenApi(app: INestApplication, ui: boolean): void {
  const config = new DocumentBuilder()
    .setTitle('Credits service')
    .setDescription(
      'Holds and settles the credits AI features consume. Every /api route needs the `x-server-api-key` header; ' +
        'every answer is `{ success, data }`, failures carry `data.status` and `data.message`. Money is a decimal string with 6 fraction digits.',
    )
    .setVersion('1')
    .addApiKey({ type: 'apiKey', in: 'header', name: API_KEY_HEADER }, 'api-key')
    .addSecurityRequirements('api-key')
    .build();
  const document = SwaggerModule.createDocument(app, config);
  SwaggerModule.setup('docs', app, document, { jsonDocumentUrl: 'docs-json', raw: ['json'], ui });
}
