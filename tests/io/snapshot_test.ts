/**
 * Checkpoints and training snapshots of tensors on devices: saving reads
 * them back, loading puts them on the device asked for, files written by
 * version 0.1.0 still load, and a resumed run ends bit-identical.
 */

import assert from "node:assert/strict";
import { makeDataset } from "../../core/data.ts";
import type { Device } from "../../core/device.ts";
import type { MethodState } from "../../core/method.ts";
import { initGraph, type ModelGraph } from "../../core/graph.ts";
import {
  bayesianBits,
  type BayesianBitsSnapshot,
  bayesianBitsSnapshot,
  initGated,
  trainBayesianBits,
} from "../../core/methods/bayesian_bits/mod.ts";
import { floatMethod } from "../../core/methods/float.ts";
import { referenceDevice } from "../../core/reference/device.ts";
import { historyEntry } from "../../core/report.ts";
import { train, type TrainRun } from "../../core/train.ts";
import { randomKey, uniform } from "../../core/rng.ts";
import { Tensor } from "../../core/tensor.ts";
import {
  loadCheckpoint,
  saveCheckpoint,
  unflattenOptimizerState,
} from "../../io/checkpoint.ts";
import { paramsFromTensors } from "../../io/params.ts";
import {
  loadSnapshot,
  saveSnapshot,
  type TrainingSnapshot,
} from "../../io/snapshot.ts";
import { assertParamsBitwise } from "../_fixtures.ts";
import {
  bitsOf,
  hostState,
  listDir,
  OpaqueDevice,
  withTempDir,
} from "../_io_fixtures.ts";

/** Tensors of two dtypes a Tensor cannot hold and one it can. */
const HOST_TENSORS = {
  u8: { shape: [2, 2], data: new Uint8Array([0, 1, 128, 255]) },
  i16: { shape: [3], data: new Int16Array([-32768, -1, 32767]) },
  w: { shape: [1], data: new Float32Array([42.5]) },
};

Deno.test("saveCheckpoint() reads tensors from a device the host cannot see and writes the bytes host arrays give", async () => {
  const opaque = new OpaqueDevice();
  const w = opaque.upload([0.5, -0, 1e-45, 3], [2, 2]);
  assert.throws(() => w.toFloat32Array(), /not host-visible/);
  await withTempDir(async (dir) => {
    await saveCheckpoint(`${dir}/device.safetensors`, {
      tensors: {
        w,
        n: opaque.upload(new Int32Array([-1, 7, 2 ** 31 - 1]), [3]),
        raw: HOST_TENSORS.u8,
      },
      state: { epoch: 1 },
    });
    await saveCheckpoint(`${dir}/host.safetensors`, {
      tensors: {
        w: { shape: [2, 2], data: new Float32Array([0.5, -0, 1e-45, 3]) },
        n: { shape: [3], data: new Int32Array([-1, 7, 2 ** 31 - 1]) },
        raw: HOST_TENSORS.u8,
      },
      state: { epoch: 1 },
    });
    assert.deepEqual(
      await Deno.readFile(`${dir}/device.safetensors`),
      await Deno.readFile(`${dir}/host.safetensors`),
    );
    const { tensors } = await loadCheckpoint(`${dir}/device.safetensors`);
    assert.equal(tensors.w.dtype, "F32");
    assert.deepEqual(tensors.w.shape, [2, 2]);
    assert.ok(Object.is(tensors.w.data[1], -0));
    assert.equal(tensors.n.dtype, "I32");
    assert.deepEqual([...tensors.n.data], [-1, 7, 2 ** 31 - 1]);
  });
});

Deno.test("saveCheckpoint() of a freed tensor fails before touching the old file", async () => {
  const opaque = new OpaqueDevice();
  await withTempDir(async (dir) => {
    const path = `${dir}/ckpt.safetensors`;
    await saveCheckpoint(path, { tensors: HOST_TENSORS, state: { epoch: 1 } });
    const before = await Deno.readFile(path);
    const freed = opaque.upload([1, 2], [2]);
    opaque.free(freed);
    await assert.rejects(
      saveCheckpoint(path, {
        tensors: { ...HOST_TENSORS, freed },
        state: { epoch: 2 },
      }),
      /used after its device scope ended or it was disposed/,
    );
    assert.deepEqual(await Deno.readFile(path), before);
    assert.deepEqual(await listDir(dir), ["ckpt.safetensors"]);
  });
});

