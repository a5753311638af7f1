/**
 * The image-spec subset this client reads: descriptors, manifests, indexes (OCI and Docker v2
 * schema2), and the image config. Parsed with zod from the exact bytes received.
 */
import { z } from "zod";
import { InvalidManifestError, UnsupportedMediaTypeError } from "./errors.js";

/** Media types of manifests and indexes. */
export const MediaType = {
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
} as const;

/** The Accept header of manifest requests: every manifest and index type handled. */
export const MANIFEST_ACCEPT = [
  MediaType.ociIndex,
  MediaType.ociManifest,
  MediaType.dockerList,
  MediaType.dockerManifest,
].join(", ");

/** How a layer is compressed, from its media type. */
export type LayerCompression = "none" | "gzip" | "zstd";

const LAYER_TYPES: Readonly<Record<string, LayerCompression>> = {
  "application/vnd.oci.image.layer.v1.tar": "none",
  "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
  "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
  "application/vnd.oci.image.layer.nondistributable.v1.tar": "none",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "zstd",
  "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
  "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": "gzip",
  "application/vnd.docker.image.rootfs.diff.tar": "none",
};

/** The compression of a layer of media type `mediaType`; throws for a type that is no layer. */
export function layerCompression(mediaType: string): LayerCompression {
  const c = LAYER_TYPES[mediaType];
  if (c === undefined) throw new UnsupportedMediaTypeError("layer", mediaType);
  return c;
}

const DigestString = z.string().regex(/^sha256:[a-f0-9]{64}$/, "must be a sha256 digest");

/** An OCI platform as indexes give it. */
export const PlatformSchema = z.looseObject({
  architecture: z.string(),
  os: z.string(),
  variant: z.string().optional(),
  "os.version": z.string().optional(),
});
/** An OCI platform. */
export type Platform = z.infer<typeof PlatformSchema>;

/** A content descriptor. */
export const DescriptorSchema = z.looseObject({
  mediaType: z.string(),
  digest: DigestString,
  size: z.number().int().nonnegative(),
  urls: z.array(z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  platform: PlatformSchema.optional(),
});
/** A content descriptor. */
export type Descriptor = z.infer<typeof DescriptorSchema>;

/** An image manifest (OCI or Docker v2 schema2). */
export const ImageManifestSchema = z.looseObject({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  config: DescriptorSchema,
  layers: z.array(DescriptorSchema),
  annotations: z.record(z.string(), z.string()).optional(),
});
/** An image manifest. */
export type ImageManifest = z.infer<typeof ImageManifestSchema>;

/** An image index (OCI) or manifest list (Docker). */
export const ImageIndexSchema = z.looseObject({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  manifests: z.array(DescriptorSchema),
  annotations: z.record(z.string(), z.string()).optional(),
});
/** An image index. */
export type ImageIndex = z.infer<typeof ImageIndexSchema>;

/**
 * The image config fields used: the platform, the process defaults, the labels and stop signal
 * (a runtime image's contract) and the diff_ids.
 */
export const ImageConfigSchema = z.looseObject({
  architecture: z.string().optional(),
  os: z.string().optional(),
  variant: z.string().optional(),
  config: z
    .looseObject({
      User: z.string().nullish(),
      Env: z.array(z.string()).nullish(),
      Entrypoint: z.array(z.string()).nullish(),
      Cmd: z.array(z.string()).nullish(),
      WorkingDir: z.string().nullish(),
      Labels: z.record(z.string(), z.string()).nullish(),
      StopSignal: z.string().nullish(),
    })
    .nullish(),
  rootfs: z.looseObject({ type: z.string(), diff_ids: z.array(DigestString) }),
});
/** An image config. */
export type ImageConfig = z.infer<typeof ImageConfigSchema>;

/** A parsed manifest document, by kind. */
export type ManifestDocument =
  | { kind: "manifest"; mediaType: string; manifest: ImageManifest }
  | { kind: "index"; mediaType: string; index: ImageIndex };

/**
 * Parses JSON; the error never quotes the text (JSON.parse's own message does), since
 * a file that is not what it claims (a symlink to a secret, say) must not reach a status.
 */
function parseJson(what: string, bytes: Uint8Array): unknown {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new InvalidManifestError(what, "not valid JSON (not UTF-8)");
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new InvalidManifestError(what, "not valid JSON");
  }
}

