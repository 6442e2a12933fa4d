/**
 * What the ONNX export stores per conv/dense layer, decided before any
 * node is written: the weight grid of every output channel, the smallest
 * ONNX integer type that holds its codes, which pruned channels leave the
 * file (with the matching input channels of the one layer they feed), and
 * the bias corrections that keep the result equal.
 *
 * A pruned channel's weights are 0, so it outputs the constant
 * `q(activation(bias))`; removing it moves that constant, times the
 * consumer's weights on it, into the consumer's bias. That is exact when
 * the consumer sees the constant at every position: a dense layer (through
 * a flatten, channel `c` is the block of inputs `c * H * W ...`), or a conv
 * without padding. A pruned channel feeding anything else (a padded or
 * grouped conv, an add, two readers, the graph's output) stays in the file
 * with zero weights, and the layer's notes say so.
 *
 * @module
 */

import {
  type ChannelCodeGrid,
  codeRange,
  type GridBits,
  gridScale,
} from "../core/export.ts";
import type { GraphNode, LayerInfo, ModelGraph } from "../core/graph.ts";
import type { GridPlan, LayerPlan } from "../core/method.ts";
import { CLIP_FACTOR } from "../core/reference/quantizer.ts";
import { roundHalfEven } from "../core/round.ts";
import { DATA_TYPE, type DataTypeName, integerRange } from "./onnx_proto.ts";

/** The integer types codes may be stored in, narrowest first. */
const CODE_TYPES: readonly DataTypeName[] = [
  "INT2",
  "UINT2",
  "INT4",
  "UINT4",
  "INT8",
  "UINT8",
  "INT16",
  "UINT16",
];

/**
 * The narrowest ONNX integer type holding codes in `[lo, hi]`, or `null`
 * when they need more than 16 bits.
 *
 * @param lo The lowest code.
 * @param hi The highest code.
 * @returns The type's name, or `null`.
 */
export function codeType(lo: number, hi: number): DataTypeName | null {
  return CODE_TYPES.find((t) => {
    const [min, max] = integerRange(DATA_TYPE[t]);
    return min <= lo && hi <= max;
  }) ?? null;
}

/**
 * The stored type of an activation grid's codes: the narrowest that holds
 * them, but at least 8 bits when the codes do not fill the type (a clip
 * bounds them then, and ONNX Runtime's clip fusion cannot read a sub-byte
 * zero point). Activations never reach the file, so this costs nothing.
 *
 * @param lo The lowest code.
 * @param hi The highest code.
 * @returns The type's name, or `null` beyond 16 bits.
 */
export function activationCodeType(
  lo: number,
  hi: number,
): DataTypeName | null {
  const narrowest = codeType(lo, hi);
  if (narrowest === null) return null;
  const [min, max] = integerRange(DATA_TYPE[narrowest]);
  if (min === lo && max === hi) return narrowest;
  const wide = lo < 0 ? ["INT8", "INT16"] : ["UINT8", "UINT16"];
  return (wide as DataTypeName[]).find((t) => {
    const [tmin, tmax] = integerRange(DATA_TYPE[t]);
    return tmin <= lo && hi <= tmax;
  }) ?? null;
}

/** A plan grid as codes on a step: per-tensor, or `null` when it stays float. */
export interface StepGrid {
  /** The width the plan counts. */
  readonly bits: number;
  /** The step. */
  readonly scale: number;
  /** The lowest code. */
  readonly codeMin: number;
  /** The highest code. */
  readonly codeMax: number;
}

/**
 * A residual or per-tensor uniform grid as codes on a step; `null` for a
 * 32-bit residual grid (finer than float32: it stays float, clipped).
 *
 * @param grid The plan's grid.
 * @returns The step grid, or `null`.
 */
export function stepGrid(grid: GridPlan): StepGrid | null {
  if (grid.kind === "uniform") return grid;
  if (grid.bits >= 32) return null;
  const [codeMin, codeMax] = codeRange(grid.bits as GridBits, grid.signed);
  return {
    bits: grid.bits,
    scale: gridScale(grid.xmax, grid.signed, grid.bits as GridBits),
    codeMin,
    codeMax,
  };
}