Deno.test("unflattenOptimizerState() and paramsFromTensors() put tensors on the device asked for, the reference device by default", () => {
  const opaque = new OpaqueDevice();
  const tensors = {
    "param/fc.w": {
      dtype: "F32" as const,
      shape: [2, 1],
      data: new Float32Array([1.5, -2]),
    },
    "opt/fc.w/m": {
      dtype: "F32" as const,
      shape: [2],
      data: new Float32Array([0.25, 4]),
    },
  };
  const onReference = paramsFromTensors(tensors, "here");
  assert.deepEqual(Object.keys(onReference), ["fc.w"]);
  assert.equal(onReference["fc.w"].device, referenceDevice);
  assert.deepEqual(onReference["fc.w"].shape, [2, 1]);
  assert.deepEqual([...onReference["fc.w"].toFloat32Array()], [1.5, -2]);
  const slotOnReference = unflattenOptimizerState(tensors, 3).slots["fc.w"].m;
  assert.equal(slotOnReference.device, referenceDevice);
  assert.deepEqual([...slotOnReference.toFloat32Array()], [0.25, 4]);

  const onOpaque = paramsFromTensors(tensors, "here", { device: opaque });
  assert.equal(onOpaque["fc.w"].device, opaque);
  const state = unflattenOptimizerState(tensors, 3, { device: opaque });
  assert.equal(state.slots["fc.w"].m.device, opaque);
  assert.deepEqual(state.slots["fc.w"].m.shape, [2]);
  // The data was copied: the loaded arrays can change without harm.
  tensors["param/fc.w"].data.fill(0);
  assert.deepEqual([...onReference["fc.w"].toFloat32Array()], [1.5, -2]);
  assert.throws(
    () =>
      paramsFromTensors({
        "param/x": { dtype: "I32", shape: [1], data: new Int32Array(1) },
      }, 'Cannot load "f"'),
    /Cannot load "f": parameter "param\/x" is not F32/,
  );
});

/** A gated-model-like snapshot with hand-picked values, on `device`. */
function handSnapshot(device: Device): BayesianBitsSnapshot {
  const up = (values: number[], shape: number[]) =>
    device.upload(values, shape);
  return {
    method: "bayesian-bits",
    phase: "fixed-gates",
    epoch: 2,
    epochs: 3,
    state: {
      params: {
        "fc.weight": up([0.5, -0.25, 0.1, -0, 1e-45, 3], [2, 3]),
        "fc.weight.logits": up([6, 6, -6, -6], [4]),
      },
      signed: { "fc.weight": true },
    },
    optimizerState: {
      step: 9,
      slots: {
        "fc.weight": {
          m: up([1, 2, 3, 4, 5, 6], [2, 3]),
          v: up([0.5, 0.25, 0.125, 0, -0, 8], [2, 3]),
        },
        "fc.weight.logits": {
          m: up([1, 2, 3, 4], [4]),
          v: up([4, 3, 2, 1], [4]),
        },
      },
    },
    history: [1, 2].map((epoch) => ({
      epoch,
      phase: "bayesian-bits",
      loss: 1 / epoch,
      crossEntropy: 0.5 / epoch,
      metrics: { prior: 3 },
      testAccuracy: 0.5,
      relativeGbops: 10,
      seconds: 1,
      samplesPerSecond: 100,
    })),
  };
}

/** A snapshot read back to the host, for exact comparison. */
async function hostSnapshot(
  snapshot: TrainingSnapshot<MethodState & { readonly signed?: unknown }>,
) {
  const params: Record<string, unknown> = {};
  for (const [name, t] of Object.entries(snapshot.state.params)) {
    params[name] = {
      device: t.device.kind,
      shape: [...t.shape],
      bits: bitsOf(await t.read()),
    };
  }
  return {
    method: snapshot.method,
    phase: snapshot.phase,
    epoch: snapshot.epoch,
    epochs: snapshot.epochs,
    signed: snapshot.state.signed,
    params,
    optimizer: await hostState(snapshot.optimizerState),
    history: snapshot.history,
  };
}

