/**
 * A strict reader of Prometheus' text exposition format (version 0.0.4), for tests: it parses a
 * scrape into metric families and refuses what Prometheus would refuse or misread: samples of a
 * family without `# TYPE`, a family split in two, invalid names or label syntax, values that are
 * not numbers, counters not ending in `_total`, histograms whose buckets are not cumulative or
 * whose `+Inf` bucket differs from `_count`. Written here because prom-client only writes the
 * format and the test needs an independent check of what it writes.
 */

/** One sample: `name{labels} value`. */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** A metric family: its `# HELP`, `# TYPE` and samples. */
export interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "gauge" | "histogram" | "summary" | "untyped";
  readonly samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+(-?\d+))?$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

/** A scrape that is not valid exposition text. */
export class ExpositionError extends Error {
  constructor(message: string, line: number) {
    super(`line ${line}: ${message}`);
    this.name = "ExpositionError";
  }
}

function parseLabels(text: string, line: number): Record<string, string> {
  const labels: Record<string, string> = {};
  let i = 0;
  while (i < text.length) {
    const eq = text.indexOf("=", i);
    if (eq < 0) throw new ExpositionError(`label without value in {${text}}`, line);
    const name = text.slice(i, eq).trim();
    if (!LABEL_NAME.test(name)) throw new ExpositionError(`invalid label name ${JSON.stringify(name)}`, line);
    if (text[eq + 1] !== '"') throw new ExpositionError(`label ${name}'s value is not quoted`, line);
    let j = eq + 2;
    let value = "";
    for (; j < text.length && text[j] !== '"'; j++) {
      if (text[j] === "\\") {
        const next = text[++j];
        value += next === "n" ? "\n" : (next ?? "");
      } else value += text[j];
    }
    if (j >= text.length) throw new ExpositionError(`label ${name}'s value is not closed`, line);
    if (name in labels) throw new ExpositionError(`label ${name} twice`, line);
    labels[name] = value;
    i = j + 1;
    if (text[i] === ",") i++;
    else if (i < text.length) throw new ExpositionError(`expected , after label ${name}`, line);
  }
  return labels;
}

function parseValue(text: string, line: number): number {
  if (text === "+Inf") return Number.POSITIVE_INFINITY;
  if (text === "-Inf") return Number.NEGATIVE_INFINITY;
  if (text === "NaN") return Number.NaN;
  const v = Number(text);
  if (text.trim() === "" || Number.isNaN(v))
    throw new ExpositionError(`value ${JSON.stringify(text)} is not a number`, line);
  return v;
}

/** The family a sample named `name` belongs to, given the families declared so far. */
function familyOf(name: string, families: Map<string, Family>): Family | undefined {
  const direct = families.get(name);
  if (direct) return direct;
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (!name.endsWith(suffix)) continue;
    const f = families.get(name.slice(0, -suffix.length));
    if (f && (f.type === "histogram" || f.type === "summary")) return f;
  }
  return undefined;
}

/** Checks a histogram family: per label set, cumulative buckets ending in `+Inf` equal to `_count`. */
function checkHistogram(f: Family): void {
  const series = new Map<string, { buckets: [number, number][]; count?: number; sum?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const entry = series.get(key) ?? { buckets: [] };
    series.set(key, entry);
    if (s.name === `${f.name}_bucket`) {
      if (le === undefined) throw new Error(`${f.name}: a bucket without le`);
      entry.buckets.push([le === "+Inf" ? Number.POSITIVE_INFINITY : Number(le), s.value]);
    } else if (s.name === `${f.name}_count`) entry.count = s.value;
    else if (s.name === `${f.name}_sum`) entry.sum = s.value;
    else throw new Error(`${f.name}: unexpected sample ${s.name}`);
  }
  for (const [key, e] of series) {
    const sorted = [...e.buckets].sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i]![1] < sorted[i - 1]![1]) throw new Error(`${f.name} ${key}: buckets are not cumulative`);
    }
    const inf = sorted.at(-1);
    if (!inf || inf[0] !== Number.POSITIVE_INFINITY) throw new Error(`${f.name} ${key}: no +Inf bucket`);
    if (e.count !== inf[1])
      throw new Error(`${f.name} ${key}: _count ${e.count} differs from the +Inf bucket ${inf[1]}`);
    if (e.sum === undefined) throw new Error(`${f.name} ${key}: no _sum`);
  }
}

/**
 * Parses a scrape. Throws {@link ExpositionError} (or Error for a family-level problem) on
 * anything invalid; returns the families by name.
 */
export function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const closed = new Set<string>();
  let current: Family | undefined;
  const helps = new Map<string, string>();
  text.split("\n").forEach((raw, index) => {
    const line = index + 1;
    const l = raw.trim();
    if (l === "") return;
    if (l.startsWith("#")) {
      const m = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s+(.*))?$/.exec(l);
      if (!m) return; // a comment
      const [, kind, name = "", rest = ""] = m;
      if (!NAME.test(name)) throw new ExpositionError(`invalid metric name ${JSON.stringify(name)}`, line);
      if (kind === "HELP") {
        helps.set(name, rest);
        return;
      }
      if (!TYPES.has(rest))
        throw new ExpositionError(`unknown type ${JSON.stringify(rest)} of ${name}`, line);
      if (families.has(name)) throw new ExpositionError(`# TYPE of ${name} twice`, line);
      if (current) closed.add(current.name);
      current = { name, help: helps.get(name) ?? "", type: rest as Family["type"], samples: [] };
      families.set(name, current);
      return;
    }
    const m = SAMPLE.exec(l);
    if (!m) throw new ExpositionError(`not a sample: ${JSON.stringify(l)}`, line);
    const [, name = "", labelText, valueText = ""] = m;
    const family = familyOf(name, families);
    if (!family) throw new ExpositionError(`sample ${name} has no # TYPE before it`, line);
    if (family !== current || closed.has(family.name)) {
      throw new ExpositionError(`samples of ${family.name} are not together`, line);
    }
    family.samples.push({
      name,
      labels: labelText ? parseLabels(labelText, line) : {},
      value: parseValue(valueText, line),
    });
  });
  for (const f of families.values()) {
    if (f.type === "counter" && !f.name.endsWith("_total"))
      throw new Error(`counter ${f.name} does not end in _total`);
    if (f.type === "histogram") checkHistogram(f);
  }
  return families;
}

/** The value of the sample `name` whose labels include `labels` (undefined when there is none). */
export function sampleValue(
  families: Map<string, Family>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const f = familyOf(name, families);
  const s = f?.samples.find(
    (x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v),
  );
  return s?.value;
}

/** Scrapes `url` and parses it; throws when the endpoint does not answer 200 with the text format. */
export async function scrape(url: string): Promise<Map<string, Family>> {
  const res = await fetch(url);
  if (res.status !== 200) throw new Error(`${url}: HTTP ${res.status}`);
  const type = res.headers.get("content-type") ?? "";
  if (!type.startsWith("text/plain") || !type.includes("version=0.0.4")) {
    throw new Error(`${url}: content-type ${type}, not Prometheus text 0.0.4`);
  }
  return parseExposition(await res.text());
}
