// Pure parts of the builder: the tag of an image, ldd's output, whether a ref is a previous
// built-in image; and the typed errors when a package is not there.
import { describe, expect, it } from "vitest";
import {
  PackageNotInstalledError,
  QEMU_INSTALL_COMMAND,
  QemuNotInstalledError,
  buildRuntimeImage,
  collectQemuRootfs,
  debianPackageVersion,
  isPreviousBuiltIn,
  parseLdd,
  runtimeImageTag,
} from "@eve-tasks/tools-image";

const OCI_TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

describe("runtimeImageTag", () => {
  const digest = "0123456789abcdef".repeat(4);
  it("drops the epoch, makes the Debian version a valid OCI tag and ends in the inputs' digest", () => {
    expect(runtimeImageTag("qemu", "1:7.2+dfsg-7+deb12u18+b3", digest)).toBe(
      "qemu-7.2-dfsg-7-deb12u18-b3-0123456789ab",
    );
    expect(runtimeImageTag("jvm", "17.0.15+6-1~deb12u1", digest)).toBe(
      "jvm-17.0.15-6-1-deb12u1-0123456789ab",
    );
    const long = runtimeImageTag("qemu", `2:${"9.9+".repeat(60)}`, digest);
    expect(long.length).toBe(128);
    expect(long.endsWith("-0123456789ab")).toBe(true);
    for (const t of [long, runtimeImageTag("qemu-user", "1:7.2", digest)]) expect(t).toMatch(OCI_TAG);
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
  const dir = "/var/lib/eve/tools-images/default";
  const ref = `oci:${dir}/qemu-8.0-1:qemu-8.0-1`;
  it("is true for a layout in the same parent directory only, or the tools image's old one", () => {
    expect(isPreviousBuiltIn(`oci:${dir}/qemu-7.2-1:qemu-7.2-1`, ref)).toBe(true);
    expect(isPreviousBuiltIn(`oci:${dir}/../default/qemu-7.2-1:qemu-7.2-1`, ref)).toBe(true);
    // Where the hypervisor-tools image was built before runtimes were images.
    expect(isPreviousBuiltIn("oci:/var/lib/eve/tools-images/qemu/qemu-7.2-1:qemu-7.2-1", ref)).toBe(true);
    const jvm = "oci:/var/lib/eve/tools-images/jvm/jvm-17-1:jvm-17-1";
    expect(isPreviousBuiltIn("oci:/var/lib/eve/tools-images/qemu/qemu-7.2-1:qemu-7.2-1", jvm)).toBe(false);
    expect(isPreviousBuiltIn(`oci:${dir}/qemu-7.2-1:qemu-7.2-1`, jvm)).toBe(false);
    expect(isPreviousBuiltIn("oci:/srv/my-tools:1", ref)).toBe(false);
    expect(isPreviousBuiltIn("registry.example:5000/tools/qemu:1", ref)).toBe(false);
    expect(isPreviousBuiltIn("not a ref", ref)).toBe(false);
  });
});

describe("debianPackageVersion and buildRuntimeImage", () => {
  it("name the package to install when one is missing", async () => {
    const missing = debianPackageVersion("eve-tasks-no-such-package");
    await expect(missing).rejects.toBeInstanceOf(PackageNotInstalledError);
    await expect(missing).rejects.toThrow(
      "apt-get update && apt-get install --no-install-recommends eve-tasks-no-such-package",
    );
    // The default runtime's qemu package, named by the test.
    await expect(
      buildRuntimeImage("default", { outDir: "/nonexistent", packageName: "eve-tasks-no-such-package" }),
    ).rejects.toThrow(/not installed/);
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
