/**
 * BSQ through the training loop: the penalty and the re-quantization as
 * the method supplies them, calibration, the frozen model on its grids and
 * its cost, training on a tiny task and on LeNet-5, bit-identical resume
 * through saved snapshots, and the protocol's option checks.
 */

import assert from "node:assert/strict";
import { makeDataset } from "../../core/data.ts";
import { device } from "../../core/device.ts";
import { evaluateFrozen, planBops } from "../../core/frozen.ts";
import { initGraph } from "../../core/graph.ts";
import { lenet5 } from "../../core/models.ts";
import { randomKey } from "../../core/rng.ts";
import { hostF32 } from "../../core/tensor.ts";
import {
  bsq,
  type BsqCheckpoint,
  bsqCost,
  bsqMethod,
  bsqPenalty,
  bsqSnapshot,
  type BsqState,
  calibrateBsq,
  freezeBsq,
  initBsq,
  regularizerValue,
  trainBsq,
} from "../../core/methods/bsq/mod.ts";
import { loadSnapshot, saveSnapshot } from "../../io/snapshot.ts";
import {
  assertParamsBitwise,
  firstImages,
  randomValues,
  rowSumData,
  TINY_3X3 as TINY,
} from "../_fixtures.ts";

const DATA = rowSumData(48, 3);
const SETS = { train: DATA, test: DATA };

async function tinyState(options = {}): Promise<BsqState> {
  const q = bsq(TINY, options);
  return await initBsq(q, initGraph(TINY, randomKey(4)), firstImages(DATA, 16));
}

/** Asserts every plane lies in [0, 2]. */
function assertPlanesClipped(state: BsqState): void {
  for (const [name, t] of Object.entries(state.params)) {
    if (!/\.weight\.(pos|neg)$/.test(name)) continue;
    assert.ok(hostF32(t).every((v) => v >= 0 && v <= 2), name);
  }
}

Deno.test("the penalty is alpha R, R as the host computes it; afterEpoch re-quantizes to exact planes", async () => {
  const q = bsq(TINY, { alpha: 0.3 });
  const state = await tinyState({ alpha: 0.3 });
  const p = bsqPenalty(q, state)!;
  const r = regularizerValue(q, state);
  assert.ok(Math.abs(p.metrics.regularizer.get(0) - r) <= r * 1e-6);
  assert.ok(Math.abs(p.value.get(0) - 0.3 * r) <= r * 1e-6);
  // Perturbed planes in [0, 2] re-quantize to 0/1 planes.
  const params = { ...state.params };
  const pos = params["fc1.weight.pos"];
  params["fc1.weight.pos"] = pos.device.upload(
    randomValues(9, pos.size, 0, 2),
    pos.shape,
  );
  const method = bsqMethod({ alpha: 0.3, requantizeAfter: 2 });
  const perturbed = { ...state, params };
  assert.equal(method.afterEpoch!(q, perturbed, 1), perturbed); // not yet
  const after = method.afterEpoch!(q, perturbed, 2);
  for (const name of ["fc1.weight.pos", "fc1.weight.neg"]) {
    const planes = hostF32(after.params[name]);
    assert.ok(planes.every((v) => v === 0 || v === 1), name);
    assert.equal(after.params[name].shape[0], after.bits.fc1);
  }
  assert.equal(bsqPenalty(bsq(TINY, { alpha: 0 }), state), null);
});

Deno.test("calibration keeps the largest batch maximum, whatever the batch size", async () => {
  const q = bsq(TINY, { activationBits: 4 });
  const state = await tinyState();
  const small = await calibrateBsq(q, state, DATA, { batchSize: 7 });
  const whole = await calibrateBsq(q, state, DATA, { batchSize: 48 });
  const first = await calibrateBsq(q, state, DATA, {
    batchSize: 16,
    maxBatches: 1,
  });
  const v = (s: BsqState) => s.params["fc1.act.max"].get(0);
  assert.equal(v(small), v(whole));
  assert.ok(v(whole) >= v(first) && v(first) > 0);
  assert.equal(v(first), v(state)); // init calibrates on its first batch
  assert.equal(small.params["fc2.act.max"], undefined); // the logits stay float
});

