/**
 * exportOnnx on hand-made plans of small graphs: per-channel uniform
 * grids, a width stored on a wider type, signed and unsigned activation
 * grids with a clip, pruned channels folded into the next bias or kept
 * where the next conv is padded, relu6, average pooling and adds; ONNX
 * Runtime's logits against the frozen model's (`runFrozen`).
 */

import assert from "node:assert/strict";
import { gridScale } from "../../core/export.ts";
import { runFrozen } from "../../core/frozen.ts";
import type { ModelGraph } from "../../core/graph.ts";
import type { Frozen, LayerPlan } from "../../core/method.ts";
import { Tensor } from "../../core/tensor.ts";
import { exportOnnx, readOnnxExport } from "../../io/onnx.ts";
import { randomValues } from "../_fixtures.ts";
import { FFI_GRANTED } from "./_onnx_helpers.ts";

/** conv 1->4 3x3 (relu) -> conv 4->2 3x3 (padding `pad`) -> flatten -> dense 3. */
function convChain(pad: number): ModelGraph {
  const side = pad === 0 ? 2 : 4;
  return {
    name: `chain${pad}`,
    inputShape: [1, 6, 6],
    nodes: [
      {
        op: "conv",
        name: "c1",
        input: "input",
        outChannels: 4,
        kernel: 3,
        activation: "relu",
      },
      {
        op: "conv",
        name: "c2",
        input: "c1",
        outChannels: 2,
        kernel: 3,
        padding: pad,
      },
      { op: "flatten", name: "f", input: "c2" },
      { op: "dense", name: "d", input: "f", outFeatures: side === 2 ? 3 : 3 },
    ],
  };
}

/** c1's grid per channel: widths 3, 0 (pruned), 2 and 4. */
const C1_CHANNELS = [
  { bits: 3, scale: 0.125, codeMin: -3, codeMax: 3 },
  { bits: 0, scale: 1, codeMin: 0, codeMax: 0 },
  { bits: 2, scale: 0.25, codeMin: -1, codeMax: 1 },
  { bits: 3, scale: 0.0625, codeMin: -3, codeMax: 3 },
];

/** `count` codes in [lo, hi] from a seed. */
function codes(seed: number, count: number, lo: number, hi: number): number[] {
  return [...randomValues(seed, count, lo, hi + 1)].map(Math.floor);
}

/** The hand-made frozen chain: weights on their grids, plans as described. */
function chainFrozen(pad: number): Frozen {
  const model = convChain(pad);
  const c1 = C1_CHANNELS.flatMap((g, c) =>
    codes(10 + c, 9, g.codeMin, g.codeMax).map((k) => Math.fround(k * g.scale))
  );
  const s4 = gridScale(1, true, 4);
  const c2 = codes(20, 2 * 4 * 9, -7, 7).map((k) => Math.fround(k * s4));
  const denseIn = pad === 0 ? 8 : 32;
  const all = (n: number) => Array.from({ length: n }, (_, i) => i);
  const layers: LayerPlan[] = [{
    name: "c1",
    weight: {
      kind: "uniform",
      bits: 3,
      scale: 0,
      codeMin: -3,
      codeMax: 3,
      channels: C1_CHANNELS,
    },
    keptChannels: [0, 2, 3],
    activation: {
      kind: "uniform",
      bits: 3,
      scale: 0.25,
      codeMin: 0,
      codeMax: 7,
      channels: null,
    },
    details: {},
  }, {
    name: "c2",
    weight: { kind: "residual", bits: 4, signed: true, xmax: 1 },
    keptChannels: all(2),
    activation: {
      kind: "uniform",
      bits: 4,
      scale: 0.0937,
      codeMin: -7,
      codeMax: 7,
      channels: null,
    },
    details: {},
  }, {
    name: "d",
    weight: null,
    keptChannels: all(3),
    activation: null,
    details: {},
  }];
  return {
    model,
    params: {
      "c1.weight": Tensor.from(c1, [4, 1, 3, 3]),
      // Channel 1 is pruned: its constant relu(0.4) -> 0.5 on the grid.
      "c1.bias": Tensor.from([0.1, 0.4, -0.2, 0.05]),
      "c2.weight": Tensor.from(c2, [2, 4, 3, 3]),
      // Off the grids' half steps: sums of grid levels land on no ties.
      "c2.bias": Tensor.from([0.0371, -0.0829]),
      "d.weight": Tensor.from(randomValues(30, 3 * denseIn), [3, denseIn]),
      "d.bias": Tensor.from([0, 0.1, -0.1]),
    },
    plan: { method: "hand", inputBits: 8, layers },
  };
}

