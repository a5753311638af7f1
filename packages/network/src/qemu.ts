/** What qemu needs for a VM's interfaces: its `-netdev tap` and virtio NIC arguments (pure). */
import { existsSync } from "node:fs";

/** Whether the host has vhost-net (`/dev/vhost-net`); qemu uses it only then. */
export function vhostNetAvailable(): boolean {
  return existsSync("/dev/vhost-net");
}

/**
 * qemu arguments for a VM interface: a tap netdev on `tap` (opened by name inside the task's
 * netns, no scripts) and a virtio-net NIC with `mac`.
 */
export function qemuNetArgs(index: number, tap: string, mac: string, vhost: boolean): string[] {
  return [
    "-netdev",
    `tap,id=net${index},ifname=${tap},script=no,downscript=no,vhost=${vhost ? "on" : "off"}`,
    "-device",
    `virtio-net-pci,netdev=net${index},mac=${mac}`,
  ];
}
