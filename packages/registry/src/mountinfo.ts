/**
 * Which seeds live overlay mounts use: a seed whose rootfs is a `lowerdir` of an overlay in
 * `/proc/<pid>/mountinfo` is the root of a running task (containerd's shim mounts a task's
 * rootfs from Tasks.Create until Tasks.Delete), whatever the configs say now. The parsing is
 * pure; reading the files is the caller's.
 */

/** Undoes mountinfo's octal escapes (`\040` space, `\054` comma, `\134` backslash, …). */
function unoctal(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

/** The layers of an overlay `lowerdir=` value: `:`-separated, `\:` and `\\` escaped. */
export function lowerDirs(value: string): string[] {
  const out: string[] = [];
  let cur = "";
  for (let i = 0; i < value.length; i++) {
    const c = value[i] as string;
    if (c === "\\" && i + 1 < value.length) {
      cur += value[++i];
      continue;
    }
    if (c === ":") {
      if (cur !== "") out.push(cur);
      cur = "";
      continue;
    }
    cur += c;
  }
  if (cur !== "") out.push(cur);
  return out;
}

/** Every lower dir of every overlay mount in a mountinfo text. */
export function overlayLowerDirs(mountinfo: string): string[] {
  const out: string[] = [];
  for (const line of mountinfo.split("\n")) {
    const sep = line.indexOf(" - ");
    if (sep < 0) continue;
    const [fstype, , superOptions = ""] = line.slice(sep + 3).split(" ");
    if (fstype !== "overlay") continue;
    // Commas inside values are escaped (\054), so a raw comma separates options.
    for (const opt of superOptions.split(",")) {
      const m = /^lowerdir\+?=(.*)$/.exec(opt);
      if (m) out.push(...lowerDirs(unoctal(m[1] ?? "")));
    }
  }
  return out;
}

/**
 * The seeds (directory names under `seedsDir`, which must be the real path) that overlay mounts
 * in `mountinfo` use as a lower dir, the seed's rootfs or anything inside it.
 */
export function seedsInUse(mountinfo: string, seedsDir: string): Set<string> {
  const prefix = seedsDir.endsWith("/") ? seedsDir : `${seedsDir}/`;
  const used = new Set<string>();
  for (const dir of overlayLowerDirs(mountinfo)) {
    if (!dir.startsWith(prefix)) continue;
    const name = dir.slice(prefix.length).split("/")[0];
    if (name) used.add(name);
  }
  return used;
}
