/**
 * FracBits through the training loop: the penalty pulls the cost to the
 * target, the hard assignment happens after its epoch and freezes the
 * widths (spec test 8), the frozen model sits exactly on its uniform grids
 * and its plan counts the BOPs of section 7, a run resumed from any epoch
 * ends bit for bit where an uninterrupted one does, and LeNet-5 learns on a
 * slice of MNIST.
 */

import assert from "node:assert/strict";
import { device } from "../../core/device.ts";
import { evaluateFrozen, withFrozen } from "../../core/frozen.ts";
import { planBops } from "../../core/plan_bops.ts";
import { initGraph } from "../../core/graph.ts";
import { lenet5 } from "../../core/models.ts";
import type { UniformGrid } from "../../core/method.ts";
import {
  assignWidths,
  fracBits,
  fracBitsLabel,
  fracBitsMethod,
  type FracBitsSnapshot,
  fracBitsSnapshot,
  freezeFracBits,
  initFracBits,
  integerWidths,
  readWidths,
  trainFracBits,
  widthBops,
} from "../../core/methods/fracbits/mod.ts";
import { randomKey } from "../../core/rng.ts";
import { roundHalfEven } from "../../core/round.ts";
import { hostF32, Tensor } from "../../core/tensor.ts";
import { train } from "../../core/train.ts";
import { loadMnist } from "../../io/mnist.ts";
import { loadSnapshot, saveSnapshot } from "../../io/snapshot.ts";
import { fracWeightReference } from "../../core/reference/fracbits.ts";
import {
  assertClose,
  assertParamsBitwise,
  rowSumData,
  TINY_3X3 as TINY,
} from "../_fixtures.ts";

const DATA = rowSumData(64, 3);
const SETS = { train: DATA, test: DATA };
/** TINY's cost at uniform 3 bits (54 + 18 MACs, the input at 8 bits). */
const TARGET = 1e-9 * (54 * 3 * 8 + 18 * 3 * 3);

function tinyModel(extra: Record<string, unknown> = {}) {
  return fracBits(TINY, {
    target: TARGET,
    initBits: 5.5,
    kappa: 1e8,
    assignAfterEpoch: 2,
    learningRate: 0.05,
    ...extra,
  });
}

Deno.test("the penalty pulls the widths down; after the assignment they stay fixed and the penalty is 0", async () => {
  const fm = tinyModel();
  const init = initFracBits(fm, initGraph(TINY, randomKey(1)));
  const snapshots: FracBitsSnapshot[] = [];
  const end = await trainFracBits(fm, init, SETS, {
    epochs: 4,
    batchSize: 16,
    key: randomKey(2),
    onEpoch: (s) => {
      snapshots.push(s);
    },
  });
  assert.equal(snapshots[0].state.assignment, null);
  const assigned = snapshots[1].state.assignment;
  assert.ok(assigned, "assigned after epoch 2");
  const start = readWidths(fm.layers, init.params);
  const before = assigned.fractional;
  assert.ok(before[0].weight[0] < start[0].weight[0], "the width fell");
  assert.deepEqual(
    assigned,
    assignWidths(fm, before, fm.options.target),
    "the record is the bisection of the widths at that epoch",
  );
  assert.ok(snapshots[0].history[0].metrics.penalty > 0);
  assert.equal(end.history[3].metrics.penalty, 0, "no penalty after it");
  for (const l of fm.layers) {
    await assertParamsBitwise(
      { [l.fixedWeightBits]: end.state.params[l.fixedWeightBits] },
      { [l.fixedWeightBits]: snapshots[1].state.params[l.fixedWeightBits] },
    );
  }
  assert.deepEqual(integerWidths(fm, end.state), assigned.widths);
  assert.ok(
    !Object.keys(end.optimizerState.slots).some((n) => n.endsWith(".fixed")),
    "no optimizer holds the assigned widths",
  );
  const fixedRun = end.history[3];
  assert.equal(
    fixedRun.relativeGbops,
    widthBops(fm, assigned.widths).relativeGbops,
  );
});

