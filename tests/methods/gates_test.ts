import assert from "node:assert/strict";
import {
  deterministicGates,
  effectiveBits,
  gateIsOn,
  gateNoise,
  gateProbability,
  gateProbabilityGrad,
  sampleGate,
  sampleGateGrad,
  sampleGates,
} from "../../core/reference/gates.ts";
import { randomKey, uniform } from "../../core/rng.ts";
import { assertClose } from "../_fixtures.ts";

Deno.test("sampleGate() follows the stretched, clamped sigmoid (hand-computed values)", () => {
  // u = 0.5: log u - log(1 - u) = 0, so s = sigmoid(g / beta).
  assertClose(sampleGate(0, 0.5), 0.5, 1e-15); // 0.5 * 1.2 - 0.1
  const s = 1 / (1 + Math.exp(-1.5 * 0.4)); // g = 0.4, beta = 2/3
  assertClose(sampleGate(0.4, 0.5), s * 1.2 - 0.1, 1e-15);
  // u = 0.9: logit(u) = log 9.
  const s9 = 1 / (1 + Math.exp(-1.5 * (Math.log(9) - 1)));
  assertClose(sampleGate(-1, 0.9), s9 * 1.2 - 0.1, 1e-15);
  assert.equal(sampleGate(10, 0.01), 1);
  assert.equal(sampleGate(-10, 0.99), 0);
});

Deno.test("sampleGateGrad() matches central finite differences of sampleGate()", () => {
  const u = uniform(randomKey(1), 200);
  for (let i = 0; i < u.length; i++) {
    const g = -4 + 8 * (i / u.length);
    const h = 1e-6;
    const numeric = (sampleGate(g + h, u[i]) - sampleGate(g - h, u[i])) /
      (2 * h);
    const z = sampleGate(g, u[i]);
    if (Math.abs(z) < 1e-4 || Math.abs(1 - z) < 1e-4) continue; // kink of the clamp
    assertClose(
      sampleGateGrad(g, u[i]),
      numeric,
      1e-6,
      1e-9,
      `g ${g}, u ${u[i]}`,
    );
  }
  assert.equal(sampleGateGrad(10, 0.5), 0); // clamped at 1
});

Deno.test("gateProbability() is P(z > 0) of the sampler (Monte Carlo)", () => {
  const u = uniform(randomKey(2), 200_000);
  for (const g of [-2, -0.5, 0.3, 1.5]) {
    let on = 0;
    for (const v of u) if (sampleGate(g, v) > 0) on++;
    assertClose(on / u.length, gateProbability(g), 0, 0.004, `g = ${g}`);
  }
});

Deno.test("gateProbabilityGrad() matches finite differences", () => {
  for (const g of [-6, -2, -0.3, 0, 1, 6]) {
    const h = 1e-5;
    const numeric = (gateProbability(g + h) - gateProbability(g - h)) / (2 * h);
    assertClose(gateProbabilityGrad(g), numeric, 1e-7, 1e-12, `g = ${g}`);
  }
});

Deno.test("gateIsOn() switches at 1 - q(g) = 0.34 (g = log(0.66/0.34) + beta log(-gamma/zeta))", () => {
  const threshold = Math.log(0.66 / 0.34) + (2 / 3) * Math.log(0.1 / 1.1); // about -0.9353
  assert.equal(gateIsOn(threshold + 1e-9), true);
  assert.equal(gateIsOn(threshold - 1e-9), false);
  assert.equal(gateIsOn(6), true);
});

Deno.test("sampleGates() stops the chain at the first logit <= -2 and draws nothing above it", () => {
  const noise = [0.5, 0.5, 0.5, 0.5, 0.7, 0.2];
  const s = sampleGates(
    { g2: [1, -3], g4: 6, g8: 0.5, g16: -2, g32: 6 },
    noise,
  );
  assert.equal(s.values.z4, 1);
  assertClose(s.values.z8, sampleGate(0.5, 0.5), 1e-15);
  assert.equal(s.values.z16, 0);
  assert.equal(s.values.z32, 0);
  assert.deepEqual(s.dzdg.slice(2), [0, 0]);
  assertClose(s.dzdg[1], sampleGateGrad(0.5, 0.5), 1e-15);
  // z2 is not part of the chain: sampled from noise[4 + c].
  assert.equal(s.values.z2![0], Math.fround(sampleGate(1, 0.7)));
  assert.equal(s.values.z2![1], Math.fround(sampleGate(-3, 0.2)));
  assertClose(s.dz2dg2![0], sampleGateGrad(1, 0.7), 1e-15);
});

Deno.test("sampleGates() is reproducible from a key and needs 4 + channels uniforms", () => {
  const logits = { g2: [0.1, 0.2, 0.3], g4: 0, g8: 0, g16: 0, g32: 0 };
  const key = randomKey(77);
  assert.equal(gateNoise(logits, key).length, 7);
  assert.deepEqual(
    sampleGates(logits, gateNoise(logits, key)),
    sampleGates(logits, gateNoise(logits, key)),
  );
  assert.throws(
    () => sampleGates(logits, [0.5, 0.5]),
    /needs 7 uniforms, got 2/,
  );
  assert.throws(
    () => sampleGates(logits, [0.5, 0.5, 0.5, 0.5, 0, 0.5, 0.5]),
    /strictly inside \(0, 1\), got 0/,
  );
  assert.throws(
    () => sampleGates({ ...logits, g8: NaN }, gateNoise(logits, key)),
    /g8 must be a finite number, got NaN/,
  );
});

Deno.test("deterministicGates() and effectiveBits() apply the rule and the chain stop", () => {
  const cases: [number[], number][] = [
    [[6, 6, -6, -6], 8],
    [[6, 6, 6, 6], 32],
    [[6, 6, 6, -6], 16],
    [[-6, 6, 6, 6], 2],
    [[6, -1, 6, 6], 4], // g8 = -1 is off by the rule: the chain stops there
    [[6, -2, 6, 6], 4],
  ];
  for (const [[g4, g8, g16, g32], bits] of cases) {
    assert.equal(
      effectiveBits({ g4, g8, g16, g32 }).bits,
      bits,
      `${[g4, g8, g16, g32]}`,
    );
  }
  const e = effectiveBits({
    g2: [6, -6, 0, -0.5],
    g4: 6,
    g8: 6,
    g16: -6,
    g32: -6,
  });
  assert.deepEqual(e.channelBits, [8, 0, 8, 8]);
  assert.equal(e.keptChannels, 3);
  const z = deterministicGates({ g4: 6, g8: -6, g16: 6, g32: 6 });
  assert.deepEqual([z.z4, z.z8, z.z16, z.z32], [1, 0, 0, 0]);
});
