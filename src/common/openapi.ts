import { applyDecorators, INestApplication, Type } from '@nestjs/common';
import {
  ApiExtraModels,
  ApiOperation,
  ApiProperty,
  ApiPropertyOptional,
  ApiPropertyOptions,
  ApiResponse,
  DocumentBuilder,
  getSchemaPath,
  OpenAPIObject,
  SchemaObject,
  SwaggerModule,
} from '@nestjs/swagger';
import { API_KEY_HEADER } from './api-key.guard';
import { ERROR_HTTP_STATUS } from './domain-error';
import type { ErrorCode } from './domain-error';

/** Name of the API-key security scheme in the document. */
export const API_KEY_SCHEME = 'api-key';

/** The document's header: title, description, version, the API-key scheme. */
function documentConfig(): Omit<OpenAPIObject, 'paths'> {
  return new DocumentBuilder()
    .setTitle('Credits service')
    .setDescription(
      'Holds and settles the credits AI features consume. Every /api route needs the `x-server-api-key` header; ' +
        'every answer is `{ success, data }`, failures carry `data.status` and `data.message`. Money is a decimal string with 6 fraction digits. ' +
        'Every request may carry `x-request-id`; the answer echoes it.',
    )
    .setVersion('1')
    .addApiKey({ type: 'apiKey', in: 'header', name: API_KEY_HEADER, description: 'A `service` or `admin` key.' }, API_KEY_SCHEME)
    .addSecurityRequirements(API_KEY_SCHEME)
    .build();
}

/** The OpenAPI document of an app's routes: read from the controllers' decorators only. */
export function createOpenApiDocument(app: INestApplication): OpenAPIObject {
  return SwaggerModule.createDocument(app, documentConfig());
}

/** Serves the OpenAPI document at /docs-json and the Swagger UI at /docs (both public). */
export function setupOpenApi(app: INestApplication, ui: boolean): void {
  SwaggerModule.setup('docs', app, createOpenApiDocument(app), { jsonDocumentUrl: 'docs-json', raw: ['json'], ui });
}

// --- request fields ----------------------------------------------------------------------------

/** A decimal with at most 6 fraction digits, no exponent (what IsMoney accepts as a string). */
const DECIMAL_PATTERN = '^\\d+(\\.\\d{1,6})?$';
const SIGNED_DECIMAL_PATTERN = '^-?\\d+(\\.\\d{1,6})?$';

export interface MoneyFieldOptions {
  description: string;
  example: string;
  required?: boolean;
  nullable?: boolean;
  /** The field accepts negative amounts (an operator's correction). */
  allowNegative?: boolean;
}

/**
 * A money (or price, margin) field of a request: a decimal string, or a JSON number with at most
 * 6 fraction digits. Never a binary float on the server side: the value is parsed as text.
 */
export function ApiMoneyField(options: MoneyFieldOptions): PropertyDecorator {
  const property: ApiPropertyOptions = {
    description: `${options.description} A decimal string (or a JSON number) with at most 6 fraction digits.`,
    oneOf: [{ type: 'string', pattern: options.allowNegative ? SIGNED_DECIMAL_PATTERN : DECIMAL_PATTERN }, { type: 'number' }],
    example: options.example,
    ...(options.nullable ? { nullable: true } : {}),
  };
  return options.required === false ? ApiPropertyOptional(property) : ApiProperty(property);
}

// --- answers -----------------------------------------------------------------------------------

/** Money in an answer: always a string with exactly 6 fraction digits. */
export const MONEY_ANSWER = { type: 'string', pattern: '^-?\\d+\\.\\d{6}$' } as const;

/** Each dependency's state as /health/ready reports it (`database`, `broker`): `up` or `down`, and why. */
export const DEPENDENCY_STATES = {
  type: 'object' as const,
  additionalProperties: {
    type: 'object',
    required: ['status'],
    properties: { status: { type: 'string', enum: ['up', 'down'] } },
    additionalProperties: true,
  } satisfies SchemaObject,
};

class FieldErrorDoc {
  @ApiProperty({
    description: 'The field at fault (dotted path for nested fields, e.g. `usages.0.input_tokens`).',
    example: 'usages.0.input_tokens',
  })
  field!: string;

