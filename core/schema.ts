/**
 * Validation of data read back from files: a few combinators over plain
 * JSON values that check types, ranges and shapes and name the offending
 * field by its dotted path (`state.run.config.mu`), and a bounded JSON
 * parser ({@link parseJson}) that refuses duplicate keys and deep nesting
 * before `JSON.parse` sees the text.
 *
 * A {@link Check} is a function `(value, path) => T`: it returns a fresh,
 * typed value or throws a `TypeError` (wrong type, missing field) or a
 * `RangeError` (right type, value out of range), whose message starts with
 * the path. {@link validate} runs a check and puts the source (a file name)
 * in front of the message. Messages quote at most a short prefix of an
 * offending string and the length of anything long ({@link describeValue}).
 *
 * Objects are read through their own properties only, so keys such as
 * `constructor` or `__proto__` are never taken from a prototype.
 *
 * @example
 * ```ts
 * import { array, int, number, object, string, validate } from "@bbits/core/formats";
 * import assert from "node:assert/strict";
 *
 * const recipe = object({ mu: number({ min: 0 }), epochs: int({ min: 1 }), tags: array(string()) });
 * assert.deepEqual(validate(recipe, { mu: 0.1, epochs: 3, tags: [] }, "run.json"), { mu: 0.1, epochs: 3, tags: [] });
 * assert.throws(
 *   () => validate(recipe, { mu: -1, epochs: 3, tags: [] }, "run.json", "recipe"),
 *   new RangeError("run.json: recipe.mu must be a number >= 0, got -1"),
 * );
 * assert.throws(
 *   () => validate(recipe, { mu: 1, tags: [] }, "run.json", "recipe"),
 *   new TypeError("run.json: recipe.epochs is missing (expected an integer >= 1)"),
 * );
 * ```
 *
 * @module
 */

/** Checks an unknown value found at `path`; returns it typed (fresh for objects and arrays). */
export type Check<T> = (value: unknown, path: string) => T;

/** The longest prefix of an offending string an error message quotes. */
export const MESSAGE_PREFIX = 40;

/**
 * A short description of a value for an error message: numbers, booleans
 * and `null` as they are, strings by a prefix of {@link MESSAGE_PREFIX}
 * characters and their length, arrays and objects by their size.
 *
 * @param value Anything.
 * @returns At most about 80 characters.
 *
 * @example
 * ```ts
 * import { describeValue } from "@bbits/core/formats";
 * import assert from "node:assert/strict";
 *
 * assert.equal(describeValue("x".repeat(1000)), `string "${"x".repeat(40)}..." (1000 characters)`);
 * assert.equal(describeValue([1, 2]), "an array of length 2");
 * ```
 */
export function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  switch (typeof value) {
    case "string":
      return `string ${quote(value)}`;
    case "number":
    case "bigint":
      return String(value);
    case "boolean":
      return `boolean ${value}`;
    case "object":
      return "an object";
    default:
      return typeof value;
  }
}

/**
 * A string quoted for a message (`JSON.stringify`), only a prefix of
 * {@link MESSAGE_PREFIX} characters and the length when it is longer.
 *
 * @param text The string.
 * @returns The quoted string.
 *
 * @example
 * ```ts
 * import { quote } from "@bbits/core/formats";
 * import assert from "node:assert/strict";
 *
 * assert.equal(quote("fc.weight"), '"fc.weight"');
 * assert.equal(quote("y".repeat(50)), `"${"y".repeat(40)}..." (50 characters)`);
 * ```
 */
export function quote(text: string): string {
  return text.length > MESSAGE_PREFIX
    ? `${
      JSON.stringify(text.slice(0, MESSAGE_PREFIX)).slice(0, -1)
    }..." (${text.length} characters)`
    : JSON.stringify(text);
}

/**
 * The path of `key` inside the value at `path`: `run.seed`, or
 * `run["wall time"]` for a key that is not an identifier (quoted by prefix
 * when long).
 *
 * @param path The parent's path (`""` for the root).
 * @param key The key.
 * @returns The child's path.
 *
 * @example
 * ```ts
 * import { keyPath } from "@bbits/core/formats";
 * import assert from "node:assert/strict";
 *
 * assert.equal(keyPath("state", "mu"), "state.mu");
 * assert.equal(keyPath("tensors", "fc.weight"), 'tensors["fc.weight"]');
 * ```
 */
