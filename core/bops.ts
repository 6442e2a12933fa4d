/**
 * BOP accounting (spec section 4): the metric every result is reported in.
 *
 * A layer with `MACs` multiply-accumulates per sample, weight bit width `bw`,
 * input activation bit width `ba`, kept output-channel fraction `ko` and kept
 * input-channel fraction `ki` costs `MACs * ba * bw * ko * ki` BOPs. The
 * baseline is every layer at 32 x 32 bits. Relative GBOPs are
 * `100 * sum BOPs / baseline`.
 *
 * @module
 */

/** One layer's BOP inputs. */
export interface LayerBopsInput {
  /** Layer name, for reports. */
  readonly name: string;
  /** Multiply-accumulates per sample. */
  readonly macs: number;
  /** Weight bit width of the kept channels: an integer in [0, 32]. */
  readonly weightBits: number;
  /** Input activation bit width: an integer in [0, 32]. */
  readonly inputBits: number;
  /** Fraction of output channels kept, in [0, 1] (default 1). */
  readonly keptOutput?: number;
  /** Fraction of input channels kept, in [0, 1] (default 1). */
  readonly keptInput?: number;
}

/** One layer's row in a {@link BopReport}. */
export interface LayerBops {
  /** Layer name. */
  readonly name: string;
  /** Multiply-accumulates per sample. */
  readonly macs: number;
  /** BOPs of the layer as configured. */
  readonly bops: number;
  /** BOPs of the layer at 32 x 32 bits, nothing pruned. */
  readonly baselineBops: number;
}

/** BOPs of a network. */
export interface BopReport {
  /** Per-layer rows, in input order. */
  readonly layers: readonly LayerBops[];
  /** Sum of the layers' BOPs. */
  readonly totalBops: number;
  /** Sum of the layers' 32 x 32-bit BOPs. */
  readonly baselineBops: number;
  /** `100 * totalBops / baselineBops`, in percent. */
  readonly relativeGbops: number;
}

function checkLayer(layer: LayerBopsInput): void {
  const where = `layer "${layer?.name}"`;
  if (!(Number.isFinite(layer.macs) && layer.macs >= 0)) {
    throw new RangeError(`Invalid MAC count for ${where}: ${layer.macs}`);
  }
  for (const key of ["weightBits", "inputBits"] as const) {
    const bits = layer[key];
    if (!(Number.isInteger(bits) && bits >= 0 && bits <= 32)) {
      throw new RangeError(
        `Invalid ${key} for ${where}: ${
          layer[key]
        } (bits must be an integer in [0, 32])`,
      );
    }
  }
  for (const key of ["keptOutput", "keptInput"] as const) {
    const v = layer[key] ?? 1;
    if (!(v >= 0 && v <= 1)) {
      throw new RangeError(
        `Invalid ${key} for ${where}: ${v} (a fraction in [0, 1])`,
      );
    }
  }
}

/**
 * BOPs of one layer: `MACs * ba * bw * ko * ki`.
 *
 * @param layer The layer.
 * @returns Its BOPs per sample.
 * @throws {RangeError} On negative MACs, bit widths that are not integers in
 *   [0, 32], or fractions outside [0, 1].
 *
 * @example
 * ```ts
 * import { layerBops } from "@bbits/core/training";
 * import assert from "node:assert/strict";
 *
 * assert.equal(layerBops({ name: "fc", macs: 100, weightBits: 4, inputBits: 8, keptOutput: 0.5 }), 1600);
 * ```
 */
export function layerBops(layer: LayerBopsInput): number {
  checkLayer(layer);
  return layer.macs * layer.inputBits * layer.weightBits *
    (layer.keptOutput ?? 1) *
    (layer.keptInput ?? 1);
}

/**
 * BOPs of a network, per layer and relative to the 32 x 32-bit baseline.
 *
 * @param layers The layers with their bit widths and kept fractions.
 * @returns The report.
 * @throws {RangeError} On a bad layer, or a network with no MACs.
 *
 * @example
 * ```ts
 * import { bopReport } from "@bbits/core/training";
 * import assert from "node:assert/strict";
 *
 * const r = bopReport([{ name: "fc", macs: 10, weightBits: 8, inputBits: 8 }]);
 * assert.equal(r.relativeGbops, 6.25);
 * ```
 */
export function bopReport(layers: readonly LayerBopsInput[]): BopReport {
  const rows = layers.map((layer) => ({
    name: layer.name,
    macs: layer.macs,
    bops: layerBops(layer),
    baselineBops: layer.macs * 32 * 32,
  }));
  const totalBops = rows.reduce((s, r) => s + r.bops, 0);
  const baselineBops = rows.reduce((s, r) => s + r.baselineBops, 0);
  if (baselineBops === 0) {
    throw new RangeError("Cannot report BOPs of a network with no MACs");
  }
  return {
    layers: rows,
    totalBops,
    baselineBops,
    relativeGbops: (100 * totalBops) / baselineBops,
  };
}

/** One layer of a chain of conv/dense layers, for {@link chainBops}. */
export interface ChainLayer {
  /** Layer name. */
  readonly name: string;
  /** Multiply-accumulates per sample. */
  readonly macs: number;
  /** Weight bit width of the kept channels. */
  readonly weightBits: number;
  /** Bit width of the layer's output activation (as the next layer's input). */
  readonly outputBits: number;
  /** Output channels in total. */
  readonly outputChannels: number;
  /** Output channels kept (default all). */
  readonly keptChannels?: number;
}

/**
 * BOPs of a chain of conv/dense layers (LeNet-5, VGG): each layer's input bit
 * width and kept input fraction come from the previous layer; the network
 * input counts as `inputBits` (8 by default).
 *
 * @param layers The layers in order.
 * @param inputBits Bit width of the network input (default 8).
 * @returns The report.
 * @throws {RangeError} On bad layers or kept channel counts.
 *
 * @example An all-32-bit LeNet-5 reports about 92 %, because its input is 8-bit
 * ```ts
 * import { chainBops } from "@bbits/core/training";
 * import assert from "node:assert/strict";
 *
 * const at32 = (name: string, macs: number, channels: number) => ({
 *   name, macs, weightBits: 32, outputBits: 32, outputChannels: channels,
 * });
 * const r = chainBops([
 *   at32("conv1", 460800, 32), at32("conv2", 3276800, 64),
 *   at32("fc1", 524288, 512), at32("fc2", 5120, 10),
 * ]);
 * assert.equal(r.relativeGbops.toFixed(2), "91.90");
 * ```
 */
export function chainBops(
  layers: readonly ChainLayer[],
  inputBits = 8,
): BopReport {
  let previousBits = inputBits;
  let previousKept = 1;
  const inputs: LayerBopsInput[] = layers.map((layer) => {
    const kept = layer.keptChannels ?? layer.outputChannels;
    if (
      !Number.isInteger(layer.outputChannels) || layer.outputChannels <= 0 ||
      !Number.isInteger(kept) || kept < 0 || kept > layer.outputChannels
    ) {
      throw new RangeError(
        `Invalid channels for layer "${layer.name}": ${kept} kept of ${layer.outputChannels}`,
      );
    }
    const row: LayerBopsInput = {
      name: layer.name,
      macs: layer.macs,
      weightBits: layer.weightBits,
      inputBits: previousBits,
      keptOutput: kept / layer.outputChannels,
      keptInput: previousKept,
    };
    previousBits = layer.outputBits;
    previousKept = kept / layer.outputChannels;
    return row;
  });
  return bopReport(inputs);
}
