import assert from "node:assert/strict";
import { device } from "../../core/device.ts";
import { evaluateFrozen, planBops } from "../../core/frozen.ts";
import { analyzeGraph, initGraph } from "../../core/graph.ts";
import type { Frozen, LayerPlan, UniformGrid } from "../../core/method.ts";
import { lenet5 } from "../../core/models.ts";
import { referenceDevice } from "../../core/reference/device.ts";
import { randomKey } from "../../core/rng.ts";
import { roundHalfEven } from "../../core/round.ts";
import { hostF32 } from "../../core/tensor.ts";
import { rowSumData, TINY_3X3 } from "../_fixtures.ts";

const all = (n: number) => Array.from({ length: n }, (_, i) => i);

/** A uniform per-tensor grid of `bits` bits, signed or unsigned. */
function grid(bits: number, scale: number, signed: boolean): UniformGrid {
  const top = signed ? 2 ** (bits - 1) - 1 : 2 ** bits - 1;
  return {
    kind: "uniform",
    bits,
    scale,
    codeMin: signed ? -top : 0,
    codeMax: top,
    channels: null,
  };
}

/** LeNet-5's plan with weight bits `bw` and activation bits `ba` per layer. */
function lenetPlan(bw: number[], ba: (number | null)[]): LayerPlan[] {
  return analyzeGraph(lenet5()).layers.map((l, i) => ({
    name: l.name,
    weight: grid(bw[i], 0.01, true),
    keptChannels: all(l.outChannels),
    activation: ba[i] === null ? null : grid(ba[i]!, 0.1, false),
    details: {},
  }));
}

Deno.test("planBops counts widths that are not powers of two as the integers they are (specs' LeNet-5 cases)", () => {
  // fracbits.md section 10 case 9: bw [5, 3, 2, 8], ba [8, 4, 3, 2] (the
  // input counts 8; each later layer's input is the previous activation).
  const fracbits = planBops(lenet5(), {
    method: "test",
    inputBits: 8,
    layers: lenetPlan([5, 3, 2, 8], [4, 3, 2, null]),
  });
  assert.equal(fracbits.bops, 60_981_248);
  assert.equal(fracbits.relativeGbops.toFixed(4), "1.3956");
  // bsq.md section 10 case 10: N [3, 2, 2, 4], a = 4, counted bw = N + 1.
  const bsq = planBops(lenet5(), {
    method: "test",
    inputBits: 8,
    layers: lenetPlan([4, 3, 3, 5], [4, 4, 4, null]),
  });
  assert.equal(bsq.bops, 60_461_056);
  assert.equal(bsq.relativeGbops.toFixed(4), "1.3837");
});

Deno.test("planBops with a width per channel: conv2 at 32 x 3, 16 x 2 and 16 x 0 bits (fracbits.md case 9)", () => {
  const layers = lenetPlan([8, 8, 8, 8], [4, 4, 4, null]);
  const bits = [
    ...Array(32).fill(3),
    ...Array(16).fill(2),
    ...Array(16).fill(0),
  ];
  const conv2: LayerPlan = {
    ...layers[1],
    weight: {
      ...grid(3, 0.01, true),
      channels: bits.map((b) => ({
        bits: b,
        scale: 0.01,
        codeMin: -3,
        codeMax: 3,
      })),
    },
    keptChannels: all(48),
  };
  const cost = planBops(lenet5(), {
    method: "test",
    inputBits: 8,
    layers: [layers[0], conv2, layers[2], layers[3]],
  });
  // 3,276,800 MACs / 64 channels * 4 bits * (32 * 3 + 16 * 2).
  assert.equal(cost.layers[1].bops, 26_214_400);
  assert.equal(cost.layers[2].keptInputFraction, 0.75);
  assert.equal(cost.layers[1].weightBits, 3);
  assert.throws(
    () =>
      planBops(lenet5(), {
        method: "test",
        inputBits: 8,
        layers: [
          layers[0],
          {
            ...conv2,
            weight: { ...conv2.weight!, channels: [] } as UniformGrid,
          },
          layers[2],
          layers[3],
        ],
      }),
    /layer "conv2": 0 channel grids for 64 output channels/,
  );
});

/** Host float32 quantization on a uniform grid, written from its definition. */
function onGrid(x: number, g: UniformGrid): number {
  const s = Math.fround(g.scale);
  const code = roundHalfEven(Math.fround(x / s));
  return Math.fround(s * Math.min(g.codeMax, Math.max(g.codeMin, code)));
}

