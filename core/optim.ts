/**
 * Optimizers, as pure functions.
 *
 * An {@link Optimizer} is a pair of pure functions in the style of JAX's
 * optax: `init(params)` makes a state, and `update(params, grads, state)`
 * returns `{ params, state }`: new parameters and a new state, never
 * touching its inputs. Parameters, gradients and the state's slots are
 * tensors on one device; each update runs there (the device's `adamUpdate`
 * / `sgdUpdate` kernels), reading nothing back.
 *
 * The state is a step counter (the number of updates done) and, per
 * parameter, named slot tensors (the moments of Adam, the momentum buffer
 * of SGD): a checkpoint saves them and rebuilds the same object to resume.
 *
 * Learning rates are numbers or {@link Schedule}s: pure functions of the
 * step counter, defined in `schedules.ts` and re-exported here.
 * {@link paramGroups} gives each group of parameters (weights, gate logits,
 * quantizer ranges, ...) its own optimizer and learning rate.
 *
 * Arithmetic is float64 per element; every stored value (parameter, slot)
 * is rounded to float32 once. Gradients are not read back to be checked:
 * a non-finite gradient shows up as a non-finite loss, which the trainer
 * checks whenever it reads the loss ({@link findNonFinite} names the tensor).
 *
 * @module
 */

import type { Params } from "./autodiff.ts";
import { checkOption, type LearningRate } from "./schedules.ts";
import type { Tensor } from "./tensor.ts";

export {
  constantSchedule,
  constantThenLinearSchedule,
  cosineSchedule,
  type LearningRate,
  perEpoch,
  type Schedule,
  stepSchedule,
} from "./schedules.ts";

/** Named parameter tensors, e.g. `{ "conv1.weight": ..., "conv1.weight.logits": ... }`. */
export type ParamTensors = Params;

/** Gradients: one tensor per parameter, with the parameter's name and shape. */
export type GradTensors = Readonly<Record<string, Tensor>>;

/** Optimizer state: a step counter and named slot tensors per parameter. */
export interface OptimizerState {
  /** The number of updates done so far (0 after `init`). */
  readonly step: number;
  /** Per parameter name, the optimizer's named buffers for it. */
  readonly slots: Readonly<Record<string, Readonly<Record<string, Tensor>>>>;
}

/** The result of one optimizer update. */
export interface OptimizerUpdate {
  /** The new parameters (new tensors). */
  readonly params: Record<string, Tensor>;
  /** The new state, with `step` one higher. */
  readonly state: OptimizerState;
}

/** An optimizer: pure `init` and `update` functions. */
export interface Optimizer {
  /**
   * Makes the initial state for `params`: step 0 and zeroed slots, on the
   * parameters' device.
   *
   * @param params The parameters to optimize.
   * @returns A fresh state.
   */
  readonly init: (params: ParamTensors) => OptimizerState;
  /**
   * Applies one update.
   *
   * @param params The current parameters (not modified).
   * @param grads A gradient for every parameter (not modified).
   * @param state The current state (not modified).
   * @returns New parameters and state.
   * @throws {TypeError} On a missing gradient, a gradient for an unknown
   *   parameter, or tensors that are not float32.
   * @throws {RangeError} On a gradient of the wrong shape, a state that does
   *   not fit the parameters, or a schedule that returns a bad learning rate.
   */
  readonly update: (
    params: ParamTensors,
    grads: GradTensors,
    state: OptimizerState,
  ) => OptimizerUpdate;
}

/** Options of {@link adam}, with PyTorch's names and defaults. */
export interface AdamOptions {
  /** Learning rate (PyTorch `lr`). */
  readonly lr: LearningRate;
  /** Decay of the first moment; default 0.9. */
  readonly beta1?: number;
  /** Decay of the second moment; default 0.999. */
  readonly beta2?: number;
  /** Added to the denominator; default 1e-8. */
  readonly eps?: number;
  /** L2 penalty added to the gradient (not decoupled as in AdamW); default 0. */
  readonly weightDecay?: number;
}

