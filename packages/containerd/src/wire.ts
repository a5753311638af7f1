// Plain-object mirrors of the messages in proto/containerd, as protobufjs's toObject produces
// them with the options in proto.ts (snake_case names, defaults filled in, unset messages null,
// enums as names, int64 as number). Internal: the public API is in types.ts.

export type WireAny = { type_url: string; value: Uint8Array };
export type WireTimestamp = { seconds: number; nanos: number };
export type WireEmpty = Record<string, never>;
export type WireMount = { type: string; source: string; target: string; options: string[] };

export type WireRuntime = { name: string; options: WireAny | null };
export type WireContainer = {
  id: string;
  labels: Record<string, string>;
  image: string;
  runtime: WireRuntime | null;
  spec: WireAny | null;
  snapshotter: string;
  snapshot_key: string;
  created_at: WireTimestamp | null;
  updated_at: WireTimestamp | null;
  extensions: Record<string, WireAny>;
};
/** What the client sends for a container: timestamps are set by containerd. */
export type WireContainerIn = {
  id: string;
  labels?: Record<string, string>;
  image?: string;
  runtime?: { name: string; options?: WireAny };
  spec?: WireAny;
  snapshotter?: string;
  snapshot_key?: string;
  extensions?: Record<string, WireAny>;
};

export type WireVersionResponse = { version: string; revision: string };

export type WireGetContainerRequest = { id: string };
export type WireContainerResponse = { container: WireContainer | null };
export type WireListContainersRequest = { filters: string[] };
export type WireListContainersResponse = { containers: WireContainer[] };
export type WireCreateContainerRequest = { container: WireContainerIn };
export type WireUpdateContainerRequest = { container: WireContainerIn; update_mask: { paths: string[] } };
export type WireDeleteContainerRequest = { id: string };

export type WireStatus = "UNKNOWN" | "CREATED" | "RUNNING" | "STOPPED" | "PAUSED" | "PAUSING";
export type WireProcess = {
  container_id: string;
  id: string;
  pid: number;
  /** A number when containerd sends a value this definition does not know. */
  status: WireStatus | number;
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
  exit_status: number;
  exited_at: WireTimestamp | null;
};
export type WireProcessInfo = { pid: number; info: WireAny | null };

export type WireCreateTaskRequest = {
  container_id: string;
  rootfs: WireMount[];
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
  options?: WireAny;
  runtime_path: string;
};
export type WireCreateTaskResponse = { container_id: string; pid: number };
export type WireStartRequest = { container_id: string; exec_id: string };
export type WireStartResponse = { pid: number };
export type WireDeleteTaskRequest = { container_id: string };
export type WireDeleteResponse = {
  id: string;
  pid: number;
  exit_status: number;
  exited_at: WireTimestamp | null;
};
export type WireGetRequest = { container_id: string; exec_id: string };
export type WireGetResponse = { process: WireProcess | null };
export type WireListTasksRequest = { filter: string };
export type WireListTasksResponse = { tasks: WireProcess[] };
export type WireKillRequest = { container_id: string; exec_id: string; signal: number; all: boolean };
export type WireListPidsRequest = { container_id: string };
export type WireListPidsResponse = { processes: WireProcessInfo[] };
export type WireWaitRequest = { container_id: string; exec_id: string };
export type WireWaitResponse = { exit_status: number; exited_at: WireTimestamp | null };

export type WireNamespace = { name: string; labels: Record<string, string> };
export type WireListNamespacesRequest = { filter: string };
export type WireListNamespacesResponse = { namespaces: WireNamespace[] };
export type WireDeleteNamespaceRequest = { name: string };

export type WireSubscribeRequest = { filters: string[] };
export type WireEnvelope = {
  timestamp: WireTimestamp | null;
  namespace: string;
  topic: string;
  event: WireAny | null;
};

export type WireTaskIO = { stdin: string; stdout: string; stderr: string; terminal: boolean };
export type WireTaskCreate = {
  container_id: string;
  bundle: string;
  rootfs: WireMount[];
  io: WireTaskIO | null;
  checkpoint: string;
  pid: number;
};
export type WireTaskStart = { container_id: string; pid: number };
export type WireTaskDelete = {
  container_id: string;
  pid: number;
  exit_status: number;
  exited_at: WireTimestamp | null;
  id: string;
};
export type WireTaskExit = {
  container_id: string;
  id: string;
  pid: number;
  exit_status: number;
  exited_at: WireTimestamp | null;
};
export type WireContainerIdOnly = { container_id: string };
export type WireContainerCreate = { id: string; image: string; runtime: WireRuntime | null };
export type WireContainerUpdate = {
  id: string;
  image: string;
  labels: Record<string, string>;
  snapshot_key: string;
};
export type WireContainerDelete = { id: string };
