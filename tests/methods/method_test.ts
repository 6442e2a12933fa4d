import assert from "node:assert/strict";
import { analyzeGraph, initGraph } from "../../core/graph.ts";
import { lenet5 } from "../../core/models.ts";
import { planBops } from "../../core/frozen.ts";
import type {
  GridPlan,
  LayerPlan,
  QuantizationPlan,
  ResidualGrid,
} from "../../core/method.ts";
import { softmaxCrossEntropy } from "../../core/ops/loss.ts";
import { runGraph } from "../../core/graph.ts";
import { randomKey } from "../../core/rng.ts";
import { train } from "../../core/train.ts";
import { floatMethod } from "../../core/methods/float.ts";
import { bayesianBitsMethod } from "../../core/methods/bayesian_bits/method.ts";
import { quantize } from "../../core/methods/bayesian_bits/quantizer.ts";
import { evaluateFrozen } from "../../core/frozen.ts";
import { countCorrectReference } from "../../core/reference/loss.ts";
import { hostF32, type Tensor } from "../../core/tensor.ts";
import { firstImages, rowSumData, TINY_3X3 } from "../_fixtures.ts";

const all = (n: number) => Array.from({ length: n }, (_, i) => i);

function uniformPlan(bits: number): QuantizationPlan {
  const layers: LayerPlan[] = analyzeGraph(lenet5()).layers.map((l) => ({
    name: l.name,
    weight: { kind: "residual", bits, signed: true, xmax: 1 },
    keptChannels: all(l.outChannels),
    activation: { kind: "residual", bits, signed: false, xmax: 1 },
    details: {},
  }));
  return { method: "test", inputBits: bits, layers };
}

Deno.test("planBops: every layer at b bits costs (b/32)^2 of the float model", () => {
  for (const bits of [2, 4, 8, 16, 32]) {
    const cost = planBops(lenet5(), uniformPlan(bits));
    assert.ok(
      Math.abs(cost.relativeGbops - 100 * (bits / 32) ** 2) < 1e-9,
      `${bits} bits: ${cost.relativeGbops}`,
    );
  }
});

Deno.test("planBops: pruned channels leave their layer and the next one's input", () => {
  const layers = analyzeGraph(lenet5()).layers;
  const plan = uniformPlan(8);
  const conv1 = layers[0];
  const half = {
    ...plan,
    layers: plan.layers.map((l, i) =>
      i === 0 ? { ...l, keptChannels: all(conv1.outChannels / 2) } : l
    ),
  };
  const full = planBops(lenet5(), plan);
  const pruned = planBops(lenet5(), half);
  // Hand count: conv1 keeps half its outputs, conv2 sees half its inputs.
  assert.equal(pruned.layers[0].bops, full.layers[0].bops / 2);
  assert.equal(pruned.layers[1].bops, full.layers[1].bops / 2);
  assert.equal(pruned.layers[1].keptInputFraction, 0.5);
  assert.equal(pruned.layers[2].bops, full.layers[2].bops);
  // A float activation before a layer counts 32 input bits.
  const float = {
    ...plan,
    layers: plan.layers.map((l, i) => i === 0 ? { ...l, activation: null } : l),
  };
  assert.equal(planBops(lenet5(), float).layers[1].inputBits, 32);
});

Deno.test("train() refuses a group the method does not have", async () => {
  const data = rowSumData(8, 1);
  const { params } = initGraph(TINY_3X3, randomKey(0));
  await assert.rejects(
    () =>
      train(floatMethod(), TINY_3X3, { params }, { train: data, test: data }, {
        epochs: 1,
        key: randomKey(1),
        trainable: ["logits"],
      }),
    /Unknown parameter group "logits": the groups are params/,
  );
});

Deno.test("Bayesian Bits hooks sample gates only while the logits are learned", async () => {
  const data = rowSumData(16, 2);
  const method = bayesianBitsMethod({
    mu: 0.1,
    initialLogits: { 2: 0.5, 4: 0.5, 8: 0.5 },
  });
  const gated = method.attach(TINY_3X3);
  const state = await method.init(
    gated,
    initGraph(TINY_3X3, randomKey(3)),
    firstImages(data, 16),
  );
  const x = firstImages(data, 16);
  const lossWith = (key: number, groups: string[]) => {
    const context = { key: randomKey(key), trainable: new Set(groups) };
    const out = runGraph(gated.model, state.params, x, {
      ...method.hooks(gated, state, context),
      mode: "train",
    }).output;
    const ce = hostF32(softmaxCrossEntropy(out, data.labels.slice(0, 16)))[0];
    return { ce, penalty: method.penalty(gated, state, context) };
  };
  // Logits near 0 give gates strictly between 0 and 1: samples differ by key.
  const a = lossWith(4, ["weights", "logits", "ranges"]);
  const b = lossWith(5, ["weights", "logits", "ranges"]);
  assert.notEqual(a.ce, b.ce);
  assert.ok(a.penalty !== null && hostF32(a.penalty.value)[0] > 0);
  const c = lossWith(4, ["weights", "ranges"]);
  const d = lossWith(5, ["weights", "ranges"]);
  assert.equal(c.ce, d.ce);
  assert.equal(c.penalty, null);
});

