// The built-in runtime images for tests: built once per machine from the host's Debian packages
// into a cache that outlives test runs (rebuilt only when a package version or a recipe
// changes), by the e2e global set-up before any test runs, so that no two test files build the
// same image at once. Workers given EVE_OCI_LAYOUT_ROOTS including RUNTIME_CACHE pull them from
// there; launchers get EVE_RUNTIME_IMAGE_CACHE=RUNTIME_CACHE and link them into their data dir.
import path from "node:path";
import { BUILT_IN_RUNTIMES, buildRuntimeImage, buildToolsImage } from "@eve-tasks/tools-image";
import type { BuiltInRuntime, RuntimeImage, ToolsImage } from "@eve-tasks/tools-image";

/** Where the tests' built-in runtime images are cached: `<RUNTIME_CACHE>/<name>/<tag>`. */
export const RUNTIME_CACHE = path.resolve(
  process.env.EVE_TEST_RUNTIME_CACHE ?? "/var/cache/eve-tasks/runtime-images",
);

const built = new Map<BuiltInRuntime, Promise<RuntimeImage>>();

/** Built-in runtime `name`'s image in {@link RUNTIME_CACHE} (built when missing; once per process). */
export function builtInRuntime(name: BuiltInRuntime): Promise<RuntimeImage> {
  let p = built.get(name);
  if (p === undefined) {
    p = buildRuntimeImage(name, { outDir: path.join(RUNTIME_CACHE, name) });
    built.set(name, p);
    p.catch(() => built.delete(name));
  }
  return p;
}

/** The `default` runtime's image (qemu), with its qemu version. */
export function defaultToolsImage(): Promise<ToolsImage> {
  return buildToolsImage({ outDir: path.join(RUNTIME_CACHE, "default") });
}

/** Every built-in runtime's image, one after another (the global set-up's warm-up). */
export async function buildAllRuntimes(log?: (line: string) => void): Promise<RuntimeImage[]> {
  const out: RuntimeImage[] = [];
  for (const name of BUILT_IN_RUNTIMES) {
    const started = Date.now();
    const image = await builtInRuntime(name);
    log?.(`runtime ${name}: ${image.built ? "built" : "cached"} ${image.ref} in ${Date.now() - started} ms`);
    out.push(image);
  }
  return out;
}
