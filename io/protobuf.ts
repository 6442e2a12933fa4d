/**
 * The protocol-buffers wire format, without a schema: a writer
 * ({@link ProtoWriter}) and a bounded reader ({@link ProtoMessage}), enough
 * for ONNX files (`io/onnx.ts`). No dependency.
 *
 * A message is a sequence of fields, each a key varint `(number << 3) |
 * wire` followed by its payload: wire 0 a varint, 1 eight little-endian
 * bytes, 2 a varint length and that many bytes (strings, bytes, nested
 * messages, packed repeated scalars), 5 four little-endian bytes. Groups
 * (wires 3 and 4) are obsolete and rejected.
 *
 * The reader never trusts a length: every varint, length and fixed-size
 * payload is checked against the bytes that remain, and a message's size,
 * its nesting depth and its field count are bounded ({@link ProtoLimits}),
 * so a hostile file fails with a RangeError naming the field and offset
 * instead of exhausting memory or the stack.
 *
 * @module
 */

/** Wire types of the protobuf encoding. */
export const WIRE = { varint: 0, fixed64: 1, bytes: 2, fixed32: 5 } as const;

/** One of the four wire types the reader accepts. */
export type WireType = (typeof WIRE)[keyof typeof WIRE];

/** Bounds the reader applies. */
export interface ProtoLimits {
  /** Largest message in bytes (default 2 GiB - 1, protobuf's own limit). */
  readonly maxBytes: number;
  /** Deepest nesting of messages (default 64). */
  readonly maxDepth: number;
  /** Most fields in one message (default 16,777,216). */
  readonly maxFields: number;
}

/** The default {@link ProtoLimits}. */
export const DEFAULT_PROTO_LIMITS: ProtoLimits = Object.freeze({
  maxBytes: 2 ** 31 - 1,
  maxDepth: 64,
  maxFields: 2 ** 24,
});

const MAX_FIELD_NUMBER = 2 ** 29 - 1;

/** Appends the varint of a non-negative integer below 2^64 to `out`. */
function pushVarint(out: number[], value: bigint): void {
  let v = value;
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
}

/** A signed or unsigned 64-bit integer as the unsigned value a varint holds. */
function toUint64(value: number | bigint, what: string): bigint {
  const v = typeof value === "bigint" ? value : BigInt(value);
  if (typeof value === "number" && !Number.isSafeInteger(value)) {
    throw new RangeError(`Cannot encode ${what}: ${value} is not an integer`);
  }
  if (v < -(2n ** 63n) || v >= 2n ** 64n) {
    throw new RangeError(`Cannot encode ${what}: ${v} does not fit 64 bits`);
  }
  return v < 0n ? v + 2n ** 64n : v;
}

/**
 * Writes one protobuf message. Fields are appended in call order; nested
 * messages are written by a callback on a fresh writer and framed with
 * their length.
 *
 * @example
 * ```ts
 * import { ProtoMessage, ProtoWriter } from "./protobuf.ts";
 * import assert from "node:assert/strict";
 *
 * const w = new ProtoWriter();
 * w.varint(1, 150).string(2, "hi").message(3, (m) => m.varint(1, -1));
 * const bytes = w.finish();
 * assert.deepEqual([...bytes.subarray(0, 3)], [0x08, 0x96, 0x01]); // field 1 = 150
 * const read = ProtoMessage.parse(bytes);
 * assert.equal(read.int(1), 150);
 * assert.equal(read.string(2), "hi");
 * assert.equal(read.messages(3)[0].int(1), -1);
 * ```
 */
export class ProtoWriter {
  #chunks: Uint8Array[] = [];
  #pending: number[] = [];
  #size = 0;

  #flush(): void {
    if (this.#pending.length === 0) return;
    this.#chunks.push(Uint8Array.from(this.#pending));
    this.#pending = [];
  }

  #key(field: number, wire: WireType): void {
    if (!Number.isInteger(field) || field < 1 || field > MAX_FIELD_NUMBER) {
      throw new RangeError(
        `Cannot encode field ${field}: field numbers are integers in [1, ${MAX_FIELD_NUMBER}]`,
      );
    }
    const before = this.#pending.length;
    pushVarint(this.#pending, BigInt(field * 8 + wire));
    this.#size += this.#pending.length - before;
  }

