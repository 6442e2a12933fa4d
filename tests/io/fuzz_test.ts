/**
 * A seeded mutation fuzzer over every decoder and loader: safetensors, IDX,
 * gzipped IDX, checkpoints, training snapshots, exported models and report
 * JSON. Each mutated input must be either cleanly rejected (an error of the
 * expected classes with a bounded message) or correctly accepted (what was
 * read re-encodes to an equivalent value). Deterministic: the same seeds
 * give the same cases on every run.
 */

import assert from "node:assert/strict";
import { encodeIdx, type IdxArray, parseIdx } from "../../core/idx.ts";
import {
  type DecodedSafetensors,
  decodeSafetensors,
  encodeSafetensors,
} from "../../core/safetensors.ts";
import { encodeCheckpoint, loadCheckpoint } from "../../io/checkpoint.ts";
import { gunzipBounded } from "../../io/mnist.ts";
import { loadQuantized, saveQuantized } from "../../io/quantized.ts";
import { parseReport, reportToJson } from "../../io/report_json.ts";
import {
  assertCleanRejection,
  mutateBytes,
  mutateJson,
  mutateTensors,
  Rng,
  sameElements,
} from "./_fuzz_mutate.ts";
import { fuzzSeeds, type Seeds } from "./_fuzz_seeds.ts";
import { compareSnapshots } from "./_fuzz_seeds.ts";
import { withTempDir } from "../_io_fixtures.ts";

const FORMAT_ERRORS = [RangeError];
const JSON_ERRORS = [RangeError, TypeError, SyntaxError];

/** Tally of one target: how many mutants were accepted and rejected. */
interface Tally {
  accepted: number;
  rejected: number;
}

function sameDecoded(
  a: DecodedSafetensors,
  b: DecodedSafetensors,
  what: string,
) {
  assert.deepEqual(b.metadata, a.metadata, what);
  assert.deepEqual(
    Object.keys(b.tensors).sort(),
    Object.keys(a.tensors).sort(),
    what,
  );
  for (const [name, t] of Object.entries(a.tensors)) {
    const u = b.tensors[name];
    assert.equal(u.dtype, t.dtype, what);
    assert.deepEqual(u.shape, t.shape, what);
    assert.ok(sameElements(u.data, t.data), `${what}: ${name}`);
  }
}

function sameIdx(a: IdxArray, b: IdxArray, what: string) {
  assert.equal(b.dtype, a.dtype, what);
  assert.deepEqual(b.shape, a.shape, what);
  assert.ok(sameElements(b.data, a.data), what);
}

Deno.test("fuzz: mutated safetensors files decode to what they re-encode to, or are refused cleanly", () => {
  const rng = new Rng(16_001);
  const { safetensors } = fuzzSeeds.formats();
  const tally: Tally = { accepted: 0, rejected: 0 };
  for (let i = 0; i < 2000; i++) {
    const bytes = mutateBytes(rng.pick(safetensors), rng);
    let decoded: DecodedSafetensors;
    try {
      decoded = decodeSafetensors(bytes);
    } catch (error) {
      assertCleanRejection(
        error,
        FORMAT_ERRORS,
        /^(Cannot decode safetensors|Bad shape for safetensors tensor)/,
        `safetensors case ${i}`,
      );
      tally.rejected++;
      continue;
    }
    const again = decodeSafetensors(
      encodeSafetensors(decoded.tensors, decoded.metadata),
    );
    sameDecoded(decoded, again, `safetensors case ${i}`);
    tally.accepted++;
  }
  assert.ok(tally.accepted > 50 && tally.rejected > 500, JSON.stringify(tally));
});

Deno.test("fuzz: mutated IDX files, plain and gzipped, parse to what they re-encode to, or are refused cleanly", async () => {
  const rng = new Rng(16_002);
  const { idx } = fuzzSeeds.formats();
  const tally: Tally = { accepted: 0, rejected: 0 };
  const check = (bytes: Uint8Array, what: string) => {
    let parsed: IdxArray;
    try {
      parsed = parseIdx(bytes, { source: what });
    } catch (error) {
      assertCleanRejection(
        error,
        FORMAT_ERRORS,
        /^Cannot parse IDX file/,
        what,
      );
      tally.rejected++;
      return;
    }
    sameIdx(parsed, parseIdx(encodeIdx(parsed)), what);
    tally.accepted++;
  };
  for (let i = 0; i < 2000; i++) {
    check(mutateBytes(rng.pick(idx), rng), `IDX case ${i}`);
  }
  const gzipped = await Promise.all(idx.map(gzip));
  for (let i = 0; i < 300; i++) {
    const k = rng.int(idx.length);
    const bytes = mutateBytes(gzipped[k], rng);
    let plain: Uint8Array;
    try {
      plain = await gunzipBounded(bytes, 2 * idx[k].length, `case ${i}.gz`);
    } catch (error) {
      assertCleanRejection(
        error,
        FORMAT_ERRORS,
        /^Cannot gunzip MNIST file/,
        `gzip case ${i}`,
      );
      tally.rejected++;
      continue;
    }
    check(plain, `gzip case ${i}`);
  }
  assert.ok(tally.accepted > 50 && tally.rejected > 500, JSON.stringify(tally));
});