Deno.test("evaluateFrozen quantizes activations on uniform grids, the same on every device as by hand", async () => {
  const data = rowSumData(200, 3);
  const { params } = initGraph(TINY_3X3, randomKey(5));
  const wGrid = grid(5, 0.03, true);
  const aGrid = grid(3, 0.15, false);
  const w1 = hostF32(params["fc1.weight"]).map((w) => onGrid(w, wGrid));
  const b1 = hostF32(params["fc1.bias"]);
  const w2 = hostF32(params["fc2.weight"]);
  const b2 = hostF32(params["fc2.bias"]);
  let correct = 0;
  for (let n = 0; n < data.count; n++) {
    const x = data.images.subarray(n * 9, n * 9 + 9);
    const h = Array.from({ length: 6 }, (_, o) => {
      let z = b1[o];
      for (let i = 0; i < 9; i++) z += w1[o * 9 + i] * x[i];
      return onGrid(Math.max(0, Math.fround(z)), aGrid);
    });
    const logits = Array.from({ length: 3 }, (_, o) => {
      let z = b2[o];
      for (let i = 0; i < 6; i++) z += w2[o * 6 + i] * h[i];
      return z;
    });
    if (logits.indexOf(Math.max(...logits)) === data.labels[n]) correct++;
  }
  using wasm = await device("wasm", { threads: 1 });
  for (const dev of [referenceDevice, wasm]) {
    const frozen: Frozen = {
      model: TINY_3X3,
      params: Object.fromEntries(
        Object.entries(params).map(([k, t]) => [
          k,
          dev.upload(k === "fc1.weight" ? w1 : hostF32(t), t.shape),
        ]),
      ),
      plan: {
        method: "test",
        inputBits: 8,
        layers: [
          {
            name: "fc1",
            weight: wGrid,
            keptChannels: all(6),
            activation: aGrid,
            details: {},
          },
          {
            name: "fc2",
            weight: null,
            keptChannels: all(3),
            activation: null,
            details: {},
          },
        ],
      },
    };
    const accuracy = await evaluateFrozen(frozen, data, { batchSize: 64 });
    assert.equal(accuracy, correct / data.count, dev.kind);
  }
  // The grid bites: with activations this coarse, some predictions change.
  assert.ok(correct > 0 && correct < data.count);
});

Deno.test("planBops' other conventions: MACs x bw x ba without the input-channel discount, executable widths, weight bytes", () => {
  const cost = planBops(lenet5(), {
    method: "test",
    inputBits: 8,
    layers: lenetPlan([5, 3, 2, 8], [4, 3, 2, null]),
  });
  // Nothing pruned: the two conventions agree.
  assert.equal(cost.macsBitsRelativeGbops, cost.relativeGbops);
  // Widths up to 2, 4, 8, 16, 32: bw [8, 4, 2, 8], inputs [8, 4, 4, 2].
  const executable = 460_800 * 8 * 8 + 3_276_800 * 4 * 4 + 524_288 * 4 * 2 +
    5_120 * 2 * 8;
  assert.equal(executable, 86_196_224);
  assert.equal(
    cost.executableRelativeGbops,
    (100 * executable) / cost.baselineBops,
  );
  // Weights [32, 1, 5, 5], [64, 32, 5, 5], [512, 1024], [10, 512].
  assert.equal(
    cost.weightBytes,
    (800 * 5 + 51_200 * 3 + 524_288 * 2 + 5_120 * 8) / 8,
  );
  assert.equal(cost.floatWeightBytes, 4 * (800 + 51_200 + 524_288 + 5_120));
  // conv2 keeps 48 of 64 channels: fc1 sees 3/4 of its inputs in Bayesian
  // Bits' convention and all of them in the other.
  const layers = lenetPlan([8, 8, 8, 8], [4, 4, 4, null]);
  const pruned = planBops(lenet5(), {
    method: "test",
    inputBits: 8,
    layers: layers.map((l, i) => i === 1 ? { ...l, keptChannels: all(48) } : l),
  });
  assert.equal(pruned.layers[2].bops, 524_288 * 4 * 8 * 0.75);
  assert.equal(pruned.layers[2].macsBitsBops, 524_288 * 4 * 8);
  assert.equal(pruned.layers[1].macsBitsBops, 3_276_800 * 4 * 8 * 0.75);
  assert.equal(pruned.layers[1].weightBytes, (48 * 800 * 8) / 8);
});
