/**
 * The KVM probe guest: a one-sector raw disk whose boot sector prints {@link KVM_PROBE_MARKER} on
 * COM1 and halts. If the marker appears on qemu's serial output, the accelerator really runs guest
 * code (nested KVM can create a VM and then hang before the first instruction).
 */

/** The line the probe guest prints (followed by CR LF) on its first serial port. */
export const KVM_PROBE_MARKER = "EVE-TASKS-PROBE-OK";

/** Where the BIOS loads a boot sector and jumps to, in real mode. */
const ORIGIN = 0x7c00;
/** Offset of the message in the sector: right after the code below. */
const MSG_OFFSET = 0x17;
/** COM1's data (transmit holding) register. */
const COM1 = 0x3f8;

/**
 * The boot sector's code, 16-bit real mode, loaded at 0000:7C00. Offsets are from the sector's
 * start; a jump's rel8 counts from the end of the jump instruction.
 *
 *   off  bytes      instruction
 *   00   FA         cli               no interrupts: nothing will wake the final hlt
 *   01   FC         cld               lodsb walks upwards
 *   02   31 C0      xor ax, ax        (31 /r, ModRM 11 000 000: ax, ax)
 *   04   8E D8      mov ds, ax        (8E /r, ModRM 11 011 000: sreg 3 = ds); DS = 0
 *   06   BE 17 7C   mov si, 0x7C17    the message: ORIGIN + 0x17, little-endian imm16
 *   09   BA F8 03   mov dx, 0x03F8    COM1 data port
 *   0C   AC         lodsb             loop: al = [ds:si], si += 1
 *   0D   84 C0      test al, al
 *   0F   74 03      jz 0x14           NUL ends the message: 0x11 + 3 = 0x14
 *   11   EE         out dx, al        one byte to COM1
 *   12   EB F8      jmp 0x0C          0x14 - 8 = 0x0C
 *   14   F4         hlt               halt:
 *   15   EB FD      jmp 0x14          0x17 - 3 = 0x14 (in case of an NMI)
 *   17   "EVE-TASKS-PROBE-OK" 0D 0A 00   the message, CR LF, NUL
 *   ...  00                           zero padding
 *   1FE  55 AA                        boot signature
 *
 * The UART is not programmed: qemu's 16550 sends what is written to its data register whatever
 * the line settings, which is all this guest needs (it only ever runs under qemu).
 */
// prettier-ignore
const CODE: readonly number[] = [
  0xfa, // cli
  0xfc, // cld
  0x31, 0xc0, // xor ax, ax
  0x8e, 0xd8, // mov ds, ax
  0xbe, (ORIGIN + MSG_OFFSET) & 0xff, (ORIGIN + MSG_OFFSET) >> 8, // mov si, msg
  0xba, COM1 & 0xff, COM1 >> 8, // mov dx, 0x3f8
  0xac, // loop: lodsb
  0x84, 0xc0, // test al, al
  0x74, 0x03, // jz halt
  0xee, // out dx, al
  0xeb, 0xf8, // jmp loop
  0xf4, // halt: hlt
  0xeb, 0xfd, // jmp halt
];

/** A fresh copy of the probe disk: 512 bytes, boot signature 0x55 0xAA at 510–511. */
export function kvmProbeDisk(): Buffer {
  if (CODE.length !== MSG_OFFSET)
    throw new Error(`probe code is ${CODE.length} bytes, expected ${MSG_OFFSET}`);
  const sector = Buffer.alloc(512);
  Buffer.from(CODE).copy(sector, 0);
  const message = Buffer.from(`${KVM_PROBE_MARKER}\r\n\0`, "latin1");
  message.copy(sector, MSG_OFFSET);
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}

/** Options of {@link probeQemuArgs}. */
export interface ProbeQemuOptions {
  /** The accelerator to test: `kvm`, or `tcg` (the reference). */
  accel: "kvm" | "tcg" | (string & {});
  /** The probe disk as qemu sees it (may be on a read-only mount: it is opened read-only). */
  diskPath: string;
  /** Guest memory (default 16 MiB: the guest uses one sector of it). */
  memoryMiB?: number;
}

/** A value in qemu's `key=value,...` option syntax: a comma is written twice. */
export function qemuOptionValue(value: string): string {
  return value.replaceAll(",", ",,");
}

/**
 * qemu's arguments (without the binary) to boot the probe disk: no default devices, no display,
 * COM1 on stdout (`-serial stdio`: with `-nodefaults` it is the only serial port), the disk as a
 * read-only floppy (qemu refuses a read-only IDE hard disk; a floppy needs no writable overlay),
 * `-no-reboot` so a guest that faults ends qemu instead of rebooting in a loop.
 */
export function probeQemuArgs(options: ProbeQemuOptions): string[] {
  if (options.diskPath === "") throw new Error("probeQemuArgs: diskPath is empty");
  return [
    "-accel",
    options.accel,
    "-machine",
    "pc",
    "-m",
    String(options.memoryMiB ?? 16),
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-no-reboot",
    "-serial",
    "stdio",
    "-drive",
    `file=${qemuOptionValue(options.diskPath)},format=raw,if=floppy,readonly=on`,
  ];
}
