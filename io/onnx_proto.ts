/**
 * ONNX's protobuf schema (the parts a feed-forward model needs) as plain
 * objects, encoded and decoded with our own wire-format code
 * (`io/protobuf.ts`): {@link encodeOnnx}, {@link decodeOnnx}.
 *
 * Tensors are written as `raw_data`, little-endian; sub-byte types packed
 * as ONNX packs them, the first element in the lowest bits (two INT4/UINT4
 * per byte, four INT2/UINT2 per byte). Field numbers are those of
 * `onnx.proto` (ModelProto, GraphProto, NodeProto, AttributeProto,
 * TensorProto, ValueInfoProto, TypeProto).
 *
 * @module
 */

import { type ProtoLimits, ProtoMessage, ProtoWriter } from "./protobuf.ts";

/** ONNX tensor element types (`TensorProto.DataType`) this module reads or writes. */
export const DATA_TYPE = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  FLOAT16: 10,
  DOUBLE: 11,
  BFLOAT16: 16,
  UINT4: 21,
  INT4: 22,
  UINT2: 25,
  INT2: 26,
} as const;

/** The name of an element type, e.g. `"INT4"`. */
export type DataTypeName = keyof typeof DATA_TYPE;

/** An integer element type: its bits and signedness. */
const INTEGER_TYPES: Partial<Record<number, [number, boolean]>> = {
  [DATA_TYPE.INT2]: [2, true],
  [DATA_TYPE.UINT2]: [2, false],
  [DATA_TYPE.INT4]: [4, true],
  [DATA_TYPE.UINT4]: [4, false],
  [DATA_TYPE.INT8]: [8, true],
  [DATA_TYPE.UINT8]: [8, false],
  [DATA_TYPE.INT16]: [16, true],
  [DATA_TYPE.UINT16]: [16, false],
  [DATA_TYPE.INT32]: [32, true],
};

/** The float element types, read as float32. */
const FLOAT_TYPES: readonly number[] = [
  DATA_TYPE.FLOAT,
  DATA_TYPE.FLOAT16,
  DATA_TYPE.BFLOAT16,
  DATA_TYPE.DOUBLE,
];

/**
 * The name of an element type number.
 *
 * @param type A `TensorProto.DataType` value.
 * @returns Its name, or `type N` for one this module does not know.
 */
export function dataTypeName(type: number): string {
  const entry = Object.entries(DATA_TYPE).find(([, v]) => v === type);
  return entry ? entry[0] : `type ${type}`;
}

/**
 * The code range of an integer element type.
 *
 * @param type An integer `TensorProto.DataType`.
 * @returns `[min, max]`.
 * @throws {RangeError} For a type that is not an integer type of up to 32 bits.
 */
export function integerRange(type: number): [number, number] {
  const t = INTEGER_TYPES[type];
  if (!t) throw new RangeError(`${dataTypeName(type)} is not an integer type`);
  const [bits, signed] = t;
  return signed
    ? [-(2 ** (bits - 1)), 2 ** (bits - 1) - 1]
    : [0, 2 ** bits - 1];
}

/**
 * A tensor: float types hold float32 values (FLOAT16, BFLOAT16 and DOUBLE
 * converted on reading), integer types their integers (INT64 as exact
 * doubles).
 */
export interface OnnxTensor {
  /** The initializer's name. */
  readonly name: string;
  /** Its `TensorProto.DataType`. */
  readonly dataType: number;
  /** Its shape. */
  readonly dims: readonly number[];
  /** Its elements, row-major. */
  readonly data: Float32Array | Int32Array | Float64Array;
}

/** A node attribute (the kinds this module writes; others read as `other`). */
export type OnnxAttribute =
  | { readonly kind: "int"; readonly value: number }
  | { readonly kind: "float"; readonly value: number }
  | { readonly kind: "ints"; readonly value: readonly number[] }
  | { readonly kind: "string"; readonly value: string }
  | { readonly kind: "other"; readonly type: number };

/** A graph node. */
export interface OnnxNode {
  /** The node's name. */
  readonly name: string;
  /** The operator, e.g. `"Conv"`. */
  readonly opType: string;
  /** Input value names (`""` for an omitted optional input). */
  readonly inputs: readonly string[];
  /** Output value names. */
  readonly outputs: readonly string[];
  /** Attributes by name. */
  readonly attributes: Readonly<Record<string, OnnxAttribute>>;
}

/** A graph input or output: a tensor of a type and shape (a string is a symbolic dimension). */
export interface OnnxValueInfo {
  /** The value's name. */
  readonly name: string;
  /** Its element type. */
  readonly elemType: number;
  /** Its dimensions; strings are symbolic (e.g. the batch `"N"`). */
  readonly shape: readonly (number | string)[];
}

