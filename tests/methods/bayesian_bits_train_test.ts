import assert from "node:assert/strict";
import { recordOp, valueAndGrad } from "../../core/autodiff.ts";
import { batches, makeDataset } from "../../core/data.ts";
import { initGraph, runGraph } from "../../core/graph.ts";
import {
  bayesianBits,
  type BayesianBitsSnapshot,
  bayesianBitsSnapshot,
  gatedBops,
  type GatedState,
  initGated,
  trainBayesianBits,
  uniformQuantize,
} from "../../core/methods/bayesian_bits/mod.ts";
import { softmaxCrossEntropy } from "../../core/ops/loss.ts";
import { adam } from "../../core/optim.ts";
import { foldIn, randomKey, splitKey } from "../../core/rng.ts";
import { Tensor } from "../../core/tensor.ts";
import { loadSnapshot, saveSnapshot } from "../../io/snapshot.ts";
import {
  assertClose,
  assertParamsBitwise,
  firstImages,
  rowSumData,
  TINY_3X3 as TINY,
} from "../_fixtures.ts";

Deno.test("with a large mu the prior drives gates off and the GBOPs fall", async () => {
  const data = rowSumData(64, 2);
  const run = async (mu: number) => {
    const gated = bayesianBits(TINY, {
      mu,
      initialLogits: { 2: 1, 4: 1, 8: 1 },
      learningRates: { logits: 0.2 },
    });
    const init = await initGated(
      gated,
      initGraph(TINY, randomKey(0)),
      firstImages(data, 16),
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
  const xs = x.toFloat32Array();
  return recordOp(out, [x], (g) => [
    Tensor.from(
      g.toFloat32Array().map((gi, i) => (xs[i] >= lo && xs[i] <= hi ? gi : 0)),
      g.shape,
    ),
  ]);
}

Deno.test("with mu = 0 and gates fixed on at 8 bits, training matches an 8-bit fixed-precision run", async () => {
  const data = rowSumData(48, 3);
  const gated = bayesianBits(TINY, {
    mu: 0,
    learningRates: { weights: 1e-2, ranges: 0 },
  });
  const float = initGraph(TINY, randomKey(1));
  const init = await initGated(gated, float, firstImages(data, 16));
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
  let state = optimizer.init(params);
  const [shuffleKey] = splitKey(key, 2);
  for (let epoch = 1; epoch <= 2; epoch++) {
    for (
      const batch of batches(data, 16, { key: foldIn(shuffleKey, epoch) })
    ) {
      const x = Tensor.from(batch.images, [batch.size, 1, 3, 3]);
      const { grads } = lossOf(params, x, batch.labels);
      const u = optimizer.update(params, grads, state);
      state = u.state;
      params = u.params;
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
  const data = rowSumData(40, 4);
  const gated = bayesianBits(TINY, {
    mu: 0.01,
    initialLogits: { 2: 2, 4: 2, 8: 2 },
    learningRates: { logits: 0.02 },
  });
  const init = await initGated(
    gated,
    initGraph(TINY, randomKey(2)),
    firstImages(data, 16),
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
  const stored = await loadSnapshot(path);
  const { run } = stored;
  const snapshot = bayesianBitsSnapshot(stored.snapshot);
  assert.equal(snapshot.epoch, 2);
  assert.deepEqual(run, { seed: 11 });
  const resumed = await trainBayesianBits(gated, snapshot.state, sets, {
    ...options,
    resume: snapshot,
  });
  await assertParamsBitwise(resumed.state.params, straight.state.params);
  assert.equal(resumed.optimizerState.step, straight.optimizerState.step);
  assert.deepEqual(
    Object.keys(resumed.optimizerState.slots).sort(),
    Object.keys(straight.optimizerState.slots).sort(),
  );
  for (const [name, slots] of Object.entries(straight.optimizerState.slots)) {
    await assertParamsBitwise(
      resumed.optimizerState.slots[name],
      slots,
      `optimizer slots of ${name}`,
    );
  }
  assert.deepEqual(
    resumed.history.map((h) => [h.epoch, h.testAccuracy, h.relativeGbops]),
    straight.history.map((h) => [h.epoch, h.testAccuracy, h.relativeGbops]),
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a corrupt or truncated snapshot is rejected and the previous one stays intact", async () => {
  const data = rowSumData(16, 5);
  const gated = bayesianBits(TINY);
  const init = await initGated(
    gated,
    initGraph(TINY, randomKey(2)),
    firstImages(data, 16),
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
  await assertParamsBitwise(reloaded.snapshot.state.params, done.state.params);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("post-training learns only logits (and ranges), fixed-gate fine-tuning only weights and ranges", async () => {
  const data = rowSumData(32, 6);
  const gated = bayesianBits(TINY, {
    mu: 0.01,
    learningRates: { logits: 0.05 },
  });
  const init = await initGated(
    gated,
    initGraph(TINY, randomKey(3)),
    firstImages(data, 16),
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

Deno.test("trainBayesianBits() rejects bad options and foreign snapshots", async () => {
  const data = rowSumData(16, 8);
  const gated = bayesianBits(TINY);
  const init = await initGated(
    gated,
    initGraph(TINY, randomKey(2)),
    firstImages(data, 16),
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
