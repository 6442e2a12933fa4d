/**
 * The IDX file format (LeCun's MNIST format): parse and encode, in memory.
 *
 * An IDX file is a 4-byte magic number `00 00 TT DD`, then `DD` big-endian
 * unsigned 32-bit dimension sizes, then the elements in row-major order,
 * each big-endian, of the type with code `TT`:
 *
 * | code | type      | bytes |
 * | ---- | --------- | ----- |
 * | 0x08 | `uint8`   | 1     |
 * | 0x09 | `int8`    | 1     |
 * | 0x0B | `int16`   | 2     |
 * | 0x0C | `int32`   | 4     |
 * | 0x0D | `float32` | 4     |
 * | 0x0E | `float64` | 8     |
 *
 * This module is pure (no file access): `io/mnist.ts` reads the bytes.
 *
 * @module
 */

/** The element types an IDX file can hold. */
export type IdxDtype =
  | "uint8"
  | "int8"
  | "int16"
  | "int32"
  | "float32"
  | "float64";

/**
 * A parsed IDX array. `dtype` tells the class of `data`, which holds the
 * elements in row-major order in native byte order.
 */
export type IdxArray =
  | IdxArrayOf<"uint8", Uint8Array>
  | IdxArrayOf<"int8", Int8Array>
  | IdxArrayOf<"int16", Int16Array>
  | IdxArrayOf<"int32", Int32Array>
  | IdxArrayOf<"float32", Float32Array>
  | IdxArrayOf<"float64", Float64Array>;

/** One member of {@link IdxArray}: a dtype and the typed array that holds it. */
export interface IdxArrayOf<D extends IdxDtype, A> {
  /** The element type. */
  readonly dtype: D;
  /** The dimension sizes, outermost first; at least one. */
  readonly shape: number[];
  /** The elements, row-major; its length is the product of `shape`. */
  readonly data: A;
}

/** What {@link encodeIdx} takes: any numbers, with their dtype and shape. */
export interface IdxInput {
  /** The element type to write. */
  readonly dtype: IdxDtype;
  /** The dimension sizes, outermost first: 1 to 255 of them. */
  readonly shape: readonly number[];
  /** The elements, row-major; must be representable in `dtype`. */
  readonly data: ArrayLike<number>;
}

/** Options of {@link parseIdx}. */
export interface ParseIdxOptions {
  /** A name for the bytes (e.g. their file path), quoted in error messages. */
  readonly source?: string;
}

interface DtypeInfo {
  readonly dtype: IdxDtype;
  readonly code: number;
  readonly bytes: number;
  readonly min: number;
  readonly max: number;
}

const DTYPES: readonly DtypeInfo[] = [
  { dtype: "uint8", code: 0x08, bytes: 1, min: 0, max: 0xff },
  { dtype: "int8", code: 0x09, bytes: 1, min: -0x80, max: 0x7f },
  { dtype: "int16", code: 0x0b, bytes: 2, min: -0x8000, max: 0x7fff },
  { dtype: "int32", code: 0x0c, bytes: 4, min: -0x80000000, max: 0x7fffffff },
  { dtype: "float32", code: 0x0d, bytes: 4, min: -Infinity, max: Infinity },
  { dtype: "float64", code: 0x0e, bytes: 8, min: -Infinity, max: Infinity },
];

/** A shape for a message: its sizes, the first few only when long. */
function shapeText(shape: readonly number[]): string {
  return shape.length > 8
    ? `[${shape.slice(0, 8).join(", ")}, ...] (${shape.length} dimensions)`
    : `[${shape.join(", ")}]`;
}

const hex = (byte: number) => `0x${byte.toString(16).padStart(2, "0")}`;

