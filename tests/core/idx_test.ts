import assert from "node:assert/strict";
import { encodeIdx, type IdxDtype, parseIdx } from "../../core/idx.ts";

/** Big-endian bytes of a uint32. */
const u32 = (
  n: number,
) => [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];

Deno.test("parseIdx() reads hand-made files of every dtype, big-endian", () => {
  const cases: {
    dtype: IdxDtype;
    code: number;
    shape: number[];
    payload: number[];
    values: number[];
    arrayClass: new (n: number) => ArrayLike<number>;
  }[] = [
    {
      dtype: "uint8",
      code: 0x08,
      shape: [2, 3],
      payload: [0, 1, 2, 127, 128, 255],
      values: [0, 1, 2, 127, 128, 255],
      arrayClass: Uint8Array,
    },
    {
      dtype: "int8",
      code: 0x09,
      shape: [3],
      payload: [0x00, 0x7f, 0x80],
      values: [0, 127, -128],
      arrayClass: Int8Array,
    },
    {
      dtype: "int16",
      code: 0x0b,
      shape: [1, 2],
      payload: [0x01, 0x02, 0xff, 0xfe],
      values: [0x0102, -2],
      arrayClass: Int16Array,
    },
    {
      dtype: "int32",
      code: 0x0c,
      shape: [2],
      payload: [0x01, 0x02, 0x03, 0x04, 0x80, 0, 0, 0],
      values: [0x01020304, -(2 ** 31)],
      arrayClass: Int32Array,
    },
    {
      dtype: "float32",
      code: 0x0d,
      shape: [2, 1, 1],
      payload: [0x3f, 0x80, 0, 0, 0xc0, 0x20, 0, 0],
      values: [1, -2.5],
      arrayClass: Float32Array,
    },
    {
      dtype: "float64",
      code: 0x0e,
      shape: [1],
      payload: [0x3f, 0xf8, 0, 0, 0, 0, 0, 0],
      values: [1.5],
      arrayClass: Float64Array,
    },
  ];
  for (const { dtype, code, shape, payload, values, arrayClass } of cases) {
    const file = new Uint8Array([
      0,
      0,
      code,
      shape.length,
      ...shape.flatMap(u32),
      ...payload,
    ]);
    const parsed = parseIdx(file);
    assert.equal(parsed.dtype, dtype);
    assert.deepEqual(parsed.shape, shape, dtype);
    assert.ok(parsed.data instanceof arrayClass, `${dtype} array class`);
    assert.deepEqual([...parsed.data], values, dtype);
    assert.deepEqual(encodeIdx(parsed), file, `${dtype} encodes back`);
  }
});

Deno.test("parseIdx() reads a file that sits at an offset inside a larger buffer", () => {
  const file = encodeIdx({ dtype: "int16", shape: [2], data: [-300, 300] });
  const padded = new Uint8Array(file.length + 5);
  padded.set(file, 3);
  const parsed = parseIdx(padded.subarray(3, 3 + file.length));
  assert.deepEqual([...parsed.data], [-300, 300]);
});

Deno.test("parseIdx() never shares memory with its input and never changes it", () => {
  const file = encodeIdx({ dtype: "uint8", shape: [3], data: [1, 2, 3] });
  const before = file.slice();
  const parsed = parseIdx(file);
  parsed.data[0] = 99;
  assert.deepEqual(file, before);
});

Deno.test("parseIdx() accepts a dimension of size zero", () => {
  const parsed = parseIdx(
    encodeIdx({ dtype: "float32", shape: [0, 28], data: [] }),
  );
  assert.deepEqual(parsed.shape, [0, 28]);
  assert.equal(parsed.data.length, 0);
});

Deno.test("parseIdx() rejects corrupt headers with a RangeError that says what is wrong", () => {
  const good = encodeIdx({ dtype: "uint8", shape: [2, 2], data: [1, 2, 3, 4] });
  const withByte = (index: number, value: number) => {
    const bytes = good.slice();
    bytes[index] = value;
    return bytes;
  };
  const cases: [string, Uint8Array, RegExp][] = [
    [
      "an empty file",
      new Uint8Array(0),
      /0 bytes, fewer than the 4 of the magic/,
    ],
    ["a 3-byte file", good.subarray(0, 3), /3 bytes, fewer than the 4/],
    ["a nonzero first byte", withByte(0, 0x1f), /bad magic.*0x1f 0x00/],
    ["a nonzero second byte", withByte(1, 0x8b), /bad magic.*0x00 0x8b/],
    ["an unknown type code", withByte(2, 0x0a), /unknown type code 0x0a/],
    ["zero dimensions", withByte(3, 0), /declares 0 dimensions/],
    [
      "more dimensions than the header holds",
      withByte(3, 5),
      /header truncated, 5 dimensions need a 24-byte header, got 16 bytes/,
    ],
    [
      "a header cut inside the dimensions",
      good.subarray(0, 9),
      /header truncated, 2 dimensions need a 12-byte header, got 9 bytes/,
    ],
  ];
  for (const [what, bytes, message] of cases) {
    assert.throws(() => parseIdx(bytes), (error: Error) => {
      assert.ok(error instanceof RangeError, `${what}: ${error}`);
      assert.match(error.message, message, what);
      return true;
    });
  }
});

