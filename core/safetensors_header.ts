/**
 * The safetensors header's checks (shared by the encoder and decoder of
 * `core/safetensors.ts`): shapes, the JSON header and its metadata, every
 * refusal with a bounded message.
 *
 * @module
 */

import { describeValue, MESSAGE_PREFIX, parseJson, quote } from "./schema.ts";

/**
 * The deepest nesting a header may have: the object of entries, an entry,
 * its shape (3); a few more levels are tolerated, not 100,000.
 */
const MAX_HEADER_DEPTH = 8;

/** A shape for a message: its sizes, the first few only when long. */
export function shapeText(shape: readonly unknown[]): string {
  const sizes = shape.slice(0, 8).map((size) =>
    typeof size === "number" ? String(size) : describeValue(size)
  );
  return shape.length > 8
    ? `[${sizes.join(", ")}, ...] (${shape.length} dimensions)`
    : `[${sizes.join(", ")}]`;
}

/** The product of `shape`, after checking it is a list of sizes. */
export function elementCount(what: string, shape: unknown): number {
  if (!Array.isArray(shape)) {
    throw new RangeError(
      `Bad shape for ${what}: expected an array, got ${describeValue(shape)}`,
    );
  }
  let count = 1;
  for (const size of shape) {
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new RangeError(
        `Bad shape for ${what}: ${shapeText(shape)} has ${
          describeValue(size)
        }, sizes must be non-negative integers`,
      );
    }
    count *= size;
  }
  if (!Number.isSafeInteger(count * 4)) { // the largest item size
    throw new RangeError(
      `Bad shape for ${what}: ${shapeText(shape)} is too large`,
    );
  }
  return count;
}

/** The header's JSON object, refusing bad UTF-8, duplicate keys and deep nesting. */
export function parseHeader(headerBytes: Uint8Array): Record<string, unknown> {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(headerBytes);
  } catch (error) {
    throw new RangeError(
      `Cannot decode safetensors: the ${headerBytes.length}-byte header is not valid UTF-8`,
      { cause: error },
    );
  }
  let header: unknown;
  try {
    // Duplicate keys are refused (the format forbids them: JSON.parse would
    // keep the last, and a tensor would vanish), and so is deep nesting.
    header = parseJson(text, {
      maxDepth: MAX_HEADER_DEPTH,
      where: "the header is not valid JSON",
    });
  } catch (error) {
    throw new RangeError(
      `Cannot decode safetensors: ${(error as Error).message}; it starts ${
        JSON.stringify(text.slice(0, MESSAGE_PREFIX))
      }`,
      { cause: error },
    );
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new RangeError(
      `Cannot decode safetensors: the header must be a JSON object, got ${
        JSON.stringify(text.slice(0, MESSAGE_PREFIX))
      }`,
    );
  }
  return header as Record<string, unknown>;
}

/** The `__metadata__` object: string values only. */
export function checkMetadata(value: unknown): Record<string, string> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new RangeError(
      `Cannot decode safetensors: "__metadata__" must be an object, got ${
        describeValue(value)
      }`,
    );
  }
  for (const [key, item] of Object.entries(value)) {
    if (typeof item !== "string") {
      throw new RangeError(
        `Cannot decode safetensors: metadata ${
          quote(key)
        } must be a string, got ${describeValue(item)}`,
      );
    }
  }
  return value as Record<string, string>;
}