/** Options of {@link sgd}, with PyTorch's names and defaults (dampening 0). */
export interface SgdOptions {
  /** Learning rate (PyTorch `lr`). */
  readonly lr: LearningRate;
  /** Momentum factor `mu`; default 0 (plain SGD). */
  readonly momentum?: number;
  /** Nesterov momentum (needs `momentum > 0`); default false. */
  readonly nesterov?: boolean;
  /** L2 penalty added to the gradient; default 0. */
  readonly weightDecay?: number;
}

/** One group of {@link paramGroups}. */
export interface ParamGroup {
  /** The group's name, for error messages; unique among the groups. */
  readonly name: string;
  /** Whether a parameter (by name) belongs to this group. */
  readonly match: (paramName: string) => boolean;
  /** The optimizer of this group's parameters. */
  readonly optimizer: Optimizer;
}

function describe(value: unknown): string {
  if (value && typeof value === "object" && "dtype" in value) {
    return `a ${(value as Tensor).dtype} tensor`;
  }
  return Object.prototype.toString.call(value);
}

function checkLearningRate(what: string, lr: LearningRate): void {
  if (typeof lr === "function") return;
  checkOption(
    `${what} lr`,
    lr,
    (v) => Number.isFinite(v) && v >= 0,
    "a finite number >= 0 or a schedule",
  );
}

function learningRateAt(lr: LearningRate, step: number): number {
  if (typeof lr === "number") return lr;
  const value = lr(step);
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new RangeError(
      `The learning-rate schedule returned ${value} at step ${step}; it must return a finite number >= 0`,
    );
  }
  return value;
}

function isFloatTensor(value: unknown): value is Tensor {
  return typeof value === "object" && value !== null && "dtype" in value &&
    "device" in value && (value as Tensor).dtype === "float32";
}

function checkParamsAndGrads(params: ParamTensors, grads: GradTensors): void {
  for (const name of Object.keys(grads)) {
    if (!Object.hasOwn(params, name)) {
      throw new TypeError(
        `A gradient was given for "${name}", which is not a parameter (parameters: ${
          Object.keys(params).join(", ")
        })`,
      );
    }
  }
  for (const [name, param] of Object.entries(params)) {
    if (!isFloatTensor(param)) {
      throw new TypeError(
        `Parameter "${name}" must be a float32 tensor, got ${describe(param)}`,
      );
    }
    if (!Object.hasOwn(grads, name)) {
      throw new TypeError(`Missing gradient for parameter "${name}"`);
    }
    const grad = grads[name];
    if (!isFloatTensor(grad)) {
      throw new TypeError(
        `Gradient of "${name}" must be a float32 tensor, got ${describe(grad)}`,
      );
    }
    if (grad.size !== param.size) {
      throw new RangeError(
        `Gradient of "${name}" has ${grad.size} elements, the parameter has ${param.size}`,
      );
    }
  }
}

function checkState(
  params: ParamTensors,
  state: OptimizerState,
  slotNames: readonly string[],
): void {
  if (!Number.isSafeInteger(state?.step) || state.step < 0) {
    throw new RangeError(
      `Optimizer state step must be a non-negative integer, got ${state?.step}`,
    );
  }
  for (const [name, param] of Object.entries(params)) {
    const slots = state.slots?.[name];
    if (slots === undefined) {
      throw new RangeError(
        `Optimizer state has no entry for parameter "${name}"; make the state with init(params)`,
      );
    }
    for (const slot of slotNames) {
      const buffer = slots[slot];
      if (!isFloatTensor(buffer) || buffer.size !== param.size) {
        throw new RangeError(
          `Optimizer state slot "${slot}" of "${name}" must be a float32 tensor of ${param.size} elements, got ${
            isFloatTensor(buffer) ? `${buffer.size} elements` : describe(buffer)
          }`,
        );
      }
    }
  }
}

