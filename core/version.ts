/**
 * The library's version (the `version` of deno.json; a test keeps them
 * equal).
 *
 * @module
 */

/** This library's version. */
export const VERSION = "0.2.0-dev";
