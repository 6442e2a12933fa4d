import assert from "node:assert/strict";
import { searchKnob } from "../../core/budget.ts";

/** A run whose cost is `f(knob)`, returning the knob. */
const runOf = (f: (knob: number) => number) => (knob: number) =>
  Promise.resolve({ relativeGbops: f(knob), result: knob });

Deno.test("searchKnob bisects the knob's logarithm until a run lands within 1 % below the target", async () => {
  const found = await searchKnob({
    targetGbops: 1,
    run: runOf((mu) => 5 / mu),
  });
  const knobs = found.trials.map((t) => t.knob);
  assert.equal(knobs[0], 10); // the bracket's upper end: 0.5 %, below the window
  // Each later run is the geometric mean of the bracket the earlier ones left.
  let [low, high] = [1e-4, 10];
  for (const t of found.trials.slice(1)) {
    assert.ok(Math.abs(t.knob - Math.sqrt(low * high)) < 1e-12 * t.knob);
    if (t.relativeGbops > 1) low = t.knob;
    else high = t.knob;
  }
  assert.ok(found.withinTolerance);
  assert.ok(found.best.relativeGbops <= 1 && found.best.relativeGbops >= 0.99);
  assert.equal(found.best, found.trials.at(-1));
  // 5 / mu in [0.99, 1] means mu in [5, 5.0505].
  assert.ok(found.best.knob >= 5 && found.best.knob <= 5.0505);
});

Deno.test("searchKnob widens the bracket when its upper end is above the target", async () => {
  const found = await searchKnob({
    targetGbops: 1,
    run: runOf((mu) => 100 / mu),
  });
  assert.deepEqual(found.trials.slice(0, 4).map((t) => t.knob), [
    10,
    20,
    40,
    80,
  ]);
  assert.ok(found.withinTolerance);
  assert.ok(found.best.knob >= 100 && found.best.knob <= 101.02);
});

Deno.test("searchKnob on a step it cannot split: the costliest run below the target, and it says it missed", async () => {
  const trials: number[] = [];
  const found = await searchKnob({
    targetGbops: 1,
    maxRuns: 10,
    run: runOf((mu) => mu < 2 ? 1.2 : 0.9),
    onTrial: (_t, i) => trials.push(i),
  });
  assert.equal(found.withinTolerance, false);
  assert.equal(found.trials.length, 10);
  assert.deepEqual(trials, [...Array(10).keys()]);
  assert.equal(found.best.relativeGbops, 0.9);
  // Never above the target, whatever the search saw.
  assert.ok(found.trials.some((t) => t.relativeGbops > 1));
});

Deno.test("searchKnob refuses bad options and says when nothing reaches the target", async () => {
  const run = runOf(() => 2);
  await assert.rejects(
    () => searchKnob({ targetGbops: 0, run }),
    /target must be positive/,
  );
  await assert.rejects(
    () => searchKnob({ targetGbops: 1, tolerance: 1, run }),
    /tolerance/,
  );
  await assert.rejects(
    () => searchKnob({ targetGbops: 1, low: 5, high: 1, run }),
    /bracket/,
  );
  await assert.rejects(
    () => searchKnob({ targetGbops: 1, maxRuns: 0, run }),
    /maxRuns/,
  );
  await assert.rejects(
    () => searchKnob({ targetGbops: 1, run }),
    /No run reached the target 1 %: the cheapest was 2 % at 2560/,
  );
});