/**
 * The value a quantized activation takes for a constant input, on the
 * grid as the ONNX graph quantizes it.
 *
 * @param grid The activation grid, or `null`.
 * @param v The input.
 * @returns The quantized value.
 */
export function quantizeConstant(grid: GridPlan | null, v: number): number {
  if (grid === null) return v;
  const step = stepGrid(grid);
  if (step === null) {
    const hi = Math.fround(CLIP_FACTOR * (grid as { xmax: number }).xmax);
    const lo = (grid as { signed: boolean }).signed ? -hi : 0;
    return Math.min(hi, Math.max(lo, v));
  }
  const code = Math.min(
    step.codeMax,
    Math.max(step.codeMin, roundHalfEven(v / step.scale)),
  );
  return Math.fround(code * step.scale);
}

/** Applies a layer's activation to a number. */
export function activateNumber(
  kind: LayerInfo["activation"],
  v: number,
): number {
  if (kind === "relu") return Math.max(0, v);
  if (kind === "relu6") return Math.min(6, Math.max(0, v));
  return v;
}

/** The weight grid of every output channel, or `null` for float weights. */
export function channelGrids(
  info: LayerInfo,
  plan: LayerPlan,
): ChannelCodeGrid[] | null {
  const w = plan.weight;
  if (w === null) return null;
  if (w.kind === "uniform" && w.channels !== null) {
    if (w.channels.length !== info.outChannels) {
      throw new RangeError(
        `Cannot export "${info.name}.weight": ${w.channels.length} channel grids for ${info.outChannels} channels`,
      );
    }
    return w.channels.map((c) => ({ ...c, exact: c.bits <= 8 }));
  }
  const step = stepGrid(w);
  if (step === null) return null;
  return Array(info.outChannels).fill({ ...step, exact: step.bits <= 8 });
}

/** Where a layer's output goes when one conv/dense layer alone reads it. */
export interface Consumer {
  /** The consuming layer. */
  readonly layer: string;
  /** Inputs of the consumer per channel of the producer (H * W through a flatten). */
  readonly block: number;
}

/**
 * The one conv (unpadded, ungrouped) or dense layer that reads a layer's
 * output, through max-pools, average pools and flattens, or a reason why
 * there is none.
 *
 * @param model The graph.
 * @param shapes Each node's per-sample output shape.
 * @param layer The producing layer.
 * @returns The consumer, or the reason its pruned channels must stay.
 */
export function soleConsumer(
  model: ModelGraph,
  shapes: ReadonlyMap<string, readonly number[]>,
  layer: LayerInfo,
): Consumer | string {
  const readersOf = (name: string) =>
    model.nodes.filter((n) =>
      "inputs" in n ? n.inputs.includes(name) : n.input === name
    );
  const self = model.nodes.find((n) => n.name === layer.name)!;
  if (self.op === "conv" && (self.groups ?? 1) !== 1) {
    return "a grouped conv keeps its channels";
  }
  let value = layer.name;
  for (;;) {
    const readers = readersOf(value);
    if (readers.length === 0) return "it is the graph's output";
    if (readers.length > 1) return `${readers.length} nodes read "${value}"`;
    const next: GraphNode = readers[0];
    if (
      next.op === "maxpool" || next.op === "avgpool" || next.op === "flatten"
    ) {
      value = next.name;
      continue;
    }
    if (next.op === "dense") {
      const size = shapes.get(value)!.reduce((a, b) => a * b, 1);
      return { layer: next.name, block: size / layer.outChannels };
    }
    if (next.op === "conv") {
      if ((next.padding ?? 0) !== 0 || (next.groups ?? 1) !== 1) {
        return `"${next.name}" is padded or grouped`;
      }
      return { layer: next.name, block: 1 };
    }
    return `"${next.name}" (${next.op}) reads it`;
  }
}
