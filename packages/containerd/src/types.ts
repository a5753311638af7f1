// Public request and response types. camelCase; every 32-bit integer (pid, exit status,
// signal) is a number; timestamps are Dates.

/** A protobuf `google.protobuf.Any`: a type URL and the encoded value. */
export interface AnyMessage {
  readonly typeUrl: string;
  readonly value: Uint8Array;
}

/** A mount as containerd describes it (`containerd.types.Mount`). */
export interface Mount {
  /** Filesystem type: "bind", "overlay", "tmpfs"... */
  type: string;
  source: string;
  /** Unused for a task's rootfs mounts (they land on the bundle's `rootfs`). */
  target?: string;
  /** mount(8) options: "rbind", "ro", "lowerdir=...". */
  options?: readonly string[];
}

/** Version of the containerd daemon. */
export interface VersionInfo {
  version: string;
  revision: string;
}

/** Which runtime (shim) runs a container's tasks, e.g. `io.containerd.runc.v2`. */
export interface ContainerRuntime {
  name: string;
  /** Runtime-specific options (e.g. `containerd.runc.v1.Options`), or null. */
  options: AnyMessage | null;
}

/** A container record (metadata only: it runs nothing until a task is created). */
export interface Container {
  id: string;
  labels: Record<string, string>;
  image: string;
  runtime: ContainerRuntime;
  /** The OCI runtime spec as stored (see `specFromAny`), or null. */
  spec: AnyMessage | null;
  snapshotter: string;
  snapshotKey: string;
  /** Set by containerd; epoch 0 if it sent none. */
  createdAt: Date;
  /** Set by containerd; epoch 0 if it sent none. */
  updatedAt: Date;
  extensions: Record<string, AnyMessage>;
}

/** Input of `containers.create`. */
export interface CreateContainerInput {
  id: string;
  labels?: Record<string, string>;
  /** The OCI runtime spec; sent as JSON bytes in an Any (see `specToAny`). */
  spec: object;
  /** Runtime name, or name and options; default `io.containerd.runc.v2`. */
  runtime?: string | { name: string; options?: AnyMessage };
  image?: string;
  snapshotter?: string;
  snapshotKey?: string;
  extensions?: Record<string, AnyMessage>;
}

/** Input of `containers.update`: the fields present are the ones updated (unless `fieldPaths` says). */
export interface UpdateContainerInput {
  id: string;
  /** Replaces all labels (field path `labels`), or with `fieldPaths: ["labels.<key>"]` sets single keys. */
  labels?: Record<string, string>;
  spec?: object;
  image?: string;
  snapshotKey?: string;
  extensions?: Record<string, AnyMessage>;
}

/** Status of a task's process (`containerd.v1.types.Status`). */
export type TaskStatus = "UNKNOWN" | "CREATED" | "RUNNING" | "STOPPED" | "PAUSED" | "PAUSING";

/** A task's init process (or an exec'd process) as `Tasks.Get` and `Tasks.List` report it. */
export interface Process {
  /** Filled in by the client: containerd 1.6 sends it empty. */
  containerId: string;
  /** Exec ID, or the container ID for the init process. */
  id: string;
  pid: number;
  status: TaskStatus;
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
  /** Meaningful once `status` is STOPPED; 255 means unknown. */
  exitStatus: number;
  /** Null until the process has exited. */
  exitedAt: Date | null;
}

/** Input of `tasks.create`. */
export interface CreateTaskInput {
  containerId: string;
  /** Mounted, in order, on the bundle's `rootfs` (the spec's `root.path` = "rootfs"). */
  rootfs?: readonly Mount[];
  /** IO: a FIFO path, or a `file://` or `binary://` URI (see `fileUri`). Empty: /dev/null. */
  stdin?: string;
  stdout?: string;
  stderr?: string;
  terminal?: boolean;
  /** Runtime-specific create options (e.g. `containerd.runc.v1.CreateOptions`). */
  options?: AnyMessage;
  runtimePath?: string;
}

/** Result of `tasks.create`: the task exists, its init process is created but not started. */
export interface CreatedTask {
  containerId: string;
  /** The anchor PID, already valid (runc create). */
  pid: number;
}

/** Exit of a task's init process. */
export interface ExitStatus {
  /** 128+N when signal N killed it; 255 means unknown. */
  exitStatus: number;
  exitedAt: Date | null;
}

/** Result of `tasks.delete`. */
export interface DeletedTask extends ExitStatus {
  /** The process ID: the container ID for a task (filled in by the client; containerd 1.6 sends it empty). */
  id: string;
  pid: number;
}

/** One process of a task (`Tasks.ListPids`). */
export interface ProcessInfo {
  pid: number;
  /** Runtime-specific details (runc: `containerd.runc.v1.ProcessDetails` with the exec ID), or null. */
  info: AnyMessage | null;
}
