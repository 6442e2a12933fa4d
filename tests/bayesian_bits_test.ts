import assert from "node:assert/strict";
import {
  bayesianBits,
  type BayesianBitsSnapshot,
  evaluateGated,
  gatedBops,
  gatedLoss,
  type GatedState,
  initGated,
  initGraph,
  lenet5,
  makeDataset,
  type ModelGraph,
  randomKey,
  runGraph,
  softmaxCrossEntropy,
  Tensor,
  trainBayesianBits,
  uniform,
  valueAndGrad,
} from "../mod.ts";
import { adam } from "../core/optim.ts";
import { recordOp } from "../core/autodiff.ts";
import { uniformQuantize } from "../core/quantizer.ts";
import { tensorStorage } from "../core/tensor.ts";
import { loadSnapshot, saveSnapshot } from "../io/snapshot.ts";
import { assertClose } from "./helpers.ts";

const TINY: ModelGraph = {
  name: "tiny",
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

/** A learnable synthetic 3-class problem on 3x3 images. */
function tinyData(count: number, seed: number) {
  const images = uniform(randomKey(seed), count * 9).map((u) => 2 * u - 1);
  const labels = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const row = images.subarray(i * 9, i * 9 + 9);
    const a = row[0] + row[1] + row[2];
    const b = row[3] + row[4] + row[5];
    const c = row[6] + row[7] + row[8];
    labels[i] = a > b && a > c ? 0 : b > c ? 1 : 2;
  }
  return makeDataset(images, labels, [1, 3, 3]);
}

function firstBatch(data: ReturnType<typeof tinyData>, n: number): Tensor {
  return Tensor.from(data.images.slice(0, n * 9), [n, 1, 3, 3]);
}

function paramsEqualBitwise(a: GatedState, b: GatedState): void {
  assert.deepEqual(Object.keys(a.params).sort(), Object.keys(b.params).sort());
  for (const name of Object.keys(a.params)) {
    const x = new Uint32Array(tensorStorage(a.params[name]).buffer.slice(0));
    const y = new Uint32Array(tensorStorage(b.params[name]).buffer.slice(0));
    assert.deepEqual(x, y, `parameter ${name} differs`);
  }
}

Deno.test("bayesianBits() gives LeNet-5 exactly the quantizers of spec section 5, with their MAC ratios", () => {
  const gated = bayesianBits(lenet5());
  const rows = gated.quantizers.map((q) => [
    q.name,
    q.kind,
    q.pruneChannels,
    q.macs,
  ]);
  // Weights of every layer (pruned per output channel except the last);
  // every ReLU output except the logits; an activation's MACs are those of
  // the layer it feeds (conv1 -> conv2 through the pool, conv2 -> fc1).
  assert.deepEqual(rows, [
    ["conv1.weight", "weight", 32, 460800],
    ["conv1.act", "activation", 0, 3276800],
    ["conv2.weight", "weight", 64, 3276800],
    ["conv2.act", "activation", 0, 524288],
    ["fc1.weight", "weight", 512, 524288],
    ["fc1.act", "activation", 0, 5120],
    ["fc2.weight", "weight", 0, 5120],
  ]);
  assert.equal(gated.maxMacs, 3276800);
  assert.equal(gated.quantizers[0].macRatio, 460800 / 3276800);
  assert.equal(gated.quantizers[5].macRatio, 5120 / 3276800);
  assert.deepEqual(gated.options.initialLogits, {
    2: 6,
    4: 6,
    8: 6,
    16: -6,
    32: -6,
  });
});

Deno.test("initGated() makes weights signed and ReLU outputs unsigned, with xmax = the largest value", () => {
  const model = lenet5();
  const gated = bayesianBits(model);
  const x = Tensor.from(
    uniform(randomKey(3), 4 * 784).map((u) => 2 * u - 0.5),
    [4, 1, 28, 28],
  );
  const float = initGraph(model, randomKey(0));
  const state = initGated(gated, float, x);
  for (const q of gated.quantizers) {
    assert.equal(state.signed[q.name], q.kind === "weight", q.name);
  }
  const w = float.params["conv2.weight"].toFloat32Array();
  assert.equal(
    state.params["conv2.weight.xmax"].get(0),
    Math.fround(Math.max(...w)),
  );
  // The first activation range is the float conv1 output's max (conv1's
  // weights quantized at 8 bits first): recompute it independently.
  const conv1Only: ModelGraph = {
    name: "c1",
    inputShape: [1, 28, 28],
    nodes: [{
      op: "conv",
      name: "conv1",
      input: "input",
      outChannels: 32,
      kernel: 5,
      activation: "relu",
    }],
  };
  const range = state.params["conv1.weight.xmax"].get(0);
  const out = runGraph(conv1Only, float.params, x, {
    weight: (_, t) => uniformQuantize(t, { xmax: range, signed: true }, 8),
  }).output.toFloat32Array();
  assert.equal(state.params["conv1.act.xmax"].get(0), Math.max(...out));
});

