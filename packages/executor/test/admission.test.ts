import { describe, expect, it } from "vitest";
import { MemoryLedger } from "../src/admission.js";

const MiB = 2 ** 20;

describe("memory admission", () => {
  it("admits while tasks fit, refuses with the numbers, admits again once memory is released", () => {
    const ledger = new MemoryLedger(1024);
    expect(ledger.admit("a", 512 * MiB)).toBeNull();
    expect(ledger.admit("b", 384 * MiB)).toBeNull();
    const refused = ledger.admit("c", 256 * MiB);
    expect(refused).toMatchObject({
      neededBytes: 256 * MiB,
      freeBytes: 128 * MiB,
      heldBytes: 896 * MiB,
      holders: 2,
    });
    expect(refused?.message).toBe(
      "waiting for memory: needs 256 MiB, 128 MiB free (1024 MiB usable, 896 MiB held by 2 task(s))",
    );
    expect(ledger.holds("c")).toBe(false);
    expect(ledger.release("a")).toBe(true);
    expect(ledger.release("a")).toBe(false);
    expect(ledger.admit("c", 256 * MiB)).toBeNull();
  });

  it("counts an app's own holding once when it is admitted again", () => {
    const ledger = new MemoryLedger(100);
    expect(ledger.admit("a", 80 * MiB)).toBeNull();
    expect(ledger.admit("a", 90 * MiB)).toBeNull();
    expect(ledger.heldBytes()).toBe(90 * MiB);
  });

  it("records adopted tasks even past the limit, so nothing new starts until they end", () => {
    const ledger = new MemoryLedger(100);
    ledger.hold("old", 150 * MiB);
    expect(ledger.admit("new", 1 * MiB)?.freeBytes).toBe(0);
  });
});
