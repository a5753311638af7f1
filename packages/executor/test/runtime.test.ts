import { describe, expect, it } from "vitest";
import { ContainerdError } from "@eve-tasks/containerd";
import type { ContainerdClient, ContainerdEvent } from "@eve-tasks/containerd";
import { containerdRuntime } from "@eve-tasks/executor";
import { fakeShim } from "./fake-shim.js";

/** A promise with its resolvers, for calls the test answers when it chooses. */
function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

const notFound = (id: string): ContainerdError =>
  new ContainerdError("NOT_FOUND", "task not found", {
    method: "Tasks.Get",
    namespace: "t",
    containerId: id,
  });

/**
 * containerd as far as the runtime's delete path goes: Tasks.Delete answers when the test says
 * so, Tasks.Get answers from `taskExists`, and the event stream yields what the test pushes.
 */
function scriptedClient() {
  const deleteCall = deferred<{ exitStatus: number; exitedAt: Date | null }>();
  const calls: string[] = [];
  const state = { taskExists: true };
  const queue: ContainerdEvent[] = [];
  let wake: (() => void) | undefined;
  const push = (e: ContainerdEvent): void => {
    queue.push(e);
    wake?.();
  };
  const client = {
    containers: {},
    tasks: {
      delete: (id: string) => {
        calls.push(`delete ${id}`);
        return deleteCall.promise;
      },
      get: (id: string) => {
        calls.push(`get ${id}`);
        return state.taskExists
          ? Promise.resolve({ containerId: id, pid: 42, status: "STOPPED" })
          : Promise.reject(notFound(id));
      },
      create: (r: { containerId: string }) => {
        calls.push(`create ${r.containerId}`);
        return Promise.resolve({ pid: 43 });
      },
    },
    events: {
      subscribe: ({ signal }: { signal: AbortSignal }) => ({
        async *[Symbol.asyncIterator]() {
          while (!signal.aborted) {
            const e = queue.shift();
            if (e) yield e;
            else await new Promise<void>((r) => (wake = r));
          }
        },
      }),
    },
  };
  return { client: client as unknown as ContainerdClient, deleteCall, calls, state, push };
}

const deleteEvent = (id: string, exitStatus: number): ContainerdEvent => ({
  topic: "/tasks/delete",
  namespace: "t",
  timestamp: new Date(),
  payload: { containerId: id, id: "", pid: 42, exitStatus, exitedAt: new Date(0) },
});

/** Drains the runtime's event stream in the background, as the executor does. */
function follow(runtime: ReturnType<typeof containerdRuntime>): AbortController {
  const abort = new AbortController();
  void (async () => {
    for await (const _ of runtime.events(abort.signal)) void _;
  })();
  return abort;
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

/**
 * A runtime over a scripted client, its event stream followed, and a deleteTask("a") in flight;
 * `result()` is what it resolved to so far, `settle()` lets a few turns pass (until it resolved).
 */
async function deleting() {
  const s = scriptedClient();
  const runtime = containerdRuntime(s.client);
  const abort = follow(runtime);
  let result: unknown;
  void runtime.deleteTask("a").then((r) => (result = r));
  await tick();
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 5 && result === undefined; i++) await tick();
  };
  return { s, runtime, result: () => result, settle, done: () => abort.abort() };
}

describe("containerdRuntime.deleteTask", () => {
  it("resolves at containerd's /tasks/delete once Tasks.Get finds no task, before the call returns", async () => {
    const { s, runtime, result, settle, done } = await deleting();
    s.state.taskExists = false;
    s.push(deleteEvent("a", 137));
    await settle();
    expect(result()).toEqual({ exitStatus: 137, exitedAt: new Date(0) });
    expect(s.calls).toEqual(["delete a", "get a"]);
    // Until containerd has finished the call, the runtime is not settled (the executor's stop waits).
    let settled = false;
    void runtime.settled().then(() => (settled = true));

    // A new task on the same id waits until the old delete has finished in containerd.
    let created = false;
    void runtime.createTask({ id: "a", rootfs: [], stdout: "", stderr: "" }).then(() => (created = true));
    await tick();
    expect(created).toBe(false);
    expect(settled).toBe(false);
    s.deleteCall.resolve({ exitStatus: 137, exitedAt: new Date(0) });
    for (let i = 0; i < 5 && !created; i++) await tick();
    expect(created).toBe(true);
    expect(settled).toBe(true);
    expect(s.calls.at(-1)).toBe("create a");
    done();
  });

  it("waits for the call when Tasks.Get still finds the task after the event", async () => {
    const { s, result, settle, done } = await deleting();
    s.push(deleteEvent("a", 137));
    await settle();
    expect(s.calls).toEqual(["delete a", "get a"]);
    expect(result()).toBeUndefined();
    s.deleteCall.resolve({ exitStatus: 1, exitedAt: null });
    await settle();
    expect(result()).toEqual({ exitStatus: 1, exitedAt: null });
    done();
  });

  it("ignores another container's event", async () => {
    const { s, result, settle, done } = await deleting();
    s.state.taskExists = false;
    s.push(deleteEvent("b", 0));
    await settle();
    expect(result()).toBeUndefined();
    expect(s.calls).toEqual(["delete a"]);
    s.deleteCall.resolve({ exitStatus: 0, exitedAt: null });
    await settle();
    expect(result()).toEqual({ exitStatus: 0, exitedAt: null });
    done();
  });
});

describe("containerdRuntime: a Tasks.Create it gave up on", () => {
  it("ends the shim that create may have left once the container is deleted, and no other", async () => {
    const address = "/run/fake-containerd-for-a-test.sock";
    const deadline = (id: string) =>
      new ContainerdError("DEADLINE_EXCEEDED", "deadline exceeded", {
        method: "Tasks.Create",
        namespace: "t",
        containerId: id,
      });
    const client = {
      target: `unix:${address}`,
      namespace: "t",
      containers: { delete: () => Promise.resolve() },
      tasks: {
        create: (r: { containerId: string }) => Promise.reject(deadline(r.containerId)),
        get: (id: string) => Promise.reject(notFound(id)),
      },
    } as unknown as ContainerdClient;
    const runtime = containerdRuntime(client);
    const cut = fakeShim({ id: "cut", namespace: "t", address });
    const other = fakeShim({ id: "other", namespace: "t", address });
    try {
      await Promise.all([cut.ready(), other.ready()]);
      // A container deleted without a cut-short create: nothing is looked for.
      await runtime.deleteContainer("other");
      await expect(runtime.createTask({ id: "cut", rootfs: [], stdout: "", stderr: "" })).rejects.toThrow(
        /deadline/,
      );
      await runtime.deleteContainer("cut");
      const late = new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error("the cut-short create's shim still runs")), 5_000).unref(),
      );
      await Promise.race([cut.exited, late]);
      expect(other.child.exitCode).toBeNull();
      expect(other.child.signalCode).toBeNull();
    } finally {
      cut.kill();
      other.kill();
    }
  });
});
