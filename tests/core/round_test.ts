import assert from "node:assert/strict";
import { roundHalfEven } from "../../core/round.ts";

Deno.test("roundHalfEven() sends exact halves to the even neighbour", () => {
  const cases: [number, number][] = [
    [0.5, 0],
    [1.5, 2],
    [2.5, 2],
    [3.5, 4],
    [-0.5, -0],
    [-1.5, -2],
    [-2.5, -2],
    [-3.5, -4],
    [1e6 + 0.5, 1e6],
    [2 ** 52 + 1, 2 ** 52 + 1],
  ];
  for (const [input, expected] of cases) {
    assert.equal(roundHalfEven(input), expected, `${input}`);
  }
});

Deno.test("roundHalfEven() rounds non-ties to the nearest integer", () => {
  const cases: [number, number][] = [
    [0.49999999999999994, 0],
    [0.5000000000000001, 1],
    [-0.7, -1],
    [2.4, 2],
    [2.6, 3],
    [-2.6, -3],
  ];
  for (const [input, expected] of cases) {
    assert.equal(roundHalfEven(input), expected, `${input}`);
  }
});

Deno.test("roundHalfEven() passes NaN and infinities through", () => {
  assert.ok(Number.isNaN(roundHalfEven(NaN)));
  assert.equal(roundHalfEven(Infinity), Infinity);
  assert.equal(roundHalfEven(-Infinity), -Infinity);
});
