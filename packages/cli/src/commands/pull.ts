/**
 * `eve-tasks pull <ref>`: pulls an image into this node's content store (`<EVE_DATA_DIR>/content`)
 * and unpacks it as a seed (`<EVE_DATA_DIR>/seeds/<digest>/rootfs`), without NATS. A progress bar
 * on a terminal, plain lines otherwise.
 */
import path from "node:path";
import type { Command } from "@commander-js/extra-typings";
import {
  RegistryError,
  errorText,
  registryEnv,
  registryEnvSchema,
  seedStoreFromEnv,
} from "@eve-tasks/registry";
import type { PullProgress } from "@eve-tasks/registry";
import type { CliContext } from "../context.js";
import { UserError } from "../errors.js";

/** Options of `pull`. */
export interface PullCommandOptions {
  ref: string;
  /** `uname -m` architecture; default this machine's. */
  arch: string | undefined;
  /** Fetch only; do not unpack. */
  noUnpack: boolean;
  json: boolean;
  /** Draw a progress bar (stdout is a terminal). */
  tty: boolean;
}

const MiB = 2 ** 20;

function bar(p: PullProgress, width = 30): string {
  const total = p.totalBytes ?? 0;
  const frac = total > 0 ? Math.min(1, p.doneBytes / total) : 0;
  const filled = Math.round(frac * width);
  const mib = (n: number): string => (n / MiB).toFixed(1);
  return `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${mib(p.doneBytes)}/${total > 0 ? mib(total) : "?"} MiB`;
}

/** Runs `pull`. */
export async function runPull(ctx: CliContext, o: PullCommandOptions): Promise<void> {
  const env = registryEnvSchema.safeParse(
    Object.fromEntries(
      Object.entries(ctx.env).filter(([k, v]) => (Object.hasOwn(registryEnv, k) ? v : false)),
    ),
  );
  if (!env.success)
    throw new UserError(`invalid environment: ${env.error.issues.map((i) => i.message).join("; ")}`);
  const dataDir = path.resolve(ctx.env.EVE_DATA_DIR || "./.data");
  const store = await seedStoreFromEnv(dataDir, env.data, {
    onWarning: (m) => ctx.err(`warning: ${m}\n`),
  });
  let lastLine = 0;
  const onProgress = (p: PullProgress): void => {
    const now = Date.now();
    if (o.tty) {
      if (now - lastLine < 100) return;
      lastLine = now;
      ctx.out(`\r${bar(p)}`);
    } else if (!o.json && now - lastLine >= 1000) {
      lastLine = now;
      ctx.out(`pulled ${p.doneBytes} of ${p.totalBytes ?? "?"} bytes\n`);
    }
  };
  const started = Date.now();
  try {
    const image = await store.pull(o.ref, { arch: o.arch, onProgress, signal: ctx.signal });
    if (o.tty) ctx.out(`\r${bar({ doneBytes: image.totalBytes, totalBytes: image.totalBytes })}\n`);
    const seed = o.noUnpack ? undefined : await store.unpack(image);
    const result = {
      ref: o.ref,
      digest: image.digest,
      indexDigest: image.indexDigest,
      platform: image.platform,
      sizeBytes: image.totalBytes,
      fetchedBytes: image.fetchedBytes,
      rootfsPath: seed?.rootfsPath ?? null,
      process: seed?.process ?? null,
      durationMs: Date.now() - started,
    };
    if (o.json) ctx.out(`${JSON.stringify(result, null, 2)}\n`);
    else {
      ctx.out(
        `pulled ${o.ref}: ${image.digest} (${image.platform}), ${image.totalBytes} bytes, ${image.fetchedBytes} fetched\n`,
      );
      if (seed) ctx.out(`rootfs: ${seed.rootfsPath}\n`);
    }
  } catch (err) {
    if (o.tty) ctx.out("\n");
    if (err instanceof RegistryError)
      throw new UserError(`pull ${o.ref}: ${errorText(err)}`, 1, { cause: err });
    throw err;
  }
}

/** Adds `pull` to the program. */
export function registerPull(program: Command<[], { server?: string }>, ctx: CliContext): void {
  program
    .command("pull")
    .summary("pull an image into this node's content store and unpack it")
    .description(
      "Pull an image (host[:port]/repo[:tag][@digest], or oci:<dir>:<tag>) into <EVE_DATA_DIR>/content, " +
        "verifying every digest, and unpack it as a seed under <EVE_DATA_DIR>/seeds. Reads " +
        "EVE_DATA_DIR, EVE_INSECURE_REGISTRIES, EVE_REGISTRY_AUTH_FILE, EVE_REGISTRY_MAX_*, " +
        "EVE_OCI_LAYOUT_ROOTS and EVE_VOLUME_ROOTS. Does not use NATS.",
    )
    .argument("<ref>", "image reference")
    .option(
      "--arch <arch>",
      "architecture to select from an index (x86_64, aarch64, ...); default this machine's",
    )
    .option("--no-unpack", "only fetch the blobs")
    .option("--json", "print the result as JSON")
    .action(async (ref, opts) => {
      await runPull(ctx, {
        ref,
        arch: opts.arch,
        noUnpack: opts.unpack === false,
        json: opts.json === true,
        tty: process.stdout.isTTY === true && opts.json !== true,
      });
    });
}
