/**
 * The safetensors file format: encode and decode, in memory.
 *
 * A safetensors file is:
 *
 * 1. `N`, the header length, as an 8-byte little-endian unsigned integer;
 * 2. `N` bytes of UTF-8 JSON, an object mapping each tensor name to
 *    `{ "dtype": "F32" | "I32" | ..., "shape": [...], "data_offsets": [begin, end] }`,
 *    plus an optional `"__metadata__"` object of string values;
 * 3. the data section: every tensor's elements, row-major and little-endian,
 *    at `[begin, end)` relative to the start of the section.
 *
 * {@link encodeSafetensors} pads the header with spaces to a multiple of 8
 * bytes (so the data section is 8-aligned in the file) and lays tensors out
 * back to back in name order (UTF-16 code-unit order, JavaScript's default
 * sort). {@link decodeSafetensors} accepts any order but, like the reference
 * implementation, requires the data section to be covered exactly: no
 * overlaps, no holes, no trailing bytes.
 *
 * Supported dtypes: `F32` (Float32Array), `I32`, `U32`, `I16`, `U16`, `I8`
 * and `U8` (the typed array of that name), and `F16` / `BF16` as their
 * bit patterns in a Uint16Array (`io/import.ts` reads their values). Elements are copied bit for bit
 * (NaN payloads, `-0` included). This module is pure (no file access): `io/checkpoint.ts` reads
 * and writes files.
 *
 * @module
 */

/** The dtypes {@link decodeSafetensors} and {@link encodeSafetensors} support. */
export type SafetensorsDtype =
  | "F32"
  | "I32"
  | "U32"
  | "I16"
  | "U16"
  | "I8"
  | "U8"
  | "F16"
  | "BF16";

/** The typed array of each dtype. */
export interface SafetensorsArrays {
  /** 32-bit floats. */
  F32: Float32Array;
  /** Signed 32-bit integers. */
  I32: Int32Array;
  /** Unsigned 32-bit integers. */
  U32: Uint32Array;
  /** Signed 16-bit integers. */
  I16: Int16Array;
  /** Unsigned 16-bit integers. */
  U16: Uint16Array;
  /** Signed bytes. */
  I8: Int8Array;
  /** Unsigned bytes. */
  U8: Uint8Array;
  /** IEEE half-precision floats, as their bit patterns. */
  F16: Uint16Array;
  /** bfloat16 floats (the top half of a float32), as their bit patterns. */
  BF16: Uint16Array;
}

import { describeValue, quote } from "./schema.ts";
import {
  checkMetadata,
  elementCount,
  parseHeader,
  shapeText,
} from "./safetensors_header.ts";

/** A dtype's item size and typed array. */
interface DtypeInfo<A> {
  readonly size: 1 | 2 | 4;
  readonly make: (buffer: ArrayBuffer) => A;
  /** Whether encoding picks this dtype for `data` (F16/BF16: only when asked). */
  readonly is: (data: unknown) => boolean;
}

function info<A>(
  size: 1 | 2 | 4,
  Array: new (buffer: ArrayBuffer) => A,
  encodes = true,
): DtypeInfo<A> {
  return {
    size,
    make: (b) => new Array(b),
    is: (d) => encodes && d instanceof Array,
  };
}

const DTYPES: {
  readonly [D in SafetensorsDtype]: DtypeInfo<SafetensorsArrays[D]>;
} = {
  F32: info(4, Float32Array),
  I32: info(4, Int32Array),
  U32: info(4, Uint32Array),
  I16: info(2, Int16Array),
  U16: info(2, Uint16Array),
  I8: info(1, Int8Array),
  U8: info(1, Uint8Array),
  F16: info(2, Uint16Array, false),
  BF16: info(2, Uint16Array, false),
};
const DTYPE_NAMES = Object.keys(DTYPES) as SafetensorsDtype[];

/** A tensor to encode: its shape and its row-major elements. */
export interface SafetensorsInput {
  /** The dimension sizes, outermost first; `[]` for a scalar. */
  readonly shape: readonly number[];
  /**
   * The elements; the class picks the dtype (Float32Array: `F32`,
   * Int32Array: `I32`, Uint8Array: `U8`, ...) and its length must be the
   * product of `shape`.
   */
  readonly data: SafetensorsArrays[SafetensorsDtype];
  /**
   * The dtype when the class does not say it: `"F16"` or `"BF16"` writes a
   * Uint16Array of bit patterns as such; any other must match the class.
   */
  readonly dtype?: SafetensorsDtype;
}

/**
 * A decoded tensor: `dtype` tells the class of `data`, a fresh array in
 * native byte order whose length is the product of `shape`.
 */
