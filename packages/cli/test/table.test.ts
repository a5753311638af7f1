import { describe, expect, it } from "vitest";
import { renderTable, sanitize } from "../src/index.js";

describe("renderTable", () => {
  it("aligns columns three spaces apart with no trailing spaces", () => {
    const text = renderTable(
      ["NAME", "STATE", "AGE"],
      [
        ["hello", "RUNNING", "5m"],
        ["a-much-longer-name", "-", ""],
      ],
    );
    expect(text).toBe(
      "NAME                 STATE     AGE\n" +
        "hello                RUNNING   5m\n" +
        "a-much-longer-name   -\n",
    );
  });

  it("renders headers alone for no rows and pads short rows", () => {
    expect(renderTable(["A", "B"], [])).toBe("A   B\n");
    expect(renderTable(["A", "B"], [["x"]])).toBe("A   B\nx\n");
  });

  it("counts characters, not UTF-16 units", () => {
    expect(renderTable(["N", "X"], [["😀", "1"]])).toBe("N   X\n😀   1\n");
  });

  it("sanitizes control characters so a name cannot break the table or the terminal", () => {
    expect(sanitize("a\nb\tc\u001b[31m")).toBe("a\\nb\\tc\\x1b[31m");
    expect(renderTable(["N"], [["x\ny"]])).toBe("N\nx\\ny\n");
  });
});
