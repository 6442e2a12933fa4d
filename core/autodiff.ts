/**
 * Reverse-mode automatic differentiation over tensor ops.
 *
 * Every differentiable op computes its output with its device's kernels
 * and, when a gradient tape is recording, registers the output's
 * vector-Jacobian product (VJP) beside it with {@link recordOp}.
 * {@link valueAndGrad} is the user-facing transform, JAX style:
 * `valueAndGrad(lossFn)(params, ...args)` returns the loss and its gradient
 * with respect to every entry of the `params` record, all on the params'
 * device (nothing is read back).
 *
 * Tensors are immutable and identified by object identity, so the tape maps
 * each op's output tensor to the inputs it came from.
 *
 * @module
 */

import { Tensor } from "./tensor.ts";

/**
 * Maps the gradient of an op's output to the gradients of its inputs.
 * `needsGrad[k]` says whether input `k` depends on a parameter; a VJP may
 * return `null` for the others and skip computing them (e.g. the gradient of
 * a network's input image).
 */
export type Vjp = (
  outputGrad: Tensor,
  needsGrad: readonly boolean[],
) => readonly (Tensor | null)[];

interface TapeEntry {
  readonly output: Tensor;
  readonly inputs: readonly Tensor[];
  readonly needsGrad: readonly boolean[];
  readonly vjp: Vjp;
}

interface Tape {
  readonly entries: TapeEntry[];
  /** The parameters and every tensor computed from one. */
  readonly differentiable: WeakSet<Tensor>;
}

let activeTape: Tape | null = null;

/**
 * Registers an op's output, its inputs and its VJP on the active tape. A
 * no-op when nothing records. Op implementations call this; users do not.
 *
 * @param output The op's output.
 * @param inputs The tensors the output depends on differentiably.
 * @param vjp Given `dL/doutput`, returns `dL/dinput` for each input (or
 *   `null` for no gradient), each shaped like the input.
 * @returns `output`, for chaining.
 *
 * @example
 * ```ts
 * import { Tensor } from "@bbits/core";
 * import { recordOp, scale } from "@bbits/core/ops";
 * import assert from "node:assert/strict";
 *
 * const x = Tensor.from([1, 2]);
 * const y = recordOp(Tensor.from([2, 4]), [x], (g) => [scale(g, 2)]);
 * assert.equal(y.get(1), 4);
 * ```
 */
export function recordOp(
  output: Tensor,
  inputs: readonly Tensor[],
  vjp: Vjp,
): Tensor {
  if (!activeTape) return output;
  const needsGrad = inputs.map((t) => activeTape!.differentiable.has(t));
  // An op on constants only (data, fixed statistics) needs no backward pass.
  if (!needsGrad.includes(true)) return output;
  activeTape.differentiable.add(output);
  activeTape.entries.push({ output, inputs, needsGrad, vjp });
  return output;
}

/** Whether a tape is recording (ops may skip saving VJP state when not). */
export function isRecording(): boolean {
  return activeTape !== null;
}

/** A record of named parameter tensors. */
export type Params = Readonly<Record<string, Tensor>>;

/** The gradient of every parameter, as tensors shaped like the parameters. */
export type Grads = Readonly<Record<string, Tensor>>;

/** What a differentiated function returns. */
export interface ValueAndGrad<P extends Params> {
  /** The loss, a one-element tensor on the params' device. */
  readonly value: Tensor;
  /** `dL/dp` for every parameter (zeros where the loss does not depend on it). */
  readonly grads: { [K in keyof P]: Tensor };
}

/** {@link ValueAndGrad} of a function that also returns auxiliary data. */
export interface ValueAndGradAux<P extends Params, X> extends ValueAndGrad<P> {
  /** The second element the function returned, untouched. */
  readonly aux: X;
}

