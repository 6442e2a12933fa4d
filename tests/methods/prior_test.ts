import assert from "node:assert/strict";
import {
  type GateLogits,
  gateProbability,
} from "../../core/reference/gates.ts";
import { prior } from "../../core/reference/prior.ts";
import { assertClose } from "../_fixtures.ts";

Deno.test("prior() without pruning is 1 + q4 w4 + q4 q8 w8 + q4 q8 q16 w16 + q4 q8 q16 q32 w32", () => {
  const logits = { g4: 0.3, g8: -0.2, g16: 1.1, g32: -1.7 };
  const [q4, q8, q16, q32] = [0.3, -0.2, 1.1, -1.7].map(gateProbability);
  const r = 0.25;
  const expected = 1 + q4 * 4 * r + q4 * q8 * 8 * r + q4 * q8 * q16 * 16 * r +
    q4 * q8 * q16 * q32 * 32 * r;
  assertClose(prior(logits, { macRatio: r }).value, expected, 1e-14);
  const constant = 1 + q4 + q4 * q8 + q4 * q8 * q16 + q4 * q8 * q16 * q32;
  assertClose(
    prior(logits, { macRatio: r, mode: "const" }).value,
    constant,
    1e-14,
  );
});

Deno.test("prior() with pruning averages the per-channel bracket over channels", () => {
  const g2 = [2, -1, 0.5];
  const logits = { g2, g4: 6, g8: 6, g16: -6, g32: -6 };
  const [q4, q8, q16, q32] = [6, 6, -6, -6].map(gateProbability);
  const r = 0.5;
  let expected = 0;
  for (const g of g2) {
    const q2 = gateProbability(g);
    expected += q2 * 2 * r + q2 * q4 * 4 * r + q2 * q4 * q8 * 8 * r +
      q2 * q4 * q8 * q16 * 16 * r +
      q2 * q4 * q8 * q16 * q32 * 32 * r;
  }
  assertClose(prior(logits, { macRatio: r }).value, expected / 3, 1e-14);
});

Deno.test("an 8-bit quantizer with gates far on pays 2 + 4 + 8 times its MAC ratio", () => {
  const r = prior({ g2: [50], g4: 50, g8: 50, g16: -50, g32: -50 }, {
    macRatio: 0.1,
  });
  assertClose(r.value, 1.4, 1e-12);
});

Deno.test("prior() gradients match finite differences for every logit (bop and const, with and without pruning)", () => {
  const bases: GateLogits[] = [
    { g4: 0.3, g8: -0.2, g16: 1.1, g32: -1.7 },
    { g2: [2, -1, 0.5, 0.1], g4: 0.7, g8: 1.2, g16: -0.4, g32: 0.9 },
    { g2: [6], g4: 6, g8: 6, g16: -6, g32: -6 },
  ];
  for (const base of bases) {
    for (const mode of ["bop", "const"] as const) {
      const options = { macRatio: 0.37, mode };
      const got = prior(base, options);
      const h = 1e-6;
      const keys = ["g4", "g8", "g16", "g32"] as const;
      keys.forEach((k, l) => {
        const numeric = (prior({ ...base, [k]: base[k] + h }, options).value -
          prior({ ...base, [k]: base[k] - h }, options).value) / (2 * h);
        assertClose(got.dg[l], numeric, 1e-6, 1e-10, `${mode} ${k}`);
      });
      if (base.g2) {
        for (let c = 0; c < base.g2.length; c++) {
          const shifted = (d: number) =>
            Array.from(base.g2!, (g, i) => (i === c ? g + d : g));
          const numeric = (prior({ ...base, g2: shifted(h) }, options).value -
            prior({ ...base, g2: shifted(-h) }, options).value) / (2 * h);
          assertClose(got.dg2![c], numeric, 1e-6, 1e-10, `${mode} g2[${c}]`);
        }
      } else {
        assert.equal(got.dg2, null);
      }
    }
  }
});

Deno.test("prior() rejects bad options with clear errors", () => {
  const logits = { g4: 0, g8: 0, g16: 0, g32: 0 };
  assert.throws(
    () => prior(logits, { macRatio: 0 }),
    /MAC ratio must be in \(0, 1\], got 0/,
  );
  assert.throws(() => prior(logits, { macRatio: 1.5 }), /got 1.5/);
  assert.throws(
    () => prior(logits, { macRatio: 1, mode: "bits" as "bop" }),
    /Unknown prior mode "bits"/,
  );
  assert.throws(
    () => prior({ ...logits, g16: Infinity }, { macRatio: 1 }),
    /finite/,
  );
});