/**
 * Parses the bytes of an IDX file.
 *
 * The result never shares memory with `bytes`: `data` is a fresh typed array
 * in native byte order.
 *
 * @param bytes The whole file.
 * @param options `source`: a name for the bytes, quoted in errors.
 * @returns The dtype, shape and elements.
 * @throws {TypeError} If `bytes` is not a Uint8Array.
 * @throws {RangeError} If the magic number is wrong (first two bytes not
 *   zero, an unknown type code, zero dimensions), the header is cut short,
 *   or the payload is not exactly the size the header implies (truncated or
 *   trailing bytes); the message names the expected and actual byte counts.
 *
 * @example
 * ```ts
 * import { parseIdx } from "@bbits/core/formats";
 * import assert from "node:assert/strict";
 *
 * // uint8, 1 dimension of size 3, elements 7, 8, 9
 * const file = new Uint8Array([0, 0, 0x08, 1, 0, 0, 0, 3, 7, 8, 9]);
 * const { dtype, shape, data } = parseIdx(file);
 * assert.equal(dtype, "uint8");
 * assert.deepEqual(shape, [3]);
 * assert.deepEqual([...data], [7, 8, 9]);
 * assert.throws(() => parseIdx(file.subarray(0, 10)), /truncated.*11 bytes.*got 10/);
 * ```
 */
