// Checks the project's own proto/containerd definitions against containerd's originals
// (e.g. Debian's golang-github-containerd-containerd-dev), for tests: every message, enum,
// service and method we define must exist there with the same field names, numbers, types
// and labels. Exported as "@eve-tasks/containerd/proto-check".
import { existsSync } from "node:fs";
import { join } from "node:path";
import protobuf from "protobufjs";
import { PROTO_FILES, findProtoDir, loadProtoRoot } from "./proto.js";

/** Where Debian's golang-github-containerd-containerd-dev puts containerd's api/ tree. */
export const DEBIAN_CONTAINERD_API_DIR = "/usr/share/gocode/src/github.com/containerd/containerd/api";

const UPSTREAM_PREFIX = "github.com/containerd/containerd/api/";

function loadUpstream(apiDir: string): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin: string, target: string): string => {
    if (target.startsWith(UPSTREAM_PREFIX)) return join(apiDir, target.slice(UPSTREAM_PREFIX.length));
    if (target.startsWith("/") || target.startsWith("google/protobuf/")) return target;
    // gogoproto and containerd's fieldpath plugin are weak imports: leave them unresolved.
    return join(apiDir, "__not_loaded__", target);
  };
  // Our files, minus the "containerd/" prefix, are at the same paths under api/.
  root.loadSync(
    PROTO_FILES.map((f) => join(apiDir, f.replace(/^containerd\//, ""))),
    { keepCase: true },
  );
  root.resolveAll();
  return root;
}

function allNested(
  ns: protobuf.NamespaceBase,
  out: protobuf.ReflectionObject[] = [],
): protobuf.ReflectionObject[] {
  for (const obj of ns.nestedArray) {
    out.push(obj);
    if (obj instanceof protobuf.Namespace) allNested(obj, out);
  }
  return out;
}

function fieldType(f: protobuf.Field): string {
  return f.resolvedType?.fullName ?? f.type;
}

/**
 * Compares our definitions with the originals under `apiDir`; returns one line per
 * difference (empty: they match). Throws if `apiDir` is missing.
 */
export function compareWithUpstream(
  apiDir: string = DEBIAN_CONTAINERD_API_DIR,
  protoDir = findProtoDir(),
): string[] {
  if (!existsSync(apiDir)) throw new Error(`no containerd api tree at ${apiDir}`);
  const ours = loadProtoRoot(protoDir);
  const theirs = loadUpstream(apiDir);
  const problems: string[] = [];
  let compared = 0;
  for (const obj of allNested(ours)) {
    const name = obj.fullName;
    if (!name.startsWith(".containerd.")) continue;
    const other = theirs.lookup(name);
    if (obj instanceof protobuf.Type) {
      compared++;
      if (!(other instanceof protobuf.Type)) {
        problems.push(`${name}: no such message upstream`);
        continue;
      }
      for (const f of obj.fieldsArray) {
        const g = other.fields[f.name];
        if (g === undefined) {
          problems.push(`${name}.${f.name}: no such field upstream`);
          continue;
        }
        if (g.id !== f.id) problems.push(`${name}.${f.name}: number ${f.id}, upstream ${g.id}`);
        if (fieldType(g) !== fieldType(f))
          problems.push(`${name}.${f.name}: type ${fieldType(f)}, upstream ${fieldType(g)}`);
        if (g.repeated !== f.repeated || g.map !== f.map) problems.push(`${name}.${f.name}: label differs`);
        if (f instanceof protobuf.MapField && g instanceof protobuf.MapField && f.keyType !== g.keyType) {
          problems.push(`${name}.${f.name}: map key ${f.keyType}, upstream ${g.keyType}`);
        }
      }
    } else if (obj instanceof protobuf.Enum) {
      compared++;
      if (!(other instanceof protobuf.Enum)) {
        problems.push(`${name}: no such enum upstream`);
        continue;
      }
      for (const [key, value] of Object.entries(obj.values)) {
        if (other.values[key] !== value)
          problems.push(`${name}.${key}: ${value}, upstream ${String(other.values[key])}`);
      }
    } else if (obj instanceof protobuf.Service) {
      compared++;
      if (!(other instanceof protobuf.Service)) {
        problems.push(`${name}: no such service upstream`);
        continue;
      }
      for (const m of obj.methodsArray) {
        const n = other.methods[m.name];
        if (n === undefined) {
          problems.push(`${name}/${m.name}: no such method upstream`);
          continue;
        }
        const sig = (x: protobuf.Method): string =>
          `${x.resolvedRequestType?.fullName ?? x.requestType} -> ${x.responseStream === true ? "stream " : ""}${x.resolvedResponseType?.fullName ?? x.responseType}`;
        if (sig(m) !== sig(n)) problems.push(`${name}/${m.name}: ${sig(m)}, upstream ${sig(n)}`);
      }
    }
  }
  if (compared === 0) problems.push("no containerd definitions compared");
  return problems;
}
