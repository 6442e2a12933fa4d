/**
 * The schema of an exported model's JSON state (see `io/quantized.ts`):
 * types and ranges of every field, checked before any tensor is touched.
 *
 * @module
 */

import { checkMethodBits } from "../core/bit_widths.ts";
import type { GridBits } from "../core/export_format.ts";
import { QUANTIZED_SCHEMA } from "../core/export_format.ts";
import { graphSchema, MAX_GRAPH_NODES } from "../core/graph_schema.ts";
import type { ModelGraph } from "../core/graph.ts";
import {
  array,
  boolean,
  type Check,
  int,
  nullable,
  number,
  object,
  string,
} from "../core/schema.ts";

/**
 * The widths of an exported grid: those of the residual decomposition,
 * i.e. Bayesian Bits' without 0 (a pruned channel is absent from `kept`).
 */
const gridBits: Check<GridBits> = (value, path) =>
  checkMethodBits("bayesian-bits", int()(value, path), path, {
    pruned: false,
  }) as GridBits;

const gridFields = {
  bits: gridBits,
  signed: boolean,
  xmax: number({ above: 0 }),
  scale: number({ above: 0 }),
};

const shape = array(int({ min: 1, max: 2 ** 24 }), { maxLength: 4 });

/** An exported grid as stored. */
export interface StoredGrid {
  /** The width. */
  bits: GridBits;
  /** Signedness. */
  signed: boolean;
  /** The range. */
  xmax: number;
  /** The step. */
  scale: number;
}

/** A layer's weights as stored: a grid with its shape and kept channels, or float. */
export type StoredWeights =
  | { bits: "float"; shape: number[] }
  | StoredGrid & { shape: number[]; kept: number[] };

/** A layer as stored (its tensors apart). */
export interface StoredLayer {
  /** The layer's node name. */
  name: string;
  /** `"conv"` or `"dense"`. */
  kind: "conv" | "dense";
  /** The weights' description. */
  weight: StoredWeights;
  /** The output activation's grid, or null. */
  activation: StoredGrid | null;
}

/** An exported model's state as stored. */
export interface StoredQuantizedState {
  /** The model format's schema. */
  schema: typeof QUANTIZED_SCHEMA;
  /** Input bits for BOPs. */
  inputBits: number;
  /** The graph. */
  graph: ModelGraph;
  /** The layers, tensors apart. */
  layers: StoredLayer[];
}

const floatWeights = object({ bits: string({ oneOf: ["float"] }), shape });
const gridWeights = object({
  ...gridFields,
  shape,
  kept: array(int({ min: 0 }), { maxLength: 2 ** 24 }),
});

const weights: Check<StoredWeights> = (value, path) => {
  const bits = typeof value === "object" && value !== null &&
      Object.hasOwn(value, "bits")
    ? (value as { bits: unknown }).bits
    : undefined;
  return (bits === "float" ? floatWeights : gridWeights)(
    value,
    path,
  ) as StoredWeights;
};

/** The exported model's state: schema, input bits, graph and layers. */
export const quantizedStateSchema: Check<StoredQuantizedState> = object({
  schema: string({ oneOf: [QUANTIZED_SCHEMA] }),
  inputBits: int({ min: 1, max: 32 }),
  graph: graphSchema,
  layers: array(
    object({
      name: string({ maxLength: 256 }),
      kind: string({ oneOf: ["conv", "dense"] as const }),
      weight: weights,
      activation: nullable(object(gridFields)),
    }),
    { maxLength: MAX_GRAPH_NODES },
  ),
}) as Check<unknown> as Check<StoredQuantizedState>;