export function keyPath(path: string, key: string): string {
  if (/^[A-Za-z_$][\w$]*$/.test(key) && key.length <= MESSAGE_PREFIX) {
    return path === "" ? key : `${path}.${key}`;
  }
  const shown = key.length > MESSAGE_PREFIX
    ? `${JSON.stringify(key.slice(0, MESSAGE_PREFIX)).slice(0, -1)}..."`
    : JSON.stringify(key);
  return `${path}[${shown}]`;
}

/**
 * The TypeError of a check: `path` is missing, or not of the expected type.
 *
 * @param path Where the value is.
 * @param expected What was expected, e.g. `"a number"`.
 * @param value What was found.
 * @returns The error (to throw).
 */
export function typeError(
  path: string,
  expected: string,
  value: unknown,
): TypeError {
  return new TypeError(
    value === undefined
      ? `${label(path)} is missing (expected ${expected})`
      : `${label(path)} must be ${expected}, got ${describeValue(value)}`,
  );
}

/** A path for a message: the root (`""`) is "the value". */
function label(path: string): string {
  return path === "" ? "the value" : path;
}

/**
 * The RangeError of a check: `path` has the right type but a bad value.
 *
 * @param path Where the value is.
 * @param expected What was expected, e.g. `"in [0, 1]"`.
 * @param value What was found.
 * @returns The error (to throw).
 */
export function rangeError(
  path: string,
  expected: string,
  value: unknown,
): RangeError {
  return new RangeError(
    `${label(path)} must be ${expected}, got ${describeValue(value)}`,
  );
}

/**
 * Runs a check on a value, prefixing any message with `where` (e.g.
 * `Cannot load "run/checkpoint.safetensors"`). The error keeps its class
 * (`TypeError` or `RangeError`) and has the original as its cause.
 *
 * @param check The check.
 * @param value The value (e.g. parsed JSON).
 * @param where The source, put in front of every message.
 * @param path The value's own path (default `""`, the root: its fields'
 *   paths start bare, `mu`, `layers[0].bits`).
 * @returns The checked value.
 * @throws {TypeError} On a missing field or a wrong type.
 * @throws {RangeError} On a value out of range.
 *
 * @example See the module's example.
 * ```ts
 * import { int, validate } from "@bbits/core/formats";
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => validate(int(), 1.5, "f.json", "epoch"), /^RangeError: f.json: epoch must be an integer, got 1.5$/);
 * ```
 */
export function validate<T>(
  check: Check<T>,
  value: unknown,
  where: string,
  path = "",
): T {
  try {
    return check(value, path);
  } catch (error) {
    if (error instanceof TypeError) {
      throw new TypeError(`${where}: ${error.message}`, { cause: error });
    }
    if (error instanceof RangeError) {
      throw new RangeError(`${where}: ${error.message}`, { cause: error });
    }
    throw error;
  }
}

/** Bounds of {@link number} and {@link int}. */
export interface NumberBounds {
  /** Smallest allowed value (inclusive). */
  readonly min?: number;
  /** Largest allowed value (inclusive). */
  readonly max?: number;
  /** Values must exceed this (exclusive lower bound). */
  readonly above?: number;
}

function boundsText(b: NumberBounds): string {
  const parts: string[] = [];
  if (b.above !== undefined) parts.push(`> ${b.above}`);
  if (b.min !== undefined && b.max !== undefined) {
    return `in [${b.min}, ${b.max}]`;
  }
  if (b.min !== undefined) parts.push(`>= ${b.min}`);
  if (b.max !== undefined) parts.push(`<= ${b.max}`);
  return parts.join(" and ");
}

function numberCheck(integer: boolean, bounds: NumberBounds): Check<number> {
  const noun = integer ? "an integer" : "a number";
  const range = boundsText(bounds);
  const expected = range === "" ? noun : `${noun} ${range}`;
  return (value, path) => {
    if (typeof value !== "number") throw typeError(path, expected, value);
    if (!Number.isFinite(value)) {
      throw rangeError(
        path,
        `a finite ${noun.slice(noun.indexOf(" ") + 1)}`,
        value,
      );
    }
    if (integer && !Number.isSafeInteger(value)) {
      throw rangeError(path, expected, value);
    }
    const { min, max, above } = bounds;
    if (
      (min !== undefined && value < min) ||
      (max !== undefined && value > max) ||
      (above !== undefined && !(value > above))
    ) {
      throw rangeError(path, expected, value);
    }
    return value;
  };
}

/**
 * A finite number within optional bounds.
 *
 * @param bounds `min`, `max` (inclusive) and `above` (exclusive).
 * @returns The check.
 */
