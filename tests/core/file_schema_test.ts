/** Files read back are checked field by field: edited files with a valid checksum are refused, naming the field. */

import assert from "node:assert/strict";
import { bayesianBits } from "../../core/methods/bayesian_bits/model.ts";
import { initGated } from "../../core/methods/bayesian_bits/model.ts";
import {
  bayesianBitsSnapshot,
  trainBayesianBits,
} from "../../core/methods/bayesian_bits/train.ts";
import { Tensor } from "../../core/tensor.ts";
import { randomKey } from "../../core/rng.ts";
import { loadCheckpoint, saveCheckpoint } from "../../io/checkpoint.ts";
import { loadQuantized, saveQuantized } from "../../io/quantized.ts";
import { exportQuantized } from "../../core/methods/bayesian_bits/method.ts";
import { parseReport } from "../../io/report_json.ts";
import { loadSnapshot, saveSnapshot } from "../../io/snapshot.ts";
import { rowSumData, TINY_3X3 } from "../_fixtures.ts";
import { withTempDir } from "../_io_fixtures.ts";

/** The tiny 3x3 model, gated and initialised on a few samples. */
async function tinyGated() {
  const gated = bayesianBits(TINY_3X3);
  const data = rowSumData(8, 1);
  const float = {
    "fc1.weight": Tensor.from(
      new Float32Array(54).map((_, i) => ((i * 7) % 11) / 11 - 0.5),
      [6, 9],
    ),
    "fc1.bias": Tensor.from(new Float32Array(6).fill(0.1)),
    "fc2.weight": Tensor.from(
      new Float32Array(18).map((_, i) => ((i * 5) % 7) / 7 - 0.4),
      [3, 6],
    ),
    "fc2.bias": Tensor.zeros([3]),
  };
  const x = Tensor.from(data.images.slice(0, 4 * 9), [4, 1, 3, 3]);
  const state = await initGated(gated, { params: float }, x);
  return { gated, state, data: { train: data, test: data } };
}

/** Rewrites a checkpoint with an edited state, recomputing its checksum as an attacker would. */
async function editCheckpoint(
  path: string,
  edit: (
    state: Record<string, unknown>,
    tensors: Record<string, unknown>,
  ) => void,
): Promise<void> {
  const { tensors, state } = await loadCheckpoint(path);
  edit(state as Record<string, unknown>, tensors);
  await saveCheckpoint(path, { tensors: tensors as never, state });
}

/** The error a promise rejects with (it must reject). */
async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (error) {
    return error as Error;
  }
  throw new Error("expected a rejection");
}

Deno.test("loadQuantized() refuses `layers: [null]` with a TypeError naming state.layers[0], not a crash", async () => {
  const { gated, state } = await tinyGated();
  await withTempDir(async (dir) => {
    const path = `${dir}/model.safetensors`;
    await saveQuantized(path, exportQuantized(gated, state));
    await editCheckpoint(path, (s) => s.layers = [null]);
    const error = await rejection(loadQuantized(path));
    assert.ok(error instanceof TypeError, String(error));
    assert.match(
      error.message,
      /model.safetensors" as an exported model: state.layers\[0\] must be an object, got null/,
    );
  });
});

