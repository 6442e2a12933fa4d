import assert from "node:assert/strict";
import {
  bayesianBits,
  type Device,
  device,
  evaluateGated,
  evaluateQuantized,
  exportQuantized,
  type GatedModel,
  type GatedState,
  initGated,
  initGraph,
  lenet5,
  makeDataset,
  type ModelGraph,
  type QuantizedModel,
  randomKey,
  runGraph,
  runQuantized,
  Tensor,
} from "../../mod.ts";
import {
  gatedBops,
  gatesOp,
  quantizerOp,
  uniformQuantize,
} from "../../core/methods/bayesian_bits/mod.ts";
import {
  checkQuantizedModel,
  codeRange,
  dequantizeParams,
  gridScale,
  type QuantizedWeights,
} from "../../io/quantized.ts";
import { uniform } from "../../core/training.ts";
import { loadMnist } from "../../io/mnist.ts";
import { loadQuantized, saveQuantized } from "../../io/quantized.ts";
import { loadCheckpoint } from "../../io/checkpoint.ts";
import { loadSnapshot, saveSnapshot } from "../../io/snapshot.ts";
import { exportCommand } from "../../cli/export.ts";
import { trainCommand } from "../../cli/train.ts";
import { referenceDevice } from "../../core/reference/device.ts";
import { assertBitwise } from "../_fixtures.ts";
import { assertDequantizedAsEvaluated } from "./_export_checks.ts";

const TINY: ModelGraph = {
  name: "tiny",
  inputShape: [1, 1, 2],
  nodes: [
    { op: "flatten", name: "f", input: "input" },
    { op: "dense", name: "d1", input: "f", outFeatures: 3, activation: "relu" },
    { op: "dense", name: "d2", input: "d1", outFeatures: 2 },
  ],
};

/** The tiny model's gated state from the given d1 weights, ranges from x = [1, 0.5]. */
function initTiny(gated: GatedModel, d1: number[]): Promise<GatedState> {
  const params = {
    "d1.weight": Tensor.from(d1, [3, 2]),
    "d1.bias": Tensor.from([0.1, 0.3, -0.1]),
    "d2.weight": Tensor.from([0.25, -0.5, 1.0, 0, 0.75, -2.5], [2, 3]),
    "d2.bias": Tensor.from([0, 0.1]),
  };
  return initGated(gated, { params }, Tensor.from([1, 0.5], [1, 1, 1, 2]));
}

/** The tiny model with hand-picked weights, ranges and gates. */
async function tinyState(): Promise<
  { gated: GatedModel; state: GatedState }
> {
  const gated = bayesianBits(TINY);
  const init = await initTiny(gated, [0.5, -0.3, 0.2, 0.1, 0.9, -1.2]);
  const state: GatedState = {
    signed: init.signed,
    params: {
      ...init.params,
      // d1 weights: 4 bits on [-1, 1], channel 1 pruned.
      "d1.weight.xmax": Tensor.from([1]),
      "d1.weight.logits": Tensor.from([6, -6, -6, -6]),
      "d1.weight.prune": Tensor.from([6, -6, 6]),
      // d1 outputs: 2 bits, unsigned, on [0, 1.5].
      "d1.act.xmax": Tensor.from([1.5]),
      "d1.act.logits": Tensor.from([-6, -6, -6, -6]),
      // d2 weights: 8 bits on [-2, 2].
      "d2.weight.xmax": Tensor.from([2]),
      "d2.weight.logits": Tensor.from([6, 6, -6, -6]),
    },
  };
  return { gated, state };
}

