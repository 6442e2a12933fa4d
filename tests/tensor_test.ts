import assert from "node:assert/strict";
import { shapeSize, Tensor } from "../mod.ts";

Deno.test("Tensor.from() copies its input so later writes do not leak in", () => {
  const source = new Float32Array([1, 2, 3]);
  const t = Tensor.from(source);
  source[0] = 99;
  assert.equal(t.get(0), 1);
  const copy = t.toFloat32Array();
  copy[1] = 99;
  assert.equal(t.get(1), 2);
});

Deno.test("Tensor is frozen: shape and fields cannot be reassigned", () => {
  const t = Tensor.from([1, 2, 3, 4], [2, 2]);
  assert.throws(() => {
    (t.shape as number[])[0] = 4;
  }, TypeError);
  assert.throws(() => {
    (t as unknown as { size: number }).size = 3;
  }, TypeError);
});

Deno.test("Tensor rejects shapes that do not match the data", () => {
  assert.throws(
    () => Tensor.from([1, 2, 3], [2, 2]),
    /shape \[2, 2\] \(4 elements\) from 3 values/,
  );
  assert.throws(() => shapeSize([2, -1]), /dimension -1/);
  assert.throws(() => Tensor.zeros([2, 3]).reshape([4, 2]), /Cannot reshape/);
  assert.throws(
    () => Tensor.zeros([2, 3]).get(2, 0),
    /Index 2 is out of range/,
  );
});
