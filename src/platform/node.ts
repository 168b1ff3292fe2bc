/**
 * The Node-only adapter: reading the core's .wasm from a file: URL. Nothing else in src/
 * touches a Node API; browsers fetch the same URL.
 * @module
 */
import { readFile } from "node:fs/promises";

export async function readWasmFile(url: URL): Promise<Uint8Array> {
  return new Uint8Array(await readFile(url));
}
