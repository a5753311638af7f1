import protobuf from "protobufjs";
import { RUNC_V2_RUNTIME, anyFromWire, anyToWire, mapValues, specToAny, timestampToDate } from "./convert.js";
import { ContainerdError } from "./errors.js";
import { decodeMessage, methodDef } from "./proto.js";
import type { MethodDef } from "./proto.js";
import type { CallOptions, Rpc } from "./rpc.js";
import type { Container, CreateContainerInput, UpdateContainerInput } from "./types.js";
import type {
  WireContainer,
  WireContainerIn,
  WireContainerResponse,
  WireCreateContainerRequest,
  WireDeleteContainerRequest,
  WireEmpty,
  WireGetContainerRequest,
  WireListContainersRequest,
  WireListContainersResponse,
  WireUpdateContainerRequest,
} from "./wire.js";

const SERVICE = "containerd.services.containers.v1.Containers";

/** A container as {@link ContainersClient.listLabels} gives it: its ID and labels only. */
export interface ContainerLabels {
  readonly id: string;
  readonly labels: Record<string, string>;
}

/**
 * A reading of Containers.List's response that keeps fields 1 (id) and 2 (labels) of each
 * Container and skips the rest unread: the spec (kilobytes per container) is neither copied
 * nor converted. Not a containerd message; only a narrower view of its wire format.
 */
function labelsOnlyListType(): protobuf.Type {
  const container = new protobuf.Type("ContainerLabels")
    .add(new protobuf.Field("id", 1, "string"))
    .add(new protobuf.MapField("labels", 2, "string", "string"));
  const list = new protobuf.Type("ListContainerLabels").add(
    new protobuf.Field("containers", 1, "ContainerLabels", "repeated"),
  );
  new protobuf.Root().define("eve_tasks.views").add(container).add(list);
  list.resolveAll();
  return list;
}

/** Options of `containers.update`. */
export interface UpdateContainerOptions extends CallOptions {
  /**
   * The field mask: `labels`, `labels.<key>`, `spec`, `image`, `snapshotkey`, `extensions`,
   * `extensions.<key>`. Default: the fields present in the input.
   */
  fieldPaths?: readonly string[];
}

function containerFromWire(c: WireContainer | null, method: string, namespace: string): Container {
  if (c === null)
    throw new ContainerdError("INTERNAL", "response without a container", { method, namespace });
  return {
    id: c.id,
    labels: c.labels,
    image: c.image,
    runtime: { name: c.runtime?.name ?? "", options: anyFromWire(c.runtime?.options) },
    spec: anyFromWire(c.spec),
    snapshotter: c.snapshotter,
    snapshotKey: c.snapshot_key,
    createdAt: timestampToDate(c.created_at) ?? new Date(0),
    updatedAt: timestampToDate(c.updated_at) ?? new Date(0),
    extensions: mapValues(c.extensions, (a) => ({ typeUrl: a.type_url, value: a.value })),
  };
}

/** containerd's Containers service: container records (ID, labels, spec, runtime) in the client's namespace. */
export class ContainersClient {
  readonly #rpc: Rpc;
  readonly #get: MethodDef<WireGetContainerRequest, WireContainerResponse>;
  readonly #list: MethodDef<WireListContainersRequest, WireListContainersResponse>;
  readonly #listLabels: MethodDef<WireListContainersRequest, { containers: ContainerLabels[] }>;
  readonly #create: MethodDef<WireCreateContainerRequest, WireContainerResponse>;
  readonly #update: MethodDef<WireUpdateContainerRequest, WireContainerResponse>;
  readonly #delete: MethodDef<WireDeleteContainerRequest, WireEmpty>;

  /** @internal Use `ContainerdClient.containers`. */
  constructor(rpc: Rpc, root: protobuf.Root) {
    this.#rpc = rpc;
    this.#get = methodDef(root, SERVICE, "Get");
    this.#list = methodDef(root, SERVICE, "List");
    const labelsOnly = labelsOnlyListType();
    this.#listLabels = { ...this.#list, deserialize: (bytes) => decodeMessage(labelsOnly, bytes) };
    this.#create = methodDef(root, SERVICE, "Create");
    this.#update = methodDef(root, SERVICE, "Update");
    this.#delete = methodDef(root, SERVICE, "Delete");
  }