/** A model: one graph, the default-domain opset and string metadata. */
export interface OnnxModel {
  /** The IR version. */
  readonly irVersion: number;
  /** The opset of the default (`ai.onnx`) domain. */
  readonly opset: number;
  /** Who wrote it. */
  readonly producerName: string;
  /** The graph's name. */
  readonly graphName: string;
  /** Nodes in topological order. */
  readonly nodes: readonly OnnxNode[];
  /** Constant tensors. */
  readonly initializers: readonly OnnxTensor[];
  /** Graph inputs. */
  readonly inputs: readonly OnnxValueInfo[];
  /** Graph outputs. */
  readonly outputs: readonly OnnxValueInfo[];
  /** `metadata_props`. */
  readonly metadata: Readonly<Record<string, string>>;
}

/** Bytes of a tensor's `raw_data`. */
function rawBytes(t: OnnxTensor): Uint8Array {
  const count = t.dims.reduce((a, b) => a * b, 1);
  if (t.data.length !== count) {
    throw new RangeError(
      `Cannot encode ONNX tensor "${t.name}": dims [${t.dims}] need ${count} elements, got ${t.data.length}`,
    );
  }
  const int = INTEGER_TYPES[t.dataType];
  if (t.dataType === DATA_TYPE.FLOAT) {
    const out = new Uint8Array(count * 4);
    const view = new DataView(out.buffer);
    t.data.forEach((v, i) => view.setFloat32(i * 4, v, true));
    return out;
  }
  if (!int) {
    throw new RangeError(
      `Cannot encode ONNX tensor "${t.name}" of ${dataTypeName(t.dataType)}`,
    );
  }
  const [bits] = int;
  const [lo, hi] = integerRange(t.dataType);
  for (let i = 0; i < count; i++) {
    const v = t.data[i];
    if (!Number.isInteger(v) || v < lo || v > hi) {
      throw new RangeError(
        `Cannot encode ONNX tensor "${t.name}": element ${i} (${v}) is not a ${
          dataTypeName(t.dataType)
        } in [${lo}, ${hi}]`,
      );
    }
  }
  return packIntegers(t.data, bits);
}

/** Integers of `bits` bits, little-endian, sub-byte ones packed from the lowest bits. */
function packIntegers(data: ArrayLike<number>, bits: number): Uint8Array {
  if (bits >= 8) {
    const size = bits / 8;
    const out = new Uint8Array(data.length * size);
    for (let i = 0; i < data.length; i++) {
      for (let b = 0; b < size; b++) {
        out[i * size + b] = (data[i] >> (8 * b)) & 0xff;
      }
    }
    return out;
  }
  const perByte = 8 / bits;
  const out = new Uint8Array(Math.ceil(data.length / perByte));
  const mask = (1 << bits) - 1;
  for (let i = 0; i < data.length; i++) {
    out[Math.floor(i / perByte)] |= (data[i] & mask) << (bits * (i % perByte));
  }
  return out;
}

function writeTensor(w: ProtoWriter, t: OnnxTensor): void {
  w.packedVarints(1, [...t.dims]);
  w.varint(2, t.dataType);
  w.string(8, t.name);
  w.bytes(9, rawBytes(t));
}

function writeAttribute(w: ProtoWriter, name: string, a: OnnxAttribute): void {
  w.string(1, name);
  switch (a.kind) {
    case "float":
      w.float32(2, a.value).varint(20, 1);
      break;
    case "int":
      w.varint(3, a.value).varint(20, 2);
      break;
    case "string":
      w.string(4, a.value).varint(20, 3);
      break;
    case "ints":
      w.packedVarints(8, [...a.value]).varint(20, 7);
      break;
    case "other":
      throw new RangeError(
        `Cannot encode attribute "${name}" of type ${a.type}`,
      );
  }
}

function writeValueInfo(w: ProtoWriter, v: OnnxValueInfo): void {
  w.string(1, v.name);
  w.message(2, (type) =>
    type.message(1, (tensor) => {
      tensor.varint(1, v.elemType);
      tensor.message(2, (shape) => {
        for (const d of v.shape) {
          shape.message(1, (dim) =>
            typeof d === "string" ? dim.string(2, d) : dim.varint(1, d));
        }
      });
    }));
}

/**
 * Encodes a model as the bytes of an `.onnx` file.
 *
 * @param model The model.
 * @returns The serialized ModelProto.
 * @throws {RangeError} On a tensor whose data does not fit its dims or type.
 *
 * @example
 * ```ts
 * import { decodeOnnx, encodeOnnx } from "./onnx_proto.ts";
 * import assert from "node:assert/strict";
 *
 * const bytes = encodeOnnx({
 *   irVersion: 10, opset: 21, producerName: "me", graphName: "g",
 *   nodes: [{ name: "n", opType: "Relu", inputs: ["x"], outputs: ["y"], attributes: {} }],
 *   initializers: [], metadata: {},
 *   inputs: [{ name: "x", elemType: 1, shape: ["N", 2] }],
 *   outputs: [{ name: "y", elemType: 1, shape: ["N", 2] }],
 * });
 * assert.equal(decodeOnnx(bytes).nodes[0].opType, "Relu");
 * ```
 */
