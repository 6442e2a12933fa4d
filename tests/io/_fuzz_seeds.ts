/**
 * The valid inputs the fuzz test (`fuzz_test.ts`) mutates, one or more per
 * decoder and loader, and the equivalence check of a loaded snapshot.
 */

import assert from "node:assert/strict";
import { encodeIdx } from "../../core/idx.ts";
import { exportQuantized } from "../../core/methods/bayesian_bits/method.ts";
import {
  bayesianBits,
  initGated,
} from "../../core/methods/bayesian_bits/model.ts";
import { trainBayesianBits } from "../../core/methods/bayesian_bits/train.ts";
import { initGraph } from "../../core/graph.ts";
import { randomKey } from "../../core/rng.ts";
import { encodeSafetensors } from "../../core/safetensors.ts";
import { Tensor } from "../../core/tensor.ts";
import { saveCheckpoint } from "../../io/checkpoint.ts";
import { saveQuantized } from "../../io/quantized.ts";
import {
  loadSnapshot,
  saveSnapshot,
  type StoredSnapshot,
} from "../../io/snapshot.ts";
import { rowSumData, TINY_3X3 } from "../_fixtures.ts";
import { bitsOf, withTempDir } from "../_io_fixtures.ts";

/** The file seeds: whole files as written. */
export interface Seeds {
  readonly checkpoint: readonly Uint8Array[];
  readonly snapshot: readonly Uint8Array[];
  readonly quantized: readonly Uint8Array[];
}

function formats() {
  const safetensors = [
    encodeSafetensors(
      {
        "fc.weight": {
          shape: [2, 3],
          data: new Float32Array([0.5, -1, 3e38, -0, 1e-45, 2]),
        },
        "step": { shape: [], data: new Int32Array([7]) },
        "codes": { shape: [0, 5], data: new Uint8Array(0) },
        "i16": { shape: [3], data: new Int16Array([-1, 2, 300]) },
      },
      { "bbits.version": "1", note: "seed" },
    ),
    encodeSafetensors({
      x: { shape: [4], data: new Int8Array([1, -2, 3, -4]) },
    }),
  ];
  const idx = [
    encodeIdx({
      dtype: "uint8",
      shape: [2, 3, 3],
      data: new Uint8Array(18).map((_, i) => i * 13),
    }),
    encodeIdx({ dtype: "uint8", shape: [5], data: [0, 1, 2, 9, 255] }),
    encodeIdx({
      dtype: "float32",
      shape: [2, 2],
      data: [0.5, -1, NaN, Infinity],
    }),
    encodeIdx({ dtype: "int16", shape: [3], data: [-300, 0, 300] }),
    encodeIdx({ dtype: "uint8", shape: [0, 28, 28], data: [] }),
  ];
  const report = JSON.stringify({
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
      macs: 1000,
      weightBits: 8,
      weightQuantized: true,
      activationBits: 4,
      inputBits: 8,
      keptChannels: 3,
      totalChannels: 4,
      keptInputFraction: 1,
      gbops: 0.064,
      weightGates: { chain: [1, 0.5, 0, 0], prune: [1, 0.25, 1, 1] },
      activationGates: null,
    }],
    history: [{
      epoch: 1,
      phase: "bayesian-bits",
      loss: 1.5,
      crossEntropy: 1.25,
      metrics: { prior: 3 },
      testAccuracy: 0.5,
      relativeGbops: 7,
      seconds: 2,
      samplesPerSecond: 100,
    }],
    run: { seed: 1, command: "deno task train" },
  });
  return { safetensors, idx, report };
}

async function files(): Promise<Seeds> {
  const gated = bayesianBits(TINY_3X3);
  const float = initGraph(TINY_3X3, randomKey(5));
  const data = rowSumData(8, 2);
  const x = Tensor.from(data.images.slice(0, 36), [4, 1, 3, 3]);
  const state = await initGated(gated, float, x);
  const run = await trainBayesianBits(
    gated,
    state,
    { train: data, test: data },
    {
      epochs: 1,
      batchSize: 4,
      key: randomKey(6),
    },
  );
  let seeds: Seeds = { checkpoint: [], snapshot: [], quantized: [] };
  await withTempDir(async (dir) => {
    const read = (name: string) => Deno.readFile(`${dir}/${name}`);
    await saveCheckpoint(`${dir}/c`, {
      tensors: { w: { shape: [2], data: new Float32Array([1, -2]) } },
      state: { epoch: 1, nested: { list: [1, "a", null], flag: true } },
    });
    await saveSnapshot(`${dir}/s`, {
      snapshot: run,
      run: { seed: 6, config: { mu: 0.01 } },
    });
    await saveQuantized(`${dir}/q`, exportQuantized(gated, run.state));
    seeds = {
      checkpoint: [await read("c")],
      snapshot: [await read("s")],
      quantized: [await read("q")],
    };
  });
  return seeds;
}

/** The seeds, built once each. */
export const fuzzSeeds = { formats, files };

/** A loaded snapshot as host values, for comparison. */
async function hostOf(stored: StoredSnapshot) {
  const { snapshot } = stored;
  const tensors: Record<string, unknown> = {};
  for (const [name, t] of Object.entries(snapshot.state.params)) {
    tensors[`param/${name}`] = [t.shape, bitsOf(await t.read())];
  }
  for (const [param, slots] of Object.entries(snapshot.optimizerState.slots)) {
    for (const [slot, t] of Object.entries(slots)) {
      tensors[`opt/${param}/${slot}`] = [t.shape, bitsOf(await t.read())];
    }
  }
  const { params: _, stats: __, ...fields } = snapshot.state;
  return {
    ...snapshot,
    state: fields,
    optimizerState: snapshot.optimizerState.step,
    tensors,
    run: stored.run,
  };
}

/**
 * Loads the snapshot at `path`, saves it to `again`, loads that, and checks
 * both loads hold the same values.
 */
export async function compareSnapshots(
  path: string,
  again: string,
): Promise<boolean> {
  const loaded = await loadSnapshot(path);
  await saveSnapshot(again, loaded);
  assert.deepEqual(
    await hostOf(await loadSnapshot(again)),
    await hostOf(loaded),
  );
  return true;
}