Deno.test("A snapshot saved from one device loads onto the device asked for, slots shaped like their parameters", async () => {
  const opaque = new OpaqueDevice();
  const saved = handSnapshot(opaque);
  await withTempDir(async (dir) => {
    const path = `${dir}/run.safetensors`;
    await saveSnapshot(path, { snapshot: saved, run: { seed: 5 } });
    // The file stores each slot 1-D, as earlier versions did.
    const raw = (await loadCheckpoint(path)).tensors;
    assert.deepEqual(raw["opt/fc.weight/m"].shape, [6]);
    assert.deepEqual(raw["param/fc.weight"].shape, [2, 3]);

    const onReference = await loadSnapshot(path);
    assert.deepEqual(onReference.run, { seed: 5 });
    const expected = await hostSnapshot(handSnapshot(referenceDevice));
    assert.deepEqual(await hostSnapshot(onReference.snapshot), expected);

    const onOpaque = await loadSnapshot(path, { device: opaque });
    const { params } = onOpaque.snapshot.state;
    assert.equal(params["fc.weight"].device, opaque);
    assert.equal(
      onOpaque.snapshot.optimizerState.slots["fc.weight"].v.device,
      opaque,
    );
    assert.deepEqual(
      await hostSnapshot(onOpaque.snapshot),
      await hostSnapshot(saved),
    );
  });
});

const FIXTURE_0_1_0 = new URL(
  "../fixtures/snapshot-0.1.0.safetensors",
  import.meta.url,
);

type Loaded = Awaited<ReturnType<typeof loadSnapshot>>;

/** The 0.1.0 fixture's parameters and optimizer slots, bit for bit. */
async function assertFixtureTensors(snapshot: Loaded["snapshot"]) {
  const f32 = (values: number[]) => bitsOf(new Float32Array(values));
  const { params } = snapshot.state;
  assert.deepEqual(Object.keys(params).sort(), [
    "fc.bias",
    "fc.weight",
    "fc.weight.logits",
    "fc.weight.xmax",
  ]);
  assert.deepEqual(params["fc.weight"].shape, [2, 3]);
  assert.deepEqual(
    bitsOf(await params["fc.weight"].read()),
    f32([0.5, -0.25, 0.1, -0, 1e-45, 3]),
  );
  assert.deepEqual(bitsOf(await params["fc.bias"].read()), f32([0.125, -2]));
  assert.deepEqual(bitsOf(await params["fc.weight.xmax"].read()), f32([3]));
  assert.deepEqual(
    bitsOf(await params["fc.weight.logits"].read()),
    f32([6, 6, -6, -6]),
  );
  const { optimizerState } = snapshot;
  assert.equal(optimizerState.step, 12);
  const slots = optimizerState.slots;
  assert.equal(slots["fc.weight"].m.device, referenceDevice);
  assert.deepEqual(slots["fc.weight"].m.shape, [2, 3]);
  assert.deepEqual(
    bitsOf(await slots["fc.weight"].m.read()),
    f32([0.01, -0.02, 0.03, -0.04, 0.05, -0.06]),
  );
  assert.deepEqual(
    bitsOf(await slots["fc.weight"].v.read()),
    f32([1e-4, 2e-4, 3e-4, 4e-4, 5e-4, 6e-4]),
  );
  assert.deepEqual(bitsOf(await slots["fc.bias"].m.read()), f32([0.5, -0.5]));
  assert.deepEqual(bitsOf(await slots["fc.bias"].v.read()), f32([0.25, 0.75]));
  assert.deepEqual(bitsOf(await slots["fc.weight.xmax"].m.read()), f32([-1]));
  assert.deepEqual(bitsOf(await slots["fc.weight.xmax"].v.read()), f32([1]));
  assert.deepEqual(
    bitsOf(await slots["fc.weight.logits"].m.read()),
    f32([1, 2, 3, 4]),
  );
  assert.deepEqual(
    bitsOf(await slots["fc.weight.logits"].v.read()),
    f32([5, 6, 7, 8]),
  );
}

