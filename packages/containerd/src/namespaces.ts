import type protobuf from "protobufjs";
import { methodDef } from "./proto.js";
import type { MethodDef } from "./proto.js";
import type { CallOptions, Rpc } from "./rpc.js";
import type {
  WireDeleteNamespaceRequest,
  WireEmpty,
  WireListNamespacesRequest,
  WireListNamespacesResponse,
} from "./wire.js";

const SERVICE = "containerd.services.namespaces.v1.Namespaces";

/** A containerd namespace. */
export interface Namespace {
  name: string;
  labels: Record<string, string>;
}

/**
 * containerd's Namespaces service (List and Delete). containerd creates a namespace on first use,
 * so there is no create here; these calls are not scoped by the client's namespace.
 */
export class NamespacesClient {
  readonly #rpc: Rpc;
  readonly #list: MethodDef<WireListNamespacesRequest, WireListNamespacesResponse>;
  readonly #delete: MethodDef<WireDeleteNamespaceRequest, WireEmpty>;

  /** @internal Use `ContainerdClient.namespaces`. */
  constructor(rpc: Rpc, root: protobuf.Root) {
    this.#rpc = rpc;
    this.#list = methodDef(root, SERVICE, "List");
    this.#delete = methodDef(root, SERVICE, "Delete");
  }

  /** Every namespace of this containerd. */
  async list(options?: CallOptions): Promise<Namespace[]> {
    const res = await this.#rpc.unary(this.#list, { filter: "" }, { options });
    return res.namespaces.map((n) => ({ name: n.name, labels: n.labels }));
  }

  /**
   * Deletes namespace `name` (default: the client's). FAILED_PRECONDITION while it still holds
   * containers, images, snapshots or content; NOT_FOUND if it does not exist.
   */
  async delete(name: string = this.#rpc.namespace, options?: CallOptions): Promise<void> {
    await this.#rpc.unary(this.#delete, { name }, { options });
  }
}
