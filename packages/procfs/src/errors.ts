/** Typed errors of @eve-tasks/procfs: each names the file it is about. */

/** A /proc or cgroup file whose text is not what the kernel writes. */
export class ProcfsParseError extends Error {
  override readonly name = "ProcfsParseError";
  /** The file (or a description of it, e.g. `/proc/<pid>/stat`). */
  readonly file: string;
  /** The start of the text that could not be parsed. */
  readonly excerpt: string;

  constructor(file: string, problem: string, text: string, options?: ErrorOptions) {
    const excerpt = text.slice(0, 80);
    super(`${file}: ${problem} (text: ${JSON.stringify(excerpt)})`, options);
    this.file = file;
    this.excerpt = excerpt;
  }
}

/** The cgroup layout of the host could not be found (no cgroup2 and no v1 controller mounted). */
export class CgroupLayoutError extends Error {
  override readonly name = "CgroupLayoutError";
  /** Where the layout was looked for. */
  readonly mountinfoPath: string;

  constructor(mountinfoPath: string, problem: string, options?: ErrorOptions) {
    super(`cgroup layout from ${mountinfoPath}: ${problem}`, options);
    this.mountinfoPath = mountinfoPath;
  }
}
