/**
 * Reads back an ONNX file written by `exportOnnx` ({@link readOnnxExport}):
 * per layer the stored codes or float weights, scales, zero points, bias,
 * kept channels and activation grid, from the initializers, the
 * `DequantizeLinear` nodes and the `bbits.layers` metadata.
 *
 * @module
 */

import type { OnnxLayer } from "./onnx.ts";
import {
  DATA_TYPE,
  type DataTypeName,
  dataTypeName,
  decodeOnnx,
  type OnnxModel,
  type OnnxTensor,
} from "./onnx_proto.ts";
import type { ProtoLimits } from "./protobuf.ts";

/** A layer as read back: what was stored, without the export's notes. */
export type OnnxStoredLayer = Omit<OnnxLayer, "notes">;

/** What {@link readOnnxExport} returns. */
export interface OnnxReadBack {
  /** The decoded model. */
  readonly model: OnnxModel;
  /** The default-domain opset. */
  readonly opset: number;
  /** The method that froze the model (`bbits.method`). */
  readonly method: string;
  /** Per conv/dense layer, in order. */
  readonly layers: readonly OnnxStoredLayer[];
}

/** The metadata entry of one layer. */
interface LayerMeta {
  readonly name: string;
  readonly kind: "conv" | "dense";
  readonly weightBits: number | null;
  readonly kept: number[];
  readonly keptInputs: number[] | null;
}

function layerMeta(model: OnnxModel): LayerMeta[] {
  const text = model.metadata["bbits.layers"];
  if (text === undefined) {
    throw new RangeError(
      `Not an ONNX file of exportOnnx: no "bbits.layers" metadata`,
    );
  }
  let meta: unknown;
  try {
    meta = JSON.parse(text);
  } catch (e) {
    throw new RangeError(
      `Bad "bbits.layers" metadata: ${(e as Error).message}`,
    );
  }
  const channels = (v: unknown) =>
    Array.isArray(v) && v.every((c) => Number.isInteger(c) && c >= 0);
  if (
    !Array.isArray(meta) ||
    !meta.every((l) =>
      typeof l?.name === "string" &&
      (l.kind === "conv" || l.kind === "dense") &&
      channels(l.kept) && (l.keptInputs === null || channels(l.keptInputs))
    )
  ) {
    throw new RangeError(
      `Bad "bbits.layers" metadata: expected [{ name, kind, kept, keptInputs }, ...]`,
    );
  }
  return meta as LayerMeta[];
}

/** One stored layer from its initializers. */
function readLayer(
  meta: LayerMeta,
  init: ReadonlyMap<string, OnnxTensor>,
): OnnxStoredLayer {
  const n = meta.name;
  const need = (name: string, type?: number) => {
    const t = init.get(name);
    if (!t) throw new RangeError(`ONNX file: missing initializer "${name}"`);
    if (type !== undefined && t.dataType !== type) {
      throw new RangeError(
        `ONNX file: "${name}" is ${dataTypeName(t.dataType)}, expected ${
          dataTypeName(type)
        }`,
      );
    }
    return t;
  };
  const bias = need(`${n}.bias`, DATA_TYPE.FLOAT).data as Float32Array;
  const codes = init.get(`${n}.weight_quantized`);
  const weight = codes ?? need(`${n}.weight`, DATA_TYPE.FLOAT);
  const scales = codes
    ? need(`${n}.weight_scale`, DATA_TYPE.FLOAT).data as Float32Array
    : new Float32Array(0);
  if (codes) {
    const zero = need(`${n}.weight_zero_point`, codes.dataType);
    if (zero.data.some((z) => z !== 0)) {
      throw new RangeError(`ONNX file: "${n}.weight_zero_point" is not 0`);
    }
  }
  if (weight.dims[0] !== meta.kept.length || bias.length !== meta.kept.length) {
    throw new RangeError(
      `ONNX file: layer "${n}" stores ${
        weight.dims[0]
      } weight rows and ${bias.length} biases for ${meta.kept.length} kept channels`,
    );
  }
  const actScale = init.get(`${n}.act_scale`);
  const activationType = actScale
    ? dataTypeName(need(`${n}.act_zero_point`).dataType) as DataTypeName
    : init.has(`${n}.act_min`)
    ? "FLOAT"
    : null;
  return {
    name: n,
    kind: meta.kind,
    weightBits: meta.weightBits,
    weightType: dataTypeName(weight.dataType) as DataTypeName,
    dims: weight.dims,
    codes: codes ? codes.data as Int32Array : null,
    values: codes ? null : weight.data as Float32Array,
    scales,
    bias,
    kept: meta.kept,
    keptInputs: meta.keptInputs,
    activationType,
    activationScale: actScale ? actScale.data[0] : null,
  };
}

/**
 * Reads an ONNX file written by `exportOnnx`.
 *
 * @param bytes The file.
 * @param limits Bounds for the protobuf reader.
 * @returns The model and each layer's stored tensors and kept channels.
 * @throws {RangeError} On a malformed file, or one without the metadata
 *   and initializers `exportOnnx` writes.
 */
export function readOnnxExport(
  bytes: Uint8Array,
  limits: Partial<ProtoLimits> = {},
): OnnxReadBack {
  const model = decodeOnnx(bytes, limits);
  const init = new Map(model.initializers.map((t) => [t.name, t]));
  return {
    model,
    opset: model.opset,
    method: model.metadata["bbits.method"] ?? "",
    layers: layerMeta(model).map((m) => readLayer(m, init)),
  };
}
