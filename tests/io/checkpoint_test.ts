import assert from "node:assert/strict";
import {
  decodeSafetensors,
  encodeSafetensors,
  type SafetensorsInput,
} from "../../core/safetensors.ts";
import { Tensor } from "../../core/tensor.ts";
import {
  flattenOptimizerState,
  loadCheckpoint,
  saveCheckpoint,
  unflattenOptimizerState,
} from "../../io/checkpoint.ts";
import { bitsOf, hostState, listDir, withTempDir } from "../_io_fixtures.ts";

/** A header-length prefix, the header text, and the payload bytes. */
function handBuilt(headerText: string, payload: number[]): Uint8Array {
  const header = new TextEncoder().encode(headerText);
  const bytes = new Uint8Array(8 + header.length + payload.length);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(header.length), true);
  bytes.set(header, 8);
  bytes.set(payload, 8 + header.length);
  return bytes;
}

const TENSORS: Record<string, SafetensorsInput> = {
  "layer1/weight": {
    shape: [2, 3],
    data: new Float32Array([0.1, -0.2, 3e38, 1e-45, 0.5, -7]),
  },
  "labels": {
    shape: [4],
    data: new Int32Array([0, -1, 2147483647, -2147483648]),
  },
  "scalar": { shape: [], data: new Float32Array([42.5]) },
  "count": { shape: [], data: new Int32Array([-3]) },
  "empty": { shape: [0, 5], data: new Float32Array(0) },
  "emptyInt": { shape: [0], data: new Int32Array(0) },
  "u32": { shape: [3], data: new Uint32Array([0, 2 ** 31, 2 ** 32 - 1]) },
  "i16": { shape: [3], data: new Int16Array([-32768, -1, 32767]) },
  "u16": { shape: [1, 3], data: new Uint16Array([0, 258, 65535]) },
  "i8": { shape: [5], data: new Int8Array([-128, -1, 0, 1, 127]) },
  "u8": { shape: [2, 2], data: new Uint8Array([0, 1, 128, 255]) },
};

/** The dtype name of each typed array. */
const DTYPE_OF = new Map<unknown, string>([
  [Float32Array, "F32"],
  [Int32Array, "I32"],
  [Uint32Array, "U32"],
  [Int16Array, "I16"],
  [Uint16Array, "U16"],
  [Int8Array, "I8"],
  [Uint8Array, "U8"],
]);

Deno.test("encodeSafetensors() writes the header byte for byte for one tensor", () => {
  const bytes = encodeSafetensors({
    t: { shape: [2], data: new Float32Array([1, -2.5]) },
  });
  const header = '{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}  ';
  assert.deepEqual(
    bytes,
    handBuilt(header, [0, 0, 128, 63, 0, 0, 32, 192]),
  );
  assert.deepEqual([...bytes.subarray(0, 8)], [56, 0, 0, 0, 0, 0, 0, 0]);
});

Deno.test("decodeSafetensors() reads a hand-built file, unpadded and out of order", () => {
  const bytes = handBuilt(
    '{"__metadata__":{"k":"v"},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},' +
      '"a":{"dtype":"I32","shape":[],"data_offsets":[0,4]}}',
    [0xff, 0xff, 0xff, 0xff, 0, 0, 128, 63],
  );
  const { tensors, metadata } = decodeSafetensors(bytes);
  assert.deepEqual(metadata, { k: "v" });
  assert.deepEqual(tensors, {
    a: { dtype: "I32", shape: [], data: new Int32Array([-1]) },
    b: { dtype: "F32", shape: [1], data: new Float32Array([1]) },
  });
});

Deno.test("encodeSafetensors() lays tensors out in sorted name order and pads to 8", () => {
  const bytes = encodeSafetensors(TENSORS, { note: "x" });
  const headerLength = Number(
    new DataView(bytes.buffer).getBigUint64(0, true),
  );
  assert.equal(headerLength % 8, 0);
  const header = JSON.parse(
    new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)),
  );
  const names = Object.keys(TENSORS).sort();
  let offset = 0;
  for (const name of names) {
    assert.equal(header[name].data_offsets[0], offset, name);
    offset = header[name].data_offsets[1];
  }
  assert.equal(bytes.length, 8 + headerLength + offset);
});

