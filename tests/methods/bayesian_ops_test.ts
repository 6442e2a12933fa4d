import assert from "node:assert/strict";
import { valueAndGrad } from "../../core/autodiff.ts";
import { type Device, device } from "../../core/device.ts";
import { initGraph, type ModelGraph, runGraph } from "../../core/graph.ts";
import {
  gatesOp,
  priorOp,
  quantizeActivationForInference,
  quantizerOp,
} from "../../core/methods/bayesian_bits/ops.ts";
import { add, relu, scale, sum } from "../../core/ops/elementwise.ts";
import { softmaxCrossEntropy } from "../../core/ops/loss.ts";
import { maxPool2d } from "../../core/ops/pool.ts";
import { referenceDevice } from "../../core/reference/device.ts";
import { randomKey, uniform } from "../../core/rng.ts";
import { Tensor } from "../../core/tensor.ts";
import { assertClose, randomValues } from "../_fixtures.ts";

const MODEL: ModelGraph = {
  name: "tiny",
  inputShape: [1, 2, 2],
  nodes: [
    { op: "flatten", name: "f", input: "input" },
    {
      op: "dense",
      name: "fc1",
      input: "f",
      outFeatures: 3,
      activation: "relu",
    },
    { op: "dense", name: "fc2", input: "fc1", outFeatures: 2 },
  ],
};

type P = Record<string, Tensor>;

/**
 * The Bayesian Bits loss of the tiny model: weights of fc1 quantized with
 * pruning gates, its ReLU output quantized (unsigned), fc2's weights
 * quantized without pruning; noise fixed so the loss is a function of the
 * parameters alone.
 */
function bayesianLoss(
  p: P,
  x: Tensor,
  labels: number[],
  noise: Tensor[],
  mu: number,
): Tensor {
  const g1 = gatesOp({ chain: p["fc1.w.logits"], g2: p["fc1.w.g2"] }, noise[0]);
  const ga = gatesOp({ chain: p["fc1.a.logits"] }, noise[1]);
  const g2 = gatesOp({ chain: p["fc2.w.logits"] }, noise[2]);
  const { output } = runGraph(MODEL, p, x, {
    weight: (layer, w) =>
      layer.name === "fc1"
        ? quantizerOp(w, p["fc1.w.xmax"], g1, { signed: true })
        : quantizerOp(w, p["fc2.w.xmax"], g2, { signed: true }),
    activation: (layer, a) =>
      layer.name === "fc1"
        ? quantizerOp(a, p["fc1.a.xmax"], ga, { signed: false })
        : a,
  });
  const priors = add(
    add(
      priorOp({ chain: p["fc1.w.logits"], g2: p["fc1.w.g2"] }, {
        macRatio: 1,
        mode: "bop",
      }),
      priorOp({ chain: p["fc1.a.logits"] }, { macRatio: 0.5, mode: "bop" }),
    ),
    priorOp({ chain: p["fc2.w.logits"] }, { macRatio: 0.5, mode: "bop" }),
  );
  return add(softmaxCrossEntropy(output, labels), scale(priors, mu));
}