Deno.test("the frozen model: weights exactly fround(scale) k, bits N + 1, the plan's BOPs are bsqCost's", async () => {
  const q = bsq(lenet5(), { activationBits: 4, initialBits: 5 });
  const images = randomValues(3, 8 * 784, 0, 1);
  const data = makeDataset(images, new Int32Array(8).map((_, i) => i % 10), [
    1,
    28,
    28,
  ]);
  const state = await initBsq(
    q,
    initGraph(lenet5(), randomKey(1)),
    firstImages(data, 8),
  );
  const frozen = freezeBsq(q, state);
  for (const [i, layer] of q.layers.entries()) {
    const plan = frozen.plan.layers[i];
    const grid = plan.weight!;
    assert.equal(grid.kind, "uniform");
    if (grid.kind !== "uniform") continue;
    const n = state.bits[layer.info.name];
    assert.deepEqual([grid.bits, grid.codeMax, grid.codeMin], [
      n + 1,
      2 ** n - 1,
      1 - 2 ** n,
    ]);
    assert.equal(plan.details.planes, n);
    const w = hostF32(frozen.params[`${layer.info.name}.weight`]);
    for (const v of w) {
      const k = Math.round(v / grid.scale);
      assert.ok(
        k >= grid.codeMin && k <= grid.codeMax &&
          Math.fround(grid.scale * k) === v,
      );
    }
    assert.equal(frozen.params[`${layer.info.name}.weight.pos`], undefined);
  }
  assert.equal(frozen.plan.layers[3].activation, null);
  assert.equal(frozen.plan.layers[0].activation?.bits, 4);
  const cost = bsqCost(q, state.bits);
  assert.ok(
    Math.abs(
      planBops(q.model, frozen.plan).relativeGbops - cost.relativeGbops,
    ) < 1e-12,
  );
});

Deno.test("a strong alpha empties planes; training lowers the loss; planes stay in [0, 2]", async () => {
  const run = async (alpha: number) => {
    const q = bsq(TINY, { alpha, activationBits: 8 });
    const init = await tinyState({ alpha, activationBits: 8 });
    const result = await trainBsq(q, init, SETS, {
      bsqEpochs: 6,
      fineTuneEpochs: 1,
      requantizeEvery: 2,
      batchSize: 8,
      learningRate: 0.05,
      key: randomKey(2),
      onEpoch: ({ snapshot }) => assertPlanesClipped(snapshot.state),
    });
    return { init, result };
  };
  const none = await run(0);
  const strong = await run(3);
  const planes = (s: BsqState) =>
    Object.values(s.bits).reduce((a, b) => a + b, 0);
  assert.ok(
    planes(strong.result.state) < planes(strong.init),
    JSON.stringify(strong.result.state.bits),
  );
  assert.ok(planes(strong.result.state) < planes(none.result.state));
  const ce = none.result.history.map((h) => h.crossEntropy);
  assert.ok(ce[ce.length - 1] < ce[0], `cross-entropy ${ce}`);
  assert.deepEqual(none.result.history.map((h) => h.epoch), [
    1,
    2,
    3,
    4,
    5,
    6,
    7,
  ]);
});

Deno.test("resuming from a saved checkpoint at any boundary ends bit-identical", async () => {
  const q = bsq(TINY, { alpha: 0.05, activationBits: 4 });
  const init = await tinyState({ alpha: 0.05, activationBits: 4 });
  const options = {
    bsqEpochs: 3,
    fineTuneEpochs: 2,
    requantizeEvery: 2,
    batchSize: 16,
    learningRate: 0.01,
    key: randomKey(8),
  };
  const straight = await trainBsq(q, init, SETS, options);
  const dir = await Deno.makeTempDir();
  const path = `${dir}/checkpoint.safetensors`;
  const killed = new Error("simulated kill");
  // After bsq-1's second (last) epoch, mid bsq-2, mid fine-tune.
  for (
    const [phase, epoch] of [["bsq-1", 2], ["bsq-2", 1], [
      "fine-tune",
      1,
    ]] as const
  ) {
    await assert.rejects(
      trainBsq(q, init, SETS, {
        ...options,
        onEpoch: async ({ snapshot, earlierHistory }: BsqCheckpoint) => {
          await saveSnapshot(path, { snapshot, run: { earlierHistory } });
          if (snapshot.phase === phase && snapshot.epoch === epoch) {
            throw killed;
          }
        },
      }),
      (error) => error === killed,
    );
    const stored = await loadSnapshot(path);
    const snapshot = bsqSnapshot(stored.snapshot);
    const { earlierHistory } = stored.run as BsqCheckpoint;
    const resumed = await trainBsq(q, init, SETS, {
      ...options,
      resume: { snapshot, earlierHistory },
    });
    await assertParamsBitwise(
      resumed.state.params,
      straight.state.params,
      `resumed at ${phase} ${epoch}`,
    );
    assert.deepEqual(resumed.state.bits, straight.state.bits);
    assert.deepEqual(
      resumed.history.map((h) => [h.phase, h.epoch, h.loss, h.testAccuracy]),
      straight.history.map((h) => [h.phase, h.epoch, h.loss, h.testAccuracy]),
    );
    assert.equal(resumed.testAccuracy, straight.testAccuracy);
  }
  await Deno.remove(dir, { recursive: true });
  // The final accuracy is the frozen model's.
  const frozen = freezeBsq(q, straight.state);
  assert.equal(await evaluateFrozen(frozen, DATA), straight.testAccuracy);
});