export type SafetensorsTensor = {
  [D in SafetensorsDtype]: {
    dtype: D;
    shape: number[];
    data: SafetensorsArrays[D];
  };
}[SafetensorsDtype];

/** What {@link decodeSafetensors} returns. */
export interface DecodedSafetensors {
  /** The tensors, by name. */
  tensors: Record<string, SafetensorsTensor>;
  /** The `__metadata__` strings; `{}` when the file has none. */
  metadata: Record<string, string>;
}

const METADATA_KEY = "__metadata__";
const HEADER_ALIGNMENT = 8;

/**
 * Encodes tensors (and optional string metadata) as a safetensors file.
 *
 * Tensors are laid out in sorted name order; the header is padded with
 * spaces to a multiple of 8 bytes. The result never shares memory with the
 * inputs. The `__metadata__` object is written only when `metadata` has at
 * least one key.
 *
 * @param tensors The tensors, by name.
 * @param metadata Optional strings stored under `"__metadata__"`.
 * @returns The bytes of the file.
 * @throws {TypeError} If a tensor's `data` is not a Float32Array or an
 *   Int32Array, or a metadata value is not a string.
 * @throws {RangeError} If a name is empty or `"__metadata__"`, a shape entry
 *   is not a non-negative safe integer, or a tensor's element count does
 *   not match the product of its shape; the message names the tensor.
 *
 * @example
 * ```ts
 * import { decodeSafetensors, encodeSafetensors } from "./safetensors.ts";
 * import assert from "node:assert/strict";
 *
 * const bytes = encodeSafetensors(
 *   { w: { shape: [2], data: new Float32Array([1.5, -2]) } },
 *   { author: "me" },
 * );
 * assert.equal(bytes.length % 8, 0);
 * const { tensors, metadata } = decodeSafetensors(bytes);
 * assert.equal(tensors.w.dtype, "F32");
 * assert.deepEqual(tensors.w.shape, [2]);
 * assert.deepEqual([...tensors.w.data], [1.5, -2]);
 * assert.deepEqual(metadata, { author: "me" });
 * ```
 */
export function encodeSafetensors(
  tensors: Readonly<Record<string, SafetensorsInput>>,
  metadata?: Readonly<Record<string, string>>,
): Uint8Array {
  const names = Object.keys(tensors).sort();
  // Entries, not assignments: a tensor named "__proto__" must stay a key.
  const header: [string, unknown][] = [];
  if (metadata !== undefined && Object.keys(metadata).length > 0) {
    checkMetadataInput(metadata);
    header.push([METADATA_KEY, { ...metadata }]);
  }
  const arrays: SafetensorsArrays[SafetensorsDtype][] = [];
  let offset = 0;
  for (const name of names) {
    checkTensorName(name);
    const { shape, data, dtype: half } = tensors[name];
    const dtype = checkTensorInput(name, shape, data, half);
    const begin = offset;
    offset += data.length * DTYPES[dtype].size;
    header.push([name, {
      dtype,
      shape: [...shape],
      data_offsets: [begin, offset],
    }]);
    arrays.push(data);
  }
  const json = new TextEncoder().encode(
    JSON.stringify(Object.fromEntries(header)),
  );
  const headerLength = Math.ceil(json.length / HEADER_ALIGNMENT) *
    HEADER_ALIGNMENT;
  const dataStart = 8 + headerLength;
  const bytes = new Uint8Array(dataStart + offset);
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0, BigInt(headerLength), true);
  bytes.set(json, 8);
  bytes.fill(0x20, 8 + json.length, dataStart); // spaces
  writeDataSection(bytes, view, dataStart, arrays);
  return bytes;
}

function checkMetadataInput(metadata: Readonly<Record<string, string>>): void {
  for (const [key, value] of Object.entries(metadata)) {
    if (typeof value !== "string") {
      throw new TypeError(
        `Cannot encode safetensors metadata ${
          quote(key)
        }: values must be strings, got ${typeof value}`,
      );
    }
  }
}

function checkTensorName(name: string): void {
  if (name === "" || name === METADATA_KEY) {
    throw new RangeError(
      `Cannot encode tensor ${quote(name)}: the name is reserved or empty`,
    );
  }
}

/** The dtype of a tensor to encode, after checking its data fits its shape. */
function checkTensorInput(
  name: string,
  shape: readonly number[],
  data: SafetensorsArrays[SafetensorsDtype],
  asked?: SafetensorsDtype,
): SafetensorsDtype {
  const half = asked === "F16" || asked === "BF16";
  const dtype = half ? asked : dtypeOf(name, data);
  if ((half && !(data instanceof Uint16Array)) || (asked && asked !== dtype)) {
    throw new TypeError(
      `Cannot encode tensor ${quote(name)} as ${asked}: got a ${
        Object.prototype.toString.call(data)
      }`,
    );
  }
  const count = elementCount(`tensor ${quote(name)}`, shape);
  if (data.length !== count) {
    throw new RangeError(
      `Cannot encode tensor ${quote(name)}: shape ${
        shapeText(shape)
      } needs ${count} elements, got ${data.length}`,
    );
  }
  return dtype;
}

