// A process that looks like a containerd shim daemon to /proc (bash run through a symlink named
// as the shim, with its flags), for tests of finding and ending leaked shims without containerd.
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { shimDaemonOf } from "@eve-tasks/executor";
import type { ShimDaemon } from "@eve-tasks/executor";

/** The argv of `pid` from /proc (empty once it is gone). */
export function argvOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0$/, "").split("\0");
  } catch {
    return [];
  }
}

/** Whether `pid` ignores SIGTERM (bit 15 of SigIgn in /proc/<pid>/status). */
function ignoresTerm(pid: number): boolean {
  try {
    const m = /^SigIgn:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m !== null && (BigInt(`0x${m[1]}`) & (1n << 14n)) !== 0n;
  } catch {
    return false;
  }
}

/** A fake shim of `id` for containerd socket `address` in namespace `namespace`. */
export interface FakeShim {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  /** Resolves once the process shows as the shim in /proc. */
  ready(): Promise<ShimDaemon>;
  /** SIGKILLs it if it still runs. */
  kill(): void;
}

/** Starts a fake shim; with `ignoreTerm` it ignores SIGTERM (as a shim blocked at start does). */
export function fakeShim(o: {
  id: string;
  namespace: string;
  address: string;
  ignoreTerm?: boolean;
}): FakeShim {
  // It ends by itself once the test process is gone, even if the test never got to kill it.
  const script = `${o.ignoreTerm ? "trap '' TERM; " : ""}while kill -0 $PPID 2>/dev/null; do sleep 0.05; done`;
  // Its short name (comm) comes from the file it runs: "containerd-shim", as a real one's.
  const dir = mkdtempSync(join(tmpdir(), "fake-shim-"));
  const program = join(dir, "containerd-shim-runc-v2");
  symlinkSync("/bin/bash", program);
  const child = spawn(
    program,
    ["-c", script, "-namespace", o.namespace, "-id", o.id, "-address", o.address],
    { stdio: "ignore" },
  );
  const exited = new Promise<void>((r) =>
    child.once("exit", () => {
      rmSync(dir, { recursive: true, force: true });
      r();
    }),
  );
  return {
    child,
    exited,
    async ready() {
      for (let i = 0; i < 250; i++) {
        const shim = shimDaemonOf(child.pid!, argvOf(child.pid!));
        if (shim && (!o.ignoreTerm || ignoresTerm(child.pid!))) return shim;
        await new Promise((r) => setTimeout(r, 20));
      }
      throw new Error(`fake shim ${child.pid} never showed as one`);
    },
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    },
  };
}