Deno.test("parseIdx() rejects truncated payloads and trailing bytes, naming both byte counts", () => {
  const file = encodeIdx({ dtype: "int32", shape: [3], data: [1, 2, 3] }); // 8 + 12 bytes
  const extended = new Uint8Array(file.length + 2);
  extended.set(file);
  const cases: [string, Uint8Array, RegExp][] = [
    [
      "a payload one byte short",
      file.subarray(0, 19),
      /truncated; shape \[3\] of int32 needs 20 bytes \(8 header \+ 12 payload\), got 19/,
    ],
    [
      "a header without payload",
      file.subarray(0, 8),
      /truncated.*needs 20 bytes.*got 8/,
    ],
    [
      "two trailing bytes",
      extended,
      /2 trailing bytes; shape \[3\] of int32 needs 20 bytes.*got 22/,
    ],
  ];
  for (const [what, bytes, message] of cases) {
    assert.throws(() => parseIdx(bytes), RangeError, what);
    assert.throws(() => parseIdx(bytes), message, what);
  }
});

Deno.test("parseIdx() names its source in errors and rejects non-byte input with a TypeError", () => {
  assert.throws(
    () =>
      parseIdx(new Uint8Array([1, 0, 8, 1]), { source: "/data/x-idx1-ubyte" }),
    /IDX file "\/data\/x-idx1-ubyte": bad magic/,
  );
  assert.throws(
    () => parseIdx([0, 0, 8, 1] as unknown as Uint8Array),
    /expected a Uint8Array, got \[object Array\]/,
  );
});

Deno.test("parseIdx() survives every truncation of a valid file without crashing", () => {
  const file = encodeIdx({ dtype: "float64", shape: [2, 1], data: [0.5, -1] });
  for (let length = 0; length < file.length; length++) {
    assert.throws(
      () => parseIdx(file.subarray(0, length)),
      RangeError,
      `length ${length}`,
    );
  }
});

Deno.test("encodeIdx() rejects shapes, lengths and values it cannot write", () => {
  const cases: [string, Parameters<typeof encodeIdx>[0], RegExp][] = [
    ["an unknown dtype", {
      dtype: "uint16" as IdxDtype,
      shape: [1],
      data: [0],
    }, /unknown dtype "uint16"/],
    [
      "an empty shape",
      { dtype: "uint8", shape: [], data: [] },
      /1 to 255 dimensions, got 0/,
    ],
    [
      "a fractional size",
      { dtype: "uint8", shape: [1.5], data: [0] },
      /has size 1.5/,
    ],
    ["a short data array", {
      dtype: "uint8",
      shape: [2, 2],
      data: [1, 2, 3],
    }, /holds 4 elements, got 3/],
    [
      "a uint8 out of range",
      { dtype: "uint8", shape: [1], data: [256] },
      /element 0 is 256.*0 to 255/,
    ],
    ["a fractional int16", {
      dtype: "int16",
      shape: [2],
      data: [0, 0.5],
    }, /element 1 is 0.5, which int16 cannot hold/],
    [
      "an int8 below range",
      { dtype: "int8", shape: [1], data: [-129] },
      /-128 to 127/,
    ],
  ];
  for (const [what, input, message] of cases) {
    assert.throws(() => encodeIdx(input), RangeError, what);
    assert.throws(() => encodeIdx(input), message, what);
  }
});

Deno.test("encodeIdx() round-trips floats through parseIdx() bit for bit", () => {
  const data = [0, -0, 1e-40, 3.4e38, -Infinity, NaN, Math.PI];
  const float64 = parseIdx(encodeIdx({ dtype: "float64", shape: [7], data }));
  assert.deepEqual([...float64.data], data);
  const float32 = parseIdx(encodeIdx({ dtype: "float32", shape: [7], data }));
  assert.deepEqual([...float32.data], data.map(Math.fround));
});