Deno.test("decodeSafetensors() round-trips every dtype, scalars and empty tensors without aliasing", () => {
  const bytes = encodeSafetensors(TENSORS, { note: "hello" });
  const { tensors, metadata } = decodeSafetensors(bytes);
  assert.deepEqual(metadata, { note: "hello" });
  assert.deepEqual(Object.keys(tensors).sort(), Object.keys(TENSORS).sort());
  for (const [name, { shape, data }] of Object.entries(TENSORS)) {
    const decoded = tensors[name];
    assert.equal(decoded.dtype, DTYPE_OF.get(data.constructor), name);
    assert.equal(decoded.data.constructor, data.constructor, name);
    assert.deepEqual(decoded.shape, shape, name);
    assert.deepEqual(bitsOf(decoded.data), bitsOf(data), name);
    assert.notEqual(decoded.data.buffer, bytes.buffer, name);
  }
  bytes.fill(0);
  assert.equal(tensors.scalar.data[0], 42.5);
});

Deno.test("encodeSafetensors() lays 16- and 8-bit elements out little-endian, byte for byte", () => {
  const bytes = encodeSafetensors({
    a: { shape: [2], data: new Int16Array([-2, 258]) },
    b: { shape: [2], data: new Uint8Array([7, 200]) },
  });
  const header = '{"a":{"dtype":"I16","shape":[2],"data_offsets":[0,4]},' +
    '"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}}';
  const padded = header + " ".repeat((8 - header.length % 8) % 8);
  // -2 = 0xfffe, 258 = 0x0102; then the two bytes.
  assert.deepEqual(bytes, handBuilt(padded, [0xfe, 0xff, 0x02, 0x01, 7, 200]));
  // An I16 whose offsets span an odd number of bytes is refused.
  assert.throws(
    () =>
      decodeSafetensors(
        handBuilt('{"a":{"dtype":"I16","shape":[2],"data_offsets":[0,3]}}', [
          1,
          2,
          3,
        ]),
      ),
    /span 3 bytes but I16 shape \[2\] needs 4/,
  );
});

Deno.test("decodeSafetensors() keeps -0, Infinity and NaN payloads bit-exact", () => {
  const words = new Uint32Array([
    0x80000000, // -0
    0x7f800000, // Infinity
    0xff800000, // -Infinity
    0x7fc00000, // the canonical NaN
    0x7fa00001, // a signalling NaN with a payload
    0xffc12345, // a negative quiet NaN with a payload
    0x00000001, // the smallest subnormal
  ]);
  const data = new Float32Array(words.buffer);
  const { tensors } = decodeSafetensors(
    encodeSafetensors({ x: { shape: [words.length], data } }),
  );
  assert.deepEqual(bitsOf(tensors.x.data), [...words]);
  assert.ok(Object.is(tensors.x.data[0], -0));
});

Deno.test("decodeSafetensors() reads tensors from a subarray at an odd offset", () => {
  const file = encodeSafetensors({
    x: { shape: [2], data: new Float32Array([1, 2]) },
  });
  const shifted = new Uint8Array(file.length + 3);
  shifted.set(file, 3);
  const { tensors } = decodeSafetensors(shifted.subarray(3));
  assert.deepEqual(tensors.x.data, new Float32Array([1, 2]));
});

const good = encodeSafetensors({
  a: { shape: [1], data: new Float32Array([1]) },
});
const entry = (dtype: string, shape: string, offsets: string) =>
  `{"a":{"dtype":"${dtype}","shape":${shape},"data_offsets":${offsets}}}`;