/**
 * Transforms a scalar loss function into one returning the loss and its
 * gradient with respect to every parameter of the first argument. With
 * `{ aux: true }` the function returns `[loss, aux]` and the result carries
 * `aux` along (e.g. the parts of a loss, new batch-norm statistics).
 *
 * The loss is not read back: check it is finite when you read it.
 *
 * @param lossFn A function of a parameter record (and any further
 *   arguments) returning a one-element tensor (or `[tensor, aux]`).
 * @param options `aux: true` for functions that return `[loss, aux]`.
 * @returns `(params, ...args) => { value, grads }` (and `aux`).
 * @throws {TypeError} If the loss is not a one-element tensor.
 *
 * @example The gradient of sum(w * w) is 2 w
 * ```ts
 * import { Tensor, valueAndGrad } from "@bbits/core";
 * import { mul, sum } from "@bbits/core/ops";
 * import assert from "node:assert/strict";
 *
 * const f = valueAndGrad((p: { w: Tensor }) => sum(mul(p.w, p.w)));
 * const { value, grads } = f({ w: Tensor.from([1, -3]) });
 * assert.equal(value.get(0), 10);
 * assert.deepEqual([...grads.w.toFloat32Array()], [2, -6]);
 * ```
 */
export function valueAndGrad<P extends Params, A extends unknown[]>(
  lossFn: (params: P, ...args: A) => Tensor,
  options?: { readonly aux?: false },
): (params: P, ...args: A) => ValueAndGrad<P>;
/**
 * {@link valueAndGrad} of a function returning `[loss, aux]`.
 *
 * @param lossFn The function.
 * @param options `{ aux: true }`.
 * @returns `(params, ...args) => { value, grads, aux }`.
 */
export function valueAndGrad<P extends Params, A extends unknown[], X>(
  lossFn: (params: P, ...args: A) => readonly [Tensor, X],
  options: { readonly aux: true },
): (params: P, ...args: A) => ValueAndGradAux<P, X>;
export function valueAndGrad<P extends Params, A extends unknown[], X>(
  lossFn: (params: P, ...args: A) => Tensor | readonly [Tensor, X],
  options: { readonly aux?: boolean } = {},
): (params: P, ...args: A) => ValueAndGrad<P> | ValueAndGradAux<P, X> {
  return (params: P, ...args: A) => {
    const outer = activeTape;
    const tape: TapeEntry[] = [];
    activeTape = {
      entries: tape,
      differentiable: new WeakSet(Object.values(params)),
    };
    let result: Tensor | readonly [Tensor, X];
    try {
      result = lossFn(params, ...args);
    } finally {
      activeTape = outer;
    }
    const [loss, aux] = options.aux
      ? result as readonly [Tensor, X]
      : [result as Tensor, undefined];
    if (!(loss instanceof Tensor) || loss.size !== 1) {
      throw new TypeError(
        `valueAndGrad needs a loss that is a one-element Tensor, got ${
          loss instanceof Tensor
            ? `shape [${loss.shape.join(", ")}]`
            : typeof loss
        }`,
      );
    }
    const kernels = loss.device.kernels;
    const grad = new Map<Tensor, Tensor>([
      [loss, loss.device.upload([1], loss.shape)],
    ]);
    for (let i = tape.length - 1; i >= 0; i--) {
      const entry = tape[i];
      const g = grad.get(entry.output);
      if (!g) continue;
      const inputGrads = entry.vjp(g, entry.needsGrad);
      entry.inputs.forEach((input, k) => {
        const gi = inputGrads[k];
        if (!gi || !entry.needsGrad[k]) return;
        const acc = grad.get(input);
        grad.set(input, acc ? kernels.add(acc, gi) : gi);
      });
    }
    const grads = {} as { [K in keyof P]: Tensor };
    for (const key of Object.keys(params) as (keyof P & string)[]) {
      const p = params[key];
      const g = grad.get(p);
      grads[key] = g
        ? (g.shape.join() === p.shape.join() ? g : g.reshape(p.shape))
        : p.device.zeros(p.shape);
    }
    return options.aux
      ? { value: loss, grads, aux: aux as X }
      : { value: loss, grads };
  };
}
