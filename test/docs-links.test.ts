// Every link in README.md and docs/*.md leads to a file of this repository: a relative path that
// exists, never a path that climbs out of the repository, never a URL to somewhere else (the
// docs are the contract, so they must not depend on pages that can change or vanish). And the
// README stays a map: its Folders table names every package, and it links every page of docs/.
import { existsSync, readFileSync, readdirSync, realpathSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = resolve(import.meta.dirname, "..");

/** The Markdown files whose links are checked, relative to the repository's root. */
function documents(): string[] {
  const docs = readdirSync(join(ROOT, "docs"))
    .filter((f) => f.endsWith(".md"))
    .map((f) => `docs/${f}`);
  return ["README.md", ...docs.sort()];
}

/** A link found in a Markdown text: its target and the line it is on. */
interface Link {
  target: string;
  line: number;
}

/**
 * The targets of inline links and images (`[text](target "title")`, `<target>` forms too) and
 * of reference definitions (`[label]: target`), outside fenced and inline code.
 */
function markdownLinks(text: string): Link[] {
  const links: Link[] = [];
  let fenced = false;
  text.split("\n").forEach((raw, i) => {
    if (/^\s*(```|~~~)/.test(raw)) {
      fenced = !fenced;
      return;
    }
    if (fenced) return;
    const line = raw.replace(/`[^`]*`/g, "");
    for (const m of line.matchAll(/\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)/g)) {
      links.push({ target: m[1]!.replace(/^<|>$/g, ""), line: i + 1 });
    }
    const ref = /^\s{0,3}\[[^\]]+\]:\s*(\S+)/.exec(line);
    if (ref) links.push({ target: ref[1]!.replace(/^<|>$/g, ""), line: i + 1 });
  });
  return links;
}

/** Why `target`, linked from `file`, is not a file inside the repository; null when it is. */
function linkProblem(root: string, file: string, target: string): string | null {
  if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith("//")) {
    return "points outside the repository (a URL)";
  }
  const path = decodeURIComponent(target.split("#")[0]!);
  if (path === "") return null; // an anchor in the same file
  if (path.startsWith("/")) return "is an absolute path; use a path relative to the file";
  const abs = resolve(dirname(join(root, file)), path);
  const inside = (p: string): boolean => p === root || p.startsWith(root + sep);
  if (!inside(abs)) return `climbs out of the repository (${relative(root, abs)})`;
  if (!existsSync(abs)) return `does not exist (${relative(root, abs)})`;
  if (!inside(realpathSync(abs))) return "resolves (through a symlink) outside the repository";
  return null;
}

describe("links in the README and docs/", () => {
  it("finds inline links, images and references, but not code", () => {
    const text = [
      "See [the contract](docs/contract.md#states) and ![a](img/a.png 'x').",
      '[b](<docs/with space.md> "title") and `[not](a-link.md)`',
      "```sh",
      "[not](in-a-fence.md)",
      "```",
      "[ref]: ../outside.md",
    ].join("\n");
    expect(markdownLinks(text).map((l) => [l.target, l.line])).toEqual([
      ["docs/contract.md#states", 1],
      ["img/a.png", 1],
      ["docs/with space.md", 2],
      ["../outside.md", 6],
    ]);
  });

  it("tells a good link from one that is missing, leaves the repository or is a URL", () => {
    expect(linkProblem(ROOT, "README.md", "docs/contract.md#buckets")).toBeNull();
    expect(linkProblem(ROOT, "docs/contract.md", "../README.md")).toBeNull();
    expect(linkProblem(ROOT, "README.md", "#quick-start")).toBeNull();
    expect(linkProblem(ROOT, "README.md", "docs/nothing-here.md")).toMatch(/does not exist/);
    expect(linkProblem(ROOT, "README.md", "../shared/DESIGN.md")).toMatch(/climbs out/);
    expect(linkProblem(ROOT, "README.md", "https://example.org/x")).toMatch(/URL/);
    expect(linkProblem(ROOT, "README.md", "/etc/passwd")).toMatch(/absolute/);
  });

  it.each(documents())("every link in %s leads to a file of the repository", (file) => {
    const problems = markdownLinks(readFileSync(join(ROOT, file), "utf8"))
      .map((l) => ({ l, problem: linkProblem(ROOT, file, l.target) }))
      .filter((p) => p.problem !== null)
      .map(({ l, problem }) => `${file}:${l.line}: ${l.target} ${problem}`);
    expect(problems).toEqual([]);
  });
});

/** The folders named in the first column of README.md's "Folders" table. */
function foldersInReadme(readme: string): string[] {
  const section = readme.split(/^## Folders$/m)[1]?.split(/^## /m)[0] ?? "";
  return [...section.matchAll(/^\|\s*`([^`]+)`\s*\|/gm)].map((m) => m[1]!.replace(/\/$/, ""));
}

describe("the README as a map of the repository", () => {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");

  it("reads the folder column of the Folders table", () => {
    const text =
      "## Folders\n\n| folder | job |\n| --- | --- |\n| `packages/a` | x |\n| `deploy/` | y |\n\n## Next\n| `not/this` | z |\n";
    expect(foldersInReadme(text)).toEqual(["packages/a", "deploy"]);
  });

  it("names every package in its Folders table", () => {
    const named = new Set(foldersInReadme(readme));
    const missing = readdirSync(join(ROOT, "packages"), { withFileTypes: true })
      .filter((d) => d.isDirectory() && existsSync(join(ROOT, "packages", d.name, "package.json")))
      .map((d) => `packages/${d.name}`)
      .filter((p) => !named.has(p));
    expect(missing).toEqual([]);
    expect(named.has("services/*")).toBe(true);
  });

  it("links every page of docs/", () => {
    const missing = documents()
      .filter((f) => f.startsWith("docs/"))
      .filter((f) => !markdownLinks(readme).some((l) => l.target.split("#")[0] === f));
    expect(missing).toEqual([]);
  });
});