Deno.test("a frozen gated model evaluates as its quantized weights and activations computed by hand", async () => {
  const data = rowSumData(64, 6);
  const method = bayesianBitsMethod();
  const gated = method.attach(TINY_3X3);
  const state = await method.init(
    gated,
    initGraph(TINY_3X3, randomKey(7)),
    firstImages(data, 64),
  );
  const frozen = method.freeze(gated, state);
  const accuracy = await evaluateFrozen(frozen, data, { batchSize: 10 });
  // By hand: quantize each weight on its planned grid, run, quantize fc1's
  // activation on its grid, count.
  const plan = frozen.plan;
  const gridOf = (bits: number) => ({
    z4: bits >= 4 ? 1 : 0,
    z8: bits >= 8 ? 1 : 0,
    z16: bits >= 16 ? 1 : 0,
    z32: bits >= 32 ? 1 : 0,
  });
  const residual = (g: GridPlan | null) => {
    assert.equal(g?.kind, "residual");
    return g as ResidualGrid;
  };
  const params = { ...state.params };
  for (const l of plan.layers) {
    const w = residual(l.weight);
    params[`${l.name}.weight`] = quantize(state.params[`${l.name}.weight`], {
      xmax: w.xmax,
      signed: w.signed,
    }, gridOf(w.bits));
  }
  const out = runGraph(gated.model, params, firstImages(data, 64), {
    mode: "eval",
    activation: (layer, a) => {
      const a0 = plan.layers.find((l) => l.name === layer.name)!.activation;
      const g = a0 && residual(a0);
      return g
        ? quantize(a, { xmax: g.xmax, signed: g.signed }, gridOf(g.bits))
        : a;
    },
  }).output;
  const correct = countCorrectReference(hostF32(out), data.labels, 3);
  assert.equal(accuracy, correct / 64);
  assert.equal(plan.method, "bayesian-bits");
  assert.deepEqual(plan.layers.map((l) => l.weight!.bits), [8, 8]);
});

Deno.test("withFrozen frees what freezing made, after a sync body or a settled promise, and keeps the state's tensors", async () => {
  const { withFrozen } = await import("../../core/frozen.ts");
  const { referenceDevice } = await import("../../core/reference/device.ts");
  const w = referenceDevice.upload([1, 2], [2]);
  const params = { w };
  const frozenOf = () => ({
    model: TINY_3X3,
    params: { w, q: w.device.upload([3], [1]) },
    plan: { method: "test", inputBits: 8, layers: [] },
  });
  let made: Tensor | null = null;
  const value = withFrozen(params, frozenOf, (f) => {
    made = f.params.q;
    return f.params.q.get(0);
  });
  assert.equal(value, 3);
  assert.throws(() => made!.get(0), /used after/);
  assert.equal(w.get(1), 2);
  const later = await withFrozen(params, frozenOf, async (f) => {
    made = f.params.q;
    await Promise.resolve();
    return f.params.q.get(0) + 1;
  });
  assert.equal(later, 4);
  assert.throws(() => made!.get(0), /used after/);
  assert.throws(
    () =>
      withFrozen(params, frozenOf, () => {
        throw new Error("boom");
      }),
    /boom/,
  );
  assert.equal(w.get(0), 1);
});

Deno.test("train() reads a step's loss back only when a progress line or the epoch's end needs it", async () => {
  const data = rowSumData(24, 4);
  const { params } = initGraph(TINY_3X3, randomKey(0));
  const dev = params["fc1.weight"].device;
  const spied = dev as unknown as {
    read: typeof dev.read;
    scope: typeof dev.scope;
  };
  let reads = 0;
  const readsAtStep: number[] = [];
  const progress: number[] = [];
  spied.read = (t) => {
    reads++;
    return Object.getPrototypeOf(dev).read.call(dev, t);
  };
  spied.scope = (body) => {
    readsAtStep.push(reads);
    return Object.getPrototypeOf(dev).scope.call(dev, body);
  };
  try {
    await train(floatMethod(), TINY_3X3, { params }, {
      train: data,
      test: data,
    }, {
      epochs: 1,
      batchSize: 4,
      key: randomKey(1),
      progressEvery: 3,
      onProgress: (p) => progress.push(p.loss),
    });
  } finally {
    delete (spied as { read?: unknown }).read;
    delete (spied as { scope?: unknown }).scope;
  }
  // Six steps, progress after the third and the sixth: nothing is read
  // during steps 1-3 and 4-6, and each progress line has every loss.
  assert.equal(progress.length, 2);
  const [s1, s2, s3, s4, s5, s6] = readsAtStep;
  assert.ok(s1 === s2 && s2 === s3, `reads before steps 1-3: ${readsAtStep}`);
  assert.ok(s4 > s3 && s4 === s5 && s5 === s6, `before 4-6: ${readsAtStep}`);
  assert.ok(progress.every((v) => Number.isFinite(v) && v > 0));
});
