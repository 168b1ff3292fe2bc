// Vite build of the browser smoke page (web/ -> web/dist/), served by test/browser/server.ts.
// `vite build web` picks this file up; the bundle imports the TypeScript sources of src/.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "./",
  logLevel: "warn",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // Keep the core a separate application/wasm file, never an inlined data: URL.
    assetsInlineLimit: 0,
  },
  worker: { format: "es" },
});
