// Validates OCI runtime specs against the official JSON Schema (runtime-spec v1.2.1, draft-04,
// `config-schema.json` with $refs into the defs*.json files). Independent of vitest and of the
// test harness, so any test (spec-builder, executor, …) can check the specs it sees.
import { existsSync, readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import AjvDraft04 from "ajv-draft-04";
import type { ErrorObject, ValidateFunction } from "ajv-draft-04";

// ajv-draft-04 is CommonJS: under NodeNext its default import is `module.exports`, which is the
// class itself at run time and a namespace to the type checker; `.default` is the class to both.
const Ajv = AjvDraft04.default;

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/**
 * Where the schema files are looked for, in order: `EVE_OCI_SCHEMA_DIR` when set, the shared
 * reference copy next to the repository (`../shared/reference/oci-runtime-spec-schema`), then the
 * Debian package golang-github-opencontainers-specs-dev's copy.
 */
export function ociSchemaDirCandidates(): string[] {
  const fromEnv = process.env.EVE_OCI_SCHEMA_DIR;
  return [
    ...(fromEnv ? [path.resolve(fromEnv)] : []),
    path.resolve(REPO_ROOT, "..", "shared", "reference", "oci-runtime-spec-schema"),
    "/usr/share/gocode/src/github.com/opencontainers/runtime-spec/schema",
  ];
}

/** No directory holding the OCI runtime-spec schema was found. */
export class OciSchemaNotFoundError extends Error {
  override readonly name = "OciSchemaNotFoundError";
  constructor(readonly searched: readonly string[]) {
    super(
      `the OCI runtime-spec JSON Schema (config-schema.json) was not found; looked in:\n` +
        searched.map((d) => `  ${d}`).join("\n") +
        `\nclone the repository next to shared/, install golang-github-opencontainers-specs-dev, or set EVE_OCI_SCHEMA_DIR`,
    );
  }
}

/** The first candidate directory holding `config-schema.json`. */
export function findOciSchemaDir(): string {
  const candidates = ociSchemaDirCandidates();
  const dir = candidates.find((d) => existsSync(path.join(d, "config-schema.json")));
  if (dir === undefined) throw new OciSchemaNotFoundError(candidates);
  return dir;
}

/** Base URI the schema files are registered under, so their relative $refs resolve. */
const BASE_URI = "https://opencontainers.org/runtime-spec/schema/";

let compiled: { dir: string; validate: ValidateFunction } | undefined;

function validator(): { dir: string; validate: ValidateFunction } {
  if (compiled) return compiled;
  const dir = findOciSchemaDir();
  // strict: false: the upstream schema uses keywords and formats Ajv's strict mode rejects.
  const ajv = new Ajv({ strict: false, allErrors: true });
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".json"))) {
    const schema = JSON.parse(readFileSync(path.join(dir, file), "utf8")) as Record<string, unknown>;
    // Give each file an id so "defs.json#/definitions/…" resolves relative to it.
    ajv.addSchema({ ...schema, id: BASE_URI + file });
  }
  const validate = ajv.getSchema(BASE_URI + "config-schema.json");
  if (validate === undefined) throw new Error(`config-schema.json in ${dir} did not compile`);
  compiled = { dir, validate };
  return compiled;
}

/** The result of {@link validateOciSpec}. */
export type OciSpecValidation = { valid: true } | { valid: false; errors: string[] };

function describe(error: ErrorObject): string {
  const where = error.instancePath === "" ? "(spec)" : error.instancePath;
  return `${where}: ${error.message ?? error.keyword} ${JSON.stringify(error.params)}`;
}

/** Validates `spec` against the official OCI runtime-spec schema; errors name the JSON pointer. */
export function validateOciSpec(spec: unknown): OciSpecValidation {
  const { validate } = validator();
  if (validate(spec)) return { valid: true };
  return { valid: false, errors: (validate.errors ?? []).map(describe) };
}

/** Throws, listing every schema error, unless `spec` validates against the OCI runtime-spec schema. */
export function assertValidOciSpec(spec: unknown, what = "spec"): void {
  const result = validateOciSpec(spec);
  if (!result.valid) {
    throw new Error(
      `${what} does not validate against the OCI runtime-spec schema in ${validator().dir}:\n  ${result.errors.join("\n  ")}`,
    );
  }
}