export function number(bounds: NumberBounds = {}): Check<number> {
  return numberCheck(false, bounds);
}

/**
 * A safe integer within optional bounds.
 *
 * @param bounds `min`, `max` (inclusive) and `above` (exclusive).
 * @returns The check.
 */
export function int(bounds: NumberBounds = {}): Check<number> {
  return numberCheck(true, bounds);
}

/**
 * A string, optionally one of a set, optionally at most `maxLength` long.
 *
 * @param options `oneOf` (the allowed values) and `maxLength`.
 * @returns The check.
 */
export function string<T extends string = string>(
  options: { readonly oneOf?: readonly T[]; readonly maxLength?: number } = {},
): Check<T> {
  const { oneOf, maxLength } = options;
  return (value, path) => {
    if (typeof value !== "string") throw typeError(path, "a string", value);
    if (oneOf !== undefined && !(oneOf as readonly string[]).includes(value)) {
      throw rangeError(
        path,
        `one of ${oneOf.map((v) => JSON.stringify(v)).join(", ")}`,
        value,
      );
    }
    if (maxLength !== undefined && value.length > maxLength) {
      throw rangeError(path, `at most ${maxLength} characters`, value);
    }
    return value as T;
  };
}

/**
 * A boolean.
 *
 * @param value The value.
 * @param path Its path.
 * @returns The boolean.
 * @throws {TypeError} If `value` is not a boolean.
 */
export function boolean(value: unknown, path: string): boolean {
  if (typeof value !== "boolean") throw typeError(path, "a boolean", value);
  return value;
}

/**
 * `null`, or what `check` accepts.
 *
 * @param check The check of a present value.
 * @returns The check.
 */
export function nullable<T>(check: Check<T>): Check<T | null> {
  return (value, path) => value === null ? null : check(value, path);
}

/**
 * An array of values `item` accepts, optionally of a bounded length
 * (checked before any item).
 *
 * @param item The check of each item (its path is `path[i]`).
 * @param options `length` (exact), `maxLength`.
 * @returns The check; the result is a fresh array.
 */
export function array<T>(
  item: Check<T>,
  options: { readonly length?: number; readonly maxLength?: number } = {},
): Check<T[]> {
  return (value, path) => {
    if (!Array.isArray(value)) throw typeError(path, "an array", value);
    if (options.length !== undefined && value.length !== options.length) {
      throw rangeError(path, `an array of length ${options.length}`, value);
    }
    if (options.maxLength !== undefined && value.length > options.maxLength) {
      throw rangeError(
        path,
        `an array of at most ${options.maxLength} items`,
        value,
      );
    }
    return value.map((v, i) => item(v, `${path}[${i}]`));
  };
}

/** A plain object (not null, not an array), or a TypeError. */
function plainObject(value: unknown, path: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw typeError(path, "an object", value);
  }
  return value as Record<string, unknown>;
}

/** The own property `key` of `o`, or undefined (never an inherited one). */
export function own(o: object, key: string): unknown {
  return Object.hasOwn(o, key)
    ? (o as Record<string, unknown>)[key]
    : undefined;
}

/** The checks of an object's fields. */
export type Fields = Readonly<Record<string, Check<unknown>>>;

/** The value an {@link object} check of `F` returns. */
export type FieldsOf<F extends Fields> = {
  -readonly [K in keyof F]: ReturnType<F[K]>;
};

/**
 * An object with the given fields, read as own properties, each checked
 * (a missing field is `undefined` to its check, so wrap optional ones with
 * {@link optional}). Other keys are dropped.
 *
 * @param fields The check of each field.
 * @returns The check; the result is a fresh object of the known fields.
 */
export function object<F extends Fields>(fields: F): Check<FieldsOf<F>> {
  return (value, path) => {
    const o = plainObject(value, path);
    const out: Record<string, unknown> = {};
    for (const [key, check] of Object.entries(fields)) {
      const v = check(own(o, key), keyPath(path, key));
      if (v !== undefined) out[key] = v;
    }
    return out as FieldsOf<F>;
  };
}

/**
 * `undefined` (a missing field), or what `check` accepts.
 *
 * @param check The check of a present value.
 * @returns The check.
 */
export function optional<T>(check: Check<T>): Check<T | undefined> {
  return (value, path) => value === undefined ? undefined : check(value, path);
}

/**
 * An object used as a map: every own key's value checked by `item`,
 * optionally at most `maxKeys` keys.
 *
 * @param item The check of each value (its path is `path.key`).
 * @param options `maxKeys`.
 * @returns The check; the result is a fresh object.
 */