Deno.test("the frozen model is exactly on its uniform grids, its plan counts the section 7 BOPs", () => {
  const fm = fracBits(lenet5(), {
    targetRelativeGbops: 0.5,
    granularity: "kernel",
    minBits: 0,
  });
  const state = initFracBits(fm, initGraph(lenet5(), randomKey(3)));
  const conv2 = Float32Array.from(
    { length: 64 },
    (_, c) => [3.2, 1.6, 0.4, 6.5][c % 4],
  );
  const params = { ...state.params, "conv2.weight.bits": Tensor.from(conv2) };
  const s = { ...state, params };
  const frozen = freezeFracBits(fm, s);
  const widths = integerWidths(fm, s);
  assert.deepEqual(widths[1].weight.slice(0, 4), [3, 2, 0, 6]);
  const plan = frozen.plan;
  assert.equal(plan.layers[1].keptChannels.length, 48);
  fm.layers.forEach((l, i) => {
    const grid = plan.layers[i].weight as UniformGrid;
    const w = hostF32(frozen.params[`${l.name}.weight`]);
    const per = w.length / l.outChannels;
    for (let j = 0; j < w.length; j++) {
      const c = Math.floor(j / per);
      const g = grid.channels ? grid.channels[c] : grid;
      if (g.bits === 0) {
        assert.equal(w[j], 0, `${l.name}[${j}] pruned`);
        continue;
      }
      const code = roundHalfEven(w[j] / g.scale);
      assert.equal(
        w[j],
        Math.fround(Math.fround(g.scale) * code),
        `${l.name}[${j}]`,
      );
      assert.ok(Math.abs(code) % 2 === 1 && Math.abs(code) <= g.codeMax);
    }
  });
  const cost = planBops(fm.model, plan);
  const mine = widthBops(fm, widths);
  assert.equal(cost.bops, mine.bops);
  mine.layers.forEach((b, i) => assert.equal(cost.layers[i].bops, b));
  assert.equal(cost.layers[2].keptInputFraction, 0.75);
  assert.ok(
    Math.abs(
      cost.macsBitsRelativeGbops -
        100 * mine.nativeGbitops / (1024 * fm.totalMacs * 1e-9),
    ) < 1e-9,
    "FracBits' own figure is the MACs x bw x ba convention",
  );
});

Deno.test("the last epoch's accuracy is the frozen model's (kernel-wise, 0-bit kernels allowed)", async () => {
  const fm = tinyModel({
    granularity: "kernel",
    minBits: 0,
    initBits: 0.75,
    target: TARGET / 8,
  });
  const method = fracBitsMethod({ target: TARGET });
  const init = initFracBits(fm, initGraph(TINY, randomKey(4)));
  const run = await train(method, fm, init, SETS, {
    epochs: 3,
    batchSize: 16,
    key: randomKey(5),
  });
  const accuracy = await withFrozen(
    run.state.params,
    () => freezeFracBits(fm, run.state),
    (f) => evaluateFrozen(f, DATA),
  );
  assert.equal(accuracy, run.history[2].testAccuracy);
  assert.ok(run.state.assignment);
  assert.equal(
    fracBitsLabel(fm),
    "FracBits + 0-bit kernels (ours), kernel-wise",
  );
});

