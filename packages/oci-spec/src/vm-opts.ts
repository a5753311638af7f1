/**
 * A VM's anchor: the qemu command line of a guest, with the guest's host files at fixed paths
 * inside the task (the executor bind-mounts them there after its realpath check) and the QMP
 * socket in a directory the executor binds from `EVE_RUN_DIR`. Node-independent: the
 * accelerator (`-accel`) is the executor's to add.
 */
import { SpecOptionError } from "./errors.js";

/** Where a VM's kernel, initrd and disks appear inside its task. */
export const VM_GUEST_DIR = "/eve/vm";
/** The task-side directory of the QMP socket (bound from `<EVE_RUN_DIR>/vm/<uuid>`). */
export const QMP_DIR_IN_TASK = "/run/eve-vm";
/** The QMP socket's file name, in {@link QMP_DIR_IN_TASK} and in the host directory alike. */
export const QMP_SOCKET_NAME = "qmp.sock";

/** Task-side paths of a guest's files. */
export const vmGuestPaths = {
  kernel: `${VM_GUEST_DIR}/kernel`,
  initrd: `${VM_GUEST_DIR}/initrd`,
  disk: (index: number): string => `${VM_GUEST_DIR}/disk${index}`,
} as const;

/** qemu's name of each OCI architecture it emulates (`qemu-system-<name>`). */
const QEMU_ARCH: Readonly<Record<string, string>> = {
  amd64: "x86_64",
  "386": "i386",
  arm64: "aarch64",
  arm: "arm",
  riscv64: "riscv64",
  ppc64le: "ppc64",
  s390x: "s390x",
};

/**
 * The device model for a guest of architecture `arch`, spelt as OCI platforms spell it (`amd64`)
 * or as `uname -m` does (`x86_64`): `qemu-system-x86_64`.
 *
 * @throws {SpecOptionError} for an architecture qemu has no system emulator for.
 */
export function qemuProgramFor(arch: string): string {
  const name = Object.values(QEMU_ARCH).includes(arch) ? arch : QEMU_ARCH[arch];
  if (name === undefined) {
    throw new SpecOptionError(
      "qemuProgramFor",
      arch,
      `no qemu system emulator for architecture ${JSON.stringify(arch)} (known: ${Object.keys(QEMU_ARCH).join(", ")})`,
    );
  }
  return `qemu-system-${name}`;
}

/** What the guest is: its size and what it boots. */
export interface QemuGuest {
  /** Names the guest in qemu's thread names and messages. */
  name: string;
  memoryMiB: number;
  vcpus: number;
  /** Boot this kernel (at {@link vmGuestPaths}.kernel). */
  kernel: boolean;
  initrd: boolean;
  cmdline?: string | undefined;
  disks: readonly { format: "raw" | "qcow2"; readOnly: boolean }[];
}

/**
 * qemu's arguments for `guest`, program first: no default devices, no user config, no display;
 * the serial console on stdout (the task log); QMP on a unix socket in {@link QMP_DIR_IN_TASK},
 * not waiting for a client; kernel, initrd, command line and virtio disks from
 * {@link vmGuestPaths}. A disk's format is always given: qemu's format probing is unsafe.
 *
 * @throws {SpecOptionError} for a size qemu cannot take.
 */
export function qemuArgs(program: string, guest: QemuGuest): string[] {
  if (!Number.isInteger(guest.memoryMiB) || guest.memoryMiB < 1) {
    throw new SpecOptionError(
      "qemuArgs",
      guest.memoryMiB,
      "the guest memory must be a whole number of MiB ≥ 1",
    );
  }
  if (!Number.isInteger(guest.vcpus) || guest.vcpus < 1) {
    throw new SpecOptionError("qemuArgs", guest.vcpus, "the guest needs a whole number of vCPUs ≥ 1");
  }
  if (/[,=]/.test(guest.name)) {
    throw new SpecOptionError("qemuArgs", guest.name, "the guest name must not hold ',' or '='");
  }
  const args = [
    program,
    "-name",
    `guest=${guest.name},debug-threads=on`,
    "-m",
    String(guest.memoryMiB),
    "-smp",
    String(guest.vcpus),
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-serial",
    "stdio",
    "-qmp",
    `unix:${QMP_DIR_IN_TASK}/${QMP_SOCKET_NAME},server=on,wait=off`,
  ];
  if (guest.kernel) args.push("-kernel", vmGuestPaths.kernel);
  if (guest.initrd) args.push("-initrd", vmGuestPaths.initrd);
  if (guest.cmdline !== undefined) args.push("-append", guest.cmdline);
  guest.disks.forEach((d, i) => {
    args.push(
      "-drive",
      `file=${vmGuestPaths.disk(i)},format=${d.format},if=virtio,readonly=${d.readOnly ? "on" : "off"}`,
    );
  });
  return args;
}