/** Saved again: the same tensors, the state in the current form. */
async function assertResaved(snapshot: Loaded["snapshot"], run: Loaded["run"]) {
  await withTempDir(async (dir) => {
    const path = `${dir}/again.safetensors`;
    await saveSnapshot(path, { snapshot, run });
    // The same tensors, bit for bit; the state now names the format and the
    // method, and its history is in the version 2 form.
    const before = await loadCheckpoint(FIXTURE_0_1_0.pathname);
    const after = await loadCheckpoint(path);
    assert.deepEqual(
      Object.keys(after.tensors).sort(),
      Object.keys(before.tensors).sort(),
    );
    for (const [name, t] of Object.entries(before.tensors)) {
      const again = after.tensors[name];
      assert.deepEqual([again.dtype, again.shape], [t.dtype, t.shape], name);
      assert.deepEqual(bitsOf(again.data), bitsOf(t.data), name);
    }
    const old = before.state as Record<string, unknown>;
    assert.equal(old.kind, "bbits.bayesian-bits-snapshot");
    assert.deepEqual(after.state, {
      ...old,
      kind: "bbits.training-snapshot",
      method: "bayesian-bits",
      history: snapshot.history,
    });
    const reloaded = await loadSnapshot(path);
    assert.deepEqual(
      await hostSnapshot(reloaded.snapshot),
      await hostSnapshot(snapshot),
    );
  });
}

Deno.test("A snapshot written by version 0.1.0 loads as a Bayesian Bits one, and saving it again writes the same tensors", async () => {
  // Written by 0.1.0's saveSnapshot (optimizer slots were Float32Arrays then).
  const { snapshot, run } = await loadSnapshot(FIXTURE_0_1_0.pathname);
  assert.deepEqual(run, { seed: 3, version: "0.1.0" });
  assert.equal(snapshot.method, "bayesian-bits");
  assert.equal(snapshot.phase, "bayesian-bits");
  assert.equal(snapshot.epoch, 1);
  assert.equal(snapshot.epochs, 2);
  assert.deepEqual(snapshot.state.signed, { "fc.weight": true });
  assert.deepEqual(snapshot.history, [{
    epoch: 1,
    phase: "bayesian-bits",
    loss: 1.5,
    crossEntropy: 1.25,
    metrics: { prior: 25 },
    testAccuracy: 0.75,
    relativeGbops: 6.25,
    seconds: 2.5,
    samplesPerSecond: 400,
  }]);
  await assertFixtureTensors(snapshot);
  await assertResaved(snapshot, run);
});

/** A 3-class problem on 3x3 images: which row has the largest sum. */
function rowData(count: number, seed: number) {
  const images = uniform(randomKey(seed), count * 9).map((u) => 2 * u - 1);
  const labels = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const [a, b, c] = [0, 3, 6].map((at) =>
      images[i * 9 + at] + images[i * 9 + at + 1] + images[i * 9 + at + 2]
    );
    labels[i] = a > b && a > c ? 0 : b > c ? 1 : 2;
  }
  return makeDataset(images, labels, [1, 3, 3]);
}

const ROW_MODEL: ModelGraph = {
  name: "rows",
  inputShape: [1, 3, 3],
  nodes: [
    { op: "flatten", name: "f", input: "input" },
    {
      op: "dense",
      name: "fc1",
      input: "f",
      outFeatures: 6,
      activation: "relu",
    },
    { op: "dense", name: "fc2", input: "fc1", outFeatures: 3 },
  ],
};

Deno.test("Training resumed from a saved snapshot ends bit-identical to an uninterrupted run", async () => {
  const data = rowData(40, 4);
  const gated = bayesianBits(ROW_MODEL, {
    mu: 0.01,
    initialLogits: { 2: 2, 4: 2, 8: 2 },
    learningRates: { logits: 0.02 },
  });
  const init = await initGated(
    gated,
    initGraph(ROW_MODEL, randomKey(2)),
    Tensor.from(data.images.slice(0, 16 * 9), [16, 1, 3, 3]),
  );
  const options = { epochs: 3, batchSize: 16, key: randomKey(11) };
  const sets = { train: data, test: data };
  const straight = await trainBayesianBits(gated, init, sets, options);

  await withTempDir(async (dir) => {
    const path = `${dir}/run.safetensors`;
    const killed = new Error("simulated kill");
    await assert.rejects(
      trainBayesianBits(gated, init, sets, {
        ...options,
        onEpoch: async (snapshot: BayesianBitsSnapshot) => {
          await saveSnapshot(path, { snapshot, run: { seed: 11 } });
          if (snapshot.epoch === 2) throw killed;
        },
      }),
      (error) => error === killed,
    );
    const stored = await loadSnapshot(path, { device: referenceDevice });
    const { run } = stored;
    const snapshot = bayesianBitsSnapshot(stored.snapshot);
    assert.equal(snapshot.epoch, 2);
    assert.deepEqual(run, { seed: 11 });
    const resumed = await trainBayesianBits(gated, snapshot.state, sets, {
      ...options,
      resume: snapshot,
    });
    // Parameters, every optimizer slot and the step count, bit for bit (the
    // history's timings differ; its results are compared below).
    const timeless = async (s: BayesianBitsSnapshot) => ({
      ...await hostSnapshot(s),
      history: null,
    });
    assert.deepEqual(await timeless(resumed), await timeless(straight));
    assert.equal(resumed.optimizerState.step, 9);
    assert.deepEqual(
      resumed.history.map((h) => [h.epoch, h.testAccuracy, h.relativeGbops]),
      straight.history.map((h) => [h.epoch, h.testAccuracy, h.relativeGbops]),
    );
  });
});

