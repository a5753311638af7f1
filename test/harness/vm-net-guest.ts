// The test guest with a network: the guest of vm-guest.ts (Debian's kernel, a busybox initramfs)
// with a second newc archive appended to its initramfs (the kernel unpacks both, the later
// entries winning) that carries Debian's virtio_net and the modules it needs (all modules in
// Debian's kernel: CONFIG_VIRTIO, CONFIG_VIRTIO_PCI, CONFIG_VIRTIO_NET, CONFIG_NET_FAILOVER and
// CONFIG_FAILOVER are =m) and an /init that gets eth0's address by DHCP (busybox udhcpc) and
// serves a marker with busybox httpd on port 80. The modules come from the same kernel package
// as the guest's kernel (apt-get download), cached next to the guest's cache directory.
import { execFile } from "node:child_process";
import {
  access,
  chmod,
  copyFile,
  mkdir,
  readdir,
  readFile,
  rename,
  rm,
  symlink,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { tempDir } from "./cleanup.js";
import { ensureVmGuest, vmGuestCacheDir } from "./vm-guest.js";

const execFileAsync = promisify(execFile);

/** The modules virtio_net needs, in load order (paths under lib/modules/<release>/). */
export const VM_NET_MODULES = [
  "kernel/drivers/virtio/virtio_ring.ko",
  "kernel/drivers/virtio/virtio.ko",
  "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
  "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
  "kernel/drivers/virtio/virtio_pci.ko",
  "kernel/net/core/failover.ko",
  "kernel/drivers/net/net_failover.ko",
  "kernel/drivers/net/virtio_net.ko",
] as const;

/** Printed on the console once eth0 has its address: `EVE-TASKS-GUEST-NET-UP <ip>/<prefix>`. */
export const VM_NET_UP_MARKER = "EVE-TASKS-GUEST-NET-UP";
/** What the guest's httpd serves at `/`: `<VM_HTTP_MARKER> <ip>`. */
export const VM_HTTP_MARKER = "eve-tasks-guest-http";

/** A guest with a network, its files in the directory the caller gave. */
export interface VmNetGuest {
  kernelPath: string;
  initrdPath: string;
  cmdline: string;
}

const base = (m: string) => m.slice(m.lastIndexOf("/") + 1);

/** The modules of the guest's kernel package, downloaded once into the cache. */
async function ensureModules(kernelPackage: string, kernelVersion: string): Promise<string> {
  const dir = `${vmGuestCacheDir()}-net-modules`;
  const id = `${kernelPackage} ${kernelVersion}`;
  const ready = await readFile(join(dir, "kernel.version"), "utf8").then(
    (t) => t.trim() === id,
    () => false,
  );
  if (ready) return dir;
  const tmp = await tempDir("vm-net-modules-");
  await execFileAsync(
    "apt-get",
    ["-q", "download", "-o", "APT::Sandbox::User=root", `${kernelPackage}=${kernelVersion}`],
    {
      cwd: tmp,
      timeout: 10 * 60_000,
    },
  );
  const debs = (await readdir(tmp)).filter((f) => f.endsWith(".deb"));
  if (debs.length !== 1) throw new Error(`apt-get download ${id} left ${debs.length} .deb files in ${tmp}`);
  // Exactly the modules, from the package's one release directory.
  await execFileAsync(
    "sh",
    ["-c", 'd=$1 t=$2; shift 2; dpkg-deb --fsys-tarfile "$d" | tar -x -C "$t" --wildcards "$@"', "sh"].concat(
      join(tmp, debs[0]!),
      tmp,
      VM_NET_MODULES.map((m) => `./lib/modules/*/${m}`),
    ),
    { timeout: 5 * 60_000 },
  );
  // Staged next to the cache (one filesystem), then renamed into place whole.
  const staged = `${dir}.tmp-${process.pid}`;
  await rm(staged, { recursive: true, force: true });
  await mkdir(staged);
  const [release] = await readdir(join(tmp, "lib", "modules"));
  for (const m of VM_NET_MODULES)
    await copyFile(join(tmp, "lib", "modules", release!, m), join(staged, base(m)));
  await writeFile(join(staged, "kernel.version"), `${id}\n`);
  // Whole or not at all: a concurrent run renames its own copy into place.
  await rm(dir, { recursive: true, force: true });
  await rename(staged, dir).catch(async (err: unknown) => {
    // A concurrent run put its copy there first.
    await rm(staged, { recursive: true, force: true });
    if (
      !(await access(join(dir, "kernel.version")).then(
        () => true,
        () => false,
      ))
    )
      throw err;
  });
  return dir;
}

function guestInit(modules: readonly string[]): string {
  return `#!/bin/sh
# /init of the eve-tasks network test guest (test/harness/vm-net-guest.ts).
export PATH=/bin
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
for m in ${modules.join(" ")}; do
  insmod /lib/modules/net/$m.ko || echo "eve-tasks-guest: insmod $m failed"
done
ip link set lo up
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
ip link set eth0 up
# Until an address comes: the instance's dnsmasq may start after the guest.
until udhcpc -i eth0 -f -q -n -t 5 -T 2 -s /etc/udhcpc.sh; do sleep 1; done
ip=$(cat /run/ip)
mkdir -p /www
echo "${VM_HTTP_MARKER} \${ip%/*}" > /www/index.html
httpd -p 80 -h /www
echo "${VM_NET_UP_MARKER} $ip"
# The ACPI power button, as the base guest: a stop by QMP system_powerdown powers off.
if insmod /lib/modules/evdev.ko && insmod /lib/modules/button.ko; then
  acpid -f -c /etc/acpi -l /dev/null -p /run/acpid.pid &
fi
while true; do sleep 3600; done
`;
}

const UDHCPC_SCRIPT = `#!/bin/sh
case "$1" in
  bound | renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route add default via "\${router%% *}" dev "$interface"
    echo "$ip/$mask" > /run/ip
    ;;
esac
`;

/**
 * Writes the network guest into `outDir`: a copy of the guest's kernel and its initramfs with
 * the network archive appended.
 */
export async function makeVmNetGuest(outDir: string): Promise<VmNetGuest> {
  const guest = await ensureVmGuest();
  const modules = await ensureModules(guest.kernelPackage, guest.kernelVersion);
  const root = await tempDir("vm-net-initrd-");
  await mkdir(join(root, "lib", "modules", "net"), { recursive: true });
  await mkdir(join(root, "bin"));
  await mkdir(join(root, "etc"));
  for (const m of VM_NET_MODULES)
    await copyFile(join(modules, base(m)), join(root, "lib", "modules", "net", base(m)));
  // Applets the base archive does not link (its /bin/busybox is the static busybox).
  for (const applet of ["udhcpc", "ip", "httpd", "mkdir"])
    await symlink("busybox", join(root, "bin", applet));
  await writeFile(join(root, "init"), guestInit(VM_NET_MODULES.map((m) => base(m).replace(/\.ko$/, ""))));
  await writeFile(join(root, "etc", "udhcpc.sh"), UDHCPC_SCRIPT);
  await chmod(join(root, "init"), 0o755);
  await chmod(join(root, "etc", "udhcpc.sh"), 0o755);
  await mkdir(outDir, { recursive: true });
  const overlay = join(outDir, ".net-archive.cpio.gz");
  await execFileAsync(
    "sh",
    [
      "-c",
      'cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -9n > "$2"',
      "sh",
      root,
      overlay,
    ],
    { timeout: 60_000 },
  );
  const initrdPath = join(outDir, "initrd-net.img");
  await writeFile(initrdPath, Buffer.concat([await readFile(guest.initrdPath), await readFile(overlay)]));
  await rm(overlay, { force: true });
  const kernelPath = join(outDir, "vmlinuz");
  await copyFile(guest.kernelPath, kernelPath);
  return { kernelPath, initrdPath, cmdline: guest.cmdline };
}
