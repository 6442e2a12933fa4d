/**
 * Writes the ONNX nodes and initializers of a model-zoo graph, one graph
 * node at a time ({@link GraphBuilder}), for `io/onnx.ts`. Value names:
 * `input` for the network input, `logits` for its output, `<layer>.weight`
 * for a layer's float weights (dequantized from `<layer>.weight_quantized`,
 * `<layer>.weight_scale`, `<layer>.weight_zero_point` when quantized),
 * `<layer>.bias`, `<layer>.act_scale` / `<layer>.act_zero_point` for a
 * quantized activation.
 *
 * @module
 */

import {
  analyzeGraph,
  type GraphNode,
  type ModelGraph,
} from "../core/graph.ts";
import type { GridPlan } from "../core/method.ts";
import { CLIP_FACTOR } from "../core/reference/quantizer.ts";
import { activationCodeType, stepGrid } from "./onnx_layers.ts";
import type { OnnxLayer } from "./onnx.ts";
import {
  DATA_TYPE,
  integerRange,
  type OnnxAttribute,
  type OnnxModel,
  type OnnxNode,
  type OnnxTensor,
} from "./onnx_proto.ts";

type NodeOf<K extends GraphNode["op"]> = Extract<GraphNode, { op: K }>;

const ints = (value: readonly number[]): OnnxAttribute => ({
  kind: "ints",
  value,
});
const int = (value: number): OnnxAttribute => ({ kind: "int", value });

/** Collects the nodes and initializers of one ONNX graph. */
export class GraphBuilder {
  readonly #model: ModelGraph;
  readonly #nodes: OnnxNode[] = [];
  readonly #initializers = new Map<string, OnnxTensor>();
  readonly #values = new Map<string, string>([["input", "input"]]);

  /** A builder for `model`'s graph. */
  constructor(model: ModelGraph) {
    this.#model = model;
  }