Deno.test("exportQuantized: hand-computed codes, scales, kept channels and logits of a tiny model", async () => {
  const { gated, state } = await tinyState();
  assert.equal(state.signed["d1.weight"], true);
  assert.equal(state.signed["d1.act"], false);
  const model = exportQuantized(gated, state);
  assert.equal(model.schema, "bbits.quantized/1");
  const [d1, d2] = model.layers;
  const w1 = d1.weight as QuantizedWeights;
  const s4 = Math.fround(Math.fround(2 / 3) / 5); // s2 = 2 xmax / 3, s4 = s2 / 5
  assert.equal(w1.bits, 4);
  assert.equal(w1.scale, s4);
  assert.deepEqual(w1.kept, [0, 2]);
  // round(x / s4) = round(7.5 x): 3.75 -> 4, -2.25 -> -2, 6.75 -> 7, clip(-1.2) -> -7.
  assert.deepEqual([...w1.codes], [4, -2, 7, -7]);
  assert.ok(w1.codes instanceof Int32Array);
  assert.deepEqual(d1.activation, {
    bits: 2,
    signed: false,
    xmax: 1.5,
    scale: 0.5, // xmax / 3
  });
  const w2 = d2.weight as QuantizedWeights;
  const s8 = Math.fround(Math.fround(Math.fround(4 / 3) / 5) / 17);
  assert.equal(w2.bits, 8);
  assert.equal(w2.scale, s8);
  assert.deepEqual(w2.kept, [0, 1]); // the last layer has no pruning gates
  // round(x * 255 / 4): 15.94 -> 16, -31.88 -> -32, 63.75 -> 64, 0, 47.81 -> 48, clip(-2.5) -> -127.
  assert.deepEqual([...w2.codes], [16, -32, 64, 0, 48, -127]);
  assert.equal(d2.activation, null);
  assert.deepEqual([...d1.bias], [
    ...Tensor.from([0.1, 0.3, -0.1]).toFloat32Array(),
  ]);

  // x = [1, 0.5]: d1 = [3 s4 + 0.1, 0.3 (pruned: its bias), 3.5 s4 - 0.1]
  // = [0.5, 0.3, 0.3667], quantized on {0, 0.5, 1, 1.5}: [0.5, 0.5, 0.5];
  // d2 = s8 [16 - 32 + 64, 48 - 127] * 0.5 + [0, 0.1] = [24 s8, -39.5 s8 + 0.1].
  const logits = runQuantized(model, Tensor.from([1, 0.5], [1, 1, 1, 2]));
  const expected = [24 * 4 / 255, -39.5 * 4 / 255 + 0.1];
  logits.toFloat32Array().forEach((v, i) =>
    assert.ok(Math.abs(v - expected[i]) < 1e-6, `${v} vs ${expected[i]}`)
  );
  // Pruned rows dequantize to 0.
  assert.deepEqual(
    [...dequantizeParams(model)["d1.weight"].toFloat32Array()],
    [...Float32Array.from([4 * s4, -2 * s4, 0, 0, 7 * s4, -7 * s4])],
  );
});

/**
 * Whether a level of the decomposition of `x` (float64, levels up to
 * `bits`) lands within 1e-3 of a rounding tie, where float32 evaluation may
 * round either way.
 */
function nearTie(
  x: number,
  xmax: number,
  signed: boolean,
  bits: number,
): boolean {
  const hi = (1 - 1e-7) * xmax;
  let residual = Math.min(Math.max(x, signed ? -hi : 0), hi);
  let scale = (signed ? 2 * xmax : xmax) / 3;
  for (let b = 2; b <= bits; b *= 2) {
    const v = residual / scale;
    if (Math.abs(Math.abs(v - Math.trunc(v)) - 0.5) < 1e-3) return true;
    residual -= scale * Math.round(v);
    scale /= 2 ** b + 1;
  }
  return false;
}

/** LeNet-5 with mixed bit widths, some channels pruned, an unsigned weight layer. */
async function mixedLenet(): Promise<
  { gated: GatedModel; state: GatedState }
