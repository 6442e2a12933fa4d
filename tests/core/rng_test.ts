import assert from "node:assert/strict";
import {
  bitsToUniform,
  foldIn,
  randomBits,
  randomKey,
  splitKey,
  threefry2x32,
  uniform,
} from "../../core/rng.ts";

Deno.test("threefry2x32() matches the published Threefry-2x32-20 known answers", () => {
  // Known-answer vectors of the Random123 distribution (key, counter -> output).
  const vectors: [[number, number], [number, number], [number, number]][] = [
    [[0, 0], [0, 0], [0x6b200159, 0x99ba4efe]],
    [[0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff], [
      0x1cb996fc,
      0xbb002be7,
    ]],
    [[0x13198a2e, 0x03707344], [0x243f6a88, 0x85a308d3], [
      0xc4923a9c,
      0x483df7a0,
    ]],
  ];
  for (const [key, [c0, c1], expected] of vectors) {
    assert.deepEqual(threefry2x32(key, c0, c1), expected);
  }
});

Deno.test("uniform() lays the stream out as words of consecutive blocks", () => {
  const key = randomKey(123);
  const u = uniform(key, 7, 3);
  for (let i = 0; i < 7; i++) {
    const index = 3 + i;
    const word = threefry2x32(key, index >>> 1, 0)[index & 1];
    assert.equal(u[i], bitsToUniform(word));
    assert.equal(randomBits(key, index), word);
  }
});

Deno.test("uniform() values are float32-exact, inside (0, 1) and roughly uniform", () => {
  const u = uniform(randomKey(5), 100_000);
  let sum = 0;
  for (const v of u) {
    assert.ok(v > 0 && v < 1);
    assert.equal(Math.fround(v), v);
    sum += v;
  }
  assert.ok(Math.abs(sum / u.length - 0.5) < 0.005, `mean ${sum / u.length}`);
});

Deno.test("splitKey() and foldIn() give distinct, reproducible keys", () => {
  const key = randomKey(9);
  const [a, b, c] = splitKey(key, 3);
  assert.notDeepEqual(a, b);
  assert.notDeepEqual(b, c);
  assert.deepEqual(splitKey(key, 3), [a, b, c]);
  assert.notDeepEqual(foldIn(key, 0), foldIn(key, 1));
  assert.deepEqual(foldIn(key, 17), foldIn(key, 17));
});

Deno.test("random functions reject bad seeds, keys and counts with clear errors", () => {
  assert.throws(() => randomKey(-1), /seed -1/);
  assert.throws(() => randomKey(1.5), /seed 1.5/);
  assert.throws(
    () => uniform([1, 2, 3] as unknown as [number, number], 2),
    /Invalid random key/,
  );
  assert.throws(() => uniform(randomKey(0), -1), /Cannot draw -1 uniforms/);
  assert.throws(() => foldIn(randomKey(0), 2 ** 32), /Cannot fold/);
});
