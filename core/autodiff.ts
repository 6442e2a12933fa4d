/**
 * Reverse-mode automatic differentiation over tensor ops.
 *
 * Every differentiable op computes its output and, when a gradient tape is
 * recording, registers the output's vector-Jacobian product (VJP) beside it
 * with {@link recordOp}. {@link valueAndGrad} is the user-facing transform,
 * JAX style: `valueAndGrad(lossFn)(params, ...args)` returns the loss and
 * its gradient with respect to every entry of the `params` record.
 *
 * Tensors are immutable and identified by object identity, so the tape maps
 * each op's output tensor to the inputs it came from.
 *
 * @module
 */

import { Tensor, tensorStorage } from "./tensor.ts";

/**
 * Maps the gradient of an op's output to the gradients of its inputs.
 * `needsGrad[k]` says whether input `k` depends on a parameter; a VJP may
 * return `null` for the others and skip computing them (e.g. the gradient of
 * a network's input image).
 */
export type Vjp = (
  outputGrad: Float32Array,
  needsGrad: readonly boolean[],
) => readonly (Float32Array | null)[];

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
 *   `null` for no gradient), each the input's size.
 * @returns `output`, for chaining.
 *
 * @example
 * ```ts
 * import { recordOp, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const x = Tensor.from([1, 2]);
 * const y = recordOp(Tensor.from([2, 4]), [x], (g) => [g.map((v) => 2 * v)]);
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

/**
 * Transforms a scalar loss function into one returning the loss and its
 * gradient with respect to every parameter of the first argument.
 *
 * @param lossFn A function of a parameter record (and any further
 *   arguments) returning a one-element tensor.
 * @returns `(params, ...args) => { value, grads }`.
 * @throws {TypeError} If the loss is not a one-element tensor.
 * @throws {RangeError} If the loss is not finite.
 *
 * @example The gradient of sum(w * w) is 2 w
 * ```ts
 * import { mul, sum, Tensor, valueAndGrad } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const f = valueAndGrad((p: { w: Tensor }) => sum(mul(p.w, p.w)));
 * const { value, grads } = f({ w: Tensor.from([1, -3]) });
 * assert.equal(value, 10);
 * assert.deepEqual([...grads.w.toFloat32Array()], [2, -6]);
 * ```
 */
export function valueAndGrad<P extends Params, A extends unknown[]>(
  lossFn: (params: P, ...args: A) => Tensor,
): (
  params: P,
  ...args: A
) => { value: number; grads: { [K in keyof P]: Tensor } } {
  return (params: P, ...args: A) => {
    const outer = activeTape;
    const tape: TapeEntry[] = [];
    activeTape = {
      entries: tape,
      differentiable: new WeakSet(Object.values(params)),
    };
    let loss: Tensor;
    try {
      loss = lossFn(params, ...args);
    } finally {
      activeTape = outer;
    }
    if (!(loss instanceof Tensor) || loss.size !== 1) {
      throw new TypeError(
        `valueAndGrad needs a loss that is a one-element Tensor, got ${
          loss instanceof Tensor
            ? `shape [${loss.shape.join(", ")}]`
            : typeof loss
        }`,
      );
    }
    const value = tensorStorage(loss)[0];
    if (!Number.isFinite(value)) {
      throw new RangeError(`The loss is not finite: ${value}`);
    }
    const grad = new Map<Tensor, Float32Array>([[loss, new Float32Array([1])]]);
    for (let i = tape.length - 1; i >= 0; i--) {
      const entry = tape[i];
      const g = grad.get(entry.output);
      if (!g) continue;
      const inputGrads = entry.vjp(g, entry.needsGrad);
      entry.inputs.forEach((input, k) => {
        const gi = inputGrads[k];
        if (!gi || !entry.needsGrad[k]) return;
        const acc = grad.get(input);
        if (!acc) {
          grad.set(input, gi);
        } else {
          // Accumulate into a fresh array: VJPs may hand back shared buffers.
          const sum = new Float32Array(acc.length);
          for (let j = 0; j < acc.length; j++) sum[j] = acc[j] + gi[j];
          grad.set(input, sum);
        }
      });
    }
    const grads = {} as { [K in keyof P]: Tensor };
    for (const key of Object.keys(params) as (keyof P & string)[]) {
      const p = params[key];
      grads[key] = Tensor.adopt(
        grad.get(p)?.slice() ?? new Float32Array(p.size),
        p.shape,
      );
    }
    return { value, grads };
  };
}