/** ONNX Runtime's logits for `x` `[n, ...]`. */
async function ortLogits(bytes: Uint8Array, x: Tensor): Promise<Float32Array> {
  // deno-lint-ignore no-import-prefix
  const ort = await import("npm:onnxruntime-node@1.30.0");
  const session = await ort.InferenceSession.create(bytes);
  try {
    const out = await session.run({
      input: new ort.Tensor("float32", x.toFloat32Array(), [...x.shape]),
    });
    return out.logits.data as Float32Array;
  } finally {
    await session.release();
  }
}

Deno.test("exportOnnx() stores per-channel scales, a 3-bit grid on INT4 with a note, and folds a pruned channel into an unpadded conv's bias", () => {
  const exported = exportOnnx(chainFrozen(0));
  const [c1, c2, d] = exported.layers;
  assert.equal(c1.weightType, "INT4");
  assert.deepEqual([...c1.scales], [0.125, 0.25, 0.0625]);
  assert.deepEqual(c1.kept, [0, 2, 3]);
  assert.deepEqual(c2.keptInputs, [0, 2, 3]);
  assert.deepEqual(c2.dims, [2, 3, 3, 3]);
  assert.ok(
    c1.notes.some((n) =>
      n.includes("3-bit weights stored as INT4 (codes -3..3)")
    ),
  );
  // Codes 0..7 and -7..7 do not fill UINT4/INT4: a clip and a byte.
  assert.equal(c1.activationType, "UINT8");
  assert.equal(c2.activationType, "INT8");
  assert.equal(d.weightType, "FLOAT");
  // c2's bias gains 0.5 (relu(0.4) on the 0.25 grid) times its weights on channel 1.
  const w2 = chainFrozen(0).params["c2.weight"].toFloat32Array();
  for (const o of [0, 1]) {
    let sum = 0;
    for (let p = 0; p < 9; p++) sum += w2[o * 36 + 9 + p];
    const bias = [0.0371, -0.0829][o] + 0.5 * sum;
    assert.ok(Math.abs(c2.bias[o] - bias) < 1e-6, `c2 bias ${o}`);
  }
  const dq = exported.model.nodes.find((n) => n.name === "c1.weight")!;
  assert.deepEqual(dq.attributes.axis, { kind: "int", value: 0 });
  const back = readOnnxExport(exported.bytes).layers;
  assert.deepEqual(back[0].codes, c1.codes);
  assert.deepEqual(back[0].scales, c1.scales);
});

Deno.test("exportOnnx() keeps a pruned channel as zeros when a padded conv reads it, and says so", () => {
  const [c1, c2] = exportOnnx(chainFrozen(1)).layers;
  assert.deepEqual(c1.kept, [0, 1, 2, 3]);
  assert.equal(c2.keptInputs, null);
  assert.ok(
    c1.notes.some((n) =>
      n.includes(`1 pruned channels stay as zeros: "c2" is padded`)
    ),
  );
  assert.ok(c1.codes!.subarray(9, 18).every((k) => k === 0));
});