/** Writes `arrays` back to back, little-endian, from byte `position` on. */
function writeDataSection(
  bytes: Uint8Array,
  view: DataView,
  position: number,
  arrays: readonly SafetensorsArrays[SafetensorsDtype][],
): void {
  for (const data of arrays) {
    // Copying through unsigned words keeps NaN payloads bit-exact, which a
    // round trip through setFloat32 does not promise.
    if (data.BYTES_PER_ELEMENT === 4) {
      const words = new Uint32Array(data.buffer, data.byteOffset, data.length);
      for (let i = 0; i < words.length; i++, position += 4) {
        view.setUint32(position, words[i], true);
      }
    } else if (data.BYTES_PER_ELEMENT === 2) {
      const halves = new Uint16Array(data.buffer, data.byteOffset, data.length);
      for (let i = 0; i < halves.length; i++, position += 2) {
        view.setUint16(position, halves[i], true);
      }
    } else {
      bytes.set(
        new Uint8Array(data.buffer, data.byteOffset, data.length),
        position,
      );
      position += data.length;
    }
  }
}

/**
 * Decodes the bytes of a safetensors file.
 *
 * The result never shares memory with `bytes`. Every check fails with a
 * RangeError that says what is wrong and the offending value.
 *
 * @param bytes The whole file.
 * @returns The tensors by name and the `__metadata__` strings.
 * @throws {TypeError} If `bytes` is not a Uint8Array.
 * @throws {RangeError} If the file is shorter than the 8-byte header length;
 *   the header length runs past the end of the file; the header is not
 *   UTF-8 JSON of an object; a metadata value is not a string; a tensor entry
 *   has an unknown dtype, a bad shape, or `data_offsets` that are out of
 *   range or do not match `shape` times the item size; tensors overlap or
 *   leave holes; or bytes trail the last tensor.
 *
 * @example
 * ```ts
 * import { decodeSafetensors, encodeSafetensors } from "./safetensors.ts";
 * import assert from "node:assert/strict";
 *
 * const bytes = encodeSafetensors({
 *   step: { shape: [], data: new Int32Array([7]) },
 * });
 * assert.deepEqual(decodeSafetensors(bytes).tensors.step.data, new Int32Array([7]));
 * assert.throws(
 *   () => decodeSafetensors(bytes.subarray(0, bytes.length - 1)),
 *   RangeError,
 * );
 * ```
 */
export function decodeSafetensors(bytes: Uint8Array): DecodedSafetensors {
  const headerLength = readHeaderLength(bytes);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dataStart = 8 + headerLength;
  const dataLength = bytes.length - dataStart;
  const header = parseHeader(bytes.subarray(8, dataStart));

  let metadata: Record<string, string> = {};
  const entries: TensorEntry[] = [];
  for (const [name, value] of Object.entries(header)) {
    if (name === METADATA_KEY) {
      metadata = Object.fromEntries(Object.entries(checkMetadata(value)));
    } else {
      entries.push(checkEntry(name, value, dataLength));
    }
  }
  checkCoverage(entries, dataLength);

  const tensors = Object.fromEntries(
    entries.map((entry) => [
      entry.name,
      readTensor(bytes, view, dataStart, entry),
    ]),
  );
  return { tensors, metadata };
}