  @ApiProperty({ description: 'What is wrong with it.', example: 'must be an integer number' })
  message!: string;
}

class FailureDataDoc {
  @ApiProperty({
    description: 'Stable snake_case word naming the failure.',
    enum: Object.keys(ERROR_HTTP_STATUS),
    example: 'wallet_not_found',
  })
  status!: ErrorCode;

  @ApiProperty({ description: 'One sentence for a person; always present.', example: 'No wallet exists for user "u1".' })
  message!: string;

  @ApiPropertyOptional({ description: 'With `validation_error`: every field at fault.', type: [FieldErrorDoc] })
  errors?: FieldErrorDoc[];

  @ApiPropertyOptional({ description: 'With `insufficient_credits`: credits available now.', ...MONEY_ANSWER, example: '2.000000' })
  credits?: string;

  @ApiPropertyOptional({ description: 'With `insufficient_credits`: the hold the feature needs.', ...MONEY_ANSWER, example: '5.000000' })
  required?: string;

  @ApiPropertyOptional({ description: 'With `unknown_model`: the model with no price.', example: 'gpt-unknown' })
  ai_model?: string;

  @ApiPropertyOptional({ description: 'With `feature_not_allowed_for_key`: the feature the key may not use.', example: 'image_gen_v1' })
  feature_endpoint_id?: string;

  @ApiPropertyOptional({
    description: 'With `refund_exceeds_charge`: what is left to refund of the usage.',
    ...MONEY_ANSWER,
    example: '1.500000',
  })
  refundable?: string;

  @ApiPropertyOptional({
    description: 'With `refund_exceeds_charge`: the amount asked (absent for "all").',
    ...MONEY_ANSWER,
    example: '2.000000',
  })
  requested?: string;

  @ApiPropertyOptional({ description: "With `not_settled`: the usage's status (held, cancelled, expired).", example: 'held' })
  usage_status?: string;

  @ApiPropertyOptional({
    description: "With `spend_cap_exceeded`: the key's charges this period plus its live holds.",
    ...MONEY_ANSWER,
    example: '495.000000',
  })
  spent?: string;

  @ApiPropertyOptional({ description: "With `spend_cap_exceeded`: the key's cap for the period.", ...MONEY_ANSWER, example: '500.000000' })
  cap?: string;

  @ApiPropertyOptional({
    description: 'With `spend_cap_exceeded`: when the UTC period ends.',
    format: 'date-time',
    example: '2026-12-03T00:00:00.000Z',
  })
  resets_at?: string;

  @ApiPropertyOptional({
    description: "With `unavailable` from /health/ready: each dependency's state.",
    ...DEPENDENCY_STATES,
    example: { database: { status: 'up' }, broker: { status: 'down', message: 'not connected to RabbitMQ' } },
  })
  details?: Record<string, { status: string; [more: string]: unknown }>;
}

/** The failure envelope every error answers with (API.md §2). */
export class FailureEnvelopeDoc {
  @ApiProperty({ type: 'boolean', enum: [false], example: false })
  success!: false;

  @ApiProperty({ type: () => FailureDataDoc })
  data!: FailureDataDoc;
}

/**
 * A sample answer per error word, used in the document's examples. A Record over ErrorCode: a new
 * word without an example fails to compile.
 */