/** Malformed safetensors files: what, bytes, the message that says why. */
const MALFORMED: [string, Uint8Array, RegExp][] = [
  ["an empty file", new Uint8Array(0), /truncated file of 0 bytes/],
  ["a 7-byte file", good.subarray(0, 7), /truncated file of 7 bytes/],
  [
    "a file cut inside the header",
    good.subarray(0, 20),
    /header length is \d+ bytes but only 12 follow/,
  ],
  [
    "a header length beyond the file",
    handBuilt("{}", []).map((b, i) => (i === 0 ? 200 : b)),
    /header length is 200 bytes but only 2 follow/,
  ],
  [
    "a header length with the high word set",
    handBuilt("{}", []).map((b, i) => (i === 7 ? 1 : b)),
    /header length is \d+ bytes but only 2 follow/,
  ],
  ["garbage JSON", handBuilt("{not json", []), /not valid JSON/],
  ["a JSON array header", handBuilt("[1,2]", []), /must be a JSON object/],
  [
    "bad UTF-8",
    handBuilt("", [0x7b, 0xff, 0x7d]).map((b, i) => (i === 0 ? 3 : b)),
    /not valid UTF-8/,
  ],
  [
    "an unknown dtype",
    handBuilt(entry("F64", "[2]", "[0,4]"), [0, 0, 0, 0]),
    /tensor "a": unknown dtype "F64"/,
  ],
  [
    "a negative shape",
    handBuilt(entry("F32", "[-1]", "[0,4]"), [0, 0, 0, 0]),
    /has -1, sizes must be non-negative/,
  ],
  [
    "offsets past the data",
    handBuilt(entry("F32", "[2]", "[0,8]"), [0, 0, 0, 0]),
    /\[0, 8\] are out of range of the 4-byte data section/,
  ],
  [
    "offsets not matching the shape",
    handBuilt(entry("F32", "[2]", "[0,4]"), [0, 0, 0, 0]),
    /span 4 bytes but F32 shape \[2\] needs 8/,
  ],
  [
    "reversed offsets",
    handBuilt(entry("F32", "[0]", "[4,0]"), [0, 0, 0, 0]),
    /out of range/,
  ],
  [
    "trailing garbage",
    handBuilt(entry("F32", "[1]", "[0,4]"), [0, 0, 0, 0, 9]),
    /1 trailing bytes after the last tensor/,
  ],
  [
    "a hole before a tensor",
    handBuilt(entry("F32", "[1]", "[4,8]"), [0, 0, 0, 0, 0, 0, 0, 0]),
    /bytes \[0, 4\) .* before tensor "a" belong to no tensor/,
  ],
  [
    "overlapping tensors",
    handBuilt(
      '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},' +
        '"b":{"dtype":"I32","shape":[1],"data_offsets":[4,8]}}',
      [0, 0, 0, 0, 0, 0, 0, 0],
    ),
    /tensor "b" data_offsets \[4, 8\] overlap tensor "a" \[0, 8\]/,
  ],
  [
    "a non-string metadata value",
    handBuilt('{"__metadata__":{"k":1}}', []),
    /metadata "k" must be a string, got 1/,
  ],
];

Deno.test("decodeSafetensors() rejects malformed files with messages that say why", () => {
  for (const [what, bytes, message] of MALFORMED) {
    assert.throws(() => decodeSafetensors(bytes), (error: Error) => {
      assert.ok(error instanceof RangeError, `${what}: ${error}`);
      assert.match(error.message, message, what);
      return true;
    });
  }
});

Deno.test("encodeSafetensors() rejects bad tensors, naming them", () => {
  assert.throws(
    () =>
      encodeSafetensors({ w: { shape: [2, 2], data: new Float32Array(3) } }),
    /tensor "w": shape \[2, 2\] needs 4 elements, got 3/,
  );
  assert.throws(
    () => encodeSafetensors({ w: { shape: [1.5], data: new Float32Array(1) } }),
    RangeError,
  );
  assert.throws(
    () =>
      encodeSafetensors({
        w: { shape: [1], data: new Float64Array(1) as unknown as Float32Array },
      }),
    /tensor "w": data must be a Float32Array, Int32Array, .* or Uint8Array, got \[object Float64Array\]/,
  );
  assert.throws(
    () =>
      encodeSafetensors({
        __metadata__: { shape: [0], data: new Float32Array(0) },
      }),
    /reserved or empty/,
  );
});

