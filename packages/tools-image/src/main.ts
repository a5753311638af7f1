#!/usr/bin/env node
/**
 * `eve-tasks-tools-image`: builds the built-in runtime images (cached per package version) and
 * registers each as HypervisorToolsConfig.<name>. See usage below.
 */
import path from "node:path";
import { connectBus, ensureBucket } from "@eve-tasks/bus";
import { ConfigError, baseWorkerEnvSchema, loadConfig, natsConnection } from "@eve-tasks/runtime";
import { ToolsImageError } from "./errors.js";
import { buildRuntimeImage, defaultRuntimeImageDir } from "./layout.js";
import type { BuildProgress, RuntimeImage } from "./layout.js";
import { BUILT_IN_RUNTIMES } from "./recipes.js";
import type { BuiltInRuntime } from "./recipes.js";
import { registerBuiltInRuntime } from "./register.js";

const usage = `usage: eve-tasks-tools-image build [--out <dir>] [--force] [<runtime>...]
       eve-tasks-tools-image register [--out <dir>] [--force] [<runtime>...]

build     builds the built-in runtime images from the host's Debian packages as OCI layouts in
          <dir>/<name>/<tag> (reused when there and intact) and prints each reference,
          <name> oci:<dir>/<name>/<tag>:<tag>
register  builds them, then puts each at $KV.controller.HypervisorToolsConfig.<name> on
          NATS_URL, unless that key names an image of the operator's own choice

<runtime>    ${BUILT_IN_RUNTIMES.join(", ")} (default: all)
--out <dir>  where the layouts go (default <EVE_DATA_DIR>/tools-images)
--force      rebuild even when an intact layout is there

Environment: EVE_DATA_DIR (default ./.data), NATS_URL (default nats://127.0.0.1:4222); for a
server that asks for credentials, NATS_USER (one that may write the controller bucket: admin or
controller) with NATS_PASSWORD_FILE or NATS_PASSWORD.
`;

class UsageError extends Error {}

interface Args {
  command: "build" | "register" | "help";
  out: string | undefined;
  force: boolean;
  runtimes: BuiltInRuntime[];
}

const isBuiltIn = (name: string): name is BuiltInRuntime =>
  (BUILT_IN_RUNTIMES as readonly string[]).includes(name);

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { command: "help", out: undefined, force: false, runtimes: [] };
  let command: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === "--help" || a === "-h") return { ...args, command: "help" };
    if (a === "--force") args.force = true;
    else if (a === "--out" || a.startsWith("--out=")) {
      const v = a === "--out" ? argv[++i] : a.slice("--out=".length);
      if (v === undefined || v === "") throw new UsageError("--out needs a directory");
      args.out = v;
    } else if (a.startsWith("-")) throw new UsageError(`unknown option ${a}`);
    else if (command === undefined) command = a;
    else if (isBuiltIn(a)) args.runtimes.push(a);
    else throw new UsageError(`unknown runtime ${a} (built-in: ${BUILT_IN_RUNTIMES.join(", ")})`);
  }
  if (command === undefined) throw new UsageError("no command given");
  if (command !== "build" && command !== "register") throw new UsageError(`unknown command ${command}`);
  if (args.runtimes.length === 0) args.runtimes = [...BUILT_IN_RUNTIMES];
  return { ...args, command };
}

/** Progress lines on stderr, one per phase and every 25 % of the layer. */
function progressPrinter(name: string): (p: BuildProgress) => void {
  let lastQuarter = -1;
  return (p) => {
    if (p.phase === "collecting") {
      process.stderr.write(`${name}: collecting its files\n`);
      return;
    }
    const quarter = p.totalBytes === 0 ? 4 : Math.floor((4 * p.bytes) / p.totalBytes);
    if (quarter === lastQuarter) return;
    lastQuarter = quarter;
    const mb = (n: number): string => (n / 1e6).toFixed(1);
    process.stderr.write(
      `${name}: writing the layer: ${p.files}/${p.totalFiles} files, ${mb(p.bytes)}/${mb(p.totalBytes)} MB\n`,
    );
  };
}

function describe(image: RuntimeImage): string {
  const mb = (n: number): string => (n / 1e6).toFixed(1);
  const packages = Object.entries(image.packages)
    .map(([p, v]) => `${p} ${v}`)
    .join(", ");
  return `${image.name}: ${image.built ? "built" : "reused"} ${image.layoutDir} (${packages}; layer ${mb(image.layerSize)} MB, ${mb(image.unpackedSize)} MB unpacked)`;
}

async function main(argv: readonly string[]): Promise<number> {
  const args = parseArgs(argv);
  if (args.command === "help") {
    process.stdout.write(usage);
    return 0;
  }
  const config = loadConfig(
    baseWorkerEnvSchema.pick({
      EVE_DATA_DIR: true,
      NATS_URL: true,
      NATS_USER: true,
      NATS_PASSWORD: true,
      NATS_PASSWORD_FILE: true,
    }),
  );
  // For register, checked before the build, which can take a while: a user without a password is
  // a usage error. `build` needs no NATS.
  const nats = args.command === "register" ? natsConnection(config) : undefined;
  const images: RuntimeImage[] = [];
  for (const name of args.runtimes) {
    const outDir =
      args.out !== undefined ? path.join(args.out, name) : defaultRuntimeImageDir(config.EVE_DATA_DIR, name);
    const image = await buildRuntimeImage(name, {
      outDir,
      force: args.force,
      onProgress: progressPrinter(name),
    });
    for (const w of image.warnings) process.stderr.write(`${name}: warning: ${w}\n`);
    process.stderr.write(`${describe(image)}\n`);
    images.push(image);
  }
  // `build` (the only command without NATS settings) ends here.
  if (nats === undefined) {
    for (const image of images) process.stdout.write(`${image.name} ${image.ref}\n`);
    return 0;
  }
  const bus = await connectBus({ ...nats, name: "eve-tasks-tools-image" });
  try {
    await ensureBucket(bus, "controller");
    for (const image of images) {
      const r = await registerBuiltInRuntime(bus, image.name, image.ref);
      process.stdout.write(`${r.message}\n`);
    }
  } finally {
    await bus.close();
  }
  return 0;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  if (err instanceof UsageError || err instanceof ConfigError) {
    process.stderr.write(`eve-tasks-tools-image: ${err.message}\n${err instanceof UsageError ? usage : ""}`);
    process.exitCode = 2;
  } else {
    const text = err instanceof ToolsImageError || err instanceof Error ? err.message : String(err);
    process.stderr.write(`eve-tasks-tools-image: ${text}\n`);
    process.exitCode = 1;
  }
}