/** The row problem through a 3x3 convolution with batch norm. */
const BN_MODEL: ModelGraph = {
  name: "rows-bn",
  inputShape: [1, 3, 3],
  nodes: [
    {
      op: "conv",
      name: "conv",
      input: "input",
      outChannels: 2,
      kernel: 3,
      padding: 1,
      batchNorm: true,
      activation: "relu",
    },
    { op: "flatten", name: "f", input: "conv" },
    { op: "dense", name: "fc", input: "f", outFeatures: 3 },
  ],
};

Deno.test("A float run's snapshot records its method and batch-norm statistics, and its resumption ends bit-identical", async () => {
  const data = rowData(32, 5);
  const sets = { train: data, test: data };
  const method = floatMethod();
  const model = method.attach(BN_MODEL);
  const init = initGraph(BN_MODEL, randomKey(6));
  const options = { epochs: 2, batchSize: 8, key: randomKey(7) };
  const straight = await train(method, model, init, sets, options);
  const asSnapshot = (r: TrainRun<MethodState>) => ({
    ...r,
    history: r.history.map((e) => historyEntry(r.phase, e, 100)),
  });

  await withTempDir(async (dir) => {
    const path = `${dir}/float.safetensors`;
    const killed = new Error("simulated kill");
    await assert.rejects(
      train(method, model, init, sets, {
        ...options,
        onEpoch: async (run) => {
          await saveSnapshot(path, { snapshot: asSnapshot(run), run: null });
          throw killed;
        },
      }),
      (error) => error === killed,
    );
    const raw = await loadCheckpoint(path);
    assert.equal((raw.state as { method: string }).method, "float");
    assert.deepEqual(raw.tensors["stats/conv/mean"].shape, [2]);

    const { snapshot } = await loadSnapshot(path);
    assert.equal(snapshot.method, "float");
    assert.equal(snapshot.phase, "train");
    assert.deepEqual(Object.keys(snapshot.state.stats!), ["conv"]);
    assert.deepEqual(snapshot.history[0].metrics, {});
    assert.throws(() => bayesianBitsSnapshot(snapshot), /holds a float run/);
    const resumed = await train(method, model, snapshot.state, sets, {
      ...options,
      resume: {
        ...snapshot,
        history: snapshot.history.map((h) => ({
          epoch: h.epoch,
          loss: h.loss,
          metrics: { crossEntropy: h.crossEntropy, ...h.metrics },
          testAccuracy: h.testAccuracy,
          measured: {},
          seconds: h.seconds,
          samplesPerSecond: h.samplesPerSecond,
        })),
      },
    });
    await assertParamsBitwise(resumed.state.params, straight.state.params);
    const { mean, variance } = straight.state.stats!.conv;
    await assertParamsBitwise(
      { ...resumed.state.stats!.conv },
      { mean, variance },
      "statistics",
    );
  });
});

Deno.test("saveSnapshot() refuses a state field that the format's own keys would shadow", async () => {
  await withTempDir(async (dir) => {
    await assert.rejects(
      saveSnapshot(`${dir}/x.safetensors`, {
        snapshot: {
          method: "m",
          phase: "p",
          epoch: 0,
          epochs: 1,
          state: { params: {}, epoch: 3 },
          optimizerState: { step: 0, slots: {} },
          history: [],
        },
        run: null,
      }),
      new RangeError(
        'Cannot save a snapshot whose state has a field "epoch": the snapshot format uses that name',
      ),
    );
    assert.deepEqual(await listDir(dir), []);
  });
});