Deno.test({
  name:
    "ONNX Runtime gives the frozen model's logits for hand-made plans (folded and kept pruned channels, clipped grids)",
  ignore: !FFI_GRANTED,
  fn: async () => {
    for (const pad of [0, 1]) {
      const frozen = chainFrozen(pad);
      const x = Tensor.from(randomValues(40 + pad, 32 * 36, -2, 2), [
        32,
        1,
        6,
        6,
      ]);
      const ours = runFrozen(frozen, x).toFloat32Array();
      const theirs = await ortLogits(exportOnnx(frozen).bytes, x);
      assert.equal(theirs.length, ours.length);
      for (let i = 0; i < ours.length; i++) {
        assert.ok(
          Math.abs(theirs[i] - ours[i]) < 1e-5,
          `pad ${pad} logit ${i}: ${theirs[i]} vs ${ours[i]}`,
        );
      }
    }
  },
});

/** conv (relu6, padded) -> conv -> add (relu) -> global average pool -> dense. */
const RESIDUAL: ModelGraph = {
  name: "residual",
  inputShape: [1, 5, 5],
  nodes: [
    {
      op: "conv",
      name: "a",
      input: "input",
      outChannels: 2,
      kernel: 3,
      padding: 1,
      activation: "relu6",
    },
    {
      op: "conv",
      name: "b",
      input: "a",
      outChannels: 2,
      kernel: 3,
      padding: 1,
    },
    { op: "add", name: "sum", inputs: ["b", "a"], activation: "relu" },
    { op: "avgpool", name: "pool", input: "sum" },
    { op: "dense", name: "fc", input: "pool", outFeatures: 3 },
  ],
};

Deno.test({
  name:
    "ONNX Runtime gives the frozen model's logits for relu6, an add and a global average pool, with residual grids",
  ignore: !FFI_GRANTED,
  fn: async () => {
    const s4 = gridScale(1, true, 4);
    const s8 = gridScale(0.5, true, 8);
    const frozen: Frozen = {
      model: RESIDUAL,
      params: {
        "a.weight": Tensor.from(codes(50, 18, -7, 7).map((k) => k * s4), [
          2,
          1,
          3,
          3,
        ]),
        "a.bias": Tensor.from([0.3, -0.2]),
        "b.weight": Tensor.from(randomValues(51, 36), [2, 2, 3, 3]),
        "b.bias": Tensor.from([0.1, 0.2]),
        "fc.weight": Tensor.from(codes(52, 6, -127, 127).map((k) => k * s8), [
          3,
          2,
        ]),
        "fc.bias": Tensor.from([0, 0.5, -0.5]),
      },
      plan: {
        method: "hand",
        inputBits: 8,
        layers: [{
          name: "a",
          weight: { kind: "residual", bits: 4, signed: true, xmax: 1 },
          keptChannels: [0, 1],
          activation: { kind: "residual", bits: 8, signed: false, xmax: 4 },
          details: {},
        }, {
          name: "b",
          weight: null,
          keptChannels: [0, 1],
          activation: { kind: "residual", bits: 32, signed: true, xmax: 2 },
          details: {},
        }, {
          name: "fc",
          weight: { kind: "residual", bits: 8, signed: true, xmax: 0.5 },
          keptChannels: [0, 1, 2],
          activation: null,
          details: {},
        }],
      },
    };
    const x = Tensor.from(randomValues(53, 16 * 25, -3, 3), [16, 1, 5, 5]);
    const ours = runFrozen(frozen, x).toFloat32Array();
    const exported = exportOnnx(frozen);
    assert.deepEqual(
      exported.layers.map((l) => [l.weightType, l.activationType]),
      [["INT4", "UINT8"], ["FLOAT", "FLOAT"], ["INT8", null]],
    );
    const theirs = await ortLogits(exported.bytes, x);
    for (let i = 0; i < ours.length; i++) {
      assert.ok(Math.abs(theirs[i] - ours[i]) < 1e-5, `logit ${i}`);
    }
  },
});
