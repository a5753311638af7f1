// The test images of the registry tests, built once per file into OCI layouts.
import { join } from "node:path";
import { OciLayout, busyboxEntries } from "../harness/registry-images.js";
import type { Descriptor, EntrySpec } from "../harness/registry-images.js";

/** Layout dirs and tags of the test images. */
export interface TestImages {
  dir: string;
  layout: OciLayout;
  busybox: Descriptor;
  whiteouts: Descriptor;
  multi: Descriptor;
  zstd: Descriptor;
}

/** Layer 1 of the whiteout image: what the upper layer hides. */
export const LOWER: EntrySpec[] = [
  { name: "etc/", type: "directory" },
  { name: "etc/hostname", content: "lower\n" },
  { name: "etc/keep", content: "kept\n" },
  { name: "old/", type: "directory" },
  { name: "old/file", content: "x" },
  { name: "opq/", type: "directory" },
  { name: "opq/lower1", content: "1" },
  { name: "opq/sub/", type: "directory" },
  { name: "opq/sub/lower2", content: "2" },
  { name: "opq/also", content: "3" },
];

/** Layer 2: a plain whiteout, a whiteout of a directory, and an opaque marker after its siblings. */
export const UPPER: EntrySpec[] = [
  { name: "etc/.wh.hostname", content: "" },
  { name: ".wh.old", content: "" },
  { name: "opq/", type: "directory", mode: 0o750 },
  { name: "opq/new", content: "new\n" },
  { name: "opq/sub/", type: "directory" },
  { name: "opq/sub/upper", content: "u" },
  { name: "opq/.wh..wh..opq", content: "" },
  { name: "opq/after", content: "after\n" },
];

export async function buildTestImages(dir: string): Promise<TestImages> {
  const layout = new OciLayout(join(dir, "layout"));
  const bb = await busyboxEntries();
  const busybox = await layout.image({
    layers: [{ entries: bb }],
    config: {
      Entrypoint: ["/bin/sh", "-c"],
      Cmd: ["echo hello"],
      Env: ["PATH=/bin", "GREETING=hi=there"],
      WorkingDir: "/tmp",
      User: "1000:1000",
    },
  });
  await layout.tag(busybox, "busybox");
  const whiteouts = await layout.image({ layers: [{ entries: LOWER }, { entries: UPPER }] });
  await layout.tag(whiteouts, "whiteouts");
  const amd = await layout.image({
    layers: [{ entries: [{ name: "which", content: "amd64\n" }] }],
    architecture: "amd64",
  });
  const arm = await layout.image({
    layers: [{ entries: [{ name: "which", content: "arm64\n" }] }],
    architecture: "arm64",
  });
  const att = await layout.attestation(amd);
  const multi = await layout.index([
    att,
    amd,
    { ...arm, platform: { os: "linux", architecture: "arm64", variant: "v8" } },
  ]);
  await layout.tag(multi, "multi");
  const zstd = await layout.image({
    layers: [
      {
        entries: [
          { name: "z/", type: "directory" },
          { name: "z/file", content: "zstd layer\n".repeat(100) },
        ],
        compression: "zstd",
      },
    ],
  });
  await layout.tag(zstd, "zstd");
  return { dir: layout.dir, layout, busybox, whiteouts, multi, zstd };
}
