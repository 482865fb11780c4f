// Validate a glTF file with the Khronos glTF Validator; print its report as JSON on stdout.
// Usage: node validate.mjs FILE   (exit 0 when the file has no errors, 1 when it has, 2 on bad use)
import { readFile } from "node:fs/promises";
import path from "node:path";
import validator from "gltf-validator";

const file = process.argv[2];
if (!file) {
  console.error("usage: node validate.mjs FILE");
  process.exit(2);
}
const data = new Uint8Array(await readFile(file));
const report = await validator.validateBytes(data, {
  uri: path.basename(file),
  maxIssues: 0,
  externalResourceFunction: (uri) =>
    readFile(path.resolve(path.dirname(file), decodeURIComponent(uri))).then((b) => new Uint8Array(b)),
});
process.stdout.write(JSON.stringify(report));
process.exit(report.issues.numErrors > 0 ? 1 : 0);