Deno.test("the Bayesian Bits loss's gradient w.r.t. every gate logit matches finite differences", () => {
  const { params } = initGraph(MODEL, randomKey(1));
  const p: P = {
    ...params,
    "fc1.w.logits": Tensor.from([0.5, -0.3, 1.2, 0.8]),
    "fc1.w.g2": Tensor.from([0.7, 1.5, -0.2]),
    "fc1.w.xmax": Tensor.from([0.6]),
    "fc1.a.logits": Tensor.from([0.9, 0.1, -0.5, 1.0]),
    "fc1.a.xmax": Tensor.from([1.5]),
    "fc2.w.logits": Tensor.from([1.1, 0.4, 0.2, -0.4]),
    "fc2.w.xmax": Tensor.from([0.5]),
  };
  const x = Tensor.from(randomValues(2, 5 * 4, -1, 2), [5, 1, 2, 2]);
  const labels = [0, 1, 1, 0, 1];
  const noise = [
    Tensor.from(uniform(randomKey(3), 7)),
    Tensor.from(uniform(randomKey(4), 4)),
    Tensor.from(uniform(randomKey(5), 4)),
  ];
  const mu = 0.05;
  const { grads } = valueAndGrad((q: P) =>
    bayesianLoss(q, x, labels, noise, mu)
  )(p);
  const loss = (q: P) => bayesianLoss(q, x, labels, noise, mu).get(0);
  let checked = 0;
  for (
    const name of ["fc1.w.logits", "fc1.w.g2", "fc1.a.logits", "fc2.w.logits"]
  ) {
    const data = p[name].toFloat32Array();
    for (let i = 0; i < data.length; i++) {
      const at = (d: number) => {
        const copy = data.slice();
        copy[i] += d;
        return loss({ ...p, [name]: Tensor.from(copy, p[name].shape) });
      };
      const h = 1e-2;
      const numeric = (at(h) - at(-h)) / (2 * h);
      assertClose(
        grads[name].toFloat32Array()[i],
        numeric,
        3e-2,
        3e-4,
        `${name}[${i}]`,
      );
      checked++;
    }
  }
  assert.equal(checked, 15);
  // Gates that are sampled at exactly 0 or 1 (clamped) pass no gradient; the others do.
  assert.ok(grads["fc1.w.logits"].toFloat32Array().some((v) => v !== 0));
});

Deno.test("gatesOp() in evaluation gives deterministic, gradient-free gates", () => {
  const logits = {
    chain: Tensor.from([6, -1, 6, 6]),
    g2: Tensor.from([6, -6]),
  };
  const z = gatesOp(logits, null);
  assert.deepEqual([...z.chain.toFloat32Array()], [1, 0, 0, 0]);
  assert.deepEqual([...z.z2!.toFloat32Array()], [1, 0]);
  const { grads } = valueAndGrad((p: { c: Tensor }) =>
    sum(gatesOp({ chain: p.c }, null).chain)
  )({
    c: Tensor.from([0, 0, 0, 0]),
  });
  assert.deepEqual([...grads.c.toFloat32Array()], [0, 0, 0, 0]);
});

Deno.test("quantizeActivationForInference equals quantizerOp of the ReLU, then maxPool2d, bit for bit", async () => {
  const wasm = await device("wasm", { threads: 2, parallelThreshold: 1 });
  try {
    const zs = randomValues(5, 2 * 3 * 9 * 8, -2, 2);
    zs.set([NaN, -Infinity, -0, 0.5], 0); // the ReLU maps NaN and -Infinity to 0
    for (const dev of [referenceDevice, wasm]) {
      checkFusedInference(dev, dev.upload(zs, [2, 3, 9, 8]));
    }
  } finally {
    wasm.dispose();
  }
  // Without a ReLU the activation is z itself.
  const positive = Tensor.from([0.1, 0.7, 3]);
  const chain = Tensor.from([1, 0, 0, 0]);
  assert.deepEqual(
    [
      ...quantizeActivationForInference(positive, Tensor.from([1]), chain, {
        relu: false,
        pool: null,
      }).toFloat32Array(),
    ],
    [
      ...quantizerOp(positive, Tensor.from([1]), { chain }, { signed: false })
        .toFloat32Array(),
    ],
  );
  // What the two steps refuse, it refuses: relu(+Infinity), or any NaN without a ReLU.
  assert.throws(
    () =>
      quantizeActivationForInference(
        Tensor.from([1, Infinity]),
        Tensor.from([1]),
        chain,
        { relu: true, pool: null, name: "c.act" },
      ),
    /Cannot quantize "c.act": element 1 is Infinity/,
  );
  assert.throws(
    () =>
      quantizeActivationForInference(
        Tensor.from([NaN]),
        Tensor.from([1]),
        chain,
        { relu: false, pool: null },
      ),
    /element 0 is NaN/,
  );
  assert.throws(
    () =>
      quantizeActivationForInference(positive, Tensor.from([-1]), chain, {
        relu: true,
        pool: null,
      }),
    /xmax/,
  );
  assert.throws(
    () =>
      quantizeActivationForInference(positive, Tensor.from([1]), chain, {
        relu: true,
        pool: { kernel: 2, stride: 2, padding: 0 },
      }),
    /4-D/,
  );
});