> {
  const gated = bayesianBits(lenet5());
  const float = initGraph(lenet5(), randomKey(7));
  const x = Tensor.from(uniform(randomKey(8), 16 * 784), [16, 1, 28, 28]);
  const init = await initGated(gated, float, x);
  const prune = (channels: number, every: number) =>
    Tensor.from(
      Array.from({ length: channels }, (_, c) => (c % every === 1 ? -6 : 6)),
    );
  return {
    gated,
    state: {
      signed: init.signed,
      params: {
        ...init.params,
        "conv1.weight.logits": Tensor.from([6, -6, -6, -6]), // 4 bits
        "conv1.act.logits": Tensor.from([-6, -6, -6, -6]), // 2 bits
        "conv2.weight.logits": Tensor.from([-6, -6, -6, -6]), // 2 bits
        "conv2.weight.prune": prune(64, 5),
        "conv2.act.logits": Tensor.from([6, -6, -6, -6]), // 4 bits
        "fc1.weight.logits": Tensor.from([6, 6, -6, -6]), // 8 bits
        "fc1.weight.prune": prune(512, 3),
        "fc1.act.logits": Tensor.from([6, 6, 6, -6]), // 16 bits
        "fc2.weight.logits": Tensor.from([6, 6, 6, 6]), // 32 bits
      },
    },
  };
}

/**
 * A layer's codes against the plain uniform quantizer of the same bit width
 * (the other side of the spec's identity), away from rounding ties.
 */
function assertPlainUniformCodes(
  name: string,
  w: QuantizedWeights,
  weights: Tensor,
  xmax: number,
): void {
  const layer = { name };
  const plain = uniformQuantize(weights, { xmax, signed: w.signed }, w.bits)
    .toFloat32Array();
  const row = weights.size / weights.shape[0];
  let compared = 0;
  let atTies = 0;
  const weightValues = weights.toFloat32Array();
  w.kept.forEach((c, r) => {
    for (let j = 0; j < row; j++) {
      const level = plain[c * row + j] / w.scale;
      const code = w.codes[r * row + j];
      if (w.bits <= 8) {
        const direct = Math.round(level) || 0;
        if (code !== direct) {
          // The spec's exception: a level of the decomposition hits a
          // rounding tie, and the result is the neighbouring level.
          assert.ok(
            nearTie(weightValues[c * row + j], xmax, w.signed, w.bits),
            `${layer.name}[${c}, ${j}]: code ${code}, direct ${direct}, not at a tie`,
          );
          assert.equal(Math.abs(code - direct), 1);
          atTies++;
        }
      } else {
        // Finer than float32 near xmax: the code is within float32's reach of the level.
        assert.ok(
          Math.abs(code * w.scale - plain[c * row + j]) <= 4e-7 * xmax,
        );
      }
      compared++;
    }
  });
  assert.ok(atTies <= compared / 200, `${layer.name}: ${atTies} ties`);
  assert.equal(compared, w.kept.length * row);
}

Deno.test("exportQuantized on a mixed-precision LeNet-5: codes of a plain uniform quantizer, weights of evaluation, bits and channels of the report", async () => {
  const { gated, state } = await mixedLenet();
  const model = exportQuantized(gated, state);
  const cost = gatedBops(gated, state.params);
  for (const [i, layer] of model.layers.entries()) {
    const w = layer.weight as QuantizedWeights;
    assert.equal(w.bits, cost.layers[i].weightBits, layer.name);
    assert.equal(w.kept.length, cost.layers[i].keptChannels, layer.name);
    assert.equal(layer.activation?.bits ?? null, cost.layers[i].activationBits);
    const xmax = state.params[`${layer.name}.weight.xmax`].get(0);
    assert.equal(w.xmax, xmax);
    assert.equal(w.scale, gridScale(xmax, w.signed, w.bits));
    const [lo, hi] = codeRange(w.bits, w.signed);
    assert.ok(w.codes.every((k) => k >= lo && k <= hi), layer.name);
    assertPlainUniformCodes(
      layer.name,
      w,
      state.params[`${layer.name}.weight`],
      xmax,
    );
  }
  assert.deepEqual(
    model.layers.map((l) => (l.weight as QuantizedWeights).bits),
    [4, 2, 8, 32],
  );
  assert.deepEqual(model.layers.map((l) => l.activation?.bits ?? null), [
    2,
    4,
    16,
    null,
  ]);
  assert.equal(
    (model.layers[1].weight as QuantizedWeights).kept.length,
    64 - 13,
  );
  // On disk, the narrowest integer dtype of each grid.
  const dir = await Deno.makeTempDir();
  try {
    await saveQuantized(`${dir}/m.safetensors`, model);
    const raw = (await loadCheckpoint(`${dir}/m.safetensors`)).tensors;
    assert.deepEqual(
      ["conv1", "conv2", "fc1", "fc2"].map((l) => raw[`${l}.codes`].dtype),
      ["I8", "I8", "I8", "I32"],
    );
    assert.deepEqual(raw["conv2.codes"].shape, [51, 32 * 25]);
    assert.deepEqual(await loadQuantized(`${dir}/m.safetensors`), model);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }

  assertDequantizedAsEvaluated(gated, state, model);
});

