/**
 * Frozen LeNet-5 models for the ONNX tests and the ONNX Runtime agreement
 * script: Bayesian Bits with fixed gates (weights at `bits`, activations at
 * 8 bits, every third channel of the pruned layers pruned) on float
 * weights, and ONNX Runtime's predictions next to ours.
 */

import { bayesianBits, initGated, lenet5, type Tensor } from "../../mod.ts";
import type { Dataset } from "../../core/data.ts";
import { runFrozen } from "../../core/frozen.ts";
import type { Frozen } from "../../core/method.ts";
import { freezeGated } from "../../core/methods/bayesian_bits/method.ts";
import type { ParamRecord } from "../../core/loop.ts";

/** Gate logits that switch a chain on up to `bits` (2, 4, 8, 16 or 32). */
function chainLogits(bits: number): number[] {
  return [4, 8, 16, 32].map((b) => (bits >= b ? 6 : -6));
}

/**
 * A frozen LeNet-5: weights at `bits`, activations at `activationBits`,
 * channel `c` of each pruned layer pruned when `c % 3 === 1` (unless
 * `prune` is false).
 */
export async function fixedGatesLenet(
  float: { params: ParamRecord },
  firstBatch: Tensor,
  bits: number,
  activationBits = 8,
  prune = true,
): Promise<Frozen> {
  const gated = bayesianBits(lenet5());
  const state = await initGated(gated, float, firstBatch);
  const params: Record<string, Tensor> = { ...state.params };
  const dev = firstBatch.device;
  for (const q of gated.quantizers) {
    const b = q.kind === "weight" ? bits : activationBits;
    params[q.logitsParam] = dev.upload(chainLogits(b), [4]);
    if (q.pruneParam) {
      params[q.pruneParam] = dev.upload(
        Array.from(
          { length: q.pruneChannels },
          (_, c) => prune && c % 3 === 1 ? -6 : 6,
        ),
        [q.pruneChannels],
      );
    }
  }
  return freezeGated(gated, { ...state, params });
}

/** The index of the largest of each row of `[n, k]` logits. */
export function argmaxRows(logits: Float32Array, k: number): Int32Array {
  const out = new Int32Array(logits.length / k);
  for (let i = 0; i < out.length; i++) {
    let best = 0;
    for (let j = 1; j < k; j++) {
      if (logits[i * k + j] > logits[i * k + best]) best = j;
    }
    out[i] = best;
  }
  return out;
}

/** Our predictions for a dataset, batch by batch, on the parameters' device. */
export async function frozenPredictions(
  frozen: Frozen,
  data: Dataset,
  batch = 1000,
): Promise<Int32Array> {
  const out = new Int32Array(data.count);
  const dev = Object.values(frozen.params)[0].device;
  const size = data.shape.reduce((a, b) => a * b, 1);
  for (let start = 0; start < data.count; start += batch) {
    const n = Math.min(batch, data.count - start);
    const images = data.images.subarray(start * size, (start + n) * size);
    const logits = dev.scope(() =>
      runFrozen(frozen, dev.upload(images, [n, ...data.shape]))
    );
    out.set(argmaxRows(await logits.read() as Float32Array, 10), start);
    dev.free(logits);
  }
  return out;
}

/** ONNX Runtime's predictions for a dataset (the model's input `input`, output `logits`). */
export async function onnxRuntimePredictions(
  bytes: Uint8Array,
  data: Dataset,
  batch = 1000,
): Promise<Int32Array> {
  // A development-only oracle, kept out of deno.json's imports and the
  // library's import graph.
  // deno-lint-ignore no-import-prefix
  const ort = await import("npm:onnxruntime-node@1.30.0");
  const session = await ort.InferenceSession.create(bytes);
  const out = new Int32Array(data.count);
  const size = data.shape.reduce((a, b) => a * b, 1);
  try {
    for (let start = 0; start < data.count; start += batch) {
      const n = Math.min(batch, data.count - start);
      const images = data.images.slice(start * size, (start + n) * size);
      const result = await session.run({
        input: new ort.Tensor("float32", images, [n, ...data.shape]),
      });
      out.set(argmaxRows(result.logits.data as Float32Array, 10), start);
    }
  } finally {
    await session.release();
  }
  return out;
}

/** Whether this process may load native code (ONNX Runtime needs `--allow-ffi`). */
export const FFI_GRANTED: boolean =
  Deno.permissions.querySync({ name: "ffi" }).state === "granted";
