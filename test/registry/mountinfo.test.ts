// Which seeds live overlay mounts use, from mountinfo text (pure), and SeedStore.gc keeping them.
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { lowerDirs, overlayLowerDirs, seedsInUse } from "@eve-tasks/registry";

const HEX = "a".repeat(64);
const OTHER = "b".repeat(64);

describe("mountinfo", () => {
  it("finds every overlay's lower dirs, unescaped, and only overlays'", () => {
    const text = [
      "25 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard",
      `50 26 0:44 / /run/x/rootfs rw,relatime - overlay overlay rw,lowerdir=/data/seeds/${HEX}/rootfs,upperdir=/data/tasks/u/overlay/upper,workdir=/data/tasks/u/overlay/work,uuid=on`,
      "51 26 0:45 / /mnt rw - overlay overlay rw,lowerdir=/tmp/lo\\040w\\134\\0541:/tmp/l2,upperdir=/u,workdir=/w",
      `52 26 0:46 / /mnt2 rw - tmpfs tmpfs rw,lowerdir=/data/seeds/${OTHER}/rootfs`,
      "",
    ].join("\n");
    expect(overlayLowerDirs(text)).toEqual([`/data/seeds/${HEX}/rootfs`, "/tmp/lo w,1", "/tmp/l2"]);
    expect(lowerDirs("/a\\:b:/c::/d")).toEqual(["/a:b", "/c", "/d"]);
    expect([...seedsInUse(text, "/data/seeds")]).toEqual([HEX]);
    expect([...seedsInUse(text, "/data/seeds/")]).toEqual([HEX]);
    expect([...seedsInUse(text, join("/other", "seeds"))]).toEqual([]);
  });
});