function zeroSlots(
  params: ParamTensors,
  slotNames: readonly string[],
): OptimizerState {
  const slots: Record<string, Record<string, Tensor>> = {};
  for (const [name, param] of Object.entries(params)) {
    if (!isFloatTensor(param)) {
      throw new TypeError(
        `Parameter "${name}" must be a float32 tensor, got ${describe(param)}`,
      );
    }
    slots[name] = Object.fromEntries(
      slotNames.map((slot) => [slot, param.device.zeros(param.shape)]),
    );
  }
  return { step: 0, slots };
}

/**
 * Adam (Kingma & Ba), as PyTorch's `torch.optim.Adam` computes it (defaults,
 * `amsgrad = false`, weight decay as an L2 term).
 *
 * With `t = state.step + 1` and `lr = lr(state.step)` for a schedule, each
 * element is updated as
 *
 * ```text
 * g  = grad + weightDecay * theta
 * m  = beta1 * m + (1 - beta1) * g
 * v  = beta2 * v + (1 - beta2) * g^2
 * theta = theta - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 * ```
 *
 * `m` and `v` start at 0 and are the slots `"m"` and `"v"`; the parameter
 * update uses the stored (float32) `m` and `v`. Each parameter's step runs
 * on its device's `adamUpdate` kernel.
 *
 * @param options `lr` and optionally `beta1` (0.9), `beta2` (0.999), `eps`
 *   (1e-8) and `weightDecay` (0).
 * @returns The optimizer.
 * @throws {RangeError} If `lr`, `eps` or `weightDecay` is negative or not
 *   finite, or a beta is outside [0, 1).
 *
 * @example
 * ```ts
 * import { adam, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const optimizer = adam({ lr: 0.1 });
 * const params = { w: Tensor.from([1, -1]) };
 * const state = optimizer.init(params);
 * const next = optimizer.update(params, { w: Tensor.from([3, -0.5]) }, state);
 * // The first bias-corrected Adam step moves each element by lr against its gradient's sign.
 * assert.deepEqual([...next.params.w.toFloat32Array()], [Math.fround(0.9), Math.fround(-0.9)]);
 * assert.equal(next.state.step, 1);
 * assert.deepEqual([...params.w.toFloat32Array()], [1, -1]); // inputs untouched
 * ```
 */
export function adam(options: AdamOptions): Optimizer {
  const {
    lr,
    beta1 = 0.9,
    beta2 = 0.999,
    eps = 1e-8,
    weightDecay = 0,
  } = options;
  checkLearningRate("Adam", lr);
  const isBeta = (v: number) => v >= 0 && v < 1;
  checkOption("Adam beta1", beta1, isBeta, "in [0, 1)");
  checkOption("Adam beta2", beta2, isBeta, "in [0, 1)");
  const isNonNegative = (v: number) => Number.isFinite(v) && v >= 0;
  checkOption("Adam eps", eps, isNonNegative, "a finite number >= 0");
  checkOption(
    "Adam weightDecay",
    weightDecay,
    isNonNegative,
    "a finite number >= 0",
  );
  const slotNames = ["m", "v"] as const;
  return {
    init: (params) => zeroSlots(params, slotNames),
    update: (params, grads, state) => {
      checkParamsAndGrads(params, grads);
      checkState(params, state, slotNames);
      const rate = learningRateAt(lr, state.step);
      const t = state.step + 1;
      const hyper = {
        beta1,
        beta2,
        eps,
        weightDecay,
        stepSize: rate / (1 - beta1 ** t),
        sqrtCorrection2: Math.sqrt(1 - beta2 ** t),
      };
      const newParams: Record<string, Tensor> = {};
      const newSlots: Record<string, Record<string, Tensor>> = {};
      for (const [name, theta] of Object.entries(params)) {
        const { m, v } = state.slots[name];
        const next = theta.device.kernels.adamUpdate(
          theta,
          grads[name].reshape(theta.shape),
          m.reshape(theta.shape),
          v.reshape(theta.shape),
          hyper,
        );
        newParams[name] = next.theta;
        newSlots[name] = { m: next.m, v: next.v };
      }
      return { params: newParams, state: { step: t, slots: newSlots } };
    },
  };
}

