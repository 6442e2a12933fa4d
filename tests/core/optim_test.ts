import assert from "node:assert/strict";
import {
  adam,
  constantSchedule,
  constantThenLinearSchedule,
  cosineSchedule,
  findNonFinite,
  type Optimizer,
  type OptimizerState,
  type OptimizerUpdate,
  paramGroups,
  type ParamTensors,
  perEpoch,
  sgd,
  stepSchedule,
} from "../../core/optim.ts";
import { referenceDevice } from "../../core/reference/device.ts";
import { Tensor } from "../../core/tensor.ts";
import { assertAllClose } from "../_fixtures.ts";

const f32 = (values: number[]) => Tensor.from(values);

/** Runs `optimizer` over a sequence of gradients for one parameter "w". */
function run(
  optimizer: Optimizer,
  w0: number[],
  gradSequence: number[][],
): Float32Array[] {
  let params: ParamTensors = { w: f32(w0) };
  let state = optimizer.init(params);
  const trajectory: Float32Array[] = [];
  for (const g of gradSequence) {
    ({ params, state } = optimizer.update(params, { w: f32(g) }, state));
    trajectory.push(params.w.toFloat32Array());
  }
  return trajectory;
}

/** Every number of an update: parameters, then slots, by name. */
function valuesOf(update: OptimizerUpdate) {
  return {
    step: update.state.step,
    params: Object.fromEntries(
      Object.entries(update.params).map((
        [name, t],
      ) => [name, [...t.toFloat32Array()]]),
    ),
    slots: Object.fromEntries(
      Object.entries(update.state.slots).map(([name, slots]) => [
        name,
        Object.fromEntries(
          Object.entries(slots).map((
            [slot, t],
          ) => [slot, [...t.toFloat32Array()]]),
        ),
      ]),
    ),
  };
}

const W0 = [0.5, -1.25, 2];
const GRADS = [[0.1, -0.4, 3], [-0.2, 0.05, 2.5], [0.3, 0.3, -1]];

/** PyTorch's Adam, written out in float64 from the formulas. */
function adamReference(
  lrAt: (step: number) => number,
  beta1: number,
  beta2: number,
  eps: number,
  weightDecay: number,
): number[][] {
  const theta = [...W0];
  const m = [0, 0, 0];
  const v = [0, 0, 0];
  return GRADS.map((grad, step) => {
    const t = step + 1;
    for (let i = 0; i < theta.length; i++) {
      const g = grad[i] + weightDecay * theta[i];
      m[i] = beta1 * m[i] + (1 - beta1) * g;
      v[i] = beta2 * v[i] + (1 - beta2) * g * g;
      const mHat = m[i] / (1 - beta1 ** t);
      const vHat = v[i] / (1 - beta2 ** t);
      theta[i] -= lrAt(step) * mHat / (Math.sqrt(vHat) + eps);
    }
    return [...theta];
  });
}

/** PyTorch's SGD (dampening 0), written out in float64 from the formulas. */
function sgdReference(
  lr: number,
  momentum: number,
  nesterov: boolean,
  weightDecay: number,
): number[][] {
  const theta = [...W0];
  const buffer: (number | undefined)[] = [undefined, undefined, undefined];
  return GRADS.map((grad) => {
    for (let i = 0; i < theta.length; i++) {
      let d = grad[i] + weightDecay * theta[i];
      if (momentum !== 0) {
        // PyTorch: the first buffer is a clone of the gradient.
        const b = buffer[i] === undefined ? d : momentum * buffer[i]! + d;
        buffer[i] = b;
        d = nesterov ? d + momentum * b : b;
      }
      theta[i] -= lr * d;
    }
    return [...theta];
  });
}

