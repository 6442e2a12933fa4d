/**
 * Reference kernels of the elementwise family: `add`, `mul`, `scale`, `sum`,
 * `broadcast` and the activations, over float32 arrays (float64 arithmetic
 * rounded once per element on store).
 *
 * @module
 */

/** `a + b` elementwise. */
export function addReference(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] + b[i];
  return out;
}

/** `a * b` elementwise. */
export function mulReference(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] * b[i];
  return out;
}

/** Each element times the float64 `factor`, rounded once. */
export function scaleReference(a: Float32Array, factor: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] * factor;
  return out;
}

/** The float64 sum in element order, as a one-element array. */
export function sumReference(a: Float32Array): Float32Array {
  let total = 0;
  for (let i = 0; i < a.length; i++) total += a[i];
  return new Float32Array([total]);
}

/** `size` copies of `value`. */
export function broadcastReference(value: number, size: number): Float32Array {
  return new Float32Array(size).fill(value);
}

/** `x > 0 ? x : 0` (NaN gives 0). */
export function reluReference(x: Float32Array): Float32Array {
  // Plain loops: TypedArray.map with a closure is several times slower here.
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] > 0 ? x[i] : 0;
  return out;
}

/** `x > 0 ? dy : 0`. */
export function reluBackwardReference(
  x: Float32Array,
  dy: Float32Array,
): Float32Array {
  const dx = new Float32Array(dy.length);
  for (let i = 0; i < dy.length; i++) dx[i] = x[i] > 0 ? dy[i] : 0;
  return dx;
}

/** `min(max(x, 0), 6)` (NaN gives 0). */
export function relu6Reference(x: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    out[i] = v > 0 ? (v < 6 ? v : 6) : 0;
  }
  return out;
}

/** `0 < x < 6 ? dy : 0`. */
export function relu6BackwardReference(
  x: Float32Array,
  dy: Float32Array,
): Float32Array {
  const dx = new Float32Array(dy.length);
  for (let i = 0; i < dy.length; i++) {
    dx[i] = x[i] > 0 && x[i] < 6 ? dy[i] : 0;
  }
  return dx;
}