const ERROR_EXAMPLES: Record<ErrorCode, { message: string; extra?: Record<string, unknown> }> = {
  validation_error: {
    message: 'usages.0.input_tokens must be an integer number',
    extra: { errors: [{ field: 'usages.0.input_tokens', message: 'must be an integer number' }] },
  },
  unauthorized: { message: `The ${API_KEY_HEADER} header is missing.` },
  request_timeout: { message: 'The request took too long to arrive.' },
  uri_too_long: { message: 'The request URL is too long.' },
  headers_too_large: { message: 'The request headers are too large.' },
  spend_cap_exceeded: {
    message: "This key's spend cap of 500.000000 credits per day would be passed: 495.000000 spent, 10.000000 more asked.",
    extra: { spent: '495.000000', cap: '500.000000', resets_at: '2026-12-03T00:00:00.000Z' },
  },
  feature_not_allowed_for_key: {
    message: 'This API key may not use the feature "image_gen_v1".',
    extra: { feature_endpoint_id: 'image_gen_v1' },
  },
  key_not_found: { message: 'No API key 5d1c8a4e-3b2f-4c6d-9e7f-0a1b2c3d4e5f exists.' },
  webhook_not_found: { message: 'No webhook 0b7c8d2e-4f1a-4b3c-9d8e-7f6a5b4c3d2e exists.' },
  event_not_found: { message: 'No event 3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b exists.' },
  insufficient_credits: {
    message: 'Not enough credits: 2.000000 available, 5.000000 required.',
    extra: { credits: '2.000000', required: '5.000000' },
  },
  forbidden: { message: 'This route needs an admin key.' },
  wallet_suspended: { message: 'The wallet of user "u1" is suspended.' },
  feature_inactive: { message: 'The feature "ai_chat_v1" is not active.' },
  feature_not_permitted: { message: 'The plan "free" may not use the feature "ai_chat_v1".' },
  not_found: { message: 'No route for GET /api/nothing.' },
  wallet_not_found: { message: 'No wallet exists for user "u1".' },
  feature_not_found: { message: 'No feature "ai_chat_v1" exists.' },
  usage_key_not_found: { message: 'No authorization exists for usage_key "6f1c0d7e-8d4b-4f7e-9a57-2d1f0c3b5a10".' },
  model_not_found: { message: 'No price exists for ai_model "gpt-4o".' },
  settlement_failure_not_found: { message: 'No settlement failure 42 exists.' },
  method_not_allowed: { message: 'This method is not allowed on this route.' },
  conflict: { message: 'The idempotency key "job-42" was already used for a different request.' },
  usage_key_mismatch: { message: 'The usage_key "6f1c0d7e-8d4b-4f7e-9a57-2d1f0c3b5a10" belongs to another user or feature.' },
  already_settled: { message: 'The usage_key "6f1c0d7e-8d4b-4f7e-9a57-2d1f0c3b5a10" is already settled.' },
  already_exists: { message: 'A wallet already exists for user "u1".' },
  hold_expired: {
    message: 'The hold "6f1c0d7e-8d4b-4f7e-9a57-2d1f0c3b5a10" has expired; it can still be settled (late), but not extended.',
  },
  grant_not_found: { message: 'No grant "3f0b6a52-5f5e-4c55-8f0e-8a1d2b3c4d5e" exists on the wallet of user "u1".' },
  refund_exceeds_charge: {
    message: 'Only 1.500000 credits of usage "6f1c0d7e-8d4b-4f7e-9a57-2d1f0c3b5a10" are left to refund; 2.000000 asked.',
    extra: { refundable: '1.500000', requested: '2.000000' },
  },
  not_settled: {
    message: 'The usage "6f1c0d7e-8d4b-4f7e-9a57-2d1f0c3b5a10" has no charge to refund (it is held).',
    extra: { usage_status: 'held' },
  },
  payload_too_large: { message: 'The request body is too large.' },
  unsupported_media_type: { message: 'The request body must be JSON (content-type: application/json).' },
  unknown_model: { message: 'No price is set for ai_model "gpt-unknown".', extra: { ai_model: 'gpt-unknown' } },
  rate_limited: { message: 'More than 5 requests per second for this key; slow down and retry.' },
  internal_error: { message: 'An internal error occurred.' },
  unavailable: { message: 'The database is unavailable; nothing was written. Retry shortly.' },
};

const STATUS_MEANING: Record<number, string> = {
  400: 'The body, query or a header does not fit the route.',
  401: `\`${API_KEY_HEADER}\` is missing or unknown.`,
  402: 'Not enough credits available for the hold.',
  403: "The key's scope or the wallet/feature state forbids it.",
  404: 'The thing named does not exist.',
  405: 'The route does not take this method.',
  409: 'The current state forbids it.',
  413: 'The body is larger than BODY_LIMIT_BYTES.',
  415: 'The body is not JSON.',
  422: 'A usage names an ai_model with no price.',
  429: 'Too many requests (RATE_LIMIT_PER_SECOND for a service key, or too many failed keys from this client).',
  500: 'An unexpected error.',
  503: 'The database is down; nothing was written.',
};