Deno.test("adam() matches PyTorch's bias-corrected Adam for three steps", () => {
  const cases: [
    string,
    Parameters<typeof adam>[0],
    Parameters<typeof adamReference>,
  ][] = [
    ["defaults", { lr: 1e-3 }, [() => 1e-3, 0.9, 0.999, 1e-8, 0]],
    [
      "custom betas, eps and weight decay",
      { lr: 0.05, beta1: 0.8, beta2: 0.99, eps: 1e-3, weightDecay: 0.1 },
      [() => 0.05, 0.8, 0.99, 1e-3, 0.1],
    ],
    [
      "a schedule",
      { lr: stepSchedule({ lr: 0.1, gamma: 0.5, stepSize: 1 }) },
      [(step) => 0.1 * 0.5 ** step, 0.9, 0.999, 1e-8, 0],
    ],
  ];
  for (const [what, options, reference] of cases) {
    const expected = adamReference(...reference);
    run(adam(options), W0, GRADS).forEach((w, step) =>
      assertAllClose(w, expected[step], `${what}, step ${step + 1}`)
    );
  }
});

Deno.test("sgd() matches PyTorch's SGD, with and without (Nesterov) momentum, for three steps", () => {
  const cases: [
    string,
    Parameters<typeof sgd>[0],
    Parameters<typeof sgdReference>,
  ][] = [
    ["plain", { lr: 0.1 }, [0.1, 0, false, 0]],
    ["plain with weight decay", { lr: 0.1, weightDecay: 0.01 }, [
      0.1,
      0,
      false,
      0.01,
    ]],
    ["momentum", { lr: 0.1, momentum: 0.9 }, [0.1, 0.9, false, 0]],
    [
      "Nesterov with weight decay",
      { lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 5e-4 },
      [0.05, 0.9, true, 5e-4],
    ],
  ];
  for (const [what, options, reference] of cases) {
    const expected = sgdReference(...reference);
    run(sgd(options), W0, GRADS).forEach((w, step) =>
      assertAllClose(w, expected[step], `${what}, step ${step + 1}`)
    );
  }
});

Deno.test("optimizers never modify their params, grads or state, and keep the state on the params' device", () => {
  const optimizers: [string, Optimizer][] = [
    ["adam", adam({ lr: 0.1, weightDecay: 0.1 })],
    ["sgd", sgd({ lr: 0.1, momentum: 0.9, nesterov: true })],
    [
      "paramGroups",
      paramGroups([{
        name: "all",
        match: () => true,
        optimizer: adam({ lr: 0.1 }),
      }]),
    ],
  ];
  for (const [what, optimizer] of optimizers) {
    const params = { a: f32([1, 2]), b: f32([-3]) };
    const grads = { a: f32([0.5, -0.5]), b: f32([2]) };
    const warm = optimizer.update(params, grads, optimizer.init(params)).state;
    const snapshot = () => ({
      inputs: valuesOf({ params, state: warm }),
      grads: valuesOf({ params: grads, state: { step: 0, slots: {} } }),
    });
    const before = snapshot();
    const next = optimizer.update(params, grads, warm);
    assert.deepEqual(snapshot(), before, what);
    assert.notEqual(next.params.a, params.a, `${what}: a new tensor`);
    assert.equal(next.state.step, 2, what);
    for (const slots of Object.values(next.state.slots)) {
      for (const t of Object.values(slots)) {
        assert.equal(t.device, referenceDevice, what);
      }
    }
  }
});

Deno.test("optimizer state survives a JSON checkpoint and resumes identically", () => {
  const optimizer = adam({ lr: 0.01 });
  let params: ParamTensors = { w: f32(W0) };
  let state = optimizer.init(params);
  ({ params, state } = optimizer.update(params, { w: f32(GRADS[0]) }, state));
  const json = JSON.stringify({
    step: state.step,
    slots: valuesOf({ params, state }).slots,
  });
  const parsed = JSON.parse(json) as {
    step: number;
    slots: Record<string, Record<string, number[]>>;
  };
  const restored: OptimizerState = {
    step: parsed.step,
    slots: Object.fromEntries(
      Object.entries(parsed.slots).map(([name, slots]) => [
        name,
        Object.fromEntries(
          Object.entries(slots).map(([slot, array]) => [slot, f32(array)]),
        ),
      ]),
    ),
  };
  const grads = { w: f32(GRADS[1]) };
  assert.deepEqual(
    valuesOf(optimizer.update(params, grads, restored)),
    valuesOf(optimizer.update(params, grads, state)),
  );
});