export function encodeOnnx(model: OnnxModel): Uint8Array {
  const w = new ProtoWriter();
  w.varint(1, model.irVersion);
  w.string(2, model.producerName);
  w.message(7, (g) => {
    for (const n of model.nodes) {
      g.message(1, (node) => {
        for (const i of n.inputs) node.string(1, i);
        for (const o of n.outputs) node.string(2, o);
        node.string(3, n.name);
        node.string(4, n.opType);
        for (const [name, a] of Object.entries(n.attributes)) {
          node.message(5, (attr) => writeAttribute(attr, name, a));
        }
      });
    }
    g.string(2, model.graphName);
    for (const t of model.initializers) g.message(5, (m) => writeTensor(m, t));
    for (const v of model.inputs) g.message(11, (m) => writeValueInfo(m, v));
    for (const v of model.outputs) g.message(12, (m) => writeValueInfo(m, v));
  });
  w.message(8, (o) => o.string(1, "").varint(2, model.opset));
  for (const [key, value] of Object.entries(model.metadata)) {
    w.message(14, (m) => m.string(1, key).string(2, value));
  }
  return w.finish();
}

/** A float16 bit pattern as a number. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** A bfloat16 bit pattern as a number. */
export function bfloat16ToFloat(h: number): number {
  const f = new Float32Array(1);
  new Uint32Array(f.buffer)[0] = h << 16;
  return f[0];
}

/** Unpacks `count` integers of `bits` bits from `raw` (see {@link packIntegers}). */
function unpackIntegers(
  raw: Uint8Array,
  count: number,
  bits: number,
  signed: boolean,
): Int32Array {
  const out = new Int32Array(count);
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  for (let i = 0; i < count; i++) {
    let v: number;
    if (bits === 32) v = view.getInt32(i * 4, true);
    else if (bits === 16) v = view.getUint16(i * 2, true);
    else if (bits === 8) v = raw[i];
    else {
      const perByte = 8 / bits;
      v = (raw[Math.floor(i / perByte)] >> (bits * (i % perByte))) &
        ((1 << bits) - 1);
    }
    out[i] = signed && bits < 32 && v >= 2 ** (bits - 1) ? v - 2 ** bits : v;
  }
  return out;
}

/** Reads raw little-endian float-type elements. */
function rawFloats(raw: Uint8Array, count: number, type: number): Float32Array {
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    out[i] = type === DATA_TYPE.FLOAT
      ? view.getFloat32(i * 4, true)
      : type === DATA_TYPE.DOUBLE
      ? view.getFloat64(i * 8, true)
      : type === DATA_TYPE.FLOAT16
      ? halfToFloat(view.getUint16(i * 2, true))
      : bfloat16ToFloat(view.getUint16(i * 2, true));
  }
  return out;
}

/** Bytes of `count` elements of `type` in `raw_data`, or `null` when unknown. */
function rawSize(type: number, count: number): number | null {
  const int = INTEGER_TYPES[type];
  if (int) return Math.ceil((count * int[0]) / 8);
  if (type === DATA_TYPE.FLOAT) return count * 4;
  if (type === DATA_TYPE.DOUBLE || type === DATA_TYPE.INT64) return count * 8;
  if (type === DATA_TYPE.FLOAT16 || type === DATA_TYPE.BFLOAT16) {
    return count * 2;
  }
  return null;
}

/** A tensor's elements from `raw_data`. */
function fromRaw(
  where: string,
  raw: Uint8Array,
  type: number,
  count: number,
): OnnxTensor["data"] {
  const size = rawSize(type, count);
  if (size === null) {
    throw new RangeError(
      `${where}: unsupported data type ${dataTypeName(type)}`,
    );
  }
  if (raw.length !== size) {
    throw new RangeError(
      `${where}: raw_data has ${raw.length} bytes, ${
        dataTypeName(type)
      } dims need ${size}`,
    );
  }
  if (type === DATA_TYPE.INT64) {
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    return Float64Array.from(
      { length: count },
      (_, i) => Number(view.getBigInt64(i * 8, true)),
    );
  }
  const int = INTEGER_TYPES[type];
  if (int) return unpackIntegers(raw, count, int[0], int[1]);
  return rawFloats(raw, count, type);
}

