// Vitest config for the browser smoke test only (npm run test:browser): Node environment,
// the test drives headless Chromium itself via playwright-core.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/browser/**/*.test.ts"],
    environment: "node",
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