/** The state with every parameter uploaded to `dev`. */
async function stateOn(state: GatedState, dev: Device): Promise<GatedState> {
  const params: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(state.params)) {
    params[name] = await t.to(dev);
  }
  return { params, signed: state.signed };
}

Deno.test("evaluateQuantized on MNIST gives evaluateGated's accuracy, on the reference and WASM devices", async () => {
  const { gated, state } = await mixedLenet();
  const model = exportQuantized(gated, state);
  // The reference device on 100 test images, WASM on 1,000.
  const small = (await loadMnist({ limit: 100 })).test;
  assert.equal(
    await evaluateQuantized(model, small),
    await evaluateGated(gated, state, small),
  );
  const data = (await loadMnist({ limit: 1000 })).test;
  using wasm = await device("wasm", { threads: 2 });
  const onWasm = await stateOn(state, wasm);
  const gatedAccuracy = await evaluateGated(gated, onWasm, data, {
    batchSize: 256,
  });
  assert.equal(
    await evaluateQuantized(model, data, { device: wasm, batchSize: 256 }),
    gatedAccuracy,
  );
  // Exporting from the WASM device gives the same model, bit for bit.
  assert.deepEqual(exportQuantized(gated, onWasm), model);
  // Not a constant: the accuracy of an untrained model is near chance.
  assert.ok(gatedAccuracy < 0.5);
});

Deno.test("the fused inference path (quantize + max-pool in one pass) gives the two-step logits and predictions, bit for bit", async () => {
  const { gated, state } = await mixedLenet();
  const model = exportQuantized(gated, state);
  const data = (await loadMnist({ limit: 200 })).test;
  const images = data.images.slice(0, 24 * 784);
  using wasm = await device("wasm", { threads: 2, parallelThreshold: 1 });
  const grids = new Map(model.layers.map((l) => [l.name, l.activation]));
  const devices: Device[] = [referenceDevice, wasm];
  for (const dev of devices) {
    const x = dev.upload(images, [24, 1, 28, 28]);
    const params = dequantizeParams(model, dev);
    // The two steps: ReLU, the activation quantizer, then the graph's pool.
    const twoSteps = runGraph(model.graph, params, x, {
      activation: (layer, a) => {
        const g = grids.get(layer.name);
        if (!g) return a;
        const bits = [4, 8, 16, 32].map((b) => (g.bits >= b ? 1 : 0));
        return quantizerOp(a, dev.upload([g.xmax], [1]), {
          chain: dev.upload(bits, [4]),
        }, { signed: g.signed });
      },
    }).output;
    assertBitwise(
      await runQuantized(model, x).read(),
      await twoSteps.read(),
      `runQuantized, ${dev.name}`,
    );
  }
  // evaluateGated predicts the labels of the two-step gated forward pass.
  const x = Tensor.from(images, [24, 1, 28, 28]);
  const q = new Map(gated.quantizers.map((info) => [info.name, info]));
  const gatesOf = (name: string) => {
    const info = q.get(name)!;
    return gatesOp({
      chain: state.params[info.logitsParam],
      ...(info.pruneParam ? { g2: state.params[info.pruneParam] } : {}),
    }, null);
  };
  const apply = (name: string, t: Tensor) =>
    q.has(name)
      ? quantizerOp(t, state.params[q.get(name)!.xmaxParam], gatesOf(name), {
        signed: state.signed[name],
      })
      : t;
  const logits = runGraph(gated.model, state.params, x, {
    weight: (layer, w) => apply(`${layer.name}.weight`, w),
    activation: (layer, a) => apply(`${layer.name}.act`, a),
  }).output.toFloat32Array();
  const labels = Int32Array.from({ length: 24 }, (_, i) => {
    const row = logits.subarray(10 * i, 10 * i + 10);
    return row.indexOf(Math.max(...row));
  });
  const own = makeDataset(images, labels, [1, 28, 28]);
  assert.equal(await evaluateGated(gated, state, own, { batchSize: 10 }), 1);
  assert.equal(await evaluateGated(gated, await stateOn(state, wasm), own), 1);
});

