// Loads the project's own containerd .proto definitions (repo-root proto/) with protobufjs at
// run time and turns service methods into grpc-js serializers. Field names are kept as written
// in the .proto files (snake_case); src/wire.ts mirrors them and src/convert.ts maps them to the
// camelCase public types.
import { existsSync } from "node:fs";
import { dirname, isAbsolute, join } from "node:path";
import { fileURLToPath } from "node:url";
import protobuf from "protobufjs";

/** The .proto files the client loads, relative to the proto directory. */
export const PROTO_FILES: readonly string[] = [
  "containerd/services/version/v1/version.proto",
  "containerd/services/containers/v1/containers.proto",
  "containerd/services/tasks/v1/tasks.proto",
  "containerd/services/events/v1/events.proto",
  "containerd/services/namespaces/v1/namespace.proto",
  "containerd/events/task.proto",
  "containerd/events/container.proto",
];

const MARKER = "containerd/services/tasks/v1/tasks.proto";

/**
 * Finds the repository's `proto/` directory by walking up from this module's own location
 * (`packages/containerd/dist/` or `src/`), so it works from the build output, from sources run
 * by vitest or tsx, and through the workspace symlink in node_modules. The environment
 * variable `EVE_TASKS_PROTO_DIR` overrides the search.
 */
export function findProtoDir(from: string = dirname(fileURLToPath(import.meta.url))): string {
  const override = process.env.EVE_TASKS_PROTO_DIR;
  if (override !== undefined && override !== "") {
    if (!existsSync(join(override, MARKER))) {
      throw new Error(`EVE_TASKS_PROTO_DIR=${override} does not hold ${MARKER}`);
    }
    return override;
  }
  for (let dir = from; ;) {
    const candidate = join(dir, "proto");
    if (existsSync(join(candidate, MARKER))) return candidate;
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  throw new Error(`cannot find the containerd .proto files: no proto/${MARKER} above ${from}`);
}

/**
 * Loads and resolves the project's containerd definitions from `dir`. Imports of
 * `google/protobuf/*.proto` are served from protobufjs's bundled well-known types.
 */
export function loadProtoRoot(dir: string = findProtoDir()): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin: string, target: string): string =>
    isAbsolute(target) || target.startsWith("google/protobuf/") ? target : join(dir, target);
  root.loadSync(
    PROTO_FILES.map((file) => join(dir, file)),
    { keepCase: true },
  );
  root.resolveAll();
  return root;
}

let shared: protobuf.Root | undefined;

/** The process-wide root, loaded on first use. */
export function protoRoot(): protobuf.Root {
  shared ??= loadProtoRoot();
  return shared;
}

const TO_OBJECT: protobuf.IConversionOptions = {
  longs: Number,
  enums: String,
  defaults: true,
  arrays: true,
  objects: true,
};

/** Encodes a plain snake_case object as `type`. */
export function encodeMessage(type: protobuf.Type, value: object): Buffer {
  const bytes = type.encode(type.fromObject(value)).finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Decodes `bytes` as `type` into a plain object: every scalar present with its default, repeated
 * fields as arrays, maps as objects, unset messages as null, enums as their names, 64-bit
 * integers as numbers. `T` must mirror the message (see src/wire.ts).
 */
export function decodeMessage<T>(type: protobuf.Type, bytes: Uint8Array): T {
  return type.toObject(type.decode(bytes), TO_OBJECT) as T;
}

/** A gRPC method with its wire path and (de)serializers. */
export interface MethodDef<Req, Res> {
  /** `/containerd.services.tasks.v1.Tasks/Start`. */
  readonly path: string;
  /** `Tasks.Start`, used in errors. */
  readonly label: string;
  readonly serialize: (value: Req) => Buffer;
  readonly deserialize: (bytes: Buffer) => Res;
}

/**
 * Describes `service`'s method `name` from the loaded definitions; throws if either is
 * missing, so a typo fails at client construction rather than on the wire.
 */
export function methodDef<Req extends object, Res>(
  root: protobuf.Root,
  service: string,
  name: string,
): MethodDef<Req, Res> {
  const svc = root.lookupService(service);
  const method = svc.methods[name];
  if (method === undefined) throw new Error(`${service} has no method ${name} in the loaded protos`);
  const requestType = root.lookupType(method.resolvedRequestType?.fullName ?? method.requestType);
  const responseType = root.lookupType(method.resolvedResponseType?.fullName ?? method.responseType);
  return {
    path: `/${service}/${name}`,
    label: `${svc.name}.${name}`,
    serialize: (value: Req) => encodeMessage(requestType, value),
    deserialize: (bytes: Buffer) => decodeMessage<Res>(responseType, bytes),
  };
}