  #raw(bytes: Uint8Array): void {
    const before = this.#pending.length;
    pushVarint(this.#pending, BigInt(bytes.length));
    this.#size += this.#pending.length - before + bytes.length;
    this.#flush();
    this.#chunks.push(bytes);
  }

  /**
   * A varint field: an integer (negative ones as 64-bit two's complement,
   * as protobuf writes `int32`/`int64`).
   */
  varint(field: number, value: number | bigint): this {
    this.#key(field, WIRE.varint);
    const before = this.#pending.length;
    pushVarint(this.#pending, toUint64(value, `field ${field}`));
    this.#size += this.#pending.length - before;
    return this;
  }

  /** A 32-bit float field (wire 5). */
  float32(field: number, value: number): this {
    this.#key(field, WIRE.fixed32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.#pending.push(...b);
    this.#size += 4;
    return this;
  }

  /** A 64-bit float field (wire 1). */
  float64(field: number, value: number): this {
    this.#key(field, WIRE.fixed64);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, value, true);
    this.#pending.push(...b);
    this.#size += 8;
    return this;
  }

  /** A length-delimited field holding `bytes` as they are (not copied). */
  bytes(field: number, bytes: Uint8Array): this {
    this.#key(field, WIRE.bytes);
    this.#raw(bytes);
    return this;
  }

  /** A UTF-8 string field. */
  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  /** A nested message written by `body` on a fresh writer. */
  message(field: number, body: (writer: ProtoWriter) => void): this {
    const inner = new ProtoWriter();
    body(inner);
    return this.bytes(field, inner.finish());
  }

  /** A packed repeated varint field (`repeated int64` / `int32`). */
  packedVarints(field: number, values: readonly (number | bigint)[]): this {
    const out: number[] = [];
    for (const v of values) pushVarint(out, toUint64(v, `field ${field}`));
    return this.bytes(field, Uint8Array.from(out));
  }

  /** A packed repeated 32-bit float field (`repeated float`). */
  packedFloats(field: number, values: ArrayLike<number>): this {
    const b = new Uint8Array(values.length * 4);
    const view = new DataView(b.buffer);
    for (let i = 0; i < values.length; i++) {
      view.setFloat32(i * 4, values[i], true);
    }
    return this.bytes(field, b);
  }

  /** The bytes written so far, as one array. */
  finish(): Uint8Array {
    this.#flush();
    const out = new Uint8Array(this.#size);
    let offset = 0;
    for (const c of this.#chunks) {
      out.set(c, offset);
      offset += c.length;
    }
    return out;
  }
}

/** One field as read: its number, wire type, where it starts and its payload. */
export interface ProtoField {
  /** The field number. */
  readonly number: number;
  /** The wire type. */
  readonly wire: WireType;
  /** Offset of the field's key in the message. */
  readonly offset: number;
  /** Wire 0: the varint, unsigned. */
  readonly varint?: bigint;
  /** Wires 1, 2 and 5: the payload bytes (a view into the input). */
  readonly bytes?: Uint8Array;
}

/** Reads a varint at `pos`; returns the value and the next position. */
function readVarint(
  bytes: Uint8Array,
  pos: number,
  where: () => string,
): [bigint, number] {
  let value = 0n;
  for (let i = 0; i < 10; i++) {
    if (pos >= bytes.length) {
      throw new RangeError(`${where()}: truncated varint at byte ${pos}`);
    }
    const b = bytes[pos++];
    value |= BigInt(b & 0x7f) << BigInt(7 * i);
    if ((b & 0x80) === 0) {
      if (value >= 2n ** 64n) {
        throw new RangeError(
          `${where()}: varint at byte ${pos} exceeds 64 bits`,
        );
      }
      return [value, pos];
    }
  }
  throw new RangeError(`${where()}: varint longer than 10 bytes at ${pos}`);
}

/** Reads one field at `pos`; returns it and the next position. */
function readField(
  bytes: Uint8Array,
  pos: number,
  name: string,
): [ProtoField, number] {
  const where = () => `Malformed protobuf ${name}`;
  const [key, afterKey] = readVarint(bytes, pos, where);
  const number = Number(key >> 3n);
  const wire = Number(key & 7n);
  if (number < 1 || number > MAX_FIELD_NUMBER) {
    throw new RangeError(`${where()}: field number ${number} at byte ${pos}`);
  }
  const take = (size: number, at: number): [ProtoField, number] => {
    if (size > bytes.length - at) {
      throw new RangeError(
        `${where()}: field ${number} at byte ${pos} needs ${size} bytes, ${
          bytes.length - at
        } remain (truncated)`,
      );
    }
    const field = {
      number,
      wire: wire as WireType,
      offset: pos,
      bytes: bytes.subarray(at, at + size),
    };
    return [field, at + size];
  };
  switch (wire) {
    case WIRE.varint: {
      const [varint, next] = readVarint(bytes, afterKey, where);
      return [{ number, wire, offset: pos, varint }, next];
    }
    case WIRE.fixed64:
      return take(8, afterKey);
    case WIRE.fixed32:
      return take(4, afterKey);
    case WIRE.bytes: {
      const [length, next] = readVarint(bytes, afterKey, where);
      return take(Number(length > 2n ** 53n ? 2n ** 53n : length), next);
    }
  }
  throw new RangeError(
    `${where()}: field ${number} at byte ${pos} has wire type ${wire} (${
      wire === 3 || wire === 4 ? "groups are not supported" : "invalid"
    })`,
  );
}

/**
 * A parsed protobuf message: its fields by number, with typed accessors.
 * Nested messages are parsed on demand ({@link ProtoMessage.messages}),
 * one level deeper, under the same limits.
 */
export class ProtoMessage {
  /** The message's fields in file order. */
  readonly fields: readonly ProtoField[];
  /** Its name in error messages (e.g. `ModelProto.graph`). */
  readonly name: string;
  /** Its nesting depth (0 for the outermost message). */
  readonly depth: number;
  readonly #limits: ProtoLimits;

  private constructor(
    fields: ProtoField[],
    name: string,
    depth: number,
    limits: ProtoLimits,
  ) {
    this.fields = fields;
    this.name = name;
    this.depth = depth;
    this.#limits = limits;
  }

  /**
   * Parses a message's fields, checking every length and the limits.
   *
   * @param bytes The encoded message.
   * @param options Its name in error messages, its depth and the limits.
   * @returns The message.
   * @throws {RangeError} On truncated or malformed input or a limit passed.
   */
  static parse(
    bytes: Uint8Array,
    options: {
      readonly name?: string;
      readonly depth?: number;
      readonly limits?: Partial<ProtoLimits>;
    } = {},
  ): ProtoMessage {
    const name = options.name ?? "message";
    const depth = options.depth ?? 0;
    const limits = { ...DEFAULT_PROTO_LIMITS, ...options.limits };
    if (!(bytes instanceof Uint8Array)) {
      throw new TypeError(`Cannot parse protobuf ${name}: not a Uint8Array`);
    }
    if (bytes.length > limits.maxBytes) {
      throw new RangeError(
        `Protobuf ${name} of ${bytes.length} bytes exceeds the limit of ${limits.maxBytes}`,
      );
    }
    if (depth > limits.maxDepth) {
      throw new RangeError(
        `Protobuf ${name} is nested ${depth} deep, beyond the limit of ${limits.maxDepth}`,
      );
    }
    const fields: ProtoField[] = [];
    let pos = 0;
    while (pos < bytes.length) {
      if (fields.length >= limits.maxFields) {
        throw new RangeError(
          `Protobuf ${name} has more than ${limits.maxFields} fields`,
        );
      }
      const [field, next] = readField(bytes, pos, name);
      fields.push(field);
      pos = next;
    }
    return new ProtoMessage(fields, name, depth, limits);
  }

  /** Every field with `number`, checked to have wire type `wire`. */
  #all(number: number, wire: WireType, what: string): ProtoField[] {
    const found = this.fields.filter((f) => f.number === number);
    for (const f of found) {
      if (f.wire !== wire) {
        throw new RangeError(
          `Malformed protobuf ${this.name}: field ${number} (${what}) at byte ${f.offset} has wire type ${f.wire}, expected ${wire}`,
        );
      }
    }
    return found;
  }

  /** Whether the message has field `number`. */
  has(number: number): boolean {
    return this.fields.some((f) => f.number === number);
  }

  /** A varint field as a signed 64-bit integer (last one wins), or `fallback`. */
  int(number: number, fallback = 0): number {
    const found = this.#all(number, WIRE.varint, "integer");
    if (found.length === 0) return fallback;
    return signed64(found[found.length - 1].varint!, this.name, number);
  }

  /** A length-delimited field's bytes (last one wins), or `null`. */
  bytes(number: number): Uint8Array | null {
    const found = this.#all(number, WIRE.bytes, "bytes");
    return found.length === 0 ? null : found[found.length - 1].bytes!;
  }

  /** A UTF-8 string field, or `""`. */
  string(number: number): string {
    const b = this.bytes(number);
    if (b === null) return "";
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(b);
    } catch {
      throw new RangeError(
        `Malformed protobuf ${this.name}: field ${number} is not valid UTF-8`,
      );
    }
  }

