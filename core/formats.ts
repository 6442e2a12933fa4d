/**
 * The binary formats, without file access: safetensors (checkpoints and
 * exported models) and IDX (the MNIST files).
 *
 * @example A safetensors round trip
 * ```ts
 * import { decodeSafetensors, encodeSafetensors } from "@bbits/core/formats";
 * import assert from "node:assert/strict";
 *
 * const bytes = encodeSafetensors({ w: { shape: [2], data: new Float32Array([1, 2]) } });
 * assert.deepEqual([...decodeSafetensors(bytes).tensors.w.data], [1, 2]);
 * ```
 *
 * @module
 */

export * from "./safetensors.ts";
export * from "./idx.ts";
export * from "./schema.ts";
export * from "./graph_schema.ts";