Deno.test("saveQuantized/loadQuantized round-trip unsigned 32-bit codes, float layers, fully pruned layers", async () => {
  const gated = bayesianBits(TINY, { fullPrecision: ["d2"] });
  // All non-negative: an unsigned weight grid.
  const init = await initTiny(gated, [0.5, 0.25, 0.125, 1, 0.75, 0.3]);
  assert.equal(init.signed["d1.weight"], false);
  const state = {
    signed: init.signed,
    params: { ...init.params, "d1.weight.logits": Tensor.from([6, 6, 6, 6]) },
  };
  const model = exportQuantized(gated, state);
  const w1 = model.layers[0].weight as QuantizedWeights;
  assert.equal(w1.bits, 32);
  assert.ok(w1.codes instanceof Uint32Array);
  assert.ok(Math.max(...w1.codes) > 2 ** 31, "codes above the int32 range");
  assert.equal(model.layers[1].weight.bits, "float");
  const dir = await Deno.makeTempDir();
  try {
    await saveQuantized(`${dir}/a.safetensors`, model);
    assert.deepEqual(await loadQuantized(`${dir}/a.safetensors`), model);
    const raw = (await loadCheckpoint(`${dir}/a.safetensors`)).tensors;
    assert.equal(raw["d1.codes"].dtype, "U32");
    assert.deepEqual(raw["d1.codes"].shape, [3, 2]);
    assert.equal(raw["d2.weight"].dtype, "F32");

    // Every channel pruned: no codes, and still a consistent file.
    const pruned = exportQuantized(gated, {
      ...state,
      params: { ...state.params, "d1.weight.prune": Tensor.from([-6, -6, -6]) },
    });
    assert.deepEqual((pruned.layers[0].weight as QuantizedWeights).kept, []);
    await saveQuantized(`${dir}/b.safetensors`, pruned);
    const back = await loadQuantized(`${dir}/b.safetensors`);
    assert.deepEqual(back, pruned);
    assert.deepEqual(
      [...dequantizeParams(back)["d1.weight"].toFloat32Array()],
      [0, 0, 0, 0, 0, 0],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bad exported models are refused with the reason, on check, save and load; nothing is written", async () => {
  const { gated, state } = await tinyState();
  const model = exportQuantized(gated, state);
  const w1 = model.layers[0].weight as QuantizedWeights;
  const withWeight = (weight: Partial<QuantizedWeights>): QuantizedModel => ({
    ...model,
    layers: [
      { ...model.layers[0], weight: { ...w1, ...weight } },
      model.layers[1],
    ],
  });
  const cases: [QuantizedModel, RegExp][] = [
    [
      withWeight({ codes: new Int32Array([4, -2, 7, -8]) }),
      /code -8 at 3 is outside \[-7, 7\]/,
    ],
    [
      withWeight({ scale: w1.scale * 2 }),
      /scale .* does not match the range's/,
    ],
    [withWeight({ bits: 3 as 2 }), /bit width 3/],
    [withWeight({ kept: [2, 0] }), /kept channels must be ascending/],
    [withWeight({ kept: [0] }), /needs 2 codes/],
    [withWeight({ codes: new Uint32Array([4, 2, 7, 7]) }), /in a Int32Array/],
    [withWeight({ xmax: NaN }), /range NaN/],
    [
      { ...model, layers: [model.layers[1]] },
      /layers \[d2\] are not the graph's \[d1, d2\]/,
    ],
    [{ ...model, schema: "other" as "bbits.quantized/1" }, /schema "other"/],
    [{
      ...model,
      layers: [
        { ...model.layers[0], bias: new Float32Array([0, NaN, 0]) },
        model.layers[1],
      ],
    }, /bias is not finite/],
  ];
  const dir = await Deno.makeTempDir();
  try {
    for (const [bad, message] of cases) {
      assert.throws(() => checkQuantizedModel(bad), message);
      await assert.rejects(
        saveQuantized(`${dir}/bad.safetensors`, bad),
        message,
      );
      await assert.rejects(
        Deno.stat(`${dir}/bad.safetensors`),
        Deno.errors.NotFound,
      );
    }
    // A corrupt file, and a training snapshot, are not exported models.
    await saveQuantized(`${dir}/good.safetensors`, model);
    const bytes = await Deno.readFile(`${dir}/good.safetensors`);
    bytes[bytes.length - 3] ^= 0xff;
    await Deno.writeFile(`${dir}/corrupt.safetensors`, bytes);
    await assert.rejects(
      loadQuantized(`${dir}/corrupt.safetensors`),
      /checksum|SHA-256/i,
    );
    await saveSnapshot(`${dir}/snapshot.safetensors`, {
      snapshot: {
        method: "bayesian-bits",
        phase: "bayesian-bits",
        epoch: 1,
        epochs: 1,
        history: [],
        state,
        optimizerState: { step: 0, slots: {} },
      },
      run: {},
    });
    await assert.rejects(
      loadQuantized(`${dir}/snapshot.safetensors`),
      /state kind is "bbits.training-snapshot", expected "bbits.quantized-model"/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function quietly<T>(f: () => Promise<T>): Promise<T> {
  const { log, error } = console;
  console.log = () => {};
  console.error = () => {};
  try {
    return await f();
  } finally {
    console.log = log;
    console.error = error;
  }
}

Deno.test("deno task train writes quantized.safetensors; deno task export writes the same from the checkpoint", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const out = `${dir}/run`;
    assert.equal(
      await quietly(() =>
        trainCommand([
          "--epochs",
          "1",
          "--limit",
          "256",
          "--init-logits",
          "2=1,4=1,8=1",
          "--lr-logits",
          "0.05",
          "--out",
          out,
          "--threads",
          "1",
        ])
      ),
      0,
    );
    const fromTrain = await loadQuantized(`${out}/quantized.safetensors`);
    const { snapshot } = await loadSnapshot(`${out}/checkpoint.safetensors`);
    assert.deepEqual(
      fromTrain.layers.map((l) => (l.weight as QuantizedWeights).kept.length),
      gatedBops(bayesianBits(lenet5()), snapshot.state.params).layers.map((l) =>
        l.keptChannels
      ),
    );
    assert.equal(
      await quietly(() =>
        exportCommand(["--from", out, "--out", `${dir}/again.safetensors`])
      ),
      0,
    );
    assert.deepEqual(
      await loadQuantized(`${dir}/again.safetensors`),
      fromTrain,
    );
    await assert.rejects(
      exportCommand(["--out", `${dir}/x.safetensors`]),
      /needs --from/,
    );
    await assert.rejects(
      exportCommand(["--from", `${dir}/again.safetensors`]),
      /state kind is "bbits.quantized-model"/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
