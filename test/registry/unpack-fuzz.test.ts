// Property test of the unpacker: random layers (paths with `..`, absolute and long ones;
// symlinks and hardlinks pointing anywhere; whiteouts and opaque markers; set-id and odd modes;
// any order, one or two layers) never write or change anything outside the root. A sentinel tree
// around the root is snapshotted before and after (type, content, mode, owner, times, links).
// FC_SEED=<n> replays a run; EVE_FUZZ_RUNS sets the number of runs (default sized for CI).
import { createHash } from "node:crypto";
import { lstatSync, readFileSync, readdirSync, readlinkSync } from "node:fs";
import { mkdir, mkdtemp, rm, symlink, writeFile, chmod } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { RegistryError, applyLayer } from "@eve-tasks/registry";
import { tarOf } from "../harness/registry-images.js";
import type { EntrySpec } from "../harness/registry-images.js";

const RUNS = Number(process.env.EVE_FUZZ_RUNS ?? 120);
const SEED = Number(process.env.FC_SEED ?? Date.now() % 2 ** 31);

/** Everything about the tree at `dir` (not following symlinks), `skip` left out. */
function snapshot(dir: string, skip: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const walk = (p: string): void => {
    if (p === skip) return;
    const st = lstatSync(p);
    const entry: Record<string, unknown> = {
      mode: st.mode,
      uid: st.uid,
      gid: st.gid,
      nlink: st.nlink,
      ino: st.ino,
      size: st.size,
      mtimeMs: st.mtimeMs,
      ctimeMs: st.ctimeMs,
    };
    if (st.isFile()) entry.sha256 = createHash("sha256").update(readFileSync(p)).digest("hex");
    if (st.isSymbolicLink()) entry.target = readlinkSync(p);
    out[p] = entry;
    if (st.isDirectory()) for (const name of readdirSync(p).sort()) walk(join(p, name));
  };
  walk(dir);
  return out;
}

/** A fresh box: sentinels of every kind around an empty root. */
async function makeBox(): Promise<{ top: string; box: string; root: string; scratch: string }> {
  const top = await mkdtemp(join(tmpdir(), "eve-fuzz-"));
  const box = join(top, "box");
  const root = join(box, "root");
  await mkdir(join(box, "sentinel-dir", "d"), { recursive: true });
  await writeFile(join(box, "sentinel"), "sentinel\n");
  await writeFile(join(box, "sentinel-dir", "inner"), "inner\n");
  await writeFile(join(box, "sentinel-suid"), "#!/bin/sh\n");
  await chmod(join(box, "sentinel-suid"), 0o4755);
  await symlink("sentinel-dir", join(box, "sentinel-link"));
  await mkdir(root);
  await mkdir(join(top, "scratch"));
  return { top, box, root, scratch: join(top, "scratch") };
}

// Few names, so that entries often meet at the same path (a directory, then a symlink there).
const component = fc.oneof(
  { weight: 6, arbitrary: fc.constant("d") },
  { weight: 3, arbitrary: fc.constant("a") },
  { weight: 2, arbitrary: fc.constant("sentinel-dir") },
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      "b",
      "sentinel",
      "..",
      ".",
      "",
      ".wh.a",
      ".wh.d",
      ".wh..wh..opq",
      "x".repeat(120),
    ),
  },
);
const relPath = fc.array(component, { minLength: 1, maxLength: 3 }).map((c) => c.join("/"));
const anyPath = fc.oneof(
  { weight: 6, arbitrary: relPath },
  { weight: 1, arbitrary: relPath.map((p) => `/${p}`) },
  { weight: 1, arbitrary: fc.constant(`${"y".repeat(200)}/${"z".repeat(200)}`) },
);
const mode = fc.constantFrom(0o644, 0o755, 0o777, 0o4755, 0o6777, 0o4777, 0o1777, 0o000, 0o700);
const owner = fc.constantFrom(0, 1234);

/** Entries of a layer; link targets may name the box around the root (`box` filled in later). */
function entry(box: string): fc.Arbitrary<EntrySpec> {
  const target = fc.oneof(
    anyPath,
    fc.constantFrom("..", "../..", "../sentinel-dir", "../../box/sentinel-dir", "/", "../sentinel-link"),
    fc.constantFrom(box, join(box, "sentinel-dir"), join(box, "sentinel"), join(box, "sentinel-link")),
  );
  return fc.oneof(
    fc.record({ name: anyPath, content: fc.constantFrom("", "x", "pwned\n"), mode, uid: owner, gid: owner }),
    fc.record({ name: anyPath, type: fc.constant("directory" as const), mode, uid: owner, gid: owner }),
    fc.record({ name: anyPath, type: fc.constant("symlink" as const), linkname: target }),
    fc.record({ name: anyPath, type: fc.constant("link" as const), linkname: target }),
  );
}

describe("unpacker property: nothing outside the root changes", () => {
  it(`random layers never touch the sentinels around the root (${RUNS} runs, seed ${SEED})`, async () => {
    // Box paths are fixed per run only after the box exists; the arbitrary uses a placeholder
    // that is replaced by the real box path.
    const PLACEHOLDER = "/__box__";
    const layers = fc.array(fc.array(entry(PLACEHOLDER), { minLength: 1, maxLength: 12 }), {
      minLength: 1,
      maxLength: 2,
    });
    await fc.assert(
      fc.asyncProperty(layers, async (spec) => {
        const { top, box, root, scratch } = await makeBox();
        try {
          const before = snapshot(box, root);
          let untyped: unknown;
          for (const [i, entries] of spec.entries()) {
            const real = entries.map((e) =>
              "linkname" in e ? { ...e, linkname: e.linkname.replaceAll(PLACEHOLDER, box) } : e,
            );
            const bytes = await tarOf(real);
            const blobPath = join(top, `layer-${i}.tar`);
            await writeFile(blobPath, bytes);
            const diffId = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
            try {
              await applyLayer(
                root,
                { blobPath, digest: `layer-${i}`, compression: "none", diffId },
                { scratchDir: scratch, preserveOwner: true },
              );
            } catch (err) {
              // Refusing a layer is fine (with a typed error, checked last).
              if (!(err instanceof RegistryError)) untyped = err;
              break;
            }
          }
          expect(snapshot(box, root)).toEqual(before);
          if (untyped !== undefined) throw untyped as Error;
        } finally {
          await rm(top, { recursive: true, force: true });
        }
      }),
      { numRuns: RUNS, seed: SEED },
    );
  }, 120_000);
});
