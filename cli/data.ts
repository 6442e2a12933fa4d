/**
 * The data of a run: the embedded MNIST, or any MNIST-shaped IDX data set in
 * a directory (`--data DIR`, e.g. Debian's Fashion-MNIST in
 * `/usr/share/datasets/fashion-mnist`) normalised by its own training-set
 * pixel statistics.
 *
 * @module
 */

import {
  type Dataset,
  makeDataset,
  normalizePixels,
  pixelStatistics,
} from "../core/data.ts";
import { loadMnist } from "../io/mnist.ts";

/** A run's training and test sets, and what they are. */
export interface RunData {
  /** The training split. */
  readonly train: Dataset;
  /** The test split. */
  readonly test: Dataset;
  /** `"MNIST"`, or the directory of an IDX data set. */
  readonly name: string;
}

/** The raw bytes of images normalised to `[0, 1]` (`x / 255` in float32). */
function rawPixels(unit: Float32Array): Uint8Array {
  return Uint8Array.from(unit, (u) => Math.round(u * 255));
}

/**
 * Loads a run's data.
 *
 * @param directory An IDX data set's directory, or `null` for MNIST.
 * @param limit The first images of each split only (`null`: all).
 * @returns The splits and their name.
 * @throws {Deno.errors.NotFound | RangeError} On missing or malformed files
 *   (the message names them).
 */
export async function loadRunData(
  directory: string | null,
  limit: number | null,
): Promise<RunData> {
  if (directory === null) {
    return {
      ...(await loadMnist({ limit: limit ?? undefined })),
      name: "MNIST",
    };
  }
  const unit = await loadMnist({ directory, normalization: "unit" });
  const train = rawPixels(unit.train.images);
  const stats = pixelStatistics(train);
  const split = (d: Dataset, raw: Uint8Array): Dataset => {
    const count = Math.min(limit ?? d.count, d.count);
    const size = d.shape.reduce((a, b) => a * b, 1);
    return makeDataset(
      normalizePixels(raw.subarray(0, count * size), stats),
      d.labels.slice(0, count),
      d.shape,
    );
  };
  return {
    train: split(unit.train, train),
    test: split(unit.test, rawPixels(unit.test.images)),
    name: directory,
  };
}