Deno.test("optimizers reject missing, extra, mis-sized and non-float32 gradients, naming the parameter", () => {
  const params = { "fc.weight": f32([1, 2]), "fc.bias": f32([0]) };
  const grads = { "fc.weight": f32([1, 1]), "fc.bias": f32([1]) };
  const cases: [string, Record<string, unknown>, ErrorConstructor, RegExp][] = [
    [
      "a missing gradient",
      { "fc.weight": grads["fc.weight"] },
      TypeError,
      /Missing gradient for parameter "fc.bias"/,
    ],
    [
      "an extra gradient",
      { ...grads, "fc.scale": f32([1]) },
      TypeError,
      /gradient was given for "fc.scale"/,
    ],
    [
      "a short gradient",
      { ...grads, "fc.weight": f32([1]) },
      RangeError,
      /"fc.weight" has 1 elements, the parameter has 2/,
    ],
    [
      "an int32 gradient",
      { ...grads, "fc.bias": referenceDevice.upload([1], [1], "int32") },
      TypeError,
      /Gradient of "fc.bias" must be a float32 tensor, got a int32 tensor/,
    ],
    [
      "a typed array instead of a tensor",
      { ...grads, "fc.bias": new Float32Array(1) },
      TypeError,
      /Gradient of "fc.bias" must be a float32 tensor, got \[object Float32Array\]/,
    ],
  ];
  const optimizers: [string, Optimizer][] = [
    ["adam", adam({ lr: 0.1 })],
    ["sgd", sgd({ lr: 0.1, momentum: 0.5 })],
    [
      "paramGroups",
      paramGroups([{
        name: "all",
        match: () => true,
        optimizer: sgd({ lr: 0.1 }),
      }]),
    ],
  ];
  for (const [name, optimizer] of optimizers) {
    const state = optimizer.init(params);
    for (const [what, bad, errorClass, message] of cases) {
      const update = () =>
        optimizer.update(params, bad as Record<string, Tensor>, state);
      assert.throws(update, errorClass, `${name}: ${what}`);
      assert.throws(update, message, `${name}: ${what}`);
    }
  }
});

Deno.test("findNonFinite() names the first non-finite gradient, which optimizers pass through", async () => {
  const params = { "fc.weight": f32([1, 2]), "fc.bias": f32([0]) };
  const grads = { "fc.weight": f32([1, 1]), "fc.bias": f32([1]) };
  const cases: [string, Record<string, Tensor>, RegExp][] = [
    [
      "a NaN",
      { ...grads, "fc.weight": f32([1, NaN]) },
      /"fc.weight" is not finite: element 1 is NaN/,
    ],
    [
      "an infinity",
      { ...grads, "fc.bias": f32([-Infinity]) },
      /"fc.bias" is not finite: element 0 is -Infinity/,
    ],
  ];
  assert.equal(await findNonFinite(grads), null);
  const optimizers: [string, Optimizer][] = [
    ["adam", adam({ lr: 0.1 })],
    ["sgd", sgd({ lr: 0.1, momentum: 0.5 })],
    [
      "paramGroups",
      paramGroups([{
        name: "all",
        match: () => true,
        optimizer: sgd({ lr: 0.1 }),
      }]),
    ],
  ];
  for (const [what, bad, message] of cases) {
    assert.match((await findNonFinite(bad))!, message, what);
    for (const [name, optimizer] of optimizers) {
      // Optimizers check structure only: the update runs, and the bad value
      // shows up in the new parameters.
      const next = optimizer.update(params, bad, optimizer.init(params));
      assert.match(
        (await findNonFinite(next.params))!,
        /is not finite/,
        `${name}: ${what}`,
      );
    }
  }
});

