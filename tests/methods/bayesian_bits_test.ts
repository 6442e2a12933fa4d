import assert from "node:assert/strict";
import { valueAndGrad } from "../../core/autodiff.ts";
import { type Device, device } from "../../core/device.ts";
import { initGraph, type ModelGraph, runGraph } from "../../core/graph.ts";
import {
  bayesianBits,
  evaluateGated,
  gatedBops,
  gatedLoss,
  type GatedModel,
  type GatedState,
  gatesOp,
  initGated,
  quantizerOp,
  uniformQuantize,
} from "../../core/methods/bayesian_bits/mod.ts";
import { lenet5 } from "../../core/models.ts";
import { softmaxCrossEntropy } from "../../core/ops/loss.ts";
import { referenceDevice } from "../../core/reference/device.ts";
import { foldIn, type RandomKey, randomKey, uniform } from "../../core/rng.ts";
import { Tensor } from "../../core/tensor.ts";
import {
  assertClose,
  firstImages,
  rowSumData,
  TINY_3X3 as TINY,
} from "../_fixtures.ts";

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

Deno.test("initGated() makes weights signed and ReLU outputs unsigned, with xmax = the largest value", async () => {
  const model = lenet5();
  const gated = bayesianBits(model);
  const x = Tensor.from(
    uniform(randomKey(3), 4 * 784).map((u) => 2 * u - 0.5),
    [4, 1, 28, 28],
  );
  const float = initGraph(model, randomKey(0));
  const state = await initGated(gated, float, x);
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

Deno.test("fullPrecision layers get no quantizers and count as 32-bit in the BOPs", async () => {
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
  const state = await initGated(gated, initGraph(lenet5(), randomKey(0)), x);
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

Deno.test("gatedLoss()'s gradient w.r.t. every gate logit matches finite differences", async () => {
  const gated = bayesianBits(TINY, { mu: 0.05 });
  const data = rowSumData(8, 1);
  const state0 = await initGated(
    gated,
    initGraph(TINY, randomKey(4)),
    firstImages(data, 8),
  );
  // Logits near 0 so the sampled gates sit inside (0, 1) and carry gradient.
  const params = {
    ...state0.params,
    "fc1.weight.logits": Tensor.from([0.4, -0.2, 0.9, 0.6]),
    "fc1.weight.prune": Tensor.from([0.7, 1.5, -0.2, 0.3, 0.1, 1.1]),
    "fc1.act.logits": Tensor.from([0.8, 0.2, -0.4, 1.0]),
    "fc2.weight.logits": Tensor.from([1.1, 0.4, 0.2, -0.3]),
  };
  const x = firstImages(data, 8);
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

Deno.test("evaluateGated() uses the deterministic gates: pruned channels and low bits change the output", async () => {
  const data = rowSumData(30, 7);
  const gated = bayesianBits(TINY);
  const init = await initGated(
    gated,
    initGraph(TINY, randomKey(5)),
    firstImages(data, 16),
  );
  const full = await evaluateGated(gated, init, data);
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
  const acc = await evaluateGated(gated, pruned, data);
  assert.ok(
    counts.some((c) => Math.abs(c / data.count - acc) < 1e-12),
    `accuracy ${acc} is not one class's share ${counts}`,
  );
  assert.ok(full >= 0 && full <= 1);
  assert.equal(gatedBops(gated, pruned.params).layers[0].keptChannels, 0);
});

/**
 * The training loss of the spec's formulation, written out step by step:
 * each ReLU, then its activation quantizer, then the pool (no fused pass),
 * with the gate noise drawn on the host from the same keys as gatedLoss.
 */
function unfusedLoss(
  gated: GatedModel,
  signed: GatedState["signed"],
  x: Tensor,
  labels: Int32Array,
  key: RandomKey,
) {
  return (p: Record<string, Tensor>) => {
    const dev = x.device;
    const gates = new Map(gated.quantizers.map((q, i) => [
      q.name,
      gatesOp(
        q.pruneParam
          ? { chain: p[q.logitsParam], g2: p[q.pruneParam] }
          : { chain: p[q.logitsParam] },
        dev.upload(uniform(foldIn(key, i), 4 + q.pruneChannels), [
          4 + q.pruneChannels,
        ]),
      ),
    ]));
    const byName = new Map(gated.quantizers.map((q) => [q.name, q]));
    const apply = (name: string, t: Tensor) => {
      const q = byName.get(name);
      return q
        ? quantizerOp(t, p[q.xmaxParam], gates.get(name)!, {
          signed: signed[name],
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
}

/** Every tensor of a record uploaded to `dev`. */
async function onDevice(
  record: Readonly<Record<string, Tensor>>,
  dev: Device,
): Promise<Record<string, Tensor>> {
  const out: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(record)) out[name] = await t.to(dev);
  return out;
}

Deno.test("gatedLoss skips the ReLU before unsigned activation quantizers: loss and every gradient bit for bit as ReLU, quantizer, max-pool", async () => {
  const model = lenet5();
  const gated = bayesianBits(model, { mu: 0.1 });
  const images = uniform(randomKey(21), 8 * 784).map((u) => 2 * u - 0.5);
  const labels = Int32Array.from({ length: 8 }, (_, i) => (3 * i) % 10);
  const init = await initGated(
    gated,
    initGraph(model, randomKey(22)),
    Tensor.from(images, [8, 1, 28, 28]),
  );
  // Mixed, fractional gates so that every gate gets a gradient.
  const hostParams: Record<string, Tensor> = {
    ...init.params,
    "conv1.act.logits": Tensor.from([0.4, -0.3, -6, -6]),
    "conv2.act.logits": Tensor.from([1.2, 0.1, -6, -6]),
    "fc1.act.logits": Tensor.from([0.9, 0.5, 0.2, -6]),
  };
  const key = randomKey(23);
  const wasm = await device("wasm", { threads: 2, parallelThreshold: 1 });
  try {
    for (const dev of [referenceDevice, wasm]) {
      const params = await onDevice(hostParams, dev);
      const x = dev.upload(images, [8, 1, 28, 28]);
      const fused = (p: Record<string, Tensor>) =>
        gatedLoss(gated, { params: p, signed: init.signed }, x, labels, {
          noiseKey: key,
          prior: false,
        }).loss;
      const a = valueAndGrad(fused)(params);
      const b = valueAndGrad(unfusedLoss(gated, init.signed, x, labels, key))(
        params,
      );
      const what = dev.name;
      assert.equal(
        a.value.device,
        dev,
        `${what}: the loss stays on the device`,
      );
      assert.ok(
        Object.is((await a.value.read())[0], (await b.value.read())[0]),
        `${what}: loss`,
      );
      let nonzero = 0;
      for (const name of Object.keys(params)) {
        const ga = await a.grads[name].read();
        const gb = await b.grads[name].read();
        for (let i = 0; i < ga.length; i++) {
          if (!Object.is(ga[i], gb[i])) {
            assert.fail(
              `${what}: d/d ${name}[${i}] is ${ga[i]}, expected ${gb[i]}`,
            );
          }
          if (ga[i] !== 0) nonzero++;
        }
        if (name.endsWith(".act.logits") || name.endsWith(".act.xmax")) {
          assert.ok(
            ga.some((v) => v !== 0),
            `${what}: ${name} gets a gradient`,
          );
        }
      }
      assert.ok(nonzero > 1000);
    }
  } finally {
    wasm.dispose();
  }
});