Deno.test("loadQuantized() refuses a graph whose pruned layer would dequantize to 160 GB, before allocating it", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/model.safetensors`;
    const graph = {
      name: "huge",
      inputShape: [1, 1, 2],
      nodes: [
        {
          op: "conv",
          name: "c",
          input: "input",
          outChannels: 1,
          kernel: 200_000,
          padding: 100_000,
        },
        { op: "flatten", name: "f", input: "c" },
        { op: "dense", name: "d", input: "f", outFeatures: 2 },
      ],
    };
    const grid = { bits: 2, signed: true, xmax: 3, scale: 2 };
    await saveCheckpoint(path, {
      tensors: {
        "c.codes": { shape: [0, 40_000_000_000], data: new Int8Array(0) },
        "c.bias": { shape: [1], data: new Float32Array([0.5]) },
        "d.weight": { shape: [2, 6], data: new Float32Array(12) },
        "d.bias": { shape: [2], data: new Float32Array(2) },
      },
      state: {
        kind: "bbits.quantized-model",
        schema: "bbits.quantized/1",
        inputBits: 8,
        graph,
        layers: [
          {
            name: "c",
            kind: "conv",
            weight: { ...grid, shape: [1, 1, 200_000, 200_000], kept: [] },
            activation: null,
          },
          {
            name: "d",
            kind: "dense",
            weight: { bits: "float", shape: [2, 6] },
            activation: null,
          },
        ],
      },
    });
    const error = await rejection(loadQuantized(path));
    assert.ok(error instanceof RangeError, String(error));
    assert.match(
      error.message,
      /state.graph: The model has 40000000012 weights, more than the budget of 268435456 \(layer "c"/,
    );
  });
});

Deno.test("a snapshot that lost its pruning logits is refused on resume and on export, naming the parameter", async () => {
  const { gated, state, data } = await tinyGated();
  await withTempDir(async (dir) => {
    const path = `${dir}/run.safetensors`;
    const first = await trainBayesianBits(gated, state, data, {
      epochs: 2,
      batchSize: 4,
      key: randomKey(3),
      onEpoch: async (s) => {
        if (s.epoch === 1) await saveSnapshot(path, { snapshot: s, run: {} });
      },
    });
    assert.equal(first.epoch, 2);
    await editCheckpoint(
      path,
      (_, tensors) => delete tensors["param/fc1.weight.prune"],
    );
    const snapshot = bayesianBitsSnapshot((await loadSnapshot(path)).snapshot);
    const resumed = await rejection(
      trainBayesianBits(gated, state, data, {
        epochs: 2,
        batchSize: 4,
        key: randomKey(3),
        resume: snapshot,
      }),
    );
    assert.match(
      resumed.message,
      /^Cannot resume the snapshot: parameter "fc1.weight.prune" is missing \(expected shape \[6\]\)$/,
    );
    assert.throws(
      () => exportQuantized(gated, snapshot.state),
      /^RangeError: Cannot export: parameter "fc1.weight.prune" is missing/,
    );
    const negative = {
      ...snapshot.state,
      params: { ...state.params, "fc2.weight.xmax": Tensor.from([-1]) },
    };
    assert.throws(
      () => exportQuantized(gated, negative),
      /^RangeError: Cannot export: parameter "fc2.weight.xmax" has -1 at element 0 \(a range must be finite and positive\)/,
    );
  });
});

Deno.test("loadSnapshot() refuses an epoch beyond the run's epochs, a history of the wrong length or type, a missing phase", async () => {
  const { gated, state, data } = await tinyGated();
  await withTempDir(async (dir) => {
    const path = `${dir}/run.safetensors`;
    const done = await trainBayesianBits(gated, state, data, {
      epochs: 2,
      batchSize: 4,
      key: randomKey(3),
    });
    const cases: [
      string,
      (s: Record<string, unknown>) => void,
      ErrorConstructor,
      RegExp,
    ][] = [
      [
        "epoch 5 of 2",
        (s) => s.epoch = 5,
        RangeError,
        /state.epoch must be at most state.epochs \(2\), got 5/,
      ],
      [
        "a history of 1 entry after 2 epochs",
        (s) => s.history = (s.history as unknown[]).slice(1),
        RangeError,
        /state.history must hold one entry per completed epoch \(2\), got 1/,
      ],
      [
        "a history that is not an array",
        (s) => s.history = 7,
        TypeError,
        /state.history must be an array, got 7/,
      ],
      [
        "no phase",
        (s) => delete s.phase,
        TypeError,
        /state.phase is missing \(expected a string\)/,
      ],
      [
        "a fractional step",
        (s) => s.step = 2.5,
        RangeError,
        /state.step must be an integer >= 0, got 2.5/,
      ],
      [
        "an entry of the wrong epoch",
        (s) => (s.history as { epoch: number }[])[1].epoch = 7,
        RangeError,
        /state.history\[1\].epoch must be 2, got 7/,
      ],
    ];
    for (const [what, edit, type, message] of cases) {
      await saveSnapshot(path, { snapshot: done, run: {} });
      await editCheckpoint(path, edit);
      const error = await rejection(loadSnapshot(path));
      assert.ok(error instanceof type, `${what}: ${error}`);
      assert.match(error.message, message, what);
      assert.match(
        error.message,
        /^Cannot load ".*run.safetensors" as a training snapshot: /,
        what,
      );
    }
  });
});

const REPORT = {
  schema: "bbits.report/2",
  model: "tiny",
  method: "bayesian-bits",
  methodOptions: { mu: 0.01 },
  testAccuracy: 0.9,
  relativeGbops: 6.25,
  gbops: 0.064,
  baselineGbops: 1.024,
  layers: [{
    name: "fc",
    kind: "dense",
    macs: 1_000_000,
    weightBits: 8,
    weightQuantized: true,
    activationBits: null,
    inputBits: 8,
    keptChannels: 10,
    totalChannels: 10,
    keptInputFraction: 1,
    gbops: 0.064,
  }],
  history: [],
  run: {},
};

Deno.test("parseReport() refuses 3-bit Bayesian Bits weights, negative MACs, 500 % relative GBOPs and a negative mu, naming the field", () => {
  assert.equal(parseReport(JSON.stringify(REPORT)).layers[0].weightBits, 8);
  const layer = (edit: Record<string, unknown>) => ({
    ...REPORT,
    layers: [{ ...REPORT.layers[0], ...edit }],
  });
  const cases: [unknown, string][] = [
    [
      layer({ weightBits: 3 }),
      "Invalid report: layers[0].weightBits must be one of 0, 2, 4, 8, 16, 32 (bayesian-bits), got 3",
    ],
    [
      layer({ macs: -5 }),
      "Invalid report: layers[0].macs must be a non-negative integer, got -5",
    ],
    [
      { ...REPORT, relativeGbops: 500 },
      "Invalid report: relativeGbops must be in [0, 100], got 500",
    ],
    [
      { ...REPORT, methodOptions: { mu: -0.5 } },
      "Invalid report: methodOptions.mu must be >= 0, got -0.5",
    ],
    [
      layer({ activationBits: 0 }),
      "Invalid report: layers[0].activationBits must be one of 2, 4, 8, 16, 32 (bayesian-bits), got 0",
    ],
    [
      layer({ gbops: -1 }),
      "Invalid report: layers[0].gbops must be >= 0, got -1",
    ],
  ];
  for (const [report, message] of cases) {
    assert.throws(
      () => parseReport(JSON.stringify(report)),
      new RangeError(message),
    );
  }
  // Another method's widths are its own: a method outside the table may use any of 0..32.
  const other = {
    ...layer({ weightBits: 3 }),
    method: "some-method",
    methodOptions: {},
  };
  assert.equal(parseReport(JSON.stringify(other)).layers[0].weightBits, 3);
  assert.throws(
    () =>
      parseReport(
        JSON.stringify({
          ...other,
          layers: [{ ...REPORT.layers[0], weightBits: 33 }],
        }),
      ),
    /weightBits must be an integer in \[0, 32\] \(some-method\), got 33/,
  );
});