  #node(
    opType: string,
    name: string,
    inputs: string[],
    attributes: Record<string, OnnxAttribute> = {},
  ): string {
    this.#nodes.push({ name, opType, inputs, outputs: [name], attributes });
    return name;
  }

  #init(
    name: string,
    dataType: number,
    dims: readonly number[],
    data: OnnxTensor["data"],
  ): string {
    this.#initializers.set(name, { name, dataType, dims, data });
    return name;
  }

  #float(name: string, v: number): string {
    return this.#init(name, DATA_TYPE.FLOAT, [], Float32Array.of(v));
  }

  /** The ONNX value holding a graph node's output. */
  value(name: string): string {
    const v = this.#values.get(name);
    if (v === undefined) {
      throw new RangeError(`ONNX export: no value "${name}"`);
    }
    return v;
  }

  /** Records that a graph node's output is the ONNX value `value`. */
  alias(name: string, value: string): void {
    this.#values.set(name, value);
  }

  /** A layer's float weight value: an initializer, or dequantized codes. */
  #weights(layer: OnnxLayer): string {
    const n = layer.name;
    if (layer.codes === null) {
      return this.#init(
        `${n}.weight`,
        DATA_TYPE.FLOAT,
        layer.dims,
        layer.values!,
      );
    }
    const type = DATA_TYPE[layer.weightType];
    // One scale is a per-tensor grid (or a per-channel one with one channel).
    const perChannel = layer.scales.length > 1;
    const dims = perChannel ? [layer.scales.length] : [];
    const inputs = [
      this.#init(`${n}.weight_quantized`, type, layer.dims, layer.codes),
      this.#init(`${n}.weight_scale`, DATA_TYPE.FLOAT, dims, layer.scales),
      this.#init(
        `${n}.weight_zero_point`,
        type,
        dims,
        new Int32Array(layer.scales.length),
      ),
    ];
    return this.#node(
      "DequantizeLinear",
      `${n}.weight`,
      inputs,
      perChannel ? { axis: int(0) } : {},
    );
  }

  /** A conv (`Conv`) or dense (`Gemm`, `transB = 1`) layer; returns its output value. */
  layer(node: NodeOf<"conv"> | NodeOf<"dense">, layer: OnnxLayer): string {
    const n = node.name;
    const w = this.#weights(layer);
    const b = this.#init(
      `${n}.bias`,
      DATA_TYPE.FLOAT,
      [layer.bias.length],
      layer.bias,
    );
    const x = this.value(node.input);
    if (node.op === "dense") {
      return this.#node("Gemm", `${n}/gemm`, [x, w, b], { transB: int(1) });
    }
    const s = node.stride ?? 1;
    const p = node.padding ?? 0;
    return this.#node("Conv", `${n}/conv`, [x, w, b], {
      kernel_shape: ints([node.kernel, node.kernel]),
      strides: ints([s, s]),
      pads: ints([p, p, p, p]),
      group: int(node.groups ?? 1),
    });
  }

  /** An activation function after `x`; returns its output value. */
  activation(name: string, x: string, kind: string | undefined): string {
    if (kind === "relu") return this.#node("Relu", name, [x]);
    if (kind === "relu6") {
      return this.#node("Clip", name, [
        x,
        this.#float("const.zero", 0),
        this.#float("const.six", 6),
      ]);
    }
    return x;
  }

  /**
   * An activation quantized on `grid`: a clip when the codes' range is
   * narrower than the type's, `QuantizeLinear`, `DequantizeLinear`; a
   * 32-bit residual grid as a clip only.
   */
  quantize(layer: string, x: string, grid: GridPlan): string {
    const step = stepGrid(grid);
    const clip = (lo: number, hi: number) =>
      this.#node("Clip", `${layer}/clip`, [
        x,
        this.#float(`${layer}.act_min`, lo),
        this.#float(`${layer}.act_max`, hi),
      ]);
    if (step === null) {
      const { xmax, signed } = grid as { xmax: number; signed: boolean };
      const hi = Math.fround(CLIP_FACTOR * xmax);
      return clip(signed ? -hi : 0, hi);
    }
    const typeName = activationCodeType(step.codeMin, step.codeMax)!;
    const type = DATA_TYPE[typeName];
    const [min, max] = integerRange(type);
    let input = x;
    if (step.codeMin > min || step.codeMax < max) {
      input = clip(
        Math.fround(step.codeMin * step.scale),
        Math.fround(step.codeMax * step.scale),
      );
    }
    const scale = this.#float(`${layer}.act_scale`, step.scale);
    const zero = this.#init(
      `${layer}.act_zero_point`,
      type,
      [],
      new Int32Array(1),
    );
    const q = this.#node("QuantizeLinear", `${layer}/quantize`, [
      input,
      scale,
      zero,
    ]);
    return this.#node("DequantizeLinear", `${layer}/dequantize`, [
      q,
      scale,
      zero,
    ]);
  }

  /** A max-pool node. */
  maxPool(node: NodeOf<"maxpool">): void {
    const s = node.stride ?? node.kernel;
    const p = node.padding ?? 0;
    this.alias(
      node.name,
      this.#node("MaxPool", node.name, [this.value(node.input)], {
        kernel_shape: ints([node.kernel, node.kernel]),
        strides: ints([s, s]),
        pads: ints([p, p, p, p]),
      }),
    );
  }

  /** A global average pool, flattened to `[N, C]` as the graph's avgpool is. */
  globalAveragePool(node: NodeOf<"avgpool">): void {
    const pooled = this.#node("GlobalAveragePool", `${node.name}/pool`, [
      this.value(node.input),
    ]);
    this.alias(
      node.name,
      this.#node("Flatten", node.name, [pooled], { axis: int(1) }),
    );
  }

  /** A flatten node. */
  flatten(node: NodeOf<"flatten">): void {
    this.alias(
      node.name,
      this.#node("Flatten", node.name, [this.value(node.input)], {
        axis: int(1),
      }),
    );
  }

  /** An add node and its activation. */
  add(node: NodeOf<"add">): void {
    const sum = this.#node("Add", `${node.name}/add`, [
      this.value(node.inputs[0]),
      this.value(node.inputs[1]),
    ]);
    this.alias(node.name, this.activation(node.name, sum, node.activation));
  }

  /** The model: float32 input `[N, C, H, W]`, float32 output `logits`. */
  finish(
    head: Pick<OnnxModel, "irVersion" | "opset" | "metadata">,
  ): OnnxModel {
    const model = this.#model;
    const last = model.nodes[model.nodes.length - 1].name;
    const shape = analyzeGraph(model).shapes.get(last)!;
    this.#node("Identity", "logits", [this.value(last)]);
    return {
      ...head,
      producerName: "@bbits/core",
      graphName: model.name,
      nodes: this.#nodes,
      initializers: [...this.#initializers.values()],
      inputs: [{
        name: "input",
        elemType: DATA_TYPE.FLOAT,
        shape: ["N", ...model.inputShape],
      }],
      outputs: [{
        name: "logits",
        elemType: DATA_TYPE.FLOAT,
        shape: ["N", ...shape],
      }],
    };
  }
}
