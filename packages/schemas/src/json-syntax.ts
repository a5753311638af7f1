/**
 * Finds where JSON text stops being JSON, for messages a human can act on. V8's `JSON.parse`
 * errors often give no position (`Unexpected token '}', "…" is not valid JSON`); this scanner,
 * run only after `JSON.parse` failed, names the position, line and column. It is iterative, so
 * deep nesting cannot overflow the stack.
 */

/** Where and why a text is not JSON. */
export interface JsonSyntaxProblem {
  /** What is wrong, e.g. `expected ',' or '}' after a property value`. */
  readonly problem: string;
  /** Offset in UTF-16 code units (as `JSON.parse` counts) from the start of the text. */
  readonly position: number;
  /** 1-based line. */
  readonly line: number;
  /** 1-based column in UTF-16 code units. */
  readonly column: number;
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const LITERAL = /true|false|null/y;

type Expect = "value" | "value-or-end-array" | "key-or-end-object" | "key" | "colon" | "after-value" | "end";

/** The first syntax problem of `text`, or `undefined` if `text` is JSON. */
export function findJsonSyntaxProblem(text: string): JsonSyntaxProblem | undefined {
  const stack: ("{" | "[")[] = [];
  let expect: Expect = "value";
  let i = 0;
  const fail = (problem: string, at: number = i): JsonSyntaxProblem => {
    const before = text.slice(0, at);
    const line = before.split("\n").length;
    return { problem, position: at, line, column: at - before.lastIndexOf("\n") };
  };
  const describe = (at: number): string =>
    at >= text.length ? "end of input" : `'${text[at] === "\n" ? "\\n" : text[at]}'`;

  for (;;) {
    while (i < text.length && (text[i] === " " || text[i] === "\t" || text[i] === "\n" || text[i] === "\r"))
      i++;
    const c = text[i];
    switch (expect) {
      case "end":
        return i >= text.length ? undefined : fail(`unexpected ${describe(i)} after the JSON value`);
      case "colon":
        if (c !== ":") return fail(`expected ':' after a property name, found ${describe(i)}`);
        i++;
        expect = "value";
        continue;
      case "after-value": {
        const top = stack[stack.length - 1];
        if (top === undefined) {
          expect = "end";
          continue;
        }
        const close = top === "{" ? "}" : "]";
        if (c === ",") {
          i++;
          expect = top === "{" ? "key" : "value";
        } else if (c === close) {
          i++;
          stack.pop();
        } else {
          const what = top === "{" ? "a property value" : "an array element";
          return fail(`expected ',' or '${close}' after ${what}, found ${describe(i)}`);
        }
        continue;
      }
      case "key":
      case "key-or-end-object":
        if (c === "}" && expect === "key-or-end-object") {
          i++;
          stack.pop();
          expect = "after-value";
          continue;
        }
        if (c !== '"') {
          const hint = c === "}" ? " (a trailing comma is not JSON)" : "";
          return fail(`expected a property name in double quotes, found ${describe(i)}${hint}`);
        }
        {
          const end = scanString(text, i);
          if (typeof end !== "number") return fail(end.problem, end.position);
          i = end;
        }
        expect = "colon";
        continue;
      case "value":
      case "value-or-end-array": {
        if (c === "]" && expect === "value-or-end-array") {
          i++;
          stack.pop();
          expect = "after-value";
          continue;
        }
        if (c === "{") {
          stack.push("{");
          i++;
          expect = "key-or-end-object";
          continue;
        }
        if (c === "[") {
          stack.push("[");
          i++;
          expect = "value-or-end-array";
          continue;
        }
        if (c === '"') {
          const end = scanString(text, i);
          if (typeof end !== "number") return fail(end.problem, end.position);
          i = end;
          expect = "after-value";
          continue;
        }
        NUMBER.lastIndex = i;
        LITERAL.lastIndex = i;
        const token = c !== undefined && /[-0-9]/.test(c) ? NUMBER.exec(text) : LITERAL.exec(text);
        if (token === null) {
          const hint = c === "]" ? " (a trailing comma is not JSON)" : "";
          return fail(`expected a JSON value, found ${describe(i)}${hint}`);
        }
        i += token[0].length;
        expect = "after-value";
        continue;
      }
    }
  }
}

/** Scans the string starting at `start` (a `"`); returns the index after it, or the problem. */
function scanString(text: string, start: number): number | { problem: string; position: number } {
  let i = start + 1;
  while (i < text.length) {
    const code = text.charCodeAt(i);
    if (code === 0x22) return i + 1;
    if (code < 0x20)
      return { problem: "a control character (e.g. a raw newline) inside a string", position: i };
    if (code === 0x5c) {
      const e = text[i + 1];
      if (e === "u") {
        if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) {
          return { problem: "a \\u escape needs 4 hex digits", position: i };
        }
        i += 6;
        continue;
      }
      if (e === undefined || !'"\\/bfnrt'.includes(e))
        return { problem: "an invalid escape in a string", position: i };
      i += 2;
      continue;
    }
    i++;
  }
  return { problem: "a string is not closed", position: start };
}
