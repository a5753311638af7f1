/**
 * A local OCI image layout (`oci:<dir>[:<tag>]`) as an {@link ImageSource}.
 *
 * A layout is a host path named in config, so it is treated like every other one: the directory
 * must resolve (realpath) under one of the allowed roots (EVE_OCI_LAYOUT_ROOTS), and every file
 * in it is opened below the directory's fd without following a symlink (`beneath.ts`): a layout
 * whose `index.json` or blob is a symlink to a host file is refused, never read. Parse errors say
 * where a document is wrong, never quote it.
 */
import { closeSync, createReadStream, fstatSync, openSync, readSync, readlinkSync } from "node:fs";
import { realpath } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import { DIR_FLAGS, openFileBeneath } from "./beneath.js";
import type { FetchedManifest, ImageSource } from "./client.js";
import { sha256Digest } from "./client.js";
import {
  DigestMismatchError,
  InvalidManifestError,
  LayoutOutsideRootsError,
  NotFoundError,
  TooLargeError,
} from "./errors.js";
import { DEFAULT_LIMITS, LIMIT_SETTINGS } from "./limits.js";
import type { PullLimits } from "./limits.js";
import { ImageIndexSchema, parseDocument } from "./manifest.js";
import type { Descriptor } from "./manifest.js";
import type { LayoutReference } from "./reference.js";
import { isSha256Digest } from "./reference.js";

const REF_NAME = "org.opencontainers.image.ref.name";

/** True when `p` is `root` or below it (both absolute, normalised). */
function isWithin(root: string, p: string): boolean {
  return root === "/" || p === root || p.startsWith(`${root}/`);
}

/** `sha256:<hex>` → ["blobs", "sha256", "<hex>"]. */
function blobParts(digest: string): string[] {
  const [alg, hex] = digest.split(":");
  if (!alg || !hex || !/^[a-z0-9]+$/.test(alg) || !/^[a-f0-9]+$/.test(hex)) {
    throw new InvalidManifestError("OCI layout reference", `bad digest ${digest}`);
  }
  return ["blobs", alg, hex];
}

function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/**
 * An {@link ImageSource} reading the OCI layout `ref.dir`, which must resolve under one of
 * `roots` (absolute paths).
 */
export function layoutSource(
  ref: LayoutReference,
  limits: PullLimits = DEFAULT_LIMITS,
  roots: readonly string[] = [],
): ImageSource {
  const name = `oci:${ref.dir}`;

  /** The layout directory, opened after checking where it really is. */
  const openLayout = async (): Promise<number> => {
    let real: string;
    try {
      real = await realpath(ref.dir);
    } catch (err) {
      if (errnoOf(err) === "ENOENT" || errnoOf(err) === "ENOTDIR") {
        throw new NotFoundError(`OCI layout ${ref.dir}`, ref.dir);
      }
      throw err;
    }
    const realRoots = await Promise.all(roots.map((r) => realpath(r).catch(() => path.resolve(r))));
    if (!realRoots.some((r) => isWithin(r, real))) {
      const via = real === ref.dir ? "" : ` (it resolves to ${real})`;
      throw new LayoutOutsideRootsError(
        ref.raw,
        `${ref.dir} is outside the allowed directories${via}`,
        roots,
      );
    }
    const fd = openSync(real, DIR_FLAGS);
    // What was opened is what was checked: a path swapped meanwhile shows here.
    if (readlinkSync(`/proc/self/fd/${fd}`) !== real) {
      closeSync(fd);
      throw new LayoutOutsideRootsError(ref.raw, `${ref.dir} changed while it was opened`, roots);
    }
    return fd;
  };

  /** A file of the layout, opened without following symlinks. */
  const openIn = async (parts: string[], notFound: string): Promise<{ fd: number; size: number }> => {
    const dir = await openLayout();
    try {
      const { fd, st } = openFileBeneath(dir, parts);
      return { fd, size: Number(st.size) };
    } catch (err) {
      const code = errnoOf(err);
      const file = path.join(ref.dir, ...parts);
      if (code === "ENOENT") throw new NotFoundError(notFound, file);
      if (code === "ELOOP" || code === "ENOTDIR" || code === "EINVAL") {
        throw new InvalidManifestError(
          `OCI layout ${ref.dir}`,
          `${parts.join("/")} is not a regular file in the layout (symlinks are not followed)`,
        );
      }
      throw err;
    } finally {
      closeSync(dir);
    }
  };

  /** A small file, whole, capped at maxManifestBytes. */
  const readSmall = async (parts: string[], what: string, notFound = what): Promise<Buffer> => {
    const { fd, size } = await openIn(parts, notFound);
    try {
      const max = limits.maxManifestBytes;
      if (size > max) throw new TooLargeError(what, size, max, LIMIT_SETTINGS.maxManifestBytes);
      const buf = Buffer.alloc(size);
      let off = 0;
      while (off < size) {
        const n = readSync(fd, buf, off, size - off, off);
        if (n === 0) break;
        off += n;
      }
      if (off !== size || fstatSync(fd).size !== size) {
        throw new InvalidManifestError(
          `OCI layout ${ref.dir}`,
          `${parts.join("/")} changed while it was read`,
        );
      }
      return buf;
    } finally {
      closeSync(fd);
    }
  };

  return {
    name,
    async getManifest(reference) {
      const wanted = reference ?? ref.tag;
      let descriptor: Pick<Descriptor, "digest" | "mediaType"> | undefined;
      if (wanted !== undefined && isSha256Digest(wanted)) {
        descriptor = { digest: wanted, mediaType: "" };
      } else {
        const indexFile = path.join(ref.dir, "index.json");
        const bytes = await readSmall(
          ["index.json"],
          `OCI layout index ${indexFile}`,
          `OCI layout (no index.json in ${ref.dir})`,
        );
        const entries = parseDocument(`OCI layout index ${indexFile}`, ImageIndexSchema, bytes).manifests;
        if (wanted === undefined) {
          if (entries.length !== 1) {
            throw new NotFoundError(
              `a single image in ${name} (it has ${entries.length}; name one with oci:<dir>:<tag>)`,
              indexFile,
            );
          }
          descriptor = entries[0];
        } else {
          descriptor = entries.find((d) => d.annotations?.[REF_NAME] === wanted);
          if (!descriptor) {
            const tags = entries.flatMap((d) => (d.annotations?.[REF_NAME] ? [d.annotations[REF_NAME]] : []));
            throw new NotFoundError(
              `tag "${wanted}" in ${name} (tags: ${tags.join(", ") || "none"})`,
              indexFile,
            );
          }
        }
      }
      if (!descriptor) throw new NotFoundError(`manifest in ${name}`, ref.dir);
      const bytes = await readSmall(blobParts(descriptor.digest), `manifest ${descriptor.digest}`);
      const digest = sha256Digest(bytes);
      if (digest !== descriptor.digest)
        throw new DigestMismatchError(`manifest in ${name}`, descriptor.digest, digest);
      return { bytes, contentType: descriptor.mediaType || undefined, digest } satisfies FetchedManifest;
    },
    async openBlob(d): Promise<Readable> {
      const { fd } = await openIn(blobParts(d.digest), `blob ${d.digest} in ${name}`);
      return createReadStream("", { fd, start: 0 });
    },
  };
}
