#!/usr/bin/env node
// The `eve-tasks-tools-image` command as npm links it. It lives outside dist/ because `npm ci` links a
// workspace's bins before anything is built, and skips a bin whose file does not exist yet: on a
// fresh clone, `npx eve-tasks-tools-image` then found nothing to run. It loads the built program.
import { existsSync } from "node:fs";
import process from "node:process";
import { URL, fileURLToPath } from "node:url";

const main = new URL("../dist/main.js", import.meta.url);
if (!existsSync(main)) {
  const root = fileURLToPath(new URL("../../..", import.meta.url));
  process.stderr.write(
    `eve-tasks-tools-image: ${fileURLToPath(main)} is not built yet: run \`npm run build\` (or \`npm start\`) in ${root}\n`,
  );
  process.exit(1);
}
await import(main.href);
