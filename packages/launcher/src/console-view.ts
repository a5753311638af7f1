/**
 * The launcher's terminal output: notes (one line each) and, on a TTY, a status block redrawn in
 * place below them. Without a TTY (a pipe, a log file, CI) there is no redrawing: every note and
 * status change is a plain line with a timestamp.
 */

/** What the view writes to: stdout. */
export interface ViewOutput {
  write(text: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

/** Notes and a live status block. */
export class ConsoleView {
  readonly #out: ViewOutput;
  readonly #tty: boolean;
  #block: string[] = [];
  #drawn = 0;
  #closed = false;

  constructor(out: ViewOutput) {
    this.#out = out;
    this.#tty = out.isTTY === true;
  }

  /** True when the status block is redrawn in place. */
  get live(): boolean {
    return this.#tty;
  }

  /** Prints text as is (the banner), above the status block. */
  print(text: string): void {
    this.#above(() => this.#out.write(text.endsWith("\n") ? text : text + "\n"));
  }

  /** Prints one note: on a TTY above the status block, otherwise with an ISO timestamp. */
  note(line: string): void {
    this.#above(() => this.#out.write(this.#tty ? `${line}\n` : `${new Date().toISOString()} ${line}\n`));
  }

  /** Replaces the status block (TTY only; ignored otherwise). */
  setBlock(lines: readonly string[]): void {
    if (!this.#tty || this.#closed) return;
    this.#block = [...lines];
    this.#above(() => undefined);
  }

  /** Leaves the last block on screen and stops drawing. */
  close(): void {
    this.#closed = true;
  }

  #above(write: () => void): void {
    if (!this.#tty || this.#closed) {
      write();
      return;
    }
    // columns is 0 or undefined when the terminal does not say.
    const width = Math.max(20, (this.#out.columns || 120) - 1);
    let text = "";
    // Back to the first line of the block, and clear from there down.
    if (this.#drawn > 0) text += `\x1b[${this.#drawn}F\x1b[J`;
    this.#out.write(text);
    write();
    const lines = this.#block.map((l) => (l.length > width ? l.slice(0, width - 1) + "…" : l));
    this.#out.write(lines.map((l) => l + "\n").join(""));
    this.#drawn = lines.length;
  }
}