Deno.test("optimizers reject a state that does not fit the parameters and bad options", () => {
  const params = { w: f32([1, 2]) };
  const grads = { w: f32([1, 1]) };
  const optimizer = adam({ lr: 0.1 });
  const state = optimizer.init(params);
  const badStates: [string, OptimizerState, RegExp][] = [
    [
      "a negative step",
      { ...state, step: -1 },
      /step must be a non-negative integer, got -1/,
    ],
    ["no entry for w", { step: 0, slots: {} }, /no entry for parameter "w"/],
    [
      "a short slot",
      { step: 0, slots: { w: { m: f32([0]), v: f32([0, 0]) } } },
      /slot "m" of "w" must be a float32 tensor of 2 elements, got 1 elements/,
    ],
  ];
  for (const [what, bad, message] of badStates) {
    assert.throws(() => optimizer.update(params, grads, bad), message, what);
  }
  const badOptions: [string, () => unknown, RegExp][] = [
    ["a negative lr", () => adam({ lr: -1 }), /Invalid Adam lr -1/],
    [
      "beta1 = 1",
      () => adam({ lr: 1, beta1: 1 }),
      /Invalid Adam beta1 1: it must be in \[0, 1\)/,
    ],
    [
      "Nesterov without momentum",
      () => sgd({ lr: 1, nesterov: true }),
      /Nesterov SGD needs momentum > 0/,
    ],
    [
      "a NaN weight decay",
      () => sgd({ lr: 1, weightDecay: NaN }),
      /Invalid SGD weightDecay NaN/,
    ],
  ];
  for (const [what, make, message] of badOptions) {
    assert.throws(make, message, what);
  }
  const badSchedule = sgd({ lr: (step) => (step === 0 ? 0.1 : NaN) });
  const first = badSchedule.update(params, grads, badSchedule.init(params));
  assert.throws(
    () => badSchedule.update(first.params, grads, first.state),
    /schedule returned NaN at step 1/,
  );
});

Deno.test("paramGroups() applies each group's own optimizer and learning rate", () => {
  const optimizer = paramGroups([
    {
      name: "gates",
      match: (name) => name.endsWith(".g4"),
      optimizer: sgd({ lr: 0.1 }),
    },
    {
      name: "ranges",
      match: (name) => name.endsWith(".xmax"),
      optimizer: sgd({ lr: 0.01 }),
    },
    { name: "weights", match: () => true, optimizer: adam({ lr: 1e-3 }) },
  ]);
  const params = { "c.weight": f32(W0), "c.g4": f32([3]), "c.xmax": f32([1]) };
  const grads = {
    "c.weight": f32(GRADS[0]),
    "c.g4": f32([2]),
    "c.xmax": f32([-4]),
  };
  const state = optimizer.init(params);
  assert.deepEqual(Object.keys(state.slots["c.weight"]), ["m", "v"]);
  assert.deepEqual(Object.keys(state.slots["c.g4"]), []);
  const next = optimizer.update(params, grads, state);
  assert.equal(next.params["c.g4"].get(0), Math.fround(3 - 0.1 * 2));
  assert.equal(next.params["c.xmax"].get(0), Math.fround(1 + 0.01 * 4));
  assertAllClose(
    next.params["c.weight"].toFloat32Array(),
    adamReference(() => 1e-3, 0.9, 0.999, 1e-8, 0)[0],
    "weights",
  );
  assert.equal(next.state.step, 1);
  assert.deepEqual(Object.keys(next.params).sort(), [
    "c.g4",
    "c.weight",
    "c.xmax",
  ]);
});

