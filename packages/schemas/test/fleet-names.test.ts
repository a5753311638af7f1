// The fleet's names (DESIGN.md "Public contract v2 → Fleet"): a device's hub bucket and the
// reply prefix of requests to a node's executor, with the one check of a device's name.
import { describe, expect, it } from "vitest";
import {
  InvalidFleetNodeError,
  assertFleetNode,
  hubControllerBucket,
  isFleetNode,
  nodeOfHubControllerBucket,
  nodeReplyPrefix,
} from "../src/index.js";

describe("a device's bucket on the hub", () => {
  it("is controller-<node>, and its node is read back from the bucket's name", () => {
    expect(hubControllerBucket("dev1")).toBe("controller-dev1");
    expect(hubControllerBucket("Edge_2-b")).toBe("controller-Edge_2-b");
    expect(nodeOfHubControllerBucket("controller-dev1")).toBe("dev1");
    expect(nodeOfHubControllerBucket("controller")).toBeUndefined();
    expect(nodeOfHubControllerBucket("controller-1x")).toBeUndefined();
    expect(nodeOfHubControllerBucket("task-executor")).toBeUndefined();
  });

  it("refuses a name that is not one subject token starting with a letter, with a typed error naming it", () => {
    for (const bad of ["", "1x", "dev.1", "dev 1", "dev*", "dev>", "-x"]) {
      expect(isFleetNode(bad), bad).toBe(false);
      expect(() => hubControllerBucket(bad), bad).toThrow(InvalidFleetNodeError);
      expect(() => assertFleetNode(bad), bad).toThrow(`invalid node name ${JSON.stringify(bad)}`);
    }
  });
});

describe("the reply prefix of requests to a node's executor", () => {
  it("lies below the requester's inbox and names the node", () => {
    expect(nodeReplyPrefix("_INBOX_viewer", "dev1")).toBe("_INBOX_viewer.fleet.dev1");
    expect(nodeReplyPrefix("_INBOX", "local")).toBe("_INBOX.fleet.local");
  });
});