  /** Creates a container record; ALREADY_EXISTS if the ID is taken. */
  async create(input: CreateContainerInput, options?: CallOptions): Promise<Container> {
    const runtime = typeof input.runtime === "string" ? { name: input.runtime } : input.runtime;
    const container: WireContainerIn = {
      id: input.id,
      labels: input.labels ?? {},
      image: input.image ?? "",
      runtime: {
        name: runtime?.name ?? RUNC_V2_RUNTIME,
        ...(runtime?.options !== undefined ? { options: anyToWire(runtime.options) } : {}),
      },
      spec: anyToWire(specToAny(input.spec)),
      snapshotter: input.snapshotter ?? "",
      snapshot_key: input.snapshotKey ?? "",
      extensions: mapValues(input.extensions ?? {}, anyToWire),
    };
    const res = await this.#rpc.unary(this.#create, { container }, { containerId: input.id, options });
    return containerFromWire(res.container, this.#create.label, this.#rpc.namespace);
  }

  /** The container `id`; NOT_FOUND if there is none. */
  async get(id: string, options?: CallOptions): Promise<Container> {
    const res = await this.#rpc.unary(this.#get, { id }, { containerId: id, options });
    return containerFromWire(res.container, this.#get.label, this.#rpc.namespace);
  }

  /**
   * Containers matching any of `filters` (containerd filter syntax, e.g.
   * `labels."org.lfedge.eve-tasks.uuid"==<uuid>`); all of them without filters.
   */
  async list(filters: readonly string[] = [], options?: CallOptions): Promise<Container[]> {
    const res = await this.#rpc.unary(this.#list, { filters: [...filters] }, { options });
    return res.containers.map((c) => containerFromWire(c, this.#list.label, this.#rpc.namespace));
  }

  /**
   * The ID and labels of the containers matching any of `filters`: the same call as {@link list},
   * but the rest of each record (its spec above all) is skipped, not decoded. For a caller that
   * looks at many containers often and needs only their labels.
   */
  async listLabels(filters: readonly string[] = [], options?: CallOptions): Promise<ContainerLabels[]> {
    const res = await this.#rpc.unary(this.#listLabels, { filters: [...filters] }, { options });
    return res.containers;
  }

  /**
   * Updates the fields of `input` that are present (or those named by `fieldPaths`) and
   * returns the updated record. The runtime and snapshotter cannot change.
   */
  async update(input: UpdateContainerInput, options?: UpdateContainerOptions): Promise<Container> {
    const container: WireContainerIn = { id: input.id };
    const present: string[] = [];
    if (input.labels !== undefined) {
      container.labels = input.labels;
      present.push("labels");
    }
    if (input.spec !== undefined) {
      container.spec = anyToWire(specToAny(input.spec));
      present.push("spec");
    }
    if (input.image !== undefined) {
      container.image = input.image;
      present.push("image");
    }
    if (input.snapshotKey !== undefined) {
      container.snapshot_key = input.snapshotKey;
      present.push("snapshotkey");
    }
    if (input.extensions !== undefined) {
      container.extensions = mapValues(input.extensions, anyToWire);
      present.push("extensions");
    }
    const paths = [...(options?.fieldPaths ?? present)];
    // An empty mask means "replace everything" to containerd, which would wipe fields not sent.
    if (paths.length === 0) throw new TypeError(`containers.update(${input.id}): nothing to update`);
    const res = await this.#rpc.unary(
      this.#update,
      { container, update_mask: { paths } },
      { containerId: input.id, options },
    );
    return containerFromWire(res.container, this.#update.label, this.#rpc.namespace);
  }

  /** Deletes the container record; NOT_FOUND if there is none, FAILED_PRECONDITION while it has a task. */
  async delete(id: string, options?: CallOptions): Promise<void> {
    await this.#rpc.unary(this.#delete, { id }, { containerId: id, options });
  }
}