  /** A repeated string field. */
  strings(number: number): string[] {
    return this.#all(number, WIRE.bytes, "string").map((f) => {
      try {
        return new TextDecoder("utf-8", { fatal: true }).decode(f.bytes!);
      } catch {
        throw new RangeError(
          `Malformed protobuf ${this.name}: field ${number} at byte ${f.offset} is not valid UTF-8`,
        );
      }
    });
  }

  /** A 32-bit float field (last one wins), or `fallback`. */
  float32(number: number, fallback = 0): number {
    const found = this.#all(number, WIRE.fixed32, "float");
    if (found.length === 0) return fallback;
    const b = found[found.length - 1].bytes!;
    return new DataView(b.buffer, b.byteOffset, 4).getFloat32(0, true);
  }

  /** A repeated message field, each parsed one level deeper. */
  messages(number: number, name = `${this.name}.${number}`): ProtoMessage[] {
    return this.#all(number, WIRE.bytes, "message").map((f) =>
      ProtoMessage.parse(f.bytes!, {
        name,
        depth: this.depth + 1,
        limits: this.#limits,
      })
    );
  }

  /** A repeated integer field, packed or not, as signed 64-bit integers. */
  ints(number: number): number[] {
    const out: number[] = [];
    for (const f of this.fields) {
      if (f.number !== number) continue;
      if (f.wire === WIRE.varint) {
        out.push(signed64(f.varint!, this.name, number));
      } else if (f.wire === WIRE.bytes) {
        let pos = 0;
        const where = () => `Malformed protobuf ${this.name} field ${number}`;
        while (pos < f.bytes!.length) {
          const [v, next] = readVarint(f.bytes!, pos, where);
          out.push(signed64(v, this.name, number));
          pos = next;
        }
      } else {
        throw new RangeError(
          `Malformed protobuf ${this.name}: field ${number} (integers) at byte ${f.offset} has wire type ${f.wire}`,
        );
      }
    }
    return out;
  }

  /** A repeated 32-bit float field, packed or not. */
  floats(number: number): Float32Array {
    const parts: Uint8Array[] = [];
    for (const f of this.fields) {
      if (f.number !== number) continue;
      if (
        (f.wire !== WIRE.bytes && f.wire !== WIRE.fixed32) ||
        f.bytes!.length % 4 !== 0
      ) {
        throw new RangeError(
          `Malformed protobuf ${this.name}: field ${number} (floats) at byte ${f.offset} is not a whole number of floats`,
        );
      }
      parts.push(f.bytes!);
    }
    const total = parts.reduce((s, p) => s + p.length, 0);
    const out = new Float32Array(total / 4);
    let i = 0;
    for (const p of parts) {
      const view = new DataView(p.buffer, p.byteOffset, p.length);
      for (let j = 0; j < p.length; j += 4) out[i++] = view.getFloat32(j, true);
    }
    return out;
  }
}

/** A varint as a signed 64-bit integer, which must be a safe JS integer. */
function signed64(v: bigint, name: string, number: number): number {
  const s = v >= 2n ** 63n ? v - 2n ** 64n : v;
  if (
    s > BigInt(Number.MAX_SAFE_INTEGER) || s < -BigInt(Number.MAX_SAFE_INTEGER)
  ) {
    throw new RangeError(
      `Protobuf ${name}: field ${number} holds ${s}, beyond a safe integer`,
    );
  }
  return Number(s);
}
