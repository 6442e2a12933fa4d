/** Bad numbers are refused where they enter, with a message naming the tensor, layer or image. */

import assert from "node:assert/strict";
import { makeDataset } from "../../core/data.ts";
import { runQuantized } from "../../core/export.ts";
import { initGraph } from "../../core/graph.ts";
import { exportQuantized } from "../../core/methods/bayesian_bits/method.ts";
import {
  bayesianBits,
  initGated,
} from "../../core/methods/bayesian_bits/model.ts";
import {
  gatesForBits,
  initRange,
  quantize,
  quantizeGrad,
} from "../../core/methods/bayesian_bits/quantizer.ts";
import { randomKey } from "../../core/rng.ts";
import { Tensor } from "../../core/tensor.ts";
import { evaluate } from "../../core/train.ts";
import { evaluateQuantized } from "../../core/export.ts";
import { TINY_3X3 } from "../_fixtures.ts";

/** A dataset of 3 images of the tiny 3x3 model, one pixel of image 2 replaced. */
function dataWith(value: number) {
  const images = new Float32Array(27).map((_, i) => (i % 5) / 5);
  images[2 * 9 + 4] = value;
  return makeDataset(images, new Int32Array([0, 1, 2]), [1, 3, 3]);
}

async function tinyExported() {
  const gated = bayesianBits(TINY_3X3);
  const float = initGraph(TINY_3X3, randomKey(2));
  const x = Tensor.from(new Float32Array(18).map((_, i) => (i % 7) / 7 - 0.3), [
    2,
    1,
    3,
    3,
  ]);
  const state = await initGated(gated, float, x);
  return { gated, state, float, exported: exportQuantized(gated, state) };
}

Deno.test("evaluation refuses NaN and infinite images, naming the image, instead of reporting them wrong", async () => {
  const { float, exported } = await tinyExported();
  for (const bad of [NaN, Infinity, -Infinity]) {
    await assert.rejects(
      evaluate(TINY_3X3, float.params, dataWith(bad)),
      new RangeError(
        `Cannot evaluate: image 2 has ${bad} at element 4 (images must be finite)`,
      ),
    );
    await assert.rejects(
      evaluateQuantized(exported, dataWith(bad)),
      /image 2 has .* at element 4/,
    );
  }
  const accuracy = await evaluate(TINY_3X3, float.params, dataWith(0.5));
  assert.ok(accuracy >= 0 && accuracy <= 1);
});

Deno.test("runQuantized() refuses a batch holding NaN rather than returning finite logits", async () => {
  const { exported } = await tinyExported();
  const x = Tensor.from(new Float32Array(9).fill(0.25), [1, 1, 3, 3]);
  assert.equal(runQuantized(exported, x).shape.join(), "1,3");
  const bad = Tensor.from(
    new Float32Array(9).fill(0.25).map((v, i) => (i === 6 ? NaN : v)),
    [1, 1, 3, 3],
  );
  assert.throws(
    () => runQuantized(exported, bad),
    /batch with NaN at element 6 \(inputs must be finite\)/,
  );
});

Deno.test("ranges whose grid steps overflow or underflow float32 are refused by quantize, quantizeGrad and initRange, naming the tensor", () => {
  const x = Tensor.from([0.5, -0.25]);
  // 2 * 3e38 overflows float32: s2 would be infinite and every level NaN.
  assert.throws(
    () =>
      quantize(x, { xmax: 3e38, signed: true }, gatesForBits(8), {
        name: "fc.weight",
      }),
    /^RangeError: Cannot quantize "fc.weight": its 2-bit step overflows float32/,
  );
  // 1e-38 / 3 / 5 / 17 / 257 / 65537 is 0 in float32.
  assert.throws(
    () =>
      quantize(x, { xmax: 1e-38, signed: false }, gatesForBits(32), {
        name: "fc.act",
      }),
    /^RangeError: Cannot quantize "fc.act": its 2-bit step .* underflows float32/,
  );
  assert.throws(
    () =>
      quantizeGrad(
        x,
        { xmax: 1e-30, signed: false },
        gatesForBits(16),
        Tensor.from([1, 1]),
        { name: "g" },
      ),
    /Cannot quantize "g": its 32-bit step .* underflows float32/,
  );
  // The same range is fine at 16 bits forward: only the steps a pass uses count.
  assert.equal(
    quantize(x, { xmax: 1e-30, signed: false }, gatesForBits(16)).size,
    2,
  );
  assert.throws(
    () => initRange(Tensor.from([-1, 3e38]), "big"),
    /Cannot initialise the range of "big": its 2-bit step overflows/,
  );
  assert.throws(
    () => initRange(Tensor.from([1e-30]), "small"),
    /Cannot initialise the range of "small": its 32-bit step .* underflows/,
  );
  // The identity of spec section 1 still holds at the edge that is kept: 8 bits at xmax 1e38.
  const xq = quantize(
    Tensor.from([1e38]),
    { xmax: 1e38, signed: true },
    gatesForBits(8),
  );
  assert.ok(Number.isFinite(xq.get(0)));
});

Deno.test("export refuses a range whose grid step underflows, naming the layer, instead of writing a file that cannot be read", async () => {
  const { gated, state } = await tinyExported();
  const params = { ...state.params, "fc1.act.xmax": Tensor.from([1e-39]) };
  assert.throws(
    () => exportQuantized(gated, { ...state, params }),
    /^RangeError: Cannot export fc1 activation: its \d+-bit grid is not representable: its 2-bit step .* underflows float32/,
  );
});

Deno.test("gatesForBits() with a negative channel count is a RangeError that says so", () => {
  assert.throws(
    () => gatesForBits(0, -1),
    new RangeError(
      "Invalid channel count -1 for the z2 gates: it must be a non-negative integer",
    ),
  );
  assert.throws(() => gatesForBits(4, 2.5), /Invalid channel count 2.5/);
  assert.deepEqual(gatesForBits(0, 0).z2, new Float32Array(0));
});

Deno.test("bayesianBits() refuses a graph without a conv or dense layer with a clear error", () => {
  assert.throws(
    () =>
      bayesianBits({
        name: "pool-only",
        inputShape: [1, 2, 2],
        nodes: [{ op: "flatten", name: "f", input: "input" }],
      }),
    new RangeError(
      "Cannot gate pool-only: it has no conv or dense layer to quantize",
    ),
  );
});
