/**
 * The protobuf wire format against hand-encoded bytes (the protobuf
 * documentation's `150 -> 08 96 01`), sub-byte ONNX packing by hand, and
 * truncated or malformed input refused with the reason.
 */

import assert from "node:assert/strict";
import { ProtoMessage, ProtoWriter } from "../../io/protobuf.ts";
import {
  DATA_TYPE,
  decodeOnnx,
  encodeOnnx,
  type OnnxModel,
} from "../../io/onnx_proto.ts";

Deno.test("ProtoWriter writes varints, negative int64, floats, strings and packed fields as the wire format says", () => {
  const bytes = new ProtoWriter()
    .varint(1, 150)
    .varint(2, -1)
    .float32(3, 1)
    .string(4, "ab")
    .packedVarints(5, [3, 270])
    .finish();
  assert.deepEqual([...bytes], [
    0x08,
    0x96,
    0x01, // field 1, varint 150
    0x10,
    ...Array(9).fill(0xff),
    0x01, // field 2, -1 as ten bytes
    0x1d,
    0x00,
    0x00,
    0x80,
    0x3f, // field 3, fixed32 1.0f
    0x22,
    0x02,
    0x61,
    0x62, // field 4, "ab"
    0x2a,
    0x03,
    0x03,
    0x8e,
    0x02, // field 5, packed [3, 270]
  ]);
  const m = ProtoMessage.parse(bytes);
  assert.equal(m.int(1), 150);
  assert.equal(m.int(2), -1);
  assert.equal(m.float32(3), 1);
  assert.equal(m.string(4), "ab");
  assert.deepEqual(m.ints(5), [3, 270]);
});

/** A one-initializer model holding `data` as `type`. */
function withInitializer(type: number, data: number[]): OnnxModel {
  return {
    irVersion: 13,
    opset: 25,
    producerName: "test",
    graphName: "g",
    nodes: [],
    initializers: [{
      name: "t",
      dataType: type,
      dims: [data.length],
      data: Int32Array.from(data),
    }],
    inputs: [],
    outputs: [],
    metadata: {},
  };
}

Deno.test("INT4 and INT2 initializers are packed from the lowest bits and read back", () => {
  const cases: [number, number[], number[]][] = [
    // 1 | (-2 & 15) << 4 = 0xe1, then 3.
    [DATA_TYPE.INT4, [1, -2, 3], [0xe1, 0x03]],
    // -1 -> 0b11, 0, 1 << 4, (-2 -> 0b10) << 6 = 0x93, then 1.
    [DATA_TYPE.INT2, [-1, 0, 1, -2, 1], [0x93, 0x01]],
    [DATA_TYPE.UINT2, [3, 0, 2, 1], [0x63]],
  ];
  for (const [type, values, packed] of cases) {
    const bytes = encodeOnnx(withInitializer(type, values));
    const raw = ProtoMessage.parse(bytes).messages(7)[0].messages(5)[0].bytes(
      9,
    );
    assert.deepEqual([...raw!], packed);
    assert.deepEqual([...decodeOnnx(bytes).initializers[0].data], values);
  }
  assert.throws(
    () => encodeOnnx(withInitializer(DATA_TYPE.INT2, [2])),
    /element 0 \(2\) is not a INT2 in \[-2, 1\]/,
  );
});

Deno.test("the reader refuses truncated and malformed messages and messages beyond its limits", () => {
  const good = new ProtoWriter().message(1, (m) => m.string(2, "x")).finish();
  const cases: [Uint8Array, RegExp][] = [
    [Uint8Array.of(0x08, 0x96), /truncated varint/],
    [
      good.subarray(0, good.length - 1),
      /needs 3 bytes, 2 remain \(truncated\)/,
    ],
    [Uint8Array.of(0x0b), /wire type 3 \(groups are not supported\)/],
    [Uint8Array.of(0x0f), /wire type 7 \(invalid\)/],
    [Uint8Array.of(0x00), /field number 0/],
    [
      Uint8Array.of(0x08, ...Array(10).fill(0xff), 0x01),
      /longer than 10 bytes/,
    ],
  ];
  for (const [bytes, pattern] of cases) {
    assert.throws(() => ProtoMessage.parse(bytes).messages(1), pattern);
  }
  let nested = new ProtoWriter().varint(1, 1).finish();
  for (let i = 0; i < 5; i++) {
    const inner = nested;
    nested = new ProtoWriter().bytes(1, inner).finish();
  }
  const deep = (m: ProtoMessage): number =>
    m.fields[0].wire === 2 ? deep(m.messages(1)[0]) : m.depth;
  assert.equal(deep(ProtoMessage.parse(nested)), 5);
  assert.throws(
    () => deep(ProtoMessage.parse(nested, { limits: { maxDepth: 3 } })),
    /nested 4 deep, beyond the limit of 3/,
  );
  const many = new ProtoWriter().varint(1, 1).varint(1, 2).varint(1, 3)
    .finish();
  assert.throws(
    () => ProtoMessage.parse(many, { limits: { maxFields: 2 } }),
    /more than 2 fields/,
  );
  assert.throws(
    () => ProtoMessage.parse(many, { limits: { maxBytes: 5 } }),
    /6 bytes exceeds the limit of 5/,
  );
  assert.throws(
    () => ProtoMessage.parse(Uint8Array.of(0x0a, 0x01, 0x08)).int(1),
    /field 1 \(integer\) at byte 0 has wire type 2, expected 0/,
  );
  assert.throws(
    () => decodeOnnx(Uint8Array.of(0x08, 0x07)),
    /ModelProto has no graph/,
  );
});
