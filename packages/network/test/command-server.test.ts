// The command shell: runs what it is given, exactly as given, reports failures as a direct spawn
// would, kills what runs too long, survives its own death, and keeps nothing alive when idle.
import { execFile } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { CommandError, CommandServer } from "../src/index.js";

const run = promisify(execFile);
const servers: CommandServer[] = [];
const server = (): CommandServer => {
  const s = new CommandServer();
  servers.push(s);
  return s;
};
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

const shellDirs = (): string[] => readdirSync(tmpdir()).filter((n) => n.startsWith("eve-cmd-"));

describe("CommandServer", () => {
  it("runs argv as given (quotes, newlines, $, no globbing) with stdin, and returns stdout and stderr", async () => {
    const s = server();
    const args = ["it's", "two words", "line1\nline2", "$HOME", "*", "`id`", ""];
    const { stdout } = await s.run(["printf", "%s|", ...args]);
    expect(stdout).toBe(`${args.join("|")}|`);
    const echoed = await s.run(["cat"], { input: "from stdin\n" });
    expect(echoed.stdout).toBe("from stdin\n");
    const both = await s.run(["sh", "-c", "echo out; echo err >&2"]);
    expect(both).toEqual({ stdout: "out\n", stderr: "err\n" });
  });

  it("runs a script with its arguments and stdin in a fork of the shell, as sh -c would", async () => {
    const s = server();
    const script =
      'first=$1; shift; read -r line; printf "%s|%s|%s|%s" "$first" "$#" "$*" "$line"; [ "$first" = ok ] || exit 4';
    const { stdout } = await s.runScript(script, ["ok", "it's", "a b"], { input: "in put\n" });
    expect(stdout).toBe("ok|2|it's a b|in put");
    const err = await s.runScript(script, ["no"], { input: "x\n" }).catch((e: unknown) => e);
    expect((err as CommandError).context).toMatchObject({
      exitCode: 4,
      argv: ["sh", "-c", script, "sh", "no"],
    });
  });

  it("reports an exit status, a signal and a missing program as CommandErrors with context", async () => {
    const s = server();
    const failed = await s.run(["sh", "-c", "echo why >&2; exit 3"], { input: "x" }).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(CommandError);
    expect((failed as CommandError).message).toMatch(/exited 3: why$/);
    expect((failed as CommandError).context).toMatchObject({
      exitCode: 3,
      signal: null,
      stderr: "why\n",
      input: "x",
    });

    const killed = await s.run(["sh", "-c", "kill -TERM $$"]).catch((e: unknown) => e);
    expect((killed as CommandError).message).toMatch(/was killed by SIGTERM/);
    expect((killed as CommandError).context).toMatchObject({ exitCode: null, signal: "SIGTERM" });

    const missing = await s.run(["/nonexistent/eve-no-such-tool", "a"]).catch((e: unknown) => e);
    expect((missing as CommandError).message).toMatch(
      /^\/nonexistent\/eve-no-such-tool could not be started/,
    );
  });

  it("runs commands at the same time, each answered with its own output", async () => {
    const s = server();
    const started = performance.now();
    const outs = await Promise.all(
      Array.from({ length: 12 }, (_, i) => s.run(["sh", "-c", `sleep 0.3; echo ${i}`])),
    );
    expect(outs.map((o) => o.stdout)).toEqual(Array.from({ length: 12 }, (_, i) => `${i}\n`));
    // One after another would take 3.6 s.
    expect(performance.now() - started).toBeLessThan(3_000);
  });

  it("kills a command that outlives its timeout, and goes on running others", async () => {
    const s = server();
    const err = await s.run(["sleep", "30"], { timeoutMs: 300 }).catch((e: unknown) => e);
    expect((err as CommandError).message).toMatch(/^sleep 30 was killed by SIGKILL after 300 ms/);
    expect((await s.run(["echo", "still here"])).stdout).toBe("still here\n");
  });

  it("fails what was running when the shell is killed, and starts a new one for the next command", async () => {
    const s = server();
    const slow = s.run(["sleep", "0.5"]);
    await new Promise((r) => setTimeout(r, 150));
    const pid = await s.pid();
    expect(pid).toBeGreaterThan(0);
    process.kill(pid!, "SIGKILL");
    // The command itself still ends and reports through the output it holds.
    await expect(slow).resolves.toEqual({ stdout: "", stderr: "" });
    expect((await s.run(["echo", "again"])).stdout).toBe("again\n");
    expect(await s.pid()).not.toBe(pid);
  });

  it("removes its directory when closed, and leaves none behind after its owner is killed", async () => {
    const before = new Set(shellDirs());
    const s = server();
    await s.run(["true"]);
    const mine = shellDirs().filter((d) => !before.has(d));
    expect(mine).toHaveLength(1);
    await s.close();
    expect(existsSync(join(tmpdir(), mine[0]!))).toBe(false);
  });

  it("does not keep an idle process alive, and its shell cleans up after it", async () => {
    const before = new Set(shellDirs());
    const script = [
      `import { CommandServer } from ${JSON.stringify(new URL("../dist/command-server.js", import.meta.url).pathname)};`,
      "const s = new CommandServer();",
      'const { stdout } = await s.run(["echo", "done"]);',
      "process.stdout.write(stdout);",
      // Waiting for the shell to end keeps the process alive until it has.
      "await s.close();",
      'process.stdout.write("closed\\n");',
    ].join("\n");
    const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script], {
      timeout: 10_000,
    });
    expect(stdout).toBe("done\nclosed\n");
    // The shell saw its stdin close when the process exited, and removed its directory.
    const deadline = Date.now() + 5_000;
    while (shellDirs().some((d) => !before.has(d)) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    expect(shellDirs().filter((d) => !before.has(d))).toEqual([]);
  });
});
