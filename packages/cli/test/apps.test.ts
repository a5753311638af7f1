import { describe, expect, it } from "vitest";
import { UserError, describeApp, joinApps, matchApps, refersTo, resolveApp } from "../src/index.js";
import type { AppView } from "../src/index.js";
import { UUID, UUID2, app, config, running, stored } from "./fixtures.js";

const UUID3 = "6f1c9999-0000-4000-8000-000000000003";

function apps(): AppView[] {
  return [
    app(config({ displayName: "hello" }), running()),
    app(config({ uuid: UUID2, displayName: "twin" }), undefined),
    app(config({ uuid: UUID3, displayName: "twin" }), undefined),
  ];
}

describe("joinApps", () => {
  it("joins configs and statuses by uuid, keeps a status without config, sorts by name", () => {
    const orphan = running({ uuid: UUID2 });
    const joined = joinApps(
      new Map([[UUID, stored(config({ displayName: "zed" }))]]),
      new Map([
        [UUID, running()],
        [UUID2, orphan],
      ]),
    );
    expect(joined.map((a) => [a.uuid, a.config?.value.displayName, a.status?.state])).toEqual([
      [UUID2, undefined, "RUNNING"],
      [UUID, "zed", "RUNNING"],
    ]);
  });
});

describe("resolving <app>", () => {
  it("finds an app by uuid, by unique name and by unique uuid prefix", () => {
    expect(resolveApp(apps(), UUID).uuid).toBe(UUID);
    expect(resolveApp(apps(), "hello").uuid).toBe(UUID);
    expect(resolveApp(apps(), "7a2d").uuid).toBe(UUID2);
  });

  it("lists the candidates of an ambiguous name or prefix", () => {
    expect(() => resolveApp(apps(), "twin")).toThrow(UserError);
    expect(() => resolveApp(apps(), "twin")).toThrow(
      `"twin" is ambiguous: it names 2 apps: twin (${UUID2}), twin (${UUID3}); use the uuid`,
    );
    expect(() => resolveApp(apps(), "6f1c")).toThrow(/ambiguous.*hello \(6f1c1c1e.*twin \(6f1c9999/);
  });

  it("says which apps exist when the name is unknown", () => {
    expect(() => resolveApp(apps(), "nobody")).toThrow(
      `no app "nobody" (by uuid or name); apps: hello (${UUID}), twin (${UUID2}), twin (${UUID3})`,
    );
    expect(() => resolveApp([], "nobody")).toThrow('no app "nobody": there are no apps');
  });

  it("prefers an exact uuid over a name and a name over a prefix", () => {
    const tricky = [
      app(config({ displayName: "abcd" }), undefined),
      app(config({ uuid: "abcd0000-0000-4000-8000-000000000000", displayName: "x" }), undefined),
    ];
    expect(matchApps(tricky, "abcd").map((a) => a.uuid)).toEqual([UUID]);
  });

  it("does not treat a short or non-hex name as a uuid prefix", () => {
    expect(matchApps(apps(), "6f1")).toEqual([]);
    expect(refersTo("he", UUID, "hello")).toBe(false);
    expect(refersTo("hello", UUID, "hello")).toBe(true);
    expect(refersTo("6f1c1c1e", UUID, undefined)).toBe(true);
  });

  it("describes an app by name and uuid, or uuid alone", () => {
    expect(describeApp(UUID, "hello")).toBe(`hello (${UUID})`);
    expect(describeApp(UUID, undefined)).toBe(UUID);
  });
});