async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

Deno.test("fuzz: mutated report JSON reads back to a report that writes and reads back the same, or is refused cleanly", () => {
  const rng = new Rng(16_003);
  const { report } = fuzzSeeds.formats();
  const tally: Tally = { accepted: 0, rejected: 0 };
  for (let i = 0; i < 1500; i++) {
    const text = rng.int(3) === 0
      ? new TextDecoder().decode(
        mutateBytes(new TextEncoder().encode(report), rng),
      )
      : JSON.stringify(mutateJson(JSON.parse(report), rng));
    let parsed;
    try {
      parsed = parseReport(text);
    } catch (error) {
      assertCleanRejection(
        error,
        JSON_ERRORS,
        /^Invalid report: /,
        `report case ${i}`,
      );
      tally.rejected++;
      continue;
    }
    assert.deepEqual(
      parseReport(reportToJson(parsed)),
      parsed,
      `report case ${i}`,
    );
    tally.accepted++;
  }
  assert.ok(tally.accepted > 50 && tally.rejected > 300, JSON.stringify(tally));
});

/** Writes a mutant of a file: its bytes mutated, or its state or tensors edited and re-saved with a valid checksum. */
async function writeMutant(
  path: string,
  seed: Uint8Array,
  rng: Rng,
): Promise<void> {
  if (rng.int(4) === 0) {
    await Deno.writeFile(path, mutateBytes(seed, rng));
    return;
  }
  const { tensors, metadata } = decodeSafetensors(seed);
  const state = JSON.parse(metadata["bbits.state"]);
  // In memory and without fsync (saveCheckpoint's): the loaders read files.
  await Deno.writeFile(
    path,
    rng.int(4) === 0
      ? encodeCheckpoint(mutateTensors(tensors, rng), state)
      : encodeCheckpoint(tensors, mutateJson(state, rng)),
  );
}

/** Runs `count` mutants of the seeds through a loader and its re-encoding check. */
async function fuzzFiles(
  name: string,
  seed: number,
  count: number,
  seeds: readonly Uint8Array[],
  accept: (path: string, again: string) => Promise<boolean>,
): Promise<Tally> {
  const rng = new Rng(seed);
  const tally: Tally = { accepted: 0, rejected: 0 };
  await withTempDir(async (dir) => {
    for (let i = 0; i < count; i++) {
      const path = `${dir}/${name}.safetensors`;
      await writeMutant(path, rng.pick(seeds), rng);
      let accepted: boolean;
      try {
        accepted = await accept(path, `${dir}/again.safetensors`);
      } catch (error) {
        assertCleanRejection(
          error,
          JSON_ERRORS,
          new RegExp(`^Cannot load (checkpoint )?"${path}"`),
          `${name} case ${i}`,
        );
        tally.rejected++;
        continue;
      }
      assert.ok(
        accepted,
        `${name} case ${i}: accepted but not re-encoded alike`,
      );
      tally.accepted++;
    }
  });
  return tally;
}

Deno.test("fuzz: mutated checkpoints, snapshots and exported models load to what they save and load back as, or are refused cleanly", async () => {
  const seeds: Seeds = await fuzzSeeds.files();
  const checkpoints = await fuzzFiles(
    "checkpoint",
    16_004,
    200,
    seeds.checkpoint,
    async (path, again) => {
      const loaded = await loadCheckpoint(path);
      await Deno.writeFile(
        again,
        encodeCheckpoint(loaded.tensors, loaded.state),
      );
      const back = await loadCheckpoint(again);
      const bare = (tensors: DecodedSafetensors["tensors"]) => ({
        tensors,
        metadata: {},
      });
      sameDecoded(bare(loaded.tensors), bare(back.tensors), path);
      assert.deepEqual(back.state, loaded.state);
      return true;
    },
  );
  const snapshots = await fuzzFiles(
    "snapshot",
    16_005,
    300,
    seeds.snapshot,
    compareSnapshots,
  );
  const models = await fuzzFiles(
    "model",
    16_006,
    300,
    seeds.quantized,
    async (path, again) => {
      const loaded = await loadQuantized(path);
      await saveQuantized(again, loaded);
      assert.deepEqual(await loadQuantized(again), loaded);
      return true;
    },
  );
  // A checkpoint's state is the caller's: most edits of it are valid.
  assert.ok(
    checkpoints.accepted > 50 && checkpoints.rejected > 20,
    `checkpoints: ${JSON.stringify(checkpoints)}`,
  );
  for (const [name, tally] of Object.entries({ snapshots, models })) {
    assert.ok(
      tally.accepted > 5 && tally.rejected > 100,
      `${name}: ${JSON.stringify(tally)}`,
    );
  }
});
