import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';

/*
 * Checks a real answer against what the OpenAPI document says the route answers with that status.
 * The document is OpenAPI 3.0; its schemas are turned into JSON Schema for ajv, a little stricter
 * than OpenAPI's defaults so that "the document describes the answer" means exactly:
 * - `nullable: true` is `null` or the schema (also around an `allOf` reference, which is how Nest
 *   writes a nullable nested class);
 * - an object that lists its properties has no others (a field the document does not name fails),
 *   except inside allOf/anyOf/oneOf, where a branch (and all it nests) only narrows another one.
 */

type Json = Record<string, unknown>;
// ajv-formats is CommonJS with `exports.default`; under Jest's ESM mode the namespace is the module.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (ajv: Ajv) => Ajv;

const DOC_ID = 'openapi.json';

function toJsonSchema(node: unknown, inComposition = false): unknown {
  if (Array.isArray(node)) return node.map((n) => toJsonSchema(n));
  if (!node || typeof node !== 'object') return node;
  const { nullable, example: _example, examples: _examples, ...rest } = node as Json;
  const out: Json = {};
  for (const [key, value] of Object.entries(rest)) {
    if (key === 'properties') {
      out.properties = Object.fromEntries(
        Object.entries(value as Json).map(([name, schema]) => [name, toJsonSchema(schema, inComposition)]),
      );
    } else if (key === 'allOf' || key === 'anyOf' || key === 'oneOf') {
      out[key] = (value as unknown[]).map((branch) => toJsonSchema(branch, true));
    } else if (key === '$ref' && typeof value === 'string' && value.startsWith('#/')) {
      out.$ref = `${DOC_ID}${value}`;
    } else {
      out[key] = toJsonSchema(value, inComposition);
    }
  }
  if (out.properties && out.additionalProperties === undefined && !inComposition) out.additionalProperties = false;
  return nullable === true ? { anyOf: [{ type: 'null' }, out] } : out;
}

export interface AnswerCheck {
  /** The documented route template (`/api/wallets/{user_id}`) a concrete path matches, or undefined. */
  route(method: string, path: string): string | undefined;
  /** What is wrong with this answer according to the document; empty when it conforms. */
  problems(method: string, path: string, status: number, body: unknown): string[];
  /** Every documented (method, route) with a JSON success answer: what a complete walk must cover. */
  operations(): string[];
}

export function answerChecker(document: Json): AnswerCheck {
  const ajv = new Ajv({ strict: false, allErrors: true });
  addFormats(ajv);
  const components = (document.components as Json | undefined)?.schemas as Json;
  ajv.addSchema({ $id: DOC_ID, components: { schemas: toJsonSchema(components) } });
  const paths = document.paths as Record<string, Record<string, { responses: Record<string, Json> }>>;
  const templates = Object.keys(paths)
    // Literal paths first: /api/pricing/settings must not be taken for a template.
    .sort((a, b) => Number(a.includes('{')) - Number(b.includes('{')))
    .map((template) => ({ template, pattern: new RegExp(`^${template.replace(/\{[^}]+\}/g, '[^/]+')}$`) }));
  const compiled = new Map<string, ValidateFunction>();

  const route = (method: string, path: string) => {
    const bare = path.split('?')[0];
    return templates.find((t) => t.pattern.test(bare) && paths[t.template][method.toLowerCase()])?.template;
  };

  return {
    route,
    problems(method, path, status, body) {
      const template = route(method, path);
      if (!template) return [`${method} ${path}: no such route in the document`];
      const response = paths[template][method.toLowerCase()].responses[String(status)];
      if (!response) return [`${method} ${template}: status ${status} is not documented`];
      const schema = ((response.content as Json | undefined)?.['application/json'] as Json | undefined)?.schema;
      if (!schema) return [`${method} ${template} ${status}: no JSON schema documented`];
      const key = `${method} ${template} ${status}`;
      let validate = compiled.get(key);
      if (!validate) {
        validate = ajv.compile(toJsonSchema(schema) as Json);
        compiled.set(key, validate);
      }
      if (validate(body)) return [];
      return (validate.errors ?? []).map(
        (e) => `${key}: ${e.instancePath || '/'} ${e.message}${e.params ? ` ${JSON.stringify(e.params)}` : ''}`,
      );
    },
    operations() {
      return Object.entries(paths).flatMap(([template, methods]) =>
        Object.entries(methods)
          .filter(([, op]) => Object.entries(op.responses).some(([s, r]) => s.startsWith('2') && (r.content as Json)?.['application/json']))
          .map(([method]) => `${method.toUpperCase()} ${template}`),
      );
    },
  };
}
