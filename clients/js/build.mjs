// Bundles src/ (and @msgpack/msgpack) into one ES module, dist/rtclient.js, that a page imports without a bundler.
// `node build.mjs OUTFILE` writes elsewhere (the test that the committed bundle is up to date builds to a temp file).
import { build } from "esbuild";

const outfile = process.argv[2] ?? "dist/rtclient.js";
await build({
  entryPoints: ["src/index.ts"],
  bundle: true,
  format: "esm",
  platform: "neutral",
  target: "es2020",
  mainFields: ["module", "main"],
  outfile,
  legalComments: "inline",
  banner: { js: "// rtserver reference client (protocol v1), built from clients/js/src by `npm run build`; do not edit." },
  logLevel: "warning",
});
