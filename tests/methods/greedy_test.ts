import assert from "node:assert/strict";
import { evaluateFrozen } from "../../core/frozen.ts";
import { initGraph } from "../../core/graph.ts";
import {
  bayesianBits,
  freezeGated,
  greedyBaseline,
  initGated,
} from "../../core/methods/bayesian_bits/mod.ts";
import { randomKey } from "../../core/rng.ts";
import { firstImages, rowSumData, TINY_3X3 } from "../_fixtures.ts";

/** Hand BOPs of the tiny model: fc1 9 -> 6 (54 MACs), fc2 6 -> 3 (18 MACs). */
function tinyGbops(bits: Readonly<Record<string, number>>): number {
  const bops = 54 * 8 * bits["fc1.weight"] +
    18 * bits["fc1.act"] * bits["fc2.weight"];
  return (100 * bops) / ((54 + 18) * 32 * 32);
}

Deno.test("the greedy baseline lowers one quantizer a step, the least harmful one, down to the target", async () => {
  const data = rowSumData(256, 11);
  const gated = bayesianBits(TINY_3X3, { mu: 0 });
  const state = await initGated(
    gated,
    initGraph(TINY_3X3, randomKey(2)),
    firstImages(data, 64),
  );
  const { steps, frozen, reached } = await greedyBaseline(gated, state, data, {
    targetGbops: 1.5,
  });
  assert.ok(reached);
  assert.equal(steps[0].lowered, null);
  assert.equal(steps[0].relativeGbops, 6.25);
  for (const [i, step] of steps.entries()) {
    assert.ok(Math.abs(step.relativeGbops - tinyGbops(step.bits)) < 1e-12);
    if (i === 0) continue;
    const before = steps[i - 1].bits;
    const changed = Object.keys(step.bits).filter((k) =>
      step.bits[k] !== before[k]
    );
    assert.deepEqual(changed, [step.lowered]);
    assert.equal(step.bits[step.lowered!], before[step.lowered!] / 2);
  }
  const last = steps.at(-1)!;
  assert.ok(last.relativeGbops <= 1.5, `${last.relativeGbops}`);
  assert.ok(steps.at(-2)!.relativeGbops > 1.5);
  assert.equal(frozen.plan.method, "greedy");
  // The first step's choice is the most accurate of the three candidates.
  const accuracyAt = async (bits: Record<string, number>) => {
    const chain = (b: number) =>
      ({ 8: [6, 6, -6, -6], 4: [6, -6, -6, -6], 2: [-6, -6, -6, -6] })[b]!;
    const params = { ...state.params };
    for (const q of gated.quantizers) {
      params[q.logitsParam] = state.params[q.logitsParam].device.upload(
        chain(bits[q.name]),
        [4],
      );
    }
    return await evaluateFrozen(freezeGated(gated, { ...state, params }), data);
  };
  const candidates = await Promise.all(
    gated.quantizers.map((q) => accuracyAt({ ...steps[0].bits, [q.name]: 4 })),
  );
  assert.equal(steps[1].calibrationAccuracy, Math.max(...candidates));
  // Below the all-2-bit floor (input at 8 bits: 936 of 73,728 BOPs), it
  // stops at 2 bits everywhere and says so.
  const floor = await greedyBaseline(gated, state, data, { targetGbops: 1 });
  assert.equal(floor.reached, false);
  assert.ok(Object.values(floor.steps.at(-1)!.bits).every((b) => b === 2));
  assert.equal(floor.steps.at(-1)!.relativeGbops, (100 * 936) / 73_728);
  await assert.rejects(
    () => greedyBaseline(gated, state, data, { targetGbops: 0 }),
    /target must be positive/,
  );
});

Deno.test("the greedy baseline measures every step on a held-out set when given one, choosing on the calibration set all the same", async () => {
  const data = rowSumData(256, 11);
  const test = rowSumData(128, 12);
  const gated = bayesianBits(TINY_3X3, { mu: 0 });
  const state = await initGated(
    gated,
    initGraph(TINY_3X3, randomKey(2)),
    firstImages(data, 64),
  );
  const plain = await greedyBaseline(gated, state, data, { targetGbops: 1.5 });
  const withTest = await greedyBaseline(gated, state, data, {
    targetGbops: 1.5,
    test,
  });
  assert.deepEqual(
    withTest.steps.map(({ testAccuracy: _, ...rest }) => rest),
    plain.steps,
  );
  assert.ok(plain.steps.every((s) => !("testAccuracy" in s)));
  for (const step of withTest.steps) {
    const params = { ...state.params };
    for (const q of gated.quantizers) {
      params[q.logitsParam] = state.params[q.logitsParam].device.upload(
        ({ 8: [6, 6, -6, -6], 4: [6, -6, -6, -6], 2: [-6, -6, -6, -6] })[
          step.bits[q.name]
        ]!,
        [4],
      );
    }
    assert.equal(
      step.testAccuracy,
      await evaluateFrozen(freezeGated(gated, { ...state, params }), test),
    );
  }
});