Deno.test("bayesianBits() rejects bad options with messages naming the value", () => {
  assert.throws(
    () => bayesianBits(lenet5(), { mu: -0.1 }),
    /Invalid mu -0.1: it must be a finite number >= 0/,
  );
  assert.throws(
    () => bayesianBits(lenet5(), { mu: NaN }),
    /Invalid mu NaN/,
  );
  assert.throws(
    () => bayesianBits(lenet5(), { initialLogits: { 3: 1 } }),
    /Unknown bit width 3 in initialLogits/,
  );
  assert.throws(
    () => bayesianBits(lenet5(), { initialLogits: { 8: Infinity } }),
    /initial logit for 8 bits Infinity/,
  );
  assert.throws(
    () => bayesianBits(lenet5(), { fullPrecision: ["conv3"] }),
    /Unknown layer "conv3" in fullPrecision: lenet5's conv\/dense layers are conv1, conv2, fc1, fc2/,
  );
  assert.throws(
    () => bayesianBits(lenet5(), { learningRates: { weights: -1 } }),
    /learning rate for weights -1/,
  );
  assert.throws(
    () => bayesianBits(lenet5(), { learningRates: { gates: 1 } as never }),
    /Unknown learning-rate group "gates"/,
  );
  assert.throws(
    () => bayesianBits(lenet5(), { prior: "bops" as never }),
    /Invalid prior mode "bops"/,
  );
});

Deno.test("fullPrecision layers get no quantizers and count as 32-bit in the BOPs", () => {
  const gated = bayesianBits(lenet5(), { fullPrecision: ["conv1", "fc2"] });
  assert.deepEqual(gated.quantizers.map((q) => q.name), [
    "conv2.weight",
    "conv2.act",
    "fc1.weight",
    "fc1.act",
  ]);
  const x = Tensor.from(
    uniform(randomKey(2), 784).map((u) => u),
    [1, 1, 28, 28],
  );
  const state = initGated(gated, initGraph(lenet5(), randomKey(0)), x);
  const cost = gatedBops(gated, state.params);
  // conv1: 8-bit input x 32-bit weights; conv2: 32-bit input (conv1's output
  // is not quantized) x 8; fc1: 8 x 8; fc2: 8 x 32.
  const expected = 460800 * 8 * 32 + 3276800 * 32 * 8 + 524288 * 8 * 8 +
    5120 * 8 * 32;
  assert.equal(cost.bops, expected);
  assertClose(
    cost.relativeGbops,
    (100 * expected) / ((460800 + 3276800 + 524288 + 5120) * 1024),
    1e-12,
  );
});

Deno.test("gatedLoss()'s gradient w.r.t. every gate logit matches finite differences", () => {
  const gated = bayesianBits(TINY, { mu: 0.05 });
  const data = tinyData(8, 1);
  const state0 = initGated(
    gated,
    initGraph(TINY, randomKey(4)),
    firstBatch(data, 8),
  );
  // Logits near 0 so the sampled gates sit inside (0, 1) and carry gradient.
  const params = {
    ...state0.params,
    "fc1.weight.logits": Tensor.from([0.4, -0.2, 0.9, 0.6]),
    "fc1.weight.prune": Tensor.from([0.7, 1.5, -0.2, 0.3, 0.1, 1.1]),
    "fc1.act.logits": Tensor.from([0.8, 0.2, -0.4, 1.0]),
    "fc2.weight.logits": Tensor.from([1.1, 0.4, 0.2, -0.3]),
  };
  const x = firstBatch(data, 8);
  const labels = data.labels;
  const key = randomKey(9);
  const lossOf = (p: Record<string, Tensor>) =>
    gatedLoss(gated, { params: p, signed: state0.signed }, x, labels, {
      noiseKey: key,
    }).loss;
  const { grads } = valueAndGrad(lossOf)(params);
  let checked = 0;
  let nonzero = 0;
  for (
    const name of [
      "fc1.weight.logits",
      "fc1.weight.prune",
      "fc1.act.logits",
      "fc2.weight.logits",
    ]
  ) {
    const base = params[name as keyof typeof params].toFloat32Array();
    for (let i = 0; i < base.length; i++) {
      const at = (d: number) => {
        const copy = base.slice();
        copy[i] += d;
        return lossOf({ ...params, [name]: Tensor.from(copy) }).get(0);
      };
      const h = 1e-2;
      const numeric = (at(h) - at(-h)) / (2 * h);
      const analytic = grads[name].toFloat32Array()[i];
      assertClose(analytic, numeric, 3e-2, 3e-4, `${name}[${i}]`);
      if (analytic !== 0) nonzero++;
      checked++;
    }
  }
  assert.equal(checked, 18);
  assert.ok(nonzero >= 10, `only ${nonzero} logits had a gradient`);
});

