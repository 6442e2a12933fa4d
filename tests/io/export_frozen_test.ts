/**
 * exportFrozen reads a frozen model's plan, whichever method froze it: the
 * codes of the kept channels on each planned grid, float layers as they
 * are, the plan's input bits; a float model exports, saves and evaluates
 * like the frozen model.
 */

import assert from "node:assert/strict";
import {
  checkQuantizedModel,
  evaluateQuantized,
  exportFrozen,
  gridScale,
  type QuantizedWeights,
} from "../../core/export.ts";
import { evaluateFrozen } from "../../core/frozen.ts";
import { initGraph, type ModelGraph } from "../../core/graph.ts";
import type { Frozen, QuantizationPlan } from "../../core/method.ts";
import { floatMethod } from "../../core/methods/float.ts";
import { randomKey } from "../../core/rng.ts";
import { Tensor } from "../../core/tensor.ts";
import { loadQuantized, saveQuantized } from "../../io/quantized.ts";
import { rowSumData, TINY_3X3 } from "../_fixtures.ts";
import { withTempDir } from "../_io_fixtures.ts";

const TINY: ModelGraph = {
  name: "tiny",
  inputShape: [1, 1, 2],
  nodes: [
    { op: "flatten", name: "f", input: "input" },
    { op: "dense", name: "d1", input: "f", outFeatures: 3, activation: "relu" },
    { op: "dense", name: "d2", input: "d1", outFeatures: 2 },
  ],
};

/** d1's codes on its 4-bit grid: channel 1 pruned (zero weights). */
const D1_CODES = [[4, -2], [0, 0], [7, -7]];

/** A frozen tiny model with a hand-made plan (of no particular method). */
function handFrozen(
  change: (plan: QuantizationPlan) => QuantizationPlan = (p) => p,
): Frozen {
  const s4 = gridScale(1, true, 4);
  const d1 = D1_CODES.flat().map((c) => Math.fround(c * s4));
  return {
    model: TINY,
    params: {
      "d1.weight": Tensor.from(d1, [3, 2]),
      "d1.bias": Tensor.from([0.1, 0.3, -0.1]),
      "d2.weight": Tensor.from([0.25, -0.5, 1, 0, 0.75, -2.5], [2, 3]),
      "d2.bias": Tensor.from([0, 0.1]),
    },
    plan: change({
      method: "hand",
      inputBits: 8,
      layers: [{
        name: "d1",
        weight: { kind: "residual", bits: 4, signed: true, xmax: 1 },
        keptChannels: [0, 2],
        activation: { kind: "residual", bits: 2, signed: false, xmax: 1.5 },
        details: {},
      }, {
        name: "d2",
        weight: null,
        keptChannels: [0, 1],
        activation: null,
        details: {},
      }],
    }),
  };
}

Deno.test("exportFrozen() writes the codes of the kept channels on the plan's grids and float layers as they are", () => {
  const model = exportFrozen(handFrozen());
  checkQuantizedModel(model);
  assert.equal(model.inputBits, 8);
  assert.equal(model.graph, TINY);
  const [d1, d2] = model.layers;
  const w1 = d1.weight as QuantizedWeights;
  assert.deepEqual(
    [w1.bits, w1.signed, w1.xmax, w1.scale],
    [4, true, 1, Math.fround(Math.fround(2 / 3) / 5)],
  );
  assert.deepEqual(w1.kept, [0, 2]);
  assert.deepEqual(w1.codes, new Int32Array([4, -2, 7, -7]));
  assert.deepEqual(d1.activation, {
    bits: 2,
    signed: false,
    xmax: 1.5,
    scale: 0.5,
  });
  assert.deepEqual([...d1.bias], [0.1, 0.3, -0.1].map(Math.fround));
  assert.equal(d2.weight.bits, "float");
  assert.deepEqual(
    d2.weight.bits === "float" ? [...d2.weight.values] : null,
    [0.25, -0.5, 1, 0, 0.75, -2.5],
  );
  assert.equal(d2.activation, null);
});

Deno.test("exportFrozen() refuses a plan without a layer, a grid of another width and weights off their grid", () => {
  assert.throws(
    () =>
      exportFrozen(handFrozen((p) => ({ ...p, layers: p.layers.slice(0, 1) }))),
    new RangeError('Cannot export: the plan has no layer "d2"'),
  );
  assert.throws(
    () =>
      exportFrozen(handFrozen((p) => ({
        ...p,
        layers: [
          {
            ...p.layers[0],
            weight: { kind: "residual", bits: 3, signed: true, xmax: 1 },
          },
          p.layers[1],
        ],
      }))),
    new RangeError(
      "Cannot export d1.weight: a grid has 2, 4, 8, 16 or 32 bits, got 3",
    ),
  );
  // The same weights read on a grid twice as fine are not its levels.
  assert.throws(
    () =>
      exportFrozen(handFrozen((p) => ({
        ...p,
        layers: [
          {
            ...p.layers[0],
            weight: { kind: "residual", bits: 4, signed: true, xmax: 2.5 },
          },
          p.layers[1],
        ],
      }))),
    /Cannot export d1\.weight: element 0 .* is not on the 4-bit grid/,
  );
});

Deno.test("a float model exports at 32 input bits, saves, loads, and evaluates as the frozen model", async () => {
  const method = floatMethod();
  const model = method.attach(TINY_3X3);
  const frozen = method.freeze(model, initGraph(TINY_3X3, randomKey(4)));
  const exported = exportFrozen(frozen);
  assert.equal(exported.inputBits, 32);
  assert.ok(exported.layers.every((l) => l.weight.bits === "float"));
  await withTempDir(async (dir) => {
    await saveQuantized(`${dir}/float.safetensors`, exported);
    assert.deepEqual(await loadQuantized(`${dir}/float.safetensors`), exported);
  });
  const data = rowSumData(64, 9);
  const accuracy = await evaluateQuantized(exported, data, { batchSize: 16 });
  assert.equal(accuracy, await evaluateFrozen(frozen, data));
});
