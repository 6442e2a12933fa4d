import assert from "node:assert/strict";
import { formatSeconds } from "../../cli/format.ts";

Deno.test("formatSeconds: seconds, minutes, hours, rounding at the carries", () => {
  assert.equal(formatSeconds(0), "0s");
  assert.equal(formatSeconds(42.4), "42s");
  assert.equal(formatSeconds(59.4), "59s");
  assert.equal(formatSeconds(59.6), "1m00s"); // not "60s"
  assert.equal(formatSeconds(119.5), "2m00s"); // not "1m60s"
  assert.equal(formatSeconds(187), "3m07s");
  assert.equal(formatSeconds(3599.4), "59m59s");
  assert.equal(formatSeconds(3599.6), "1h00m");
  assert.equal(formatSeconds(3600 + 29), "1h00m");
  assert.equal(formatSeconds(3600 + 59 * 60 + 31), "2h00m"); // not "1h60m"
  assert.equal(formatSeconds(7530), "2h06m"); // 125.5 min rounds half up
  assert.equal(formatSeconds(Infinity), "?");
  assert.equal(formatSeconds(NaN), "?");
  assert.equal(formatSeconds(-3), "0s");
});