Deno.test("saveCheckpoint() and loadCheckpoint() round-trip tensors and nested state", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/model.safetensors`;
    const state = {
      epoch: 7,
      optimizer: { name: "adam", step: 1234, lr: 1e-3, betas: [0.9, 0.999] },
      rngKey: [123456789, 987654321],
      options: {
        bits: [2, 4, 8],
        name: "lenet5 ✓",
        nested: { deep: [null, true] },
      },
    };
    await saveCheckpoint(path, { tensors: TENSORS, state });
    const loaded = await loadCheckpoint(path);
    assert.deepEqual(loaded.state, state);
    for (const [name, { shape, data }] of Object.entries(TENSORS)) {
      assert.deepEqual(loaded.tensors[name].shape, shape, name);
      assert.deepEqual(bitsOf(loaded.tensors[name].data), bitsOf(data), name);
    }
    assert.deepEqual(await listDir(dir), ["model.safetensors"]);
    // The file is plain safetensors, with the state in the metadata.
    const { metadata } = decodeSafetensors(await Deno.readFile(path));
    assert.equal(metadata["bbits.version"], "1");
    assert.deepEqual(JSON.parse(metadata["bbits.state"]), state);
    assert.match(metadata["bbits.sha256"], /^[0-9a-f]{64}$/);
  });
});

Deno.test("saveCheckpoint() replaces an existing checkpoint", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/ckpt.safetensors`;
    await saveCheckpoint(path, { tensors: TENSORS, state: { epoch: 1 } });
    await saveCheckpoint(path, {
      tensors: { w: { shape: [1], data: new Float32Array([5]) } },
      state: { epoch: 2 },
    });
    const loaded = await loadCheckpoint(path);
    assert.deepEqual(loaded.state, { epoch: 2 });
    assert.deepEqual(Object.keys(loaded.tensors), ["w"]);
    assert.deepEqual(await listDir(dir), ["ckpt.safetensors"]);
  });
});

Deno.test("loadCheckpoint() rejects missing, truncated and corrupt files with clear messages", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/ckpt.safetensors`;
    await assert.rejects(
      loadCheckpoint(path),
      (error: Error) => {
        assert.ok(error instanceof Deno.errors.NotFound);
        assert.ok(error.message.includes(`"${path}": no such file`));
        return true;
      },
    );
    await saveCheckpoint(path, {
      tensors: TENSORS,
      state: { epoch: 3, rngKey: [1, 2] },
    });
    const good = await Deno.readFile(path);
    const headerLength = Number(
      new DataView(good.buffer).getBigUint64(0, true),
    );
    const stateAt = new TextDecoder().decode(good).indexOf('\\"epoch\\":3');
    assert.ok(stateAt > 0);
    const flip = (at: number) => good.map((b, i) => (i === at ? b ^ 0x01 : b));
    const cases: [string, Uint8Array, RegExp][] = [
      [
        "a truncated file",
        good.subarray(0, good.length - 3),
        /corrupt: .*trailing|corrupt: .*out of range/,
      ],
      [
        "a file cut in the header",
        good.subarray(0, 30),
        /corrupt: .*header length/,
      ],
      ["a flipped payload byte", flip(good.length - 5), /checksum mismatch/],
      [
        "a flipped first payload byte",
        flip(8 + headerLength),
        /checksum mismatch/,
      ],
      // '3' (0x33) becomes '2' (0x32): still valid JSON, but not what was saved.
      ["a flipped byte in the state", flip(stateAt + 10), /checksum mismatch/],
      [
        "a bad header length",
        good.map((b, i) => (i === 2 ? 0x7f : b)),
        /corrupt: .*header length is \d+ bytes but only/,
      ],
      [
        "garbage JSON",
        good.map((b, i) => (i === 8 ? 0x21 : b)),
        /corrupt: .*not valid JSON/,
      ],
    ];
    for (const [what, bytes, message] of cases) {
      await Deno.writeFile(path, bytes);
      await assert.rejects(loadCheckpoint(path), (error: Error) => {
        assert.ok(error instanceof RangeError, `${what}: ${error}`);
        assert.ok(
          error.message.startsWith(`Cannot load checkpoint "${path}": `),
          what,
        );
        assert.match(error.message, message, what);
        return true;
      });
    }
  });
});

Deno.test("loadCheckpoint() rejects an unknown version and a plain safetensors file", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/x.safetensors`;
    await Deno.writeFile(
      path,
      encodeSafetensors({}, { "bbits.version": "2", "bbits.state": "{}" }),
    );
    await assert.rejects(
      loadCheckpoint(path),
      /unknown version "2", this library reads version "1"/,
    );
    await Deno.writeFile(path, encodeSafetensors(TENSORS));
    await assert.rejects(
      loadCheckpoint(path),
      /no "bbits.version" metadata; it is not a bbits checkpoint/,
    );
  });
});

