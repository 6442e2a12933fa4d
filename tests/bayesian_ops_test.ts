import assert from "node:assert/strict";
import {
  add,
  gatesOp,
  initGraph,
  type ModelGraph,
  priorOp,
  quantizerOp,
  randomKey,
  runGraph,
  scale,
  softmaxCrossEntropy,
  sum,
  Tensor,
  uniform,
  valueAndGrad,
} from "../mod.ts";
import { assertClose, randomValues } from "./helpers.ts";

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
  noise: Float32Array[],
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
      priorOp({ chain: p["fc1.w.logits"], g2: p["fc1.w.g2"] }, { macRatio: 1 }),
      priorOp({ chain: p["fc1.a.logits"] }, { macRatio: 0.5 }),
    ),
    priorOp({ chain: p["fc2.w.logits"] }, { macRatio: 0.5 }),
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
    uniform(randomKey(3), 7),
    uniform(randomKey(4), 4),
    uniform(randomKey(5), 4),
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
