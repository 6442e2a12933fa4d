import assert from "node:assert/strict";
import { bopReport, chainBops, layerBops } from "../../core/bops.ts";
import { assertClose } from "../_fixtures.ts";

// LeNet-5 of spec section 6, MACs per sample worked out by hand:
// conv1 1->32 5x5 on 28x28: 24*24 outputs * 32 channels * 25 = 460,800
// conv2 32->64 5x5 on 12x12: 8*8 * 64 * 25 * 32 = 3,276,800
// fc1 1024->512: 524,288; fc2 512->10: 5,120.
const LENET = [
  { name: "conv1", macs: 460_800, outputChannels: 32 },
  { name: "conv2", macs: 3_276_800, outputChannels: 64 },
  { name: "fc1", macs: 524_288, outputChannels: 512 },
  { name: "fc2", macs: 5_120, outputChannels: 10 },
];
const BASELINE = 4_267_008 * 1024;

Deno.test("chainBops() on LeNet-5 at 32 bits counts the 8-bit input: 91.90 %", () => {
  const r = chainBops(
    LENET.map((l) => ({ ...l, weightBits: 32, outputBits: 32 })),
  );
  assert.equal(r.baselineBops, BASELINE);
  assert.equal(
    r.totalBops,
    460_800 * 8 * 32 + (3_276_800 + 524_288 + 5_120) * 1024,
  );
  assertClose(r.relativeGbops, 91.900648, 0, 1e-6); // 3,921,408 / 4,267,008
});

Deno.test("chainBops() on a mixed-precision, pruned LeNet-5 matches a hand computation", () => {
  const layers = [
    { ...LENET[0], weightBits: 4, outputBits: 4, keptChannels: 16 },
    { ...LENET[1], weightBits: 2, outputBits: 8, keptChannels: 32 },
    { ...LENET[2], weightBits: 4, outputBits: 2, keptChannels: 128 },
    { ...LENET[3], weightBits: 8, outputBits: 32 },
  ];
  const r = chainBops(layers);
  const expected = [
    460_800 * 8 * 4 * 0.5 * 1, // input 8-bit, half the output channels kept
    3_276_800 * 4 * 2 * 0.5 * 0.5,
    524_288 * 8 * 4 * 0.25 * 0.5,
    5_120 * 2 * 8 * 1 * 0.25,
  ];
  assert.deepEqual(r.layers.map((l) => l.bops), expected);
  const total = expected.reduce((a, b) => a + b);
  assertClose(r.relativeGbops, (100 * total) / BASELINE, 1e-12);
  // 7,372,800 + 6,553,600 + 2,097,152 + 20,480 = 16,044,032 BOPs of 4,369,416,192: 0.36719 %
  assert.equal(total, 16_044_032);
  assertClose(r.relativeGbops, 0.367189, 0, 1e-6);
});

Deno.test("bop accounting rejects bad layers with clear errors", () => {
  assert.throws(
    () => layerBops({ name: "fc", macs: -1, weightBits: 8, inputBits: 8 }),
    /MAC count for layer "fc": -1/,
  );
  for (const bits of [3.5, 33, -1, NaN]) {
    assert.throws(
      () => layerBops({ name: "fc", macs: 1, weightBits: bits, inputBits: 8 }),
      new RegExp(`weightBits for layer "fc": ${bits}`),
    );
  }
  assert.throws(
    () => layerBops({ name: "fc", macs: 1, weightBits: 8, inputBits: 2.5 }),
    /inputBits for layer "fc": 2.5 \(bits must be an integer in \[0, 32\]\)/,
  );
  // Widths BSQ and FracBits learn count as the integers they are (spec
  // bsq.md section 7): 3-bit weights at 5-bit inputs over 7 MACs.
  assert.equal(
    layerBops({ name: "fc", macs: 7, weightBits: 3, inputBits: 5 }),
    105,
  );
  assert.throws(
    () =>
      layerBops({
        name: "fc",
        macs: 1,
        weightBits: 8,
        inputBits: 8,
        keptOutput: 1.5,
      }),
    /keptOutput for layer "fc": 1.5/,
  );
  assert.throws(() => bopReport([]), /no MACs/);
  assert.throws(
    () =>
      chainBops([{
        name: "c",
        macs: 1,
        weightBits: 8,
        outputBits: 8,
        outputChannels: 4,
        keptChannels: 5,
      }]),
    /5 kept of 4/,
  );
});