Deno.test("saveCheckpoint() that fails leaves the old checkpoint byte-identical and no temp files", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/ckpt.safetensors`;
    await saveCheckpoint(path, { tensors: TENSORS, state: { epoch: 1 } });
    const before = await Deno.readFile(path);
    const failing = {
      ...TENSORS,
      bad: {
        shape: [1],
        get data(): Float32Array {
          throw new Error("disk on fire");
        },
      },
    };
    await assert.rejects(
      saveCheckpoint(path, { tensors: failing, state: { epoch: 2 } }),
      /disk on fire/,
    );
    await assert.rejects(
      saveCheckpoint(path, { tensors: TENSORS, state: { big: 1n } }),
      TypeError,
    );
    await assert.rejects(
      saveCheckpoint(path, { tensors: TENSORS, state: undefined }),
      /state is not JSON-serialisable/,
    );
    assert.deepEqual(await Deno.readFile(path), before);
    assert.deepEqual(await listDir(dir), ["ckpt.safetensors"]);
  });
});

Deno.test("saveCheckpoint() removes its temp file when the final rename fails", async () => {
  await withTempDir(async (dir) => {
    // A non-empty directory at the target path: the temp file is written
    // and synced, then renaming it over the directory fails.
    const path = `${dir}/ckpt.safetensors`;
    await Deno.mkdir(path);
    await Deno.writeTextFile(`${path}/keep`, "x");
    await assert.rejects(
      saveCheckpoint(path, { tensors: TENSORS, state: {} }),
      Error,
    );
    assert.deepEqual(await listDir(dir), ["ckpt.safetensors"]);
    assert.deepEqual(await listDir(path), ["keep"]);
  });
});

Deno.test("saveCheckpoint() into a missing directory fails naming the path and creates nothing", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/no/such/dir/ckpt.safetensors`;
    await assert.rejects(
      saveCheckpoint(path, { tensors: TENSORS, state: {} }),
      (error: Error) => {
        assert.ok(error instanceof Deno.errors.NotFound);
        assert.ok(
          error.message.includes(`${dir}/no/such/dir/ckpt.safetensors`),
          error.message,
        );
        return true;
      },
    );
    assert.deepEqual(await listDir(dir), []);
  });
});

Deno.test("Optimizer state survives a checkpoint round trip via flattenOptimizerState()", async () => {
  const optimizerState = {
    step: 41,
    slots: {
      "conv1/weight": {
        m: Tensor.from([0.1, -0.2]),
        v: Tensor.from([1e-8, 2]),
      },
      "fc.bias": { momentum: Tensor.from([3]) },
    },
  };
  const params = { "fc.bias": { shape: [1], data: new Float32Array([0.5]) } };
  await withTempDir(async (dir) => {
    const path = `${dir}/ckpt.safetensors`;
    const { tensors, step } = flattenOptimizerState(optimizerState);
    assert.deepEqual(Object.keys(tensors).sort(), [
      "opt/conv1/weight/m",
      "opt/conv1/weight/v",
      "opt/fc.bias/momentum",
    ]);
    await saveCheckpoint(path, {
      tensors: { ...params, ...tensors },
      state: { epoch: 2, optimizerStep: step },
    });
    const loaded = await loadCheckpoint(path);
    const { optimizerStep } = loaded.state as { optimizerStep: number };
    assert.deepEqual(
      await hostState(unflattenOptimizerState(loaded.tensors, optimizerStep)),
      await hostState(optimizerState),
    );
  });
});

Deno.test("flattenOptimizerState() and unflattenOptimizerState() reject ambiguous names", () => {
  assert.throws(
    () =>
      flattenOptimizerState({
        step: 0,
        slots: { w: { "a/b": Tensor.zeros([1]) } },
      }),
    /slot "a\/b" of "w": slot names must be non-empty and contain no "\/"/,
  );
  assert.throws(
    () =>
      unflattenOptimizerState(
        { "opt/noslash": { data: new Float32Array(1) } },
        0,
      ),
    /"opt\/noslash": expected "opt\/<param>\/<slot>"/,
  );
  assert.throws(
    () =>
      unflattenOptimizerState({ "opt/w/m": { data: new Int32Array(1) } }, 0),
    /slots must be F32/,
  );
  assert.throws(
    () => unflattenOptimizerState({}, -1),
    /step must be a non-negative integer, got -1/,
  );
});
