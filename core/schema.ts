/**
 * Loads YAML data files and validates them against the JSON Schemas in
 * schemas/. An invalid file is rejected with the file name, the JSON path
 * of the offending value and what the schema expected there.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { parseDocument } from 'yaml';
import { QwamosError } from './errors.js';

/** Repository root: two levels up from core/ in both the sources and dist/. */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), fileURLToPath(import.meta.url).includes(`${path.sep}dist${path.sep}`) ? '../..' : '..');

const ajv = new Ajv({ allErrors: true, strict: true });
/** Compiled validators by schema name; promises, so concurrent loads compile once. */
const validators = new Map<string, Promise<ValidateFunction>>();

function validatorFor(schemaName: string): Promise<ValidateFunction> {
  let validator = validators.get(schemaName);
  if (!validator) {
    const schemaFile = path.join(REPO_ROOT, 'schemas', `${schemaName}.schema.json`);
    validator = readFile(schemaFile, 'utf8').then((text) => ajv.compile(JSON.parse(text)));
    validators.set(schemaName, validator);
  }
  return validator;
}

/** Describes one ajv error as "at JSON-PATH: expected ...". */
export function describeSchemaError(error: ErrorObject): string {
  const where = error.instancePath === '' ? '/' : error.instancePath;
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'additionalProperty':
    case 'additionalProperties':
      return `at ${where}: unknown property '${String(params.additionalProperty)}'`;
    case 'required':
      return `at ${where}: missing required property '${String(params.missingProperty)}'`;
    case 'enum':
      return `at ${where}: must be one of ${(params.allowedValues as unknown[]).map((value) => JSON.stringify(value)).join(', ')}`;
    default:
      return `at ${where}: ${error.message ?? 'invalid value'}`;
  }
}

/** Validates `value` against schemas/NAME.schema.json; `file` names the source in errors. */
export async function validateWithSchema<T>(value: unknown, schemaName: string, file: string): Promise<T> {
  const validate = await validatorFor(schemaName);
  if (!validate(value)) {
    const problems = (validate.errors ?? []).map(describeSchemaError);
    throw new QwamosError('INPUT_INVALID', `${file} is invalid: ${problems[0] ?? 'does not match its schema'}`, {
      details: problems.slice(1),
      data: { file, problems },
    });
  }
  return value as T;
}

/** Reads a YAML file, rejecting syntax errors with line numbers, and validates it. */
export async function loadYamlFile<T>(file: string, schemaName: string): Promise<T> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new QwamosError('INPUT_NOT_FOUND', `${file} not found`);
    throw error;
  }

  const document = parseDocument(text, { prettyErrors: true });
  if (document.errors.length > 0) {
    const first = document.errors[0]!;
    const line = first.linePos?.[0]?.line;
    throw new QwamosError('INPUT_INVALID', `${file}${line ? `:${line}` : ''} is not valid YAML: ${first.message.split('\n')[0]}`);
  }

  return validateWithSchema<T>(document.toJS(), schemaName, file);
}