/** Parses `bytes` as JSON of `schema`; errors name the field, never quote the content. */
export function parseDocument<T>(what: string, schema: z.ZodType<T>, bytes: Uint8Array): T {
  return check(what, schema, parseJson(what, bytes));
}

function check<T>(what: string, schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    const where = issue && issue.path.length > 0 ? issue.path.join(".") : "(top)";
    throw new InvalidManifestError(what, `${where}: ${issue?.message ?? "invalid"}`);
  }
  return r.data;
}

/**
 * Parses manifest bytes. The media type comes from the document itself when it has one, else
 * from the response's Content-Type; a document with `manifests` is an index.
 */
export function parseManifest(bytes: Uint8Array, contentType: string | undefined): ManifestDocument {
  const json = parseJson("manifest", bytes);
  const declared =
    typeof json === "object" &&
    json !== null &&
    typeof (json as { mediaType?: unknown }).mediaType === "string"
      ? (json as { mediaType: string }).mediaType
      : undefined;
  const header = contentType?.split(";")[0]?.trim();
  const mediaType = declared ?? header ?? "";
  const isIndex =
    mediaType === MediaType.ociIndex ||
    mediaType === MediaType.dockerList ||
    (typeof json === "object" && json !== null && Array.isArray((json as { manifests?: unknown }).manifests));
  if (isIndex) {
    return {
      kind: "index",
      mediaType: mediaType || MediaType.ociIndex,
      index: check("image index", ImageIndexSchema, json),
    };
  }
  if (
    mediaType !== MediaType.ociManifest &&
    mediaType !== MediaType.dockerManifest &&
    !(mediaType === "" || mediaType === "application/json" || mediaType === "application/octet-stream")
  ) {
    throw new UnsupportedMediaTypeError("manifest", mediaType);
  }
  return {
    kind: "manifest",
    mediaType: mediaType || MediaType.ociManifest,
    manifest: check("image manifest", ImageManifestSchema, json),
  };
}

/** Parses an image config blob. */
export function parseImageConfig(bytes: Uint8Array): ImageConfig {
  return check("image config", ImageConfigSchema, parseJson("image config", bytes));
}

/** The process an image defines, normalised: args = Entrypoint + Cmd, env as an object. */
export interface ImageProcess {
  args: string[];
  env: Record<string, string>;
  /** Absolute; `/` when the image has none. */
  cwd: string;
  /** As the image wrote it; `""` means root. */
  user: string;
}

/** The default process of an image config. */
export function imageProcess(config: ImageConfig): ImageProcess {
  const c = config.config ?? {};
  const env: Record<string, string> = {};
  for (const item of c.Env ?? []) {
    const eq = item.indexOf("=");
    const name = eq < 0 ? item : item.slice(0, eq);
    if (name.length === 0 || name.includes("\0")) continue;
    env[name] = eq < 0 ? "" : item.slice(eq + 1).replaceAll("\0", "");
  }
  const wd = c.WorkingDir ?? "";
  return {
    args: [...(c.Entrypoint ?? []), ...(c.Cmd ?? [])],
    env,
    cwd: wd.startsWith("/") ? wd : `/${wd}`,
    user: c.User ?? "",
  };
}

/** An image config's labels (empty when it has none) and its StopSignal (null when none). */
export function imageLabels(config: ImageConfig): {
  labels: Record<string, string>;
  stopSignal: string | null;
} {
  const c = config.config ?? {};
  return { labels: { ...(c.Labels ?? {}) }, stopSignal: c.StopSignal ?? null };
}
