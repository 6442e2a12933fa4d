/**
 * BSQ's costs (spec `bsq.md` sections 5 and 7): relative GBOPs in three
 * conventions (weight bits `N + 1`, the primary count; the paper's `N`;
 * "executable", every width rounded up to 2, 4, 8, 16 or 32), the native
 * compression figure `32 TP / TB`, and the regulariser's value on the host.
 *
 * @module
 */

import type { GraphNode } from "../../graph.ts";
import { producerOf } from "../../frozen.ts";
import { planeNorms } from "../../reference/bitplanes.ts";
import { hostF32 } from "../../tensor.ts";
import { type BsqModel, type BsqState, layerParams } from "./model.ts";

/** Bits of the network input, as every method counts them. */
export const INPUT_BITS = 8;

/** BSQ's costs of one precision assignment. */
export interface BsqCost {
  /** Relative GBOPs (percent) with `bw = N + 1` (primary). */
  readonly relativeGbops: number;
  /** Relative GBOPs with `bw = N` (the paper's convention). */
  readonly relativeGbopsPaper: number;
  /** Relative GBOPs with widths rounded up to 2, 4, 8, 16 or 32. */
  readonly relativeGbopsExecutable: number;
  /** BOPs per sample with `bw = N + 1`. */
  readonly bops: number;
  /** `32 TP / TB`, `TB = sum_l n_l N_l` (biases float, not counted). */
  readonly compression: number;
}

/** The next of 2, 4, 8, 16, 32 at or above `bits` (0 stays 0). */
export function executableBits(bits: number): number {
  if (bits === 0) return 0;
  return [2, 4, 8, 16, 32].find((b) => b >= bits) ?? 32;
}

/** Each layer's input bits: the network input's, or those of the activation feeding it. */
function inputBits(q: BsqModel): Map<string, number> {
  const nodes = new Map(q.model.nodes.map((n) => [n.name, n]));
  const byName = new Map(q.layers.map((l) => [l.info.name, l]));
  const out = new Map<string, number>();
  for (const layer of q.layers) {
    const node = nodes.get(layer.info.name) as Extract<
      GraphNode,
      { input: string }
    >;
    const producer = producerOf(nodes, node.input);
    const from = producer && byName.get(producer.name);
    out.set(
      layer.info.name,
      producer === null
        ? INPUT_BITS
        : from?.quantizeActivation
        ? q.options.activationBits
        : 32,
    );
  }
  return out;
}

/**
 * The costs of per-layer plane counts `bits` (spec section 7): a layer
 * costs `MACs ba bw`, `ba` the bits of its input (8 for the network input,
 * `a` after a quantized activation, else 32); a 0-bit layer costs nothing.
 *
 * @param q The BSQ model.
 * @param bits `N` per layer.
 * @returns The three relative GBOPs figures and the compression.
 *
 * @example Spec section 10, case 10
 * ```ts
 * import { lenet5 } from "@bbits/core";
 * import { bsq, bsqCost } from "@bbits/core/bsq";
 * import assert from "node:assert/strict";
 *
 * const q = bsq(lenet5(), { activationBits: 4 });
 * const cost = bsqCost(q, { conv1: 3, conv2: 2, fc1: 2, fc2: 4 });
 * assert.equal(cost.bops, 60461056);
 * assert.equal(cost.relativeGbops.toFixed(4), "1.3837");
 * assert.equal(cost.relativeGbopsPaper.toFixed(4), "0.9509");
 * ```
 */
export function bsqCost(
  q: BsqModel,
  bits: Readonly<Record<string, number>>,
): BsqCost {
  const ins = inputBits(q);
  let [bops, paper, executable, baseline, memory] = [0, 0, 0, 0, 0];
  for (const layer of q.layers) {
    const { name, macs } = layer.info;
    const n = bits[name];
    const ba = ins.get(name)!;
    const bw = n === 0 ? 0 : n + 1;
    bops += macs * ba * bw;
    paper += macs * ba * n;
    executable += macs * executableBits(ba) * executableBits(bw);
    baseline += macs * 32 * 32;
    memory += layer.size * n;
  }
  return {
    relativeGbops: 100 * bops / baseline,
    relativeGbopsPaper: 100 * paper / baseline,
    relativeGbopsExecutable: 100 * executable / baseline,
    bops,
    compression: memory === 0 ? Infinity : 32 * q.totalParams / memory,
  };
}

/**
 * The regulariser `R = sum_l n_l N_l BGL_l / TP` (spec section 5) of the
 * current planes, on the host (float64); 0 once the scheme is fixed.
 *
 * @param q The BSQ model.
 * @param state Its state (parameters readable on the host).
 * @returns `R`, without `alpha`.
 */
export function regularizerValue(q: BsqModel, state: BsqState): number {
  if (state.stage !== "planes") return 0;
  let r = 0;
  for (const layer of q.layers) {
    const names = layerParams(layer.info.name);
    const n = state.bits[layer.info.name];
    const norms = planeNorms(
      hostF32(state.params[names.pos]),
      hostF32(state.params[names.neg]),
      n,
    );
    r += layer.size * n * norms.reduce((a, b) => a + b, 0) / q.totalParams;
  }
  return r;
}

/** `n_l N_l / TP`: a layer's weight in the regulariser. */
export function memoryWeight(
  q: BsqModel,
  layer: string,
  planes: number,
): number {
  const l = q.layers.find((x) => x.info.name === layer)!;
  return l.size * planes / q.totalParams;
}