export function parseIdx(
  bytes: Uint8Array,
  options: ParseIdxOptions = {},
): IdxArray {
  const source = options.source === undefined
    ? "IDX data"
    : `IDX file "${options.source}"`;
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError(
      `Cannot parse ${source}: expected a Uint8Array, got ${
        Object.prototype.toString.call(bytes)
      }`,
    );
  }
  if (bytes.length < 4) {
    throw new RangeError(
      `Cannot parse ${source}: it has ${bytes.length} bytes, fewer than the 4 of the magic number`,
    );
  }
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    throw new RangeError(
      `Cannot parse ${source}: bad magic number, the first two bytes must be 0x00 0x00, got ${
        hex(bytes[0])
      } ${hex(bytes[1])}`,
    );
  }
  const info = DTYPES.find((d) => d.code === bytes[2]);
  if (info === undefined) {
    throw new RangeError(
      `Cannot parse ${source}: unknown type code ${
        hex(bytes[2])
      } in the magic number; expected one of ${
        DTYPES.map((d) => `${hex(d.code)} (${d.dtype})`).join(", ")
      }`,
    );
  }
  const rank = bytes[3];
  if (rank === 0) {
    throw new RangeError(
      `Cannot parse ${source}: the magic number declares 0 dimensions; an IDX file needs at least 1`,
    );
  }
  const headerBytes = 4 + 4 * rank;
  if (bytes.length < headerBytes) {
    throw new RangeError(
      `Cannot parse ${source}: header truncated, ${rank} dimensions need a ${headerBytes}-byte header, got ${bytes.length} bytes`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const shape: number[] = [];
  for (let d = 0; d < rank; d++) shape.push(view.getUint32(4 + 4 * d, false));
  // A zero anywhere makes the array empty, however large the other sizes
  // (their product alone could overflow to Infinity, and Infinity * 0 is NaN).
  const count = shape.includes(0) ? 0 : shape.reduce((a, b) => a * b, 1);
  const payloadBytes = count * info.bytes;
  if (bytes.length - headerBytes !== payloadBytes) {
    const problem = bytes.length - headerBytes < payloadBytes
      ? "truncated"
      : `${bytes.length - headerBytes - payloadBytes} trailing bytes`;
    const needs = Number.isSafeInteger(payloadBytes)
      ? `${
        headerBytes + payloadBytes
      } bytes (${headerBytes} header + ${payloadBytes} payload)`
      : `more than 2^53 bytes`;
    throw new RangeError(
      `Cannot parse ${source}: ${problem}; shape ${
        shapeText(shape)
      } of ${info.dtype} needs ${needs}, got ${bytes.length}`,
    );
  }
  return readPayload(info.dtype, shape, view, headerBytes, count);
}

function readPayload(
  dtype: IdxDtype,
  shape: number[],
  view: DataView,
  offset: number,
  count: number,
): IdxArray {
  switch (dtype) {
    case "uint8": {
      const start = view.byteOffset + offset;
      const data = new Uint8Array(view.buffer.slice(start, start + count));
      return { dtype, shape, data };
    }
    case "int8": {
      const start = view.byteOffset + offset;
      const data = new Int8Array(view.buffer.slice(start, start + count));
      return { dtype, shape, data };
    }
    case "int16": {
      const data = new Int16Array(count);
      for (let i = 0; i < count; i++) data[i] = view.getInt16(offset + 2 * i);
      return { dtype, shape, data };
    }
    case "int32": {
      const data = new Int32Array(count);
      for (let i = 0; i < count; i++) data[i] = view.getInt32(offset + 4 * i);
      return { dtype, shape, data };
    }
    case "float32": {
      const data = new Float32Array(count);
      for (let i = 0; i < count; i++) data[i] = view.getFloat32(offset + 4 * i);
      return { dtype, shape, data };
    }
    case "float64": {
      const data = new Float64Array(count);
      for (let i = 0; i < count; i++) data[i] = view.getFloat64(offset + 8 * i);
      return { dtype, shape, data };
    }
  }
}

/**
 * Encodes an array as the bytes of an IDX file (big-endian), e.g. to build
 * small test files. The inverse of {@link parseIdx}.
 *
 * @param array `dtype`, `shape` (1 to 255 sizes, each an unsigned 32-bit
 *   integer) and row-major `data`.
 * @returns A new Uint8Array holding the whole file.
 * @throws {RangeError} On an unknown dtype, a bad shape, a data length that
 *   is not the product of the shape, or an element that `dtype` cannot hold
 *   (integer dtypes take only integers in their range; float dtypes take any
 *   number, float32 rounding to nearest).
 *
 * @example
 * ```ts
 * import { encodeIdx, parseIdx } from "@bbits/core/formats";
 * import assert from "node:assert/strict";
 *
 * const file = encodeIdx({ dtype: "int16", shape: [2, 2], data: [1, -2, 300, -400] });
 * assert.deepEqual([...file.subarray(0, 4)], [0, 0, 0x0b, 2]);
 * assert.equal(file.length, 4 + 2 * 4 + 4 * 2);
 * assert.deepEqual([...parseIdx(file).data], [1, -2, 300, -400]);
 * ```
 */
export function encodeIdx(array: IdxInput): Uint8Array {
  const { dtype, shape, data } = array;
  const info = DTYPES.find((d) => d.dtype === dtype);
  if (info === undefined) {
    throw new RangeError(
      `Cannot encode IDX: unknown dtype ${
        JSON.stringify(dtype)
      }; expected one of ${DTYPES.map((d) => d.dtype).join(", ")}`,
    );
  }
  if (shape.length < 1 || shape.length > 255) {
    throw new RangeError(
      `Cannot encode IDX: the shape must have 1 to 255 dimensions, got ${shape.length}`,
    );
  }
  let count = 1;
  for (const size of shape) {
    if (!Number.isInteger(size) || size < 0 || size > 0xffffffff) {
      throw new RangeError(
        `Cannot encode IDX: shape [${
          shape.join(", ")
        }] has size ${size}; sizes must be unsigned 32-bit integers`,
      );
    }
    count *= size;
  }
  if (shape.includes(0)) count = 0; // even when the other sizes overflow
  if (data.length !== count) {
    throw new RangeError(
      `Cannot encode IDX: shape [${
        shape.join(", ")
      }] holds ${count} elements, got ${data.length}`,
    );
  }
  const headerBytes = 4 + 4 * shape.length;
  const bytes = new Uint8Array(headerBytes + count * info.bytes);
  const view = new DataView(bytes.buffer);
  bytes[2] = info.code;
  bytes[3] = shape.length;
  shape.forEach((size, d) => view.setUint32(4 + 4 * d, size, false));
  const isInteger = info.min !== -Infinity;
  for (let i = 0; i < count; i++) {
    const value = data[i];
    const representable = isInteger
      ? Number.isInteger(value) && value >= info.min && value <= info.max
      : typeof value === "number";
    if (!representable) {
      throw new RangeError(
        `Cannot encode IDX: element ${i} is ${value}, which ${dtype} cannot hold` +
          (isInteger ? ` (integers ${info.min} to ${info.max})` : ""),
      );
    }
    const at = headerBytes + i * info.bytes;
    switch (dtype) {
      case "uint8":
        view.setUint8(at, value);
        break;
      case "int8":
        view.setInt8(at, value);
        break;
      case "int16":
        view.setInt16(at, value, false);
        break;
      case "int32":
        view.setInt32(at, value, false);
        break;
      case "float32":
        view.setFloat32(at, value, false);
        break;
      case "float64":
        view.setFloat64(at, value, false);
        break;
    }
  }
  return bytes;
}
