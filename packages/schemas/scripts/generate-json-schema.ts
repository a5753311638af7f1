// Writes packages/schemas/json-schema/<Type>.schema.json from the zod schemas and removes stale
// files. Run: npm run generate -w @eve-tasks/schemas (or: npx tsx scripts/generate-json-schema.ts).
import { mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { generateJsonSchemaFiles } from "../src/json-schema.js";

const dir = fileURLToPath(new URL("../json-schema/", import.meta.url));
const files = generateJsonSchemaFiles();
const wanted = new Set(files.map((f) => f.fileName));

await mkdir(dir, { recursive: true });
for (const name of await readdir(dir)) {
  if (name.endsWith(".schema.json") && !wanted.has(name)) await rm(join(dir, name));
}
for (const { fileName, text } of files) await writeFile(join(dir, fileName), text);
console.log(`wrote ${files.length} JSON Schema files to ${dir}`);