Deno.test("with a large mu the prior drives gates off and the GBOPs fall", async () => {
  const data = tinyData(64, 2);
  const run = async (mu: number) => {
    const gated = bayesianBits(TINY, {
      mu,
      initialLogits: { 2: 1, 4: 1, 8: 1 },
      learningRates: { logits: 0.2 },
    });
    const init = initGated(
      gated,
      initGraph(TINY, randomKey(0)),
      firstBatch(data, 16),
    );
    const before = gatedBops(gated, init.params).relativeGbops;
    const done = await trainBayesianBits(gated, init, {
      train: data,
      test: data,
    }, { epochs: 3, batchSize: 8, key: randomKey(5) });
    return { before, after: done.history.map((h) => h.relativeGbops) };
  };
  const strong = await run(50);
  const none = await run(0);
  assert.equal(strong.before, none.before);
  assert.ok(
    strong.after[2] < strong.before / 4,
    `GBOPs went from ${strong.before} to ${strong.after}`,
  );
  assert.ok(
    strong.after[2] < none.after[2],
    `mu 50: ${strong.after}, mu 0: ${none.after}`,
  );
});

/**
 * A fixed 8-bit quantizer written independently of the residual
 * decomposition: a direct uniform quantizer forward, straight-through
 * backward (gradient 1 inside the clip range, 0 outside).
 */
function fakeQuant8(x: Tensor, xmax: number, signed: boolean): Tensor {
  const out = uniformQuantize(x, { xmax, signed }, 8);
  const hi = Math.fround((1 - 1e-7) * xmax);
  const lo = signed ? -hi : 0;
  const xs = tensorStorage(x);
  return recordOp(out, [x], (g) => [
    g.map((gi, i) => (xs[i] >= lo && xs[i] <= hi ? gi : 0)),
  ]);
}

