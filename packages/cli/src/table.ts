/** Plain-text tables in the style of `kubectl get`: upper-case headers, columns 3 spaces apart. */

const GAP = "   ";

/**
 * Makes a value safe for one table cell or output line: control characters (newlines, tabs,
 * escape sequences a hostile display name could carry) become `\xNN`, `\n`, `\t`.
 */
export function sanitize(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => {
    if (c === "\n") return "\\n";
    if (c === "\t") return "\\t";
    return `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`;
  });
}

function width(text: string): number {
  return [...text].length;
}

/**
 * Renders `rows` under `headers`, each column as wide as its widest cell, separated by three
 * spaces; no trailing spaces; every line ends with a newline. Cells are sanitized. Rows shorter
 * than the headers are padded with empty cells.
 */
export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [headers, ...rows].map((r) => headers.map((_, i) => sanitize(r[i] ?? "")));
  const widths = headers.map((_, i) => Math.max(...all.map((r) => width(r[i]!))));
  return all
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell + " ".repeat(widths[i]! - width(cell))))
        .join(GAP)
        .trimEnd(),
    )
    .map((line) => `${line}\n`)
    .join("");
}
