/**
 * The one strict parser of the command line's numeric values: a flag's text
 * or a config file's value becomes a number only when it is written as one
 * (no empty text, no `0x10`, no `Infinity`, no surrounding spaces, no
 * numeric string where a JSON number is expected) and lies within the
 * value's range; every refusal names the flag or config key. Also the check
 * that a path names a regular file, made before any work starts.
 *
 * @module
 */

import { GATE_BIT_WIDTHS } from "../core/methods/bayesian_bits/model.ts";

/** The most WASM threads a device takes (`createWasmDevice`'s limit). */
export const MAX_THREADS = 64;

/** What a numeric value must be. */
export type NumberRule =
  | "positive-integer"
  | "non-negative-integer"
  | "positive"
  | "non-negative"
  | "finite";

/** The rule's words in messages. */
const RULE_TEXT: Readonly<Record<NumberRule, string>> = {
  "positive-integer": "a positive integer",
  "non-negative-integer": "a non-negative integer",
  "positive": "a positive number",
  "non-negative": "a finite number >= 0",
  "finite": "a finite number",
};

/** A decimal number as a person writes it: sign, digits, point, exponent. */
const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/** Whether `v` satisfies `rule` (integers must also be safe integers). */
function satisfies(v: number, rule: NumberRule): boolean {
  if (!Number.isFinite(v)) return false;
  switch (rule) {
    case "positive-integer":
      return Number.isSafeInteger(v) && v > 0;
    case "non-negative-integer":
      return Number.isSafeInteger(v) && v >= 0;
    case "positive":
      return v > 0;
    case "non-negative":
      return v >= 0;
    case "finite":
      return true;
  }
}

/** Options of {@link parseNumber}. */
export interface NumberOptions {
  /** The largest value accepted. */
  readonly max?: number;
}

/**
 * A numeric value, checked: a flag's text (a plain decimal number) or a
 * config file's value (a JSON number; a string is refused even when it
 * reads as a number, so that a quoted value never passes for a number).
 *
 * @param name What leads the message: the flag (`--mu`) or the config key
 *   (`config "c.json": mu`).
 * @param value The flag's text, or the config's value.
 * @param rule What the number must be.
 * @param options An upper bound.
 * @returns The number.
 * @throws {RangeError} On empty or non-numeric text, a value of another
 *   type, or a number outside the rule or above `max`.
 *
 * @example
 * ```ts
 * import { parseNumber } from "./values.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(parseNumber("--mu", "1e-2", "non-negative"), 0.01);
 * assert.throws(() => parseNumber("--mu", "", "non-negative"), /--mu must/);
 * ```
 */
export function parseNumber(
  name: string,
  value: unknown,
  rule: NumberRule,
  options: NumberOptions = {},
): number {
  const fail = (extra = ""): never => {
    throw new RangeError(
      `${name} must be ${RULE_TEXT[rule]}${extra}, got ${describe(value)}`,
    );
  };
  if (typeof value === "string" && !DECIMAL.test(value)) fail();
  const v = typeof value === "string" ? Number(value) : value;
  if (typeof v !== "number" || !satisfies(v, rule)) fail();
  const max = options.max;
  if (max !== undefined && (v as number) > max) fail(` <= ${max}`);
  return v as number;
}

/**
 * A config file's numeric value, checked: a JSON number only, so a numeric
 * string is refused with a hint to drop the quotes.
 *
 * @param name The config key with its source (`config "c.json": mu`).
 * @param value The config's value.
 * @param rule What the number must be.
 * @param options An upper bound.
 * @returns The number.
 * @throws {RangeError} Unless `value` is a number satisfying `rule`.
 */
export function configNumber(
  name: string,
  value: unknown,
  rule: NumberRule,
  options: NumberOptions = {},
): number {
  if (typeof value === "string") {
    throw new RangeError(
      `${name} must be ${RULE_TEXT[rule]}, got the string ${
        describe(value)
      } (write a JSON number, without quotes)`,
    );
  }
  return parseNumber(name, value, rule, options);
}

/** A value for a message: JSON, cut to a prefix and the length when long. */
export function describe(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length <= 80
    ? text
    : `${text.slice(0, 60)}... (${text.length} characters)`;
}

/**
 * Throws unless `path` names a regular file (following links): a directory,
 * a FIFO or a device is refused before anything is opened, so that a read
 * never blocks and nothing is written on a bad input.
 *
 * @param flag The flag for the message (`--from`).
 * @param path The path.
 * @throws {RangeError} On an empty path or one that is not a regular file.
 * @throws {Error} If the path cannot be examined (e.g. it does not exist),
 *   naming the flag and the path.
 */
export async function checkRegularFile(
  flag: string,
  path: string,
): Promise<void> {
  if (path === "") throw new RangeError(`${flag} must name a file, got ""`);
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (error) {
    const reason = error instanceof Deno.errors.NotFound
      ? "no such file"
      : (error as Error).message;
    throw new Error(`${flag} ${path}: ${reason}`);
  }
  if (info.isFile) return;
  const kind = info.isDirectory
    ? "a directory"
    : info.isFifo
    ? "a FIFO"
    : info.isSocket
    ? "a socket"
    : info.isCharDevice || info.isBlockDevice
    ? "a device"
    : "not a regular file";
  throw new RangeError(
    `${flag} ${path} is ${
      kind === "not a regular file" ? kind : `${kind}, not a regular file`
    }`,
  );
}

/** The bit widths that have gates (`--init-logits` keys). */
const GATE_BITS: readonly string[] = GATE_BIT_WIDTHS.map(String);

/**
 * The `--init-logits` flag's text (`2=6,16=-6`): logits by gate bit width,
 * each bit width one that has a gate and each logit a strict number.
 *
 * @param text The flag's text.
 * @returns The logits by bit width.
 * @throws {RangeError} On a malformed list, an unknown bit width or a bad number.
 */
export function parseInitLogits(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of text.split(",")) {
    const pair = part.split("=").map((s) => s.trim());
    if (pair.length !== 2 || pair[0] === "") {
      throw new RangeError(
        `--init-logits must look like 2=6,4=6,8=6,16=-6,32=-6, got ${
          describe(text)
        }`,
      );
    }
    const [bits, value] = pair;
    if (Object.hasOwn(out, bits)) {
      throw new RangeError(
        `--init-logits gives the logit for ${bits} bits twice, in ${
          describe(text)
        }`,
      );
    }
    out[logitBits("--init-logits", bits)] = parseNumber(
      `--init-logits (the logit for ${bits} bits)`,
      value,
      "finite",
    );
  }
  return out;
}

/** A gate bit width as an `initialLogits` key, checked. */
function logitBits(name: string, key: string): string {
  if (!GATE_BITS.includes(key)) {
    throw new RangeError(
      `${name}: unknown bit width ${describe(key)} (gates exist for ${
        GATE_BITS.join(", ")
      })`,
    );
  }
  return key;
}

/**
 * Throws unless a config's `initialLogits` is an object of finite JSON
 * numbers keyed by gate bit widths.
 *
 * @param name The key with its source, for messages.
 * @param value The value.
 * @throws {TypeError | RangeError} On another type, an unknown bit width or a bad number.
 */
export function checkInitLogits(name: string, value: unknown): void {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TypeError(
      `${name} must be an object of logits by bit width, e.g. {"2": 6}`,
    );
  }
  for (const [key, logit] of Object.entries(value)) {
    logitBits(name, key);
    configNumber(`${name}["${key}"]`, logit, "finite");
  }
}
