/**
 * The uniform grid a FracBits model freezes to (the generalized
 * `GridPlan` of `core/method.ts`): value = `scale * code`, `code` an integer
 * in `[codeMin, codeMax]`, per output channel where widths are kernel-wise.
 *
 * @module
 */

/** One output channel of a per-channel uniform weight grid. */
export interface ChannelGrid {
  /** Counted width; 0 = pruned (absent from `keptChannels`). */
  readonly bits: number;
  /** The float32 step. */
  readonly scale: number;
  /** The smallest code. */
  readonly codeMin: number;
  /** The largest code. */
  readonly codeMax: number;
}

/**
 * A uniform integer grid: `bits` is the width BOPs count (a k-bit DoReFa
 * weight has odd codes in `[-(2^k - 1), 2^k - 1]`, counted k).
 */
export interface UniformGrid {
  /** `"uniform"`. */
  readonly kind: "uniform";
  /** Counted width. */
  readonly bits: number;
  /** The float32 step. */
  readonly scale: number;
  /** The smallest code. */
  readonly codeMin: number;
  /** The largest code. */
  readonly codeMax: number;
  /** Per output channel (kernel-wise weights), or null. */
  readonly channels: readonly ChannelGrid[] | null;
}