Deno.test("paramGroups() rejects unmatched parameters and duplicate or missing groups", () => {
  const optimizer = paramGroups([{
    name: "gates",
    match: (name) => name.endsWith(".g4"),
    optimizer: sgd({ lr: 1 }),
  }]);
  assert.throws(
    () => optimizer.init({ "c.weight": f32([1]) }),
    /Parameter "c.weight" matches no parameter group \(groups: gates\)/,
  );
  assert.throws(() => paramGroups([]), /at least one group/);
  const group = { name: "a", match: () => true, optimizer: sgd({ lr: 1 }) };
  assert.throws(() => paramGroups([group, group]), /"a" appears twice/);
});

Deno.test("constantThenLinearSchedule() is flat to two thirds, then falls linearly to exactly 0", () => {
  const cases: [number, number, number][] = [
    // [total, t, expected] with lr 0.3
    [30, 0, 0.3],
    [30, 19, 0.3],
    [30, 20, 0.3], // the boundary 2/3 * 30 still gets the full rate
    [30, 21, 0.3 * 9 / 10],
    [30, 25, 0.3 * 5 / 10],
    [30, 29, 0.3 * 1 / 10],
    [30, 30, 0],
    [30, 31, 0],
    [9, 6, 0.3],
    [9, 7.5, 0.15],
    [9, 9, 0],
    [10, 10 * 2 / 3, 0.3], // a boundary between integers
    [10, 8.5, 0.3 * 1.5 / (10 / 3)],
  ];
  for (const [total, t, expected] of cases) {
    const lr = constantThenLinearSchedule({ lr: 0.3, total })(t);
    assert.ok(
      Math.abs(lr - expected) < 1e-15,
      `total ${total}, t ${t}: ${lr} vs ${expected}`,
    );
    if (expected === 0) assert.equal(lr, 0);
  }
});

Deno.test("schedules give their documented values at the start, middle and end", () => {
  const cases: [string, (t: number) => number, [number, number][]][] = [
    ["constant", constantSchedule(0.01), [[0, 0.01], [1e6, 0.01]]],
    ["step", stepSchedule({ lr: 0.1, gamma: 0.1, stepSize: 30 }), [
      [0, 0.1],
      [29, 0.1],
      [30, 0.01],
      [60, 0.001],
    ]],
    ["cosine", cosineSchedule({ lr: 1, total: 10 }), [
      [0, 1],
      [5, 0.5],
      [10, 0],
      [11, 0],
    ]],
    [
      "cosine with a floor",
      cosineSchedule({ lr: 1, total: 4, minLr: 0.2 }),
      [[0, 1], [1, 0.2 + 0.8 * (1 + Math.SQRT1_2) / 2], [2, 0.6], [4, 0.2]],
    ],
    [
      "per epoch",
      perEpoch(constantThenLinearSchedule({ lr: 1, total: 6 }), 10),
      [[0, 1], [49, 1], [50, 0.5], [59, 0.5], [60, 0]],
    ],
  ];
  for (const [what, schedule, points] of cases) {
    for (const [t, expected] of points) {
      assert.ok(
        Math.abs(schedule(t) - expected) < 1e-12,
        `${what} at ${t}: ${schedule(t)} vs ${expected}`,
      );
    }
  }
});

Deno.test("schedules reject bad options and bad steps", () => {
  const cases: [string, () => unknown, RegExp][] = [
    [
      "a negative step",
      () => constantSchedule(1)(-1),
      /step must be a finite number >= 0, got -1/,
    ],
    ["a NaN step", () => cosineSchedule({ lr: 1, total: 5 })(NaN), /got NaN/],
    [
      "a zero total",
      () => constantThenLinearSchedule({ lr: 1, total: 0 }),
      /total 0/,
    ],
    [
      "a fractional stepSize",
      () => stepSchedule({ lr: 1, gamma: 0.5, stepSize: 1.5 }),
      /stepSize 1.5/,
    ],
    [
      "zero steps per epoch",
      () => perEpoch(constantSchedule(1), 0),
      /stepsPerEpoch 0/,
    ],
  ];
  for (const [what, make, message] of cases) {
    assert.throws(make, RangeError, what);
    assert.throws(make, message, what);
  }
});
