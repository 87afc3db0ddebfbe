// Bundles src/ (and @msgpack/msgpack) into one ES module that a page imports without a bundler: dist/rtclient.js,
// and the same bytes into rtserver/demo/rtclient.js, which `rtserver serve --demo` serves beside the demo page.
// `node build.mjs DIR` writes rtclient.js into DIR instead (the test that the committed files are up to date).
import { copyFile } from "node:fs/promises";
import { build } from "esbuild";

const outfile = process.argv[2] ? `${process.argv[2]}/rtclient.js` : "dist/rtclient.js";
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
if (!process.argv[2]) await copyFile(outfile, "../../rtserver/demo/rtclient.js");