Deno.test("with mu = 0 and gates fixed on at 8 bits, training matches an 8-bit fixed-precision run", async () => {
  const data = tinyData(48, 3);
  const gated = bayesianBits(TINY, {
    mu: 0,
    learningRates: { weights: 1e-2, ranges: 0 },
  });
  const float = initGraph(TINY, randomKey(1));
  const init = initGated(gated, float, firstBatch(data, 16));
  const key = randomKey(7);
  const done = await trainBayesianBits(gated, init, {
    train: data,
    test: data,
  }, {
    epochs: 2,
    batchSize: 16,
    key,
    phase: "fixed-gates",
    weightSchedule: "constant",
  });

  // The same steps by hand: same shuffling (the run's first subkey folded
  // with the epoch), Adam at 1e-2, 8-bit fake quantization with the ranges
  // initGated chose.
  const { batches } = await import("../core/data.ts");
  const { foldIn, splitKey } = await import("../core/rng.ts");
  const xmax = (name: string) => init.params[`${name}.xmax`].get(0);
  const lossOf = valueAndGrad(
    (p: Record<string, Tensor>, x: Tensor, labels: Int32Array) => {
      const { output } = runGraph(TINY, p, x, {
        weight: (layer, w) => fakeQuant8(w, xmax(`${layer.name}.weight`), true),
        activation: (layer, a) =>
          layer.name === "fc1" ? fakeQuant8(a, xmax("fc1.act"), false) : a,
      });
      return softmaxCrossEntropy(output, labels);
    },
  );
  const optimizer = adam({ lr: 1e-2 });
  let params: Record<string, Tensor> = { ...float.params };
  const arrays = (r: Record<string, Tensor>) =>
    Object.fromEntries(
      Object.entries(r).map(([k, v]) => [k, tensorStorage(v)]),
    );
  let state = optimizer.init(arrays(params));
  const [shuffleKey] = splitKey(key, 2);
  for (let epoch = 1; epoch <= 2; epoch++) {
    for (
      const batch of batches(data, 16, { key: foldIn(shuffleKey, epoch) })
    ) {
      const x = Tensor.adopt(batch.images, [batch.size, 1, 3, 3]);
      const { grads } = lossOf(params, x, batch.labels);
      const u = optimizer.update(arrays(params), arrays(grads), state);
      state = u.state;
      params = Object.fromEntries(
        Object.entries(params).map(([k, v]) => [
          k,
          Tensor.adopt(u.params[k], v.shape),
        ]),
      );
    }
  }
  for (const name of Object.keys(float.params)) {
    const a = done.state.params[name].toFloat32Array();
    const b = params[name].toFloat32Array();
    for (let i = 0; i < a.length; i++) {
      assertClose(a[i], b[i], 1e-5, 1e-6, `${name}[${i}]`);
    }
    // And training did move the weights.
    assert.notDeepEqual(a, float.params[name].toFloat32Array());
  }
  // The gates stayed at 8 bits: logits untouched.
  assert.deepEqual(
    [...done.state.params["fc1.weight.logits"].toFloat32Array()],
    [6, 6, -6, -6],
  );
});