/** The fused pass against its two steps on one device, for several gates and pools. */
function checkFusedInference(dev: Device, zt: Tensor): void {
  const xmax = dev.upload([1.1], [1]);
  for (const gates of [[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0]]) {
    const chain = dev.upload(gates, [4]);
    for (
      const pool of [null, { kernel: 2, stride: 2, padding: 0 }, {
        kernel: 3,
        stride: 2,
        padding: 1,
      }]
    ) {
      const twoSteps = quantizerOp(relu(zt), xmax, { chain }, {
        signed: false,
      });
      const expected = pool
        ? maxPool2d(twoSteps, pool.kernel, pool.stride, pool.padding)
        : twoSteps;
      const got = quantizeActivationForInference(zt, xmax, chain, {
        relu: true,
        pool,
      });
      assert.equal(got.device, dev);
      assert.deepEqual(got.shape, expected.shape);
      assert.deepEqual(
        [...got.toFloat32Array()].map((v) => Object.is(v, -0) ? "-0" : v),
        [...expected.toFloat32Array()].map((v) => Object.is(v, -0) ? "-0" : v),
        `${dev.name}, gates ${gates}, pool ${JSON.stringify(pool)}`,
      );
    }
  }
}

Deno.test("runGraph's fused hook sees each layer with its activation and following pool; undefined changes nothing, a tensor replaces both", () => {
  const graph: ModelGraph = {
    name: "pools",
    inputShape: [1, 6, 6],
    nodes: [
      {
        op: "conv",
        name: "c1",
        input: "input",
        outChannels: 2,
        kernel: 3,
        activation: "relu",
      },
      { op: "maxpool", name: "p1", input: "c1", kernel: 2 },
      {
        op: "conv",
        name: "c2",
        input: "p1",
        outChannels: 2,
        kernel: 1,
        activation: "relu",
      },
      { op: "add", name: "sum", inputs: ["c2", "p1"] },
      { op: "flatten", name: "f", input: "sum" },
      { op: "dense", name: "d", input: "f", outFeatures: 3 },
    ],
  } as ModelGraph;
  const { params } = initGraph(graph, randomKey(4));
  const x = Tensor.from(randomValues(9, 2 * 36), [2, 1, 6, 6]);
  const plain = runGraph(graph, params, x).output.toFloat32Array();
  const seen: string[] = [];
  const same = runGraph(graph, params, x, {
    fused: (layer, _z, activation, pool) => {
      seen.push(`${layer.name} ${activation} ${pool ? pool.kernel : "-"}`);
      return undefined;
    },
  }).output.toFloat32Array();
  assert.deepEqual(seen, ["c1 relu 2", "c2 relu -", "d undefined -"]);
  assert.deepEqual([...same], [...plain]);
  // A returned tensor replaces activation and pool: a fused c1 that outputs
  // zeros leaves only the biases downstream.
  const zeroed = runGraph(graph, params, x, {
    fused: (layer, z, _activation, pool) =>
      layer.name === "c1" && pool
        ? Tensor.zeros([z.shape[0], z.shape[1], 2, 2])
        : undefined,
  }).output;
  const expected = runGraph(graph, {
    ...params,
    "c1.weight": Tensor.zeros(params["c1.weight"].shape),
    "c1.bias": Tensor.zeros([2]),
  }, x).output;
  assert.deepEqual([...zeroed.toFloat32Array()], [
    ...expected.toFloat32Array(),
  ]);
});