export function record<T>(
  item: Check<T>,
  options: { readonly maxKeys?: number } = {},
): Check<Record<string, T>> {
  return (value, path) => {
    const o = plainObject(value, path);
    const keys = Object.keys(o);
    if (options.maxKeys !== undefined && keys.length > options.maxKeys) {
      throw rangeError(path, `an object of at most ${options.maxKeys} keys`, o);
    }
    // Entries, not assignments: a key "__proto__" stays a key.
    return Object.fromEntries(
      keys.map((key) => [key, item(o[key], keyPath(path, key))]),
    );
  };
}

/** Options of {@link parseJson}. */
export interface ParseJsonOptions {
  /** Deepest nesting of arrays and objects allowed (default {@link MAX_JSON_DEPTH}). */
  readonly maxDepth?: number;
  /** Opens every message, e.g. `Cannot load "a.json"`. */
  readonly where?: string;
}

/** The default nesting bound of {@link parseJson}. */
export const MAX_JSON_DEPTH = 64;

/**
 * Parses JSON text as `JSON.parse` does, after a linear scan that refuses
 * nesting deeper than `maxDepth` and an object with the same key twice
 * (which `JSON.parse` would silently resolve to the last one).
 *
 * @param text The JSON text.
 * @param options `maxDepth` (default 64) and `where` (opens messages).
 * @returns The parsed value.
 * @throws {SyntaxError} If `text` is not JSON (message bounded).
 * @throws {RangeError} On a duplicate key (named by its path) or nesting
 *   deeper than `maxDepth`.
 *
 * @example
 * ```ts
 * import { parseJson } from "@bbits/core/formats";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(parseJson('{"a": [1, {"b": 2}]}'), { a: [1, { b: 2 }] });
 * assert.throws(() => parseJson('{"a": {"b": 1, "b": 2}}'), /duplicate key "b" in a/);
 * assert.throws(() => parseJson("[".repeat(100) + "]".repeat(100)), /nested deeper than 64/);
 * ```
 */
export function parseJson(
  text: string,
  options: ParseJsonOptions = {},
): unknown {
  const where = options.where === undefined ? "Invalid JSON" : options.where;
  scanJson(text, options.maxDepth ?? MAX_JSON_DEPTH, where);
  try {
    return JSON.parse(text);
  } catch (error) {
    const message = (error as Error).message;
    throw new SyntaxError(
      `${where}: ${
        message.length > 2 * MESSAGE_PREFIX
          ? `${message.slice(0, 2 * MESSAGE_PREFIX)}...`
          : message
      } (text of ${text.length} characters)`,
      { cause: error },
    );
  }
}

interface Level {
  readonly keys: Set<string> | null; // null for an array
  readonly path: string;
  expectKey: boolean;
  key: string;
}

/** The end of the string literal opening at `start` (the index of its closing quote). */
function stringEnd(text: string, start: number): number {
  let i = start + 1;
  while (i < text.length && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
  return i;
}

/** Refuses duplicate keys and deep nesting; leaves syntax errors to JSON.parse. */
function scanJson(text: string, maxDepth: number, where: string): void {
  const stack: Level[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      const end = stringEnd(text, i);
      const top = stack[stack.length - 1];
      if (top?.keys && top.expectKey) {
        let key: string;
        try {
          key = JSON.parse(text.slice(i, end + 1));
        } catch {
          return; // a malformed string: JSON.parse reports it
        }
        if (top.keys.has(key)) {
          throw new RangeError(
            `${where}: duplicate key ${quote(key)} in ${
              top.path === "" ? "the top-level object" : top.path
            }`,
          );
        }
        top.keys.add(key);
        top.key = key;
        top.expectKey = false;
      }
      i = end;
    } else if (c === "{" || c === "[") {
      if (stack.length >= maxDepth) {
        throw new RangeError(
          `${where}: the JSON is nested deeper than ${maxDepth} levels`,
        );
      }
      const parent = stack[stack.length - 1];
      const path = parent === undefined
        ? ""
        : parent.keys
        ? keyPath(parent.path, parent.key)
        : `${parent.path}[]`;
      stack.push({
        keys: c === "{" ? new Set() : null,
        path,
        expectKey: true,
        key: "",
      });
    } else if (c === "}" || c === "]") {
      stack.pop();
    } else if (c === ",") {
      const top = stack[stack.length - 1];
      if (top) top.expectKey = true;
    }
  }
}
