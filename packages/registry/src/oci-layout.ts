/** A local OCI image layout (`oci:<dir>[:<tag>]`) as an {@link ImageSource}. */
import { createReadStream } from "node:fs";
import { open, readFile } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import type { FetchedManifest, ImageSource } from "./client.js";
import { sha256Digest } from "./client.js";
import { DigestMismatchError, InvalidManifestError, NotFoundError, TooLargeError } from "./errors.js";
import { DEFAULT_LIMITS, LIMIT_SETTINGS } from "./limits.js";
import type { PullLimits } from "./limits.js";
import { ImageIndexSchema } from "./manifest.js";
import type { Descriptor } from "./manifest.js";
import type { LayoutReference } from "./reference.js";
import { isSha256Digest } from "./reference.js";

const REF_NAME = "org.opencontainers.image.ref.name";

/** The path of blob `digest` in layout `dir`. */
function blobPath(dir: string, digest: string): string {
  const [alg, hex] = digest.split(":");
  if (!alg || !hex || !/^[a-z0-9]+$/.test(alg) || !/^[a-f0-9]+$/.test(hex)) {
    throw new InvalidManifestError("OCI layout reference", `bad digest ${digest}`);
  }
  return path.join(dir, "blobs", alg, hex);
}

/** An {@link ImageSource} reading an OCI layout directory. */
export function layoutSource(ref: LayoutReference, limits: PullLimits = DEFAULT_LIMITS): ImageSource {
  const name = `oci:${ref.dir}`;
  const readBlob = async (digest: string, what: string): Promise<Buffer> => {
    const file = blobPath(ref.dir, digest);
    let fh;
    try {
      fh = await open(file, "r");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT")
        throw new NotFoundError(`${what} ${digest}`, file);
      throw err;
    }
    try {
      const { size } = await fh.stat();
      if (size > limits.maxManifestBytes) {
        throw new TooLargeError(
          `${what} ${digest}`,
          size,
          limits.maxManifestBytes,
          LIMIT_SETTINGS.maxManifestBytes,
        );
      }
      return await fh.readFile();
    } finally {
      await fh.close();
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
        let text: string;
        try {
          text = await readFile(indexFile, "utf8");
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === "ENOENT") {
            throw new NotFoundError(`OCI layout (no index.json in ${ref.dir})`, indexFile);
          }
          throw err;
        }
        let parsed;
        try {
          parsed = ImageIndexSchema.parse(JSON.parse(text));
        } catch (err) {
          throw new InvalidManifestError(
            `OCI layout index ${indexFile}`,
            (err as Error).message.slice(0, 200),
          );
        }
        const entries = parsed.manifests;
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
      const bytes = await readBlob(descriptor.digest, "manifest");
      const digest = sha256Digest(bytes);
      if (digest !== descriptor.digest)
        throw new DigestMismatchError(`manifest in ${name}`, descriptor.digest, digest);
      return { bytes, contentType: descriptor.mediaType || undefined, digest } satisfies FetchedManifest;
    },
    openBlob(d): Promise<Readable> {
      const file = blobPath(ref.dir, d.digest);
      return new Promise((resolve, reject) => {
        const s = createReadStream(file);
        s.once("open", () => resolve(s));
        s.once("error", (err: NodeJS.ErrnoException) =>
          reject(err.code === "ENOENT" ? new NotFoundError(`blob ${d.digest} in ${name}`, file) : err),
        );
      });
    },
  };
}