/** Every /api route: key check (and its brute-force guard), rate limit, database down. */
export const API_ROUTE_ERRORS = ['unauthorized', 'rate_limited', 'unavailable'] as const satisfies readonly ErrorCode[];
/** Routes reserved to admin keys: a service key gets 403 forbidden. */
export const ADMIN_ROUTE_ERRORS = [...API_ROUTE_ERRORS, 'forbidden'] as const satisfies readonly ErrorCode[];
/** Routes with a JSON body: refused bodies. */
export const BODY_ERRORS = ['validation_error', 'payload_too_large', 'unsupported_media_type'] as const satisfies readonly ErrorCode[];

/**
 * Documents the failures a route can answer, grouped by HTTP status, each with the failure
 * envelope schema (its `data.status` narrowed to the route's words) and one example per word.
 */
export function ApiErrors(...codes: ErrorCode[]): MethodDecorator & ClassDecorator {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of new Set(codes)) {
    const status = ERROR_HTTP_STATUS[code];
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const responses = [...byStatus].map(([status, words]) =>
    ApiResponse({
      status,
      description: `${STATUS_MEANING[status] ?? ''} \`data.status\`: ${words.map((w) => `\`${w}\``).join(', ')}.`,
      ...(status === 429
        ? { headers: { 'retry-after': { description: 'Seconds to wait before retrying.', schema: { type: 'integer', example: 1 } } } }
        : {}),
      content: {
        'application/json': {
          schema: {
            allOf: [
              { $ref: getSchemaPath(FailureEnvelopeDoc) },
              { type: 'object', properties: { data: { type: 'object', properties: { status: { type: 'string', enum: words } } } } },
            ],
          },
          examples: Object.fromEntries(
            words.map((word) => [
              word,
              {
                summary: word,
                value: { success: false, data: { status: word, message: ERROR_EXAMPLES[word].message, ...ERROR_EXAMPLES[word].extra } },
              },
            ]),
          ),
        },
      },
    }),
  );
  return applyDecorators(ApiExtraModels(FailureEnvelopeDoc), ...responses);
}

export interface SuccessOptions {
  /** 200 (default) or 201. */
  status?: 200 | 201 | 202;
  description: string;
  /** The class documenting `data` (or each item of a page). */
  type: Type<unknown>;
  /** `data` is a page: `{ items: [type], next_cursor }`. */
  page?: boolean;
  /** `data` of the example answer (one item of a page). */
  example: unknown;
}

/** Documents the success envelope `{ success: true, data }` of a route, with an example answer. */
export function ApiSuccess(options: SuccessOptions): MethodDecorator & ClassDecorator {
  const ref = { $ref: getSchemaPath(options.type) };
  const data = options.page
    ? {
        type: 'object',
        required: ['items', 'next_cursor'],
        properties: {
          items: { type: 'array', items: ref },
          next_cursor: { type: 'string', nullable: true, description: 'Pass as `cursor` for the next page; null on the last page.' },
        },
      }
    : ref;
  return applyDecorators(
    ApiExtraModels(options.type),
    ApiResponse({
      status: options.status ?? 200,
      description: options.description,
      content: {
        'application/json': {
          schema: { type: 'object', required: ['success', 'data'], properties: { success: { type: 'boolean', enum: [true] }, data } },
          example: { success: true, data: options.page ? { items: [options.example], next_cursor: null } : options.example },
        },
      },
    }),
  );
}

/** An operation that needs no API key (health, metrics): overrides the document's global security. */
export function ApiPublicOperation(summary: string, description?: string): MethodDecorator {
  return ApiOperation({ summary, ...(description ? { description } : {}), security: [] });
}

/**
 * Compile-time check that a documentation class names exactly the fields of the view it
 * documents: `type _ = NoKeyDrift<KeyDiff<WalletView, WalletResponseDoc>>` stops compiling, naming
 * the field, when a field is added to or removed from one side only.
 */
export type KeyDiff<View, Doc> = Exclude<keyof View, keyof Doc> | Exclude<keyof Doc, keyof View>;
export type NoKeyDrift<Diff extends never> = Diff;
