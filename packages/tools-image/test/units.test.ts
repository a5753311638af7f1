// Pure parts of the builder: the tag of a qemu version, ldd's output, whether a ref is a previous
// built-in image; and the typed error when qemu is not there.
import { describe, expect, it } from "vitest";
import {
  QEMU_INSTALL_COMMAND,
  QemuNotInstalledError,
  collectQemuRootfs,
  isPreviousBuiltIn,
  parseLdd,
  toolsImageTag,
} from "@eve-tasks/tools-image";

const OCI_TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

describe("toolsImageTag", () => {
  it("drops the epoch and makes the Debian version a valid OCI tag", () => {
    expect(toolsImageTag("1:7.2+dfsg-7+deb12u18+b3")).toBe("qemu-7.2-dfsg-7-deb12u18-b3");
    expect(toolsImageTag("8.0~rc1+ds-1")).toBe("qemu-8.0-rc1-ds-1");
    const long = toolsImageTag(`2:${"9.9+".repeat(60)}`);
    expect(long.length).toBe(128);
    for (const t of [long, toolsImageTag("1:7.2+dfsg-7+deb12u18+b3")]) expect(t).toMatch(OCI_TAG);
  });
});

describe("parseLdd", () => {
  it("takes resolved paths and the loader, reports missing libraries, skips the vDSO", () => {
    const out = [
      "\tlinux-vdso.so.1 (0x00007ffd)",
      "\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f98d78a6000)",
      "\tlibspice-server.so.1 => not found",
      "\t/lib64/ld-linux-x86-64.so.2 (0x00007f98d79ba000)",
      "",
    ].join("\n");
    expect(parseLdd(out)).toEqual([
      { name: "libz.so.1", path: "/lib/x86_64-linux-gnu/libz.so.1" },
      { name: "libspice-server.so.1", path: undefined },
      { name: "ld-linux-x86-64.so.2", path: "/lib64/ld-linux-x86-64.so.2" },
    ]);
    expect(parseLdd("\tstatically linked\n")).toEqual([]);
  });
});

describe("isPreviousBuiltIn", () => {
  const dir = "/var/lib/eve/tools-images/qemu";
  const ref = `oci:${dir}/qemu-8.0-1:qemu-8.0-1`;
  it("is true for a layout in the same parent directory only", () => {
    expect(isPreviousBuiltIn(`oci:${dir}/qemu-7.2-1:qemu-7.2-1`, ref)).toBe(true);
    expect(isPreviousBuiltIn(`oci:${dir}/../qemu/qemu-7.2-1:qemu-7.2-1`, ref)).toBe(true);
    expect(isPreviousBuiltIn("oci:/srv/my-tools:1", ref)).toBe(false);
    expect(isPreviousBuiltIn("registry.example:5000/tools/qemu:1", ref)).toBe(false);
    expect(isPreviousBuiltIn("not a ref", ref)).toBe(false);
  });
});

describe("collectQemuRootfs", () => {
  it("says how to install qemu when the package or the emulator is missing", async () => {
    const noPackage = collectQemuRootfs({ packageName: "eve-tasks-no-such-package" });
    await expect(noPackage).rejects.toBeInstanceOf(QemuNotInstalledError);
    await expect(noPackage).rejects.toThrow(QEMU_INSTALL_COMMAND);
    const noBinary = collectQemuRootfs({ binary: "/nonexistent/qemu-system-x86_64" });
    await expect(noBinary).rejects.toMatchObject({
      code: "QEMU_NOT_INSTALLED",
      context: { path: "/nonexistent/qemu-system-x86_64" },
    });
  });
});