/** The header length of a safetensors file, checked against its size. */
function readHeaderLength(bytes: Uint8Array): number {
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError(
      `Cannot decode safetensors: expected a Uint8Array, got ${
        Object.prototype.toString.call(bytes)
      }`,
    );
  }
  if (bytes.length < 8) {
    throw new RangeError(
      `Cannot decode safetensors: truncated file of ${bytes.length} bytes, fewer than the 8 of the header length`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (headerLength > bytes.length - 8) {
    throw new RangeError(
      `Cannot decode safetensors: the header length is ${headerLength} bytes but only ${
        bytes.length - 8
      } follow it (truncated file or bad header length)`,
    );
  }
  return headerLength;
}

/** Checks that the tensors cover the data section exactly. */
function checkCoverage(
  entries: readonly TensorEntry[],
  dataLength: number,
): void {
  // Sorting by [begin, end] puts empty tensors before a non-empty one at the
  // same offset.
  const byOffset = [...entries].sort((a, b) =>
    a.begin - b.begin || a.end - b.end
  );
  let covered = 0;
  let previous: TensorEntry | undefined;
  for (const entry of byOffset) {
    if (entry.begin < covered) {
      throw new RangeError(
        `Cannot decode safetensors: tensor ${
          quote(entry.name)
        } data_offsets [${entry.begin}, ${entry.end}] overlap tensor ${
          quote(previous?.name ?? "")
        } [${previous?.begin}, ${previous?.end}]`,
      );
    }
    if (entry.begin > covered) {
      throw new RangeError(
        `Cannot decode safetensors: bytes [${covered}, ${entry.begin}) of the data section before tensor ${
          quote(entry.name)
        } belong to no tensor`,
      );
    }
    covered = entry.end;
    previous = entry;
  }
  if (covered !== dataLength) {
    throw new RangeError(
      `Cannot decode safetensors: ${
        dataLength - covered
      } trailing bytes after the last tensor (data section is ${dataLength} bytes, tensors cover ${covered})`,
    );
  }
}

/** Copies one checked tensor out of the file's data section. */
function readTensor(
  bytes: Uint8Array,
  view: DataView,
  dataStart: number,
  entry: TensorEntry,
): SafetensorsTensor {
  const { size, make } = DTYPES[entry.dtype];
  const start = dataStart + entry.begin;
  let buffer: ArrayBuffer;
  if (size === 4) {
    const words = new Uint32Array(entry.shapeCount);
    for (let i = 0; i < words.length; i++) {
      words[i] = view.getUint32(start + i * 4, true);
    }
    buffer = words.buffer;
  } else if (size === 2) {
    const halves = new Uint16Array(entry.shapeCount);
    for (let i = 0; i < halves.length; i++) {
      halves[i] = view.getUint16(start + i * 2, true);
    }
    buffer = halves.buffer;
  } else {
    buffer = bytes.slice(start, start + entry.shapeCount).buffer;
  }
  return {
    dtype: entry.dtype,
    shape: entry.shape,
    data: make(buffer),
  } as SafetensorsTensor;
}

interface TensorEntry {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: number[];
  readonly shapeCount: number;
  readonly begin: number;
  readonly end: number;
}

function dtypeOf(name: string, data: unknown): SafetensorsDtype {
  const dtype = DTYPE_NAMES.find((d) => DTYPES[d].is(data));
  if (dtype) return dtype;
  throw new TypeError(
    `Cannot encode tensor ${
      quote(name)
    }: data must be a Float32Array, Int32Array, Uint32Array, Int16Array, Uint16Array, Int8Array or Uint8Array, got ${
      Object.prototype.toString.call(data)
    }`,
  );
}

function checkEntry(
  name: string,
  value: unknown,
  dataLength: number,
): TensorEntry {
  const where = `Cannot decode safetensors tensor ${quote(name)}`;
  if (typeof value !== "object" || value === null) {
    throw new RangeError(
      `${where}: the entry must be an object, got ${describeValue(value)}`,
    );
  }
  const { dtype, shape, data_offsets: offsets } = value as Record<
    string,
    unknown
  >;
  if (!DTYPE_NAMES.includes(dtype as SafetensorsDtype)) {
    throw new RangeError(
      `${where}: unknown dtype ${
        typeof dtype === "string" ? quote(dtype) : describeValue(dtype)
      }, supported are ${DTYPE_NAMES.map((d) => `"${d}"`).join(", ")}`,
    );
  }
  const itemSize = DTYPES[dtype as SafetensorsDtype].size;
  const count = elementCount(`safetensors tensor ${quote(name)}`, shape);
  if (
    !Array.isArray(offsets) || offsets.length !== 2 ||
    !offsets.every((x) => Number.isSafeInteger(x) && x >= 0)
  ) {
    throw new RangeError(
      `${where}: data_offsets must be two non-negative integers, got ${
        Array.isArray(offsets) && offsets.length <= 4
          ? `[${offsets.map(describeValue).join(", ")}]`
          : describeValue(offsets)
      }`,
    );
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end || end > dataLength) {
    throw new RangeError(
      `${where}: data_offsets [${begin}, ${end}] are out of range of the ${dataLength}-byte data section`,
    );
  }
  if (end - begin !== count * itemSize) {
    throw new RangeError(
      `${where}: data_offsets [${begin}, ${end}] span ${
        end - begin
      } bytes but ${dtype} shape ${shapeText(shape as number[])} needs ${
        count * itemSize
      }`,
    );
  }
  return {
    name,
    dtype: dtype as SafetensorsDtype,
    shape: [...(shape as number[])],
    shapeCount: count,
    begin,
    end,
  };
}