Deno.test("trainBsq() and bsqSnapshot() reject bad options and foreign snapshots", async () => {
  const q = bsq(TINY);
  const init = await tinyState();
  const key = randomKey(0);
  const bad: [Record<string, number>, RegExp][] = [
    [{ requantizeEvery: 0 }, /requantizeEvery 0: it must be an integer >= 1/],
    [{ bsqEpochs: -1 }, /bsqEpochs -1/],
    [{ fineTuneEpochs: 1.5 }, /fineTuneEpochs 1\.5/],
    [{ bsqEpochs: 0, fineTuneEpochs: 0 }, /at least one epoch/],
  ];
  for (const [options, message] of bad) {
    await assert.rejects(trainBsq(q, init, SETS, { ...options, key }), message);
  }
  const foreign = {
    method: "bsq",
    phase: "bsq-9",
    epoch: 1,
    epochs: 5,
    state: init,
    optimizerState: { step: 0, slots: {} },
    history: [],
  } as const;
  await assert.rejects(
    trainBsq(q, init, SETS, {
      key,
      resume: { snapshot: foreign, earlierHistory: [] },
    }),
    /Cannot resume: the checkpoint holds a bsq run "bsq-9" of 5 epochs/,
  );
  assert.throws(
    () => bsqSnapshot({ ...foreign, phase: "train", state: { ...init } }),
    /unknown phase "train"/,
  );
  assert.throws(
    () => bsqSnapshot({ ...foreign, state: { params: {} } }),
    /lacks the plane count/,
  );
  assert.throws(
    () =>
      bsqSnapshot({ ...foreign, state: { params: {}, bits: {}, stage: "x" } }),
    /stage is "x"/,
  );
});

Deno.test("LeNet-5 on the WASM device: a few BSQ steps lower the loss and keep the invariants", async () => {
  const dev = await device("wasm", { threads: 1 });
  try {
    const count = 64;
    const labels = new Int32Array(count).map((_, i) => i % 4);
    // Each class lights one quadrant of the image.
    const images = new Float32Array(count * 784).map((_, j) => {
      const [i, p] = [Math.floor(j / 784), j % 784];
      const quadrant = (Math.floor(p / 28) < 14 ? 0 : 2) +
        (p % 28 < 14 ? 0 : 1);
      return quadrant === labels[i] ? 1 : 0;
    });
    const data = makeDataset(images, labels, [1, 28, 28]);
    const q = bsq(lenet5(), { alpha: 0.01, activationBits: 4, initialBits: 4 });
    const init = await initBsq(
      q,
      initGraph(lenet5(), randomKey(3), dev),
      firstImages(data, 16, dev),
    );
    const result = await trainBsq(q, init, { train: data, test: data }, {
      bsqEpochs: 2,
      fineTuneEpochs: 1,
      requantizeEvery: 1,
      batchSize: 32,
      key: randomKey(4),
      onEpoch: ({ snapshot }) => assertPlanesClipped(snapshot.state),
    });
    const ce = result.history.map((h) => h.crossEntropy);
    assert.ok(ce[2] < ce[0], `cross-entropy ${ce}`);
    assert.ok(Object.values(result.state.bits).every((n) => n >= 1 && n <= 8));
    assert.equal(result.state.stage, "fixed");
    for (const layer of q.layers) {
      const wn = hostF32(result.state.params[`${layer.info.name}.weight`]);
      assert.ok(wn.every((v) => v >= -1 && v <= 1), layer.info.name);
    }
  } finally {
    dev.dispose();
  }
});