/**
 * SGD as PyTorch's `torch.optim.SGD` computes it (dampening 0): with
 * `g = grad + weightDecay * theta`,
 *
 * ```text
 * momentum 0:   theta = theta - lr * g
 * momentum mu:  b = mu * b + g;  theta = theta - lr * (nesterov ? g + mu * b : b)
 * ```
 *
 * The buffer `b` is the slot `"momentum"` (absent when `momentum` is 0).
 *
 * @param options `lr` and optionally `momentum` (0), `nesterov` (false) and
 *   `weightDecay` (0).
 * @returns The optimizer.
 * @throws {RangeError} If `lr`, `momentum` or `weightDecay` is negative or
 *   not finite, or `nesterov` is set with `momentum` 0 (as PyTorch).
 *
 * @example
 * ```ts
 * import { sgd, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const optimizer = sgd({ lr: 0.5, momentum: 0.9, nesterov: true });
 * const params = { w: Tensor.from([1]) };
 * const next = optimizer.update(params, { w: Tensor.from([2]) }, optimizer.init(params));
 * // b = 2; d = 2 + 0.9 * 2 = 3.8; w = 1 - 0.5 * 3.8
 * assert.equal(next.params.w.get(0), Math.fround(1 - 0.5 * 3.8));
 * ```
 */
export function sgd(options: SgdOptions): Optimizer {
  const { lr, momentum = 0, nesterov = false, weightDecay = 0 } = options;
  checkLearningRate("SGD", lr);
  const isNonNegative = (v: number) => Number.isFinite(v) && v >= 0;
  checkOption("SGD momentum", momentum, isNonNegative, "a finite number >= 0");
  checkOption(
    "SGD weightDecay",
    weightDecay,
    isNonNegative,
    "a finite number >= 0",
  );
  if (nesterov && momentum === 0) {
    throw new RangeError(
      "Nesterov SGD needs momentum > 0, got momentum 0",
    );
  }
  const slotNames = momentum > 0 ? ["momentum"] : [];
  return {
    init: (params) => zeroSlots(params, slotNames),
    update: (params, grads, state) => {
      checkParamsAndGrads(params, grads);
      checkState(params, state, slotNames);
      const hyper = {
        lr: learningRateAt(lr, state.step),
        momentum,
        nesterov,
        weightDecay,
      };
      const newParams: Record<string, Tensor> = {};
      const newSlots: Record<string, Record<string, Tensor>> = {};
      for (const [name, theta] of Object.entries(params)) {
        const buffer = momentum > 0
          ? state.slots[name].momentum.reshape(theta.shape)
          : null;
        const next = theta.device.kernels.sgdUpdate(
          theta,
          grads[name].reshape(theta.shape),
          buffer,
          hyper,
        );
        newParams[name] = next.theta;
        newSlots[name] = next.momentum ? { momentum: next.momentum } : {};
      }
      return {
        params: newParams,
        state: { step: state.step + 1, slots: newSlots },
      };
    },
  };
}

/**
 * The first tensor of a record holding a NaN or infinity, read back from its
 * device: what a trainer reports when a loss turned non-finite.
 *
 * @param tensors Named tensors (parameters or gradients).
 * @returns `null`, or a message naming the tensor, the element and its value.
 *
 * @example
 * ```ts
 * import { Tensor } from "@bbits/core";
 * import { findNonFinite } from "@bbits/core/training";
 * import assert from "node:assert/strict";
 *
 * assert.equal(await findNonFinite({ w: Tensor.from([1, 2]) }), null);
 * assert.match((await findNonFinite({ w: Tensor.from([1, NaN]) }))!, /"w" is not finite: element 1 is NaN/);
 * ```
 */
