/**
 * Base64 for the embedded WASM bytes (no dependencies, synchronous).
 *
 * @module
 */

/**
 * Encodes bytes as standard base64 with padding.
 *
 * @param bytes The bytes.
 * @returns The base64 text.
 *
 * @example
 * ```ts
 * import { encodeBase64 } from "./base64.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(encodeBase64(new Uint8Array([0, 97, 115, 109])), "AGFzbQ==");
 * ```
 */
export function encodeBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/**
 * Decodes standard base64 into bytes.
 *
 * @param text Base64 text.
 * @returns The bytes.
 * @throws {DOMException} If `text` is not valid base64.
 *
 * @example
 * ```ts
 * import { decodeBase64 } from "./base64.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(decodeBase64("AGFzbQ=="), new Uint8Array([0, 97, 115, 109]));
 * ```
 */
export function decodeBase64(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
