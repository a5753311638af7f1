#!/usr/bin/env node
/**
 * `eve-tasks-tools-image`: builds the built-in hypervisor-tools image (cached per qemu version)
 * and registers it as HypervisorToolsConfig.default. See usage below.
 */
import { connectBus, ensureBucket } from "@eve-tasks/bus";
import { ConfigError, baseWorkerEnvSchema, loadConfig } from "@eve-tasks/runtime";
import { ToolsImageError } from "./errors.js";
import { buildToolsImage, defaultToolsImageDir } from "./layout.js";
import type { BuildProgress, ToolsImage } from "./layout.js";
import { registerDefaultTools } from "./register.js";

const usage = `usage: eve-tasks-tools-image build [--out <dir>] [--force]
       eve-tasks-tools-image register [--out <dir>] [--force]

build     builds the hypervisor-tools image from the host's Debian qemu-system-x86 as an OCI
          layout in <dir>/<tag> (reused when it is there and intact) and prints its reference,
          oci:<dir>/<tag>:<tag>
register  builds it, then puts it at $KV.controller.HypervisorToolsConfig.default on NATS_URL,
          unless that key names an image of the user's own choice

--out <dir>  where the layouts go (default <EVE_DATA_DIR>/tools-images/qemu)
--force      rebuild even when an intact layout is there

Environment: EVE_DATA_DIR (default ./.data), NATS_URL (default nats://127.0.0.1:4222).
`;

class UsageError extends Error {}

interface Args {
  command: "build" | "register" | "help";
  out: string | undefined;
  force: boolean;
}

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { command: "help", out: undefined, force: false };
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
    else throw new UsageError(`unexpected argument ${a}`);
  }
  if (command === undefined) throw new UsageError("no command given");
  if (command !== "build" && command !== "register") throw new UsageError(`unknown command ${command}`);
  return { ...args, command };
}

/** Progress lines on stderr, one per phase and every 25 % of the layer. */
function progressPrinter(): (p: BuildProgress) => void {
  let lastQuarter = -1;
  return (p) => {
    if (p.phase === "collecting") {
      process.stderr.write("collecting qemu, its libraries, modules and firmware\n");
      return;
    }
    const quarter = p.totalBytes === 0 ? 4 : Math.floor((4 * p.bytes) / p.totalBytes);
    if (quarter === lastQuarter) return;
    lastQuarter = quarter;
    const mb = (n: number): string => (n / 1e6).toFixed(1);
    process.stderr.write(
      `writing the layer: ${p.files}/${p.totalFiles} files, ${mb(p.bytes)}/${mb(p.totalBytes)} MB\n`,
    );
  };
}

function describe(image: ToolsImage): string {
  const mb = (n: number): string => (n / 1e6).toFixed(1);
  return `${image.built ? "built" : "reused"} ${image.layoutDir} (qemu ${image.qemuVersion}, layer ${mb(image.layerSize)} MB, ${mb(image.unpackedSize)} MB unpacked)`;
}

async function main(argv: readonly string[]): Promise<number> {
  const args = parseArgs(argv);
  if (args.command === "help") {
    process.stdout.write(usage);
    return 0;
  }
  const config = loadConfig(baseWorkerEnvSchema.pick({ EVE_DATA_DIR: true, NATS_URL: true }));
  const outDir = args.out ?? defaultToolsImageDir(config.EVE_DATA_DIR);
  const image = await buildToolsImage({ outDir, force: args.force, onProgress: progressPrinter() });
  for (const w of image.warnings) process.stderr.write(`warning: ${w}\n`);
  process.stderr.write(`${describe(image)}\n`);
  if (args.command === "build") {
    process.stdout.write(`${image.ref}\n`);
    return 0;
  }
  const bus = await connectBus({ servers: config.NATS_URL, name: "eve-tasks-tools-image" });
  try {
    await ensureBucket(bus, "controller");
    const r = await registerDefaultTools(bus, image.ref);
    process.stdout.write(`${r.message}\n`);
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