Deno.test("resuming from a snapshot before or after the assignment ends bit-identical", async () => {
  const fm = tinyModel({ granularity: "kernel" });
  const init = initFracBits(fm, initGraph(TINY, randomKey(6)));
  const options = { epochs: 4, batchSize: 16, key: randomKey(7) };
  const straight = await trainFracBits(fm, init, SETS, options);
  const dir = await Deno.makeTempDir();
  for (const killAt of [1, 2]) {
    const path = `${dir}/at${killAt}.safetensors`;
    const killed = new Error("simulated kill");
    await assert.rejects(
      trainFracBits(fm, init, SETS, {
        ...options,
        onEpoch: async (snapshot) => {
          await saveSnapshot(path, { snapshot, run: { seed: 7 } });
          if (snapshot.epoch === killAt) throw killed;
        },
      }),
      (error) => error === killed,
    );
    const snapshot = fracBitsSnapshot((await loadSnapshot(path)).snapshot);
    assert.equal(snapshot.state.assignment !== null, killAt >= 2);
    const resumed = await trainFracBits(fm, snapshot.state, SETS, {
      ...options,
      resume: snapshot,
    });
    await assertParamsBitwise(resumed.state.params, straight.state.params);
    for (const [name, slots] of Object.entries(straight.optimizerState.slots)) {
      await assertParamsBitwise(
        resumed.optimizerState.slots[name],
        slots,
        name,
      );
    }
    assert.deepEqual(resumed.state.assignment, straight.state.assignment);
    assert.deepEqual(
      resumed.history.map((h) => [h.testAccuracy, h.relativeGbops]),
      straight.history.map((h) => [h.testAccuracy, h.relativeGbops]),
    );
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("trainFracBits() and fracBitsSnapshot() reject bad options and foreign snapshots", async () => {
  const fm = tinyModel();
  const init = initFracBits(fm, initGraph(TINY, randomKey(8)));
  await assert.rejects(
    trainFracBits(fm, init, SETS, { epochs: 0, key: randomKey(1) }),
    /Invalid FracBits option epochs 0: it must be a positive integer/,
  );
  const { params: _drop, ...noParams } = init;
  assert.throws(
    () => initFracBits(fm, { ...noParams, params: {} as typeof init.params }),
    /lacks "fc1.weight"/,
  );
  const stored = {
    method: "fracbits",
    phase: "fracbits",
    epoch: 1,
    epochs: 2,
    history: [],
    state: { params: {}, assignment: 3 },
    optimizerState: { step: 0, slots: {} },
  };
  assert.throws(() => fracBitsSnapshot(stored), /lacks the assignment field/);
  assert.throws(
    () => fracBits(lenet5(), { target: 0.01, granularity: "net" as "layer" }),
    /granularity "net"/,
  );
});

Deno.test("LeNet-5 under FracBits learns on 512 MNIST images (WASM device)", async () => {
  const dev = await device("wasm", { threads: 2 });
  try {
    const { train: all, test } = await loadMnist({ limit: 512 });
    const fm = fracBits(lenet5(), {
      targetRelativeGbops: 1.7312,
      initBits: 4.5,
      initClip: { conv: 2, dense: 2 },
      assignAfterEpoch: 1,
    });
    const init = initFracBits(fm, initGraph(lenet5(), randomKey(9), dev));
    const run = await trainFracBits(fm, init, { train: all, test }, {
      epochs: 2,
      batchSize: 64,
      key: randomKey(10),
    });
    const loss = run.history.map((h) => h.crossEntropy);
    assert.ok(loss[1] < loss[0], `cross-entropy ${loss}`);
    assert.ok(
      run.history[1].testAccuracy > 0.3,
      `${run.history[1].testAccuracy}`,
    );
    const a = run.state.assignment!;
    assert.ok(a.trace.length >= 1);
  } finally {
    dev.dispose();
  }
});

Deno.test("clips can start at the largest input of the first batch", async () => {
  const fm = tinyModel({ clipInit: "batch" });
  const float = initGraph(TINY, randomKey(12));
  const x = Tensor.from(DATA.images.slice(0, 16 * 9), [16, 1, 3, 3]);
  const state = await fracBitsMethod({ target: TARGET }).init(fm, float, x);
  const w = fracWeightReference(
    hostF32(float.params["fc1.weight"]),
    Float32Array.from([5.5]),
    { minBits: 1, maxBits: 8, fanOut: 6 },
  ).y;
  const b = hostF32(float.params["fc1.bias"]);
  let max = 0;
  for (let n = 0; n < 16; n++) {
    for (let o = 0; o < 6; o++) {
      let z = 0;
      for (let i = 0; i < 9; i++) z += w[o * 9 + i] * DATA.images[n * 9 + i];
      max = Math.max(max, z + b[o]);
    }
  }
  assertClose(state.params["fc2.input.clip"].get(0), max, 1e-5, 0, "clip");
  const fixed = await fracBitsMethod({ target: TARGET }).init(
    tinyModel(),
    float,
    x,
  );
  assert.equal(
    fixed.params["fc2.input.clip"].get(0),
    10,
    "the code's dense clip",
  );
});
