/**
 * The schema of a {@link ModelGraph} read from a file (an exported model's
 * state, a run recipe): every node's fields typed and in range, so that
 * `analyzeGraph` only ever sees well-formed nodes. Sizes are bounded here
 * loosely (each at most 2^24); `checkModelBudget` bounds their products.
 *
 * @module
 */

import type { GraphNode, ModelGraph } from "./graph.ts";
import {
  array,
  boolean,
  type Check,
  int,
  object,
  optional,
  rangeError,
  string,
  typeError,
} from "./schema.ts";

/** The most nodes a graph read from a file may have. */
export const MAX_GRAPH_NODES = 4096;

/** The largest single size (channels, kernel, padding...) a node may name. */
const MAX_SIZE = 2 ** 24;

const size = int({ min: 1, max: MAX_SIZE });
const name = string({ maxLength: 256 });
const activation = optional(string({ oneOf: ["none", "relu", "relu6"] }));

const NODES: Readonly<Record<GraphNode["op"], Check<unknown>>> = {
  conv: object({
    op: string(),
    name,
    input: name,
    outChannels: size,
    kernel: size,
    stride: optional(size),
    padding: optional(int({ min: 0, max: MAX_SIZE })),
    groups: optional(size),
    batchNorm: optional(boolean),
    activation,
  }),
  dense: object({
    op: string(),
    name,
    input: name,
    outFeatures: size,
    activation,
  }),
  maxpool: object({
    op: string(),
    name,
    input: name,
    kernel: size,
    stride: optional(size),
    padding: optional(int({ min: 0, max: MAX_SIZE })),
  }),
  avgpool: object({ op: string(), name, input: name }),
  flatten: object({ op: string(), name, input: name }),
  add: object({
    op: string(),
    name,
    inputs: array(name, { length: 2 }),
    activation,
  }),
};

/** One node, checked by the schema of its `op`. */
function node(value: unknown, path: string): GraphNode {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw typeError(path, "a graph node (an object)", value);
  }
  const op = Object.hasOwn(value, "op")
    ? (value as { op: unknown }).op
    : undefined;
  if (typeof op !== "string") throw typeError(`${path}.op`, "a string", op);
  if (!Object.hasOwn(NODES, op)) {
    throw rangeError(
      `${path}.op`,
      `one of ${Object.keys(NODES).join(", ")}`,
      op,
    );
  }
  return NODES[op as GraphNode["op"]](value, path) as GraphNode;
}

/**
 * Checks a model graph's structure: `name`, `inputShape` (three sizes) and
 * at most {@link MAX_GRAPH_NODES} nodes, each with the fields of its op.
 * Shapes that do not fit together are `analyzeGraph`'s to refuse.
 *
 * @example
 * ```ts
 * import { lenet5 } from "@bbits/core";
 * import { graphSchema, validate } from "@bbits/core/formats";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(validate(graphSchema, JSON.parse(JSON.stringify(lenet5())), "lenet5.json"), lenet5());
 * const bad = { ...lenet5(), nodes: [null] };
 * assert.throws(() => validate(graphSchema, bad, "model.json", "graph"), /model.json: graph.nodes\[0\] must be a graph node/);
 * ```
 */
export const graphSchema: Check<ModelGraph> = object({
  name,
  inputShape: array(size, { length: 3 }),
  nodes: array(node, { maxLength: MAX_GRAPH_NODES }),
}) as Check<unknown> as Check<ModelGraph>;