Deno.test("resuming after a simulated kill ends bit-identical to an uninterrupted run", async () => {
  const data = tinyData(40, 4);
  const gated = bayesianBits(TINY, {
    mu: 0.01,
    initialLogits: { 2: 2, 4: 2, 8: 2 },
    learningRates: { logits: 0.02 },
  });
  const init = initGated(
    gated,
    initGraph(TINY, randomKey(2)),
    firstBatch(data, 16),
  );
  const options = { epochs: 4, batchSize: 16, key: randomKey(11) };
  const sets = { train: data, test: data };
  const straight = await trainBayesianBits(gated, init, sets, options);

  const dir = await Deno.makeTempDir();
  const path = `${dir}/checkpoint.safetensors`;
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
  const { snapshot, run } = await loadSnapshot(path);
  assert.equal(snapshot.epoch, 2);
  assert.deepEqual(run, { seed: 11 });
  const resumed = await trainBayesianBits(gated, snapshot.state, sets, {
    ...options,
    resume: snapshot,
  });
  paramsEqualBitwise(resumed.state, straight.state);
  assert.equal(resumed.optimizerState.step, straight.optimizerState.step);
  for (const [name, slots] of Object.entries(straight.optimizerState.slots)) {
    for (const [slot, values] of Object.entries(slots)) {
      assert.deepEqual(
        resumed.optimizerState.slots[name][slot],
        values,
        `${name}/${slot}`,
      );
    }
  }
  assert.deepEqual(
    resumed.history.map((h) => [h.epoch, h.testAccuracy, h.relativeGbops]),
    straight.history.map((h) => [h.epoch, h.testAccuracy, h.relativeGbops]),
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a corrupt or truncated snapshot is rejected and the previous one stays intact", async () => {
  const data = tinyData(16, 5);
  const gated = bayesianBits(TINY);
  const init = initGated(
    gated,
    initGraph(TINY, randomKey(2)),
    firstBatch(data, 16),
  );
  const done = await trainBayesianBits(gated, init, {
    train: data,
    test: data,
  }, { epochs: 1, batchSize: 8, key: randomKey(1) });
  const dir = await Deno.makeTempDir();
  const path = `${dir}/checkpoint.safetensors`;
  await saveSnapshot(path, { snapshot: done, run: { seed: 1 } });
  const good = await Deno.readFile(path);

  // A failed write (the run record cannot become JSON) leaves the file as it was.
  await assert.rejects(
    saveSnapshot(path, { snapshot: done, run: { bad: 1n } }),
    TypeError,
  );
  assert.deepEqual(await Deno.readFile(path), good);
  const names = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  assert.deepEqual(names, ["checkpoint.safetensors"]);

  const flipped = good.slice();
  flipped[good.length - 5] ^= 0x40;
  await Deno.writeFile(`${dir}/flipped.safetensors`, flipped);
  await assert.rejects(
    loadSnapshot(`${dir}/flipped.safetensors`),
    /checksum mismatch, the file is corrupt/,
  );
  await Deno.writeFile(`${dir}/short.safetensors`, good.slice(0, 200));
  await assert.rejects(
    loadSnapshot(`${dir}/short.safetensors`),
    /the file is corrupt/,
  );
  const reloaded = await loadSnapshot(path);
  paramsEqualBitwise(reloaded.snapshot.state, done.state);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("post-training learns only logits (and ranges), fixed-gate fine-tuning only weights and ranges", async () => {
  const data = tinyData(32, 6);
  const gated = bayesianBits(TINY, {
    mu: 0.01,
    learningRates: { logits: 0.05 },
  });
  const init = initGated(
    gated,
    initGraph(TINY, randomKey(3)),
    firstBatch(data, 16),
  );
  const sets = { train: data, test: data };
  const changed = (a: GatedState, b: GatedState) =>
    Object.keys(a.params).filter((k) =>
      a.params[k].toFloat32Array().some((v, i) =>
        v !== b.params[k].toFloat32Array()[i]
      )
    ).sort();
  const post = await trainBayesianBits(gated, init, sets, {
    epochs: 1,
    batchSize: 8,
    key: randomKey(1),
    phase: "post-training",
    learnRanges: false,
  });
  assert.deepEqual(changed(init, post.state), [
    "fc1.act.logits",
    "fc1.weight.logits",
    "fc1.weight.prune",
    "fc2.weight.logits",
  ]);
  const postRanges = await trainBayesianBits(gated, init, sets, {
    epochs: 1,
    batchSize: 8,
    key: randomKey(1),
    phase: "post-training",
  });
  assert.ok(changed(init, postRanges.state).includes("fc1.act.xmax"));
  assert.ok(!changed(init, postRanges.state).includes("fc1.weight"));
  const tuned = await trainBayesianBits(gated, init, sets, {
    epochs: 1,
    batchSize: 8,
    key: randomKey(1),
    phase: "fixed-gates",
  });
  const moved = changed(init, tuned.state);
  assert.ok(moved.includes("fc1.weight") && moved.includes("fc2.bias"));
  assert.ok(!moved.some((k) => k.endsWith(".logits") || k.endsWith(".prune")));
});

Deno.test("evaluateGated() uses the deterministic gates: pruned channels and low bits change the output", () => {
  const data = tinyData(30, 7);
  const gated = bayesianBits(TINY);
  const init = initGated(
    gated,
    initGraph(TINY, randomKey(5)),
    firstBatch(data, 16),
  );
  const full = evaluateGated(gated, init, data);
  // Prune every fc1 channel: fc2 then sees relu(bias) only, constant over inputs,
  // so every sample gets the same class.
  const pruned: GatedState = {
    params: {
      ...init.params,
      "fc1.weight.prune": Tensor.from(new Float32Array(6).fill(-6)),
    },
    signed: init.signed,
  };
  const counts = [0, 0, 0];
  for (const l of data.labels) counts[l]++;
  const acc = evaluateGated(gated, pruned, data);
  assert.ok(
    counts.some((c) => Math.abs(c / data.count - acc) < 1e-12),
    `accuracy ${acc} is not one class's share ${counts}`,
  );
  assert.ok(full >= 0 && full <= 1);
  assert.equal(gatedBops(gated, pruned.params).layers[0].keptChannels, 0);
});

Deno.test("trainBayesianBits() rejects bad options and foreign snapshots", async () => {
  const data = tinyData(16, 8);
  const gated = bayesianBits(TINY);
  const init = initGated(
    gated,
    initGraph(TINY, randomKey(2)),
    firstBatch(data, 16),
  );
  const sets = { train: data, test: data };
  await assert.rejects(
    trainBayesianBits(gated, init, sets, { epochs: 0, key: randomKey(0) }),
    /Invalid epochs 0/,
  );
  await assert.rejects(
    trainBayesianBits(gated, init, sets, {
      epochs: 1,
      key: randomKey(0),
      phase: "finetune" as never,
    }),
    /Invalid phase "finetune"/,
  );
  const done = await trainBayesianBits(gated, init, sets, {
    epochs: 1,
    batchSize: 8,
    key: randomKey(0),
  });
  await assert.rejects(
    trainBayesianBits(gated, init, sets, {
      epochs: 3,
      batchSize: 4,
      key: randomKey(0),
      resume: { ...done, epochs: 3 },
    }),
    /Cannot resume: the snapshot has 2 steps after 1 epochs, this run takes 4 per epoch/,
  );
  const mnistShaped = makeDataset(new Float32Array(784), new Int32Array(1), [
    1,
    28,
    28,
  ]);
  await assert.rejects(
    trainBayesianBits(gated, init, { train: mnistShaped, test: data }, {
      epochs: 1,
      key: randomKey(0),
    }),
    /The training images are \[1, 28, 28\] but tiny takes \[1, 3, 3\]/,
  );
});

Deno.test("gatedLoss skips the ReLU before unsigned activation quantizers: loss and every gradient bit for bit as ReLU, quantizer, max-pool", async () => {
  const { gatesOp, quantizerOp, foldIn } = await import("../mod.ts");
  const { createWasmBackend } = await import("../asm/backend.ts");
  const model = lenet5();
  const gated = bayesianBits(model, { mu: 0.1 });
  const images = uniform(randomKey(21), 8 * 784).map((u) => 2 * u - 0.5);
  const x = Tensor.adopt(images, [8, 1, 28, 28]);
  const labels = Int32Array.from({ length: 8 }, (_, i) => (3 * i) % 10);
  const init = initGated(gated, initGraph(model, randomKey(22)), x);
  // Mixed, fractional gates so that every gate gets a gradient.
  const params: Record<string, Tensor> = {
    ...init.params,
    "conv1.act.logits": Tensor.from([0.4, -0.3, -6, -6]),
    "conv2.act.logits": Tensor.from([1.2, 0.1, -6, -6]),
    "fc1.act.logits": Tensor.from([0.9, 0.5, 0.2, -6]),
  };
  const key = randomKey(23);
  // The formulation of the spec: ReLU, then the quantizer, then the pool.
  const unfused =
    (backend?: import("../core/backend.ts").QuantizerBackend) =>
    (p: Record<string, Tensor>) => {
      const gates = new Map(gated.quantizers.map((q, i) => [
        q.name,
        gatesOp(
          q.pruneParam
            ? { chain: p[q.logitsParam], g2: p[q.pruneParam] }
            : { chain: p[q.logitsParam] },
          uniform(foldIn(key, i), 4 + q.pruneChannels),
        ),
      ]));
      const byName = new Map(gated.quantizers.map((q) => [q.name, q]));
      const apply = (name: string, t: Tensor) => {
        const q = byName.get(name);
        return q
          ? quantizerOp(t, p[q.xmaxParam], gates.get(name)!, {
            signed: init.signed[name],
            backend,
            name,
          })
          : t;
      };
      const out = runGraph(gated.model, p, x, {
        mode: "train",
        weight: (layer, w) => apply(`${layer.name}.weight`, w),
        activation: (layer, a) => apply(`${layer.name}.act`, a),
      }).output;
      return softmaxCrossEntropy(out, labels);
    };
  using wasm = await createWasmBackend({ threads: 2, parallelThreshold: 1 });
  for (const backend of [undefined, wasm]) {
    const fused = (p: Record<string, Tensor>) =>
      gatedLoss(gated, { params: p, signed: init.signed }, x, labels, {
        noiseKey: key,
        backend,
        prior: false,
      }).loss;
    const a = valueAndGrad(fused)(params);
    const b = valueAndGrad(unfused(backend))(params);
    const what = backend?.name ?? "reference";
    assert.ok(Object.is(a.value, b.value), `${what}: loss`);
    let nonzero = 0;
    for (const name of Object.keys(params)) {
      const ga = a.grads[name].toFloat32Array();
      const gb = b.grads[name].toFloat32Array();
      for (let i = 0; i < ga.length; i++) {
        if (!Object.is(ga[i], gb[i])) {
          assert.fail(
            `${what}: d/d ${name}[${i}] is ${ga[i]}, expected ${gb[i]}`,
          );
        }
        if (ga[i] !== 0) nonzero++;
      }
      if (name.endsWith(".act.logits") || name.endsWith(".act.xmax")) {
        assert.ok(ga.some((v) => v !== 0), `${what}: ${name} gets a gradient`);
      }
    }
    assert.ok(nonzero > 1000);
  }
});