/** A tensor's elements from the typed repeated fields. */
function fromFields(
  where: string,
  m: ProtoMessage,
  type: number,
  count: number,
): OnnxTensor["data"] {
  let data: OnnxTensor["data"];
  if (type === DATA_TYPE.FLOAT) data = m.floats(4);
  else if (type === DATA_TYPE.INT64) data = Float64Array.from(m.ints(7));
  else if (type === DATA_TYPE.FLOAT16 || type === DATA_TYPE.BFLOAT16) {
    const convert = type === DATA_TYPE.FLOAT16 ? halfToFloat : bfloat16ToFloat;
    data = Float32Array.from(m.ints(5), convert);
  } else if (INTEGER_TYPES[type] && INTEGER_TYPES[type]![0] >= 8) {
    data = Int32Array.from(m.ints(5));
  } else {
    throw new RangeError(
      `${where}: ${dataTypeName(type)} without raw_data is not supported`,
    );
  }
  if (data.length !== count) {
    throw new RangeError(
      `${where}: ${data.length} elements, dims need ${count}`,
    );
  }
  return data;
}

function readTensor(m: ProtoMessage): OnnxTensor {
  const name = m.string(8);
  const where = `ONNX tensor "${name}"`;
  const dims = m.ints(1);
  if (dims.some((d) => d < 0)) {
    throw new RangeError(`${where}: negative dimension in [${dims}]`);
  }
  const count = dims.reduce((a, b) => a * b, 1);
  if (!Number.isSafeInteger(count)) {
    throw new RangeError(`${where}: dims [${dims}] are too large`);
  }
  if (m.int(14) === 1) {
    throw new RangeError(`${where}: external data is not supported`);
  }
  const type = m.int(2);
  const raw = m.bytes(9);
  const data = raw !== null
    ? fromRaw(where, raw, type, count)
    : fromFields(where, m, type, count);
  return { name, dataType: type, dims, data };
}

function readAttribute(m: ProtoMessage): [string, OnnxAttribute] {
  const name = m.string(1);
  const type = m.int(20);
  switch (type) {
    case 1:
      return [name, { kind: "float", value: m.float32(2) }];
    case 2:
      return [name, { kind: "int", value: m.int(3) }];
    case 3:
      return [name, { kind: "string", value: m.string(4) }];
    case 7:
      return [name, { kind: "ints", value: m.ints(8) }];
  }
  return [name, { kind: "other", type }];
}

function readValueInfo(m: ProtoMessage): OnnxValueInfo {
  const tensor = m.messages(2, "TypeProto")[0]?.messages(
    1,
    "TypeProto.Tensor",
  )[0];
  const shape = tensor?.messages(2, "TensorShapeProto")[0];
  return {
    name: m.string(1),
    elemType: tensor?.int(1) ?? 0,
    shape: (shape?.messages(1, "Dimension") ?? []).map((d) =>
      d.has(1) ? d.int(1) : d.string(2)
    ),
  };
}

function readNode(m: ProtoMessage): OnnxNode {
  return {
    name: m.string(3),
    opType: m.string(4),
    inputs: m.strings(1),
    outputs: m.strings(2),
    attributes: Object.fromEntries(
      m.messages(5, "AttributeProto").map(readAttribute),
    ),
  };
}

/**
 * Decodes the bytes of an `.onnx` file (tensors stored in the file, not as
 * external data), under the reader's bounds.
 *
 * @param bytes The file.
 * @param limits Bounds on size, nesting and field counts.
 * @returns The model.
 * @throws {RangeError} On truncated or malformed protobuf, no graph, a
 *   tensor whose data does not match its dims, or an unsupported type.
 */
export function decodeOnnx(
  bytes: Uint8Array,
  limits: Partial<ProtoLimits> = {},
): OnnxModel {
  const m = ProtoMessage.parse(bytes, { name: "ModelProto", limits });
  const graph = m.messages(7, "GraphProto")[0];
  if (!graph) {
    throw new RangeError("Not an ONNX model: ModelProto has no graph");
  }
  const opset = m.messages(8, "OperatorSetIdProto")
    .find((o) => o.string(1) === "" || o.string(1) === "ai.onnx");
  return {
    irVersion: m.int(1),
    opset: opset?.int(2) ?? 0,
    producerName: m.string(2),
    graphName: graph.string(2),
    nodes: graph.messages(1, "NodeProto").map(readNode),
    initializers: graph.messages(5, "TensorProto").map(readTensor),
    inputs: graph.messages(11, "ValueInfoProto").map(readValueInfo),
    outputs: graph.messages(12, "ValueInfoProto").map(readValueInfo),
    metadata: Object.fromEntries(
      m.messages(14, "StringStringEntryProto").map((e) => [
        e.string(1),
        e.string(2),
      ]),
    ),
  };
}

/**
 * Whether an element type is a float type (FLOAT, FLOAT16, BFLOAT16, DOUBLE).
 *
 * @param type A `TensorProto.DataType`.
 * @returns True for the float types this module reads.
 */
export function isFloatType(type: number): boolean {
  return FLOAT_TYPES.includes(type);
}