export async function findNonFinite(
  tensors: Readonly<Record<string, Tensor>>,
): Promise<string | null> {
  for (const [name, t] of Object.entries(tensors)) {
    const values = await t.read();
    for (let i = 0; i < values.length; i++) {
      if (!Number.isFinite(values[i])) {
        return `"${name}" is not finite: element ${i} is ${values[i]}`;
      }
    }
  }
  return null;
}

/**
 * Combines optimizers, one per group of parameters, into one optimizer,
 * e.g. Adam at 1e-3 for weights and at 1e-2 for gate logits.
 *
 * Each parameter belongs to the first group whose `match` accepts its name
 * (so a catch-all group goes last). The combined state has the usual form:
 * one step counter, shared by all groups, and each parameter's slots from
 * its group's optimizer.
 *
 * @param groups The groups, in matching order; at least one, names unique.
 * @returns The combined optimizer; its `init` and `update` throw a
 *   RangeError naming a parameter that matches no group.
 * @throws {RangeError} If `groups` is empty or two groups share a name.
 *
 * @example
 * ```ts
 * import { paramGroups, sgd, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const optimizer = paramGroups([
 *   { name: "gates", match: (name) => name.endsWith(".gates"), optimizer: sgd({ lr: 1 }) },
 *   { name: "weights", match: () => true, optimizer: sgd({ lr: 0.5 }) },
 * ]);
 * const params = { "fc.weight": Tensor.from([0]), "fc.gates": Tensor.from([0]) };
 * const grads = { "fc.weight": Tensor.from([1]), "fc.gates": Tensor.from([1]) };
 * const next = optimizer.update(params, grads, optimizer.init(params));
 * assert.equal(next.params["fc.weight"].get(0), -0.5);
 * assert.equal(next.params["fc.gates"].get(0), -1);
 * ```
 */
export function paramGroups(groups: readonly ParamGroup[]): Optimizer {
  if (!Array.isArray(groups) || groups.length === 0) {
    throw new RangeError(
      `paramGroups needs at least one group, got ${JSON.stringify(groups)}`,
    );
  }
  const names = groups.map((group) => group.name);
  const duplicate = names.find((name, i) => names.indexOf(name) !== i);
  if (duplicate !== undefined) {
    throw new RangeError(
      `Parameter group names must be unique; "${duplicate}" appears twice`,
    );
  }

  const split = <T>(
    record: Readonly<Record<string, T>>,
    params: ParamTensors,
  ) => {
    const parts: Record<string, T>[] = groups.map(() => ({}));
    for (const name of Object.keys(params)) {
      const index = groups.findIndex((group) => group.match(name));
      if (index < 0) {
        throw new RangeError(
          `Parameter "${name}" matches no parameter group (groups: ${
            names.join(", ")
          })`,
        );
      }
      if (Object.hasOwn(record, name)) parts[index][name] = record[name];
    }
    return parts;
  };

  return {
    init: (params) => {
      const parts = split(params, params);
      const slots = Object.assign(
        {},
        ...groups.map((group, i) => group.optimizer.init(parts[i]).slots),
      );
      return { step: 0, slots };
    },
    update: (params, grads, state) => {
      for (const name of Object.keys(grads)) {
        if (!Object.hasOwn(params, name)) {
          throw new TypeError(
            `A gradient was given for "${name}", which is not a parameter (parameters: ${
              Object.keys(params).join(", ")
            })`,
          );
        }
      }
      const paramParts = split(params, params);
      const gradParts = split(grads, params);
      const slotParts = split(state?.slots ?? {}, params);
      const results = groups.map((group, i) =>
        group.optimizer.update(paramParts[i], gradParts[i], {
          step: state?.step,
          slots: slotParts[i],
        })
      );
      return {
        params: Object.assign({}, ...results.map((r) => r.params)),
        state: {
          step: state.step + 1,
          slots: Object.assign({}, ...results.map((r) => r.state.slots)),
        },
      };
    },
  };
}
