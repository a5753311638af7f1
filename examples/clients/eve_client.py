#!/usr/bin/env python3
"""A client of eve-tasks in Python's standard library alone, speaking the NATS text protocol.

It applies the app of app.json under a fresh uuid, watches its TaskStatus until RUNNING, prints
its task events, deletes it and waits until its status is gone: what docs/contract.md says any
NATS client can do. Why no library: see README.md (nats-py is not in Debian 12).

    NATS_URL=nats://127.0.0.1:4222 NATS_USER=controller \\
    NATS_PASSWORD_FILE=.data/nats-credentials/controller.password python3 examples/clients/eve_client.py

NATS_PASSWORD may be given instead of NATS_PASSWORD_FILE; without NATS_USER it connects without
credentials. APP_FILE names another app config. Plain TCP only (a TLS server needs the ssl module
wrapped around the socket; not shown here).
"""

import json
import os
import secrets
import socket
import sys
import time
import uuid
from urllib.parse import urlparse

TIMEOUT_S = 90.0


def say(line):
    print(line, flush=True)


class NatsError(Exception):
    pass


class Msg:
    """A message the server delivered (MSG or HMSG)."""

    def __init__(self, subject, sid, reply, headers, status, data):
        self.subject = subject
        self.sid = sid
        self.reply = reply
        self.headers = headers  # dict of lists, names as sent
        self.status = status  # "503" etc. from a status line "NATS/1.0 503", else None
        self.data = data

    def header(self, name):
        values = self.headers.get(name) or []
        return values[0] if values else None


class Nats:
    """Just enough of a NATS client: CONNECT, SUB, PUB/HPUB, MSG/HMSG, PING/PONG."""

    def __init__(self, url, user=None, password=None, name="eve-tasks example (python)"):
        u = urlparse(url if "://" in url else "nats://" + url)
        if u.scheme not in ("nats", ""):
            raise NatsError("only nats:// URLs (plain TCP) are supported here, got " + url)
        self.sock = socket.create_connection((u.hostname or "127.0.0.1", u.port or 4222), timeout=10)
        self.buf = b""
        self.pending = []  # delivered messages not asked for yet
        self.next_sid = 0
        line = self._line()
        if not line.startswith(b"INFO "):
            raise NatsError("not a NATS server: " + line[:80].decode(errors="replace"))
        self.info = json.loads(line[5:])
        if self.info.get("tls_required"):
            raise NatsError("the server requires TLS: not supported by this example")
        options = {
            "verbose": False,
            "pedantic": False,
            "headers": True,
            "no_responders": True,
            "protocol": 1,
            "lang": "python-stdlib",
            "version": "1",
            "name": name,
        }
        if user:
            options["user"] = user
            options["pass"] = password or ""
        # The contract: a user may receive replies only under its own inbox prefix.
        self.inbox_prefix = "_INBOX_" + user if user else "_INBOX"
        self._send(b"CONNECT " + json.dumps(options).encode() + b"\r\nPING\r\n")
        self._until_pong()
        self.inbox = self.inbox_prefix + "." + secrets.token_hex(11)
        self.inbox_sid = self.subscribe(self.inbox + ".*")

    # -- wire ------------------------------------------------------------------------------

    def _send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no answer from the server in time")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no answer from the server in time") from None
        if not chunk:
            raise NatsError("the server closed the connection")
        self.buf += chunk

    def _line(self, deadline=None):
        deadline = deadline or time.monotonic() + 10
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _bytes(self, n, deadline):
        while len(self.buf) < n + 2:
            self._fill(deadline)
        data, self.buf = self.buf[:n], self.buf[n + 2 :]
        return data

    def _read(self, deadline):
        """The next message: ("MSG", msg), ("PONG", None), or None (+OK, INFO, a PING answered)."""
        line = self._line(deadline)
        op = line.split(b" ", 1)[0].upper()
        if op == b"PING":
            self._send(b"PONG\r\n")
            return None
        if op == b"PONG":
            return ("PONG", None)
        if op in (b"+OK", b"INFO"):
            return None
        if op == b"-ERR":
            raise NatsError(line[5:].decode(errors="replace").strip(" '"))
        if op == b"MSG":
            # MSG <subject> <sid> [reply-to] <#bytes>
            parts = line.decode().split(" ")
            subject, sid = parts[1], int(parts[2])
            reply = parts[3] if len(parts) == 5 else None
            data = self._bytes(int(parts[-1]), deadline)
            return ("MSG", Msg(subject, sid, reply, {}, None, data))
        if op == b"HMSG":
            # HMSG <subject> <sid> [reply-to] <#header bytes> <#total bytes>
            parts = line.decode().split(" ")
            subject, sid = parts[1], int(parts[2])
            reply = parts[3] if len(parts) == 6 else None
            header_len, total = int(parts[-2]), int(parts[-1])
            raw = self._bytes(total, deadline)
            headers, status = parse_headers(raw[:header_len])
            return ("MSG", Msg(subject, sid, reply, headers, status, raw[header_len:]))
        raise NatsError("unexpected from the server: " + line[:80].decode(errors="replace"))

    def _until_pong(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            r = self._read(deadline)
            if r is None:
                continue
            if r[0] == "PONG":
                return
            self.pending.append(r[1])

    # -- API -------------------------------------------------------------------------------

    def flush(self):
        """Round trip: everything sent before (SUBs included) has reached the server."""
        self._send(b"PING\r\n")
        self._until_pong()

    def subscribe(self, subject):
        self.next_sid += 1
        self._send(("SUB %s %d\r\n" % (subject, self.next_sid)).encode())
        return self.next_sid

    def publish(self, subject, data=b"", reply=None, headers=None):
        r = (" " + reply) if reply else ""
        if headers:
            h = b"NATS/1.0\r\n" + b"".join(("%s: %s\r\n" % (k, v)).encode() for k, v in headers.items()) + b"\r\n"
            self._send(("HPUB %s%s %d %d\r\n" % (subject, r, len(h), len(h) + len(data))).encode() + h + data + b"\r\n")
        else:
            self._send(("PUB %s%s %d\r\n" % (subject, r, len(data))).encode() + data + b"\r\n")

    def next_msg(self, match, timeout):
        """The first delivered message for which match(msg) holds; others stay pending."""
        for i, m in enumerate(self.pending):
            if match(m):
                return self.pending.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            r = self._read(deadline)
            if r is None or r[0] != "MSG":
                continue
            if match(r[1]):
                return r[1]
            self.pending.append(r[1])

    def request(self, subject, data=b"", headers=None, timeout=10.0):
        reply = self.inbox + "." + secrets.token_hex(6)
        self.publish(subject, data, reply=reply, headers=headers)
        m = self.next_msg(lambda m: m.subject == reply, timeout)
        if m.status == "503":
            raise NatsError("no responders on " + subject + " (is the bucket there?)")
        return m

    def take(self, sid):
        """Every pending message of subscription sid (already received), in order."""
        mine = [m for m in self.pending if m.sid == sid]
        self.pending = [m for m in self.pending if m.sid != sid]
        return mine

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def parse_headers(raw):
    """NATS headers: 'NATS/1.0[ status[ description]]' then 'Name: value' lines."""
    lines = raw.decode(errors="replace").split("\r\n")
    first = lines[0].split(" ", 2)
    status = first[1] if len(first) > 1 else None
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers.setdefault(name.strip(), []).append(value.strip())
    return headers, status


def js_ack(msg):
    """The JetStream publish acknowledgement: {"stream", "seq"} or {"error": {...}}."""
    ack = json.loads(msg.data or b"{}")
    if "error" in ack:
        raise NatsError("not stored: %s" % ack["error"].get("description", ack["error"]))
    return ack


def is_delete(msg):
    """A KV delete or purge: header KV-Operation DEL or PURGE, empty body."""
    return msg.header("KV-Operation") in ("DEL", "PURGE")


def main():
    url = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
    user = os.environ.get("NATS_USER")
    password = os.environ.get("NATS_PASSWORD")
    if password is None and os.environ.get("NATS_PASSWORD_FILE"):
        with open(os.environ["NATS_PASSWORD_FILE"]) as f:
            password = f.read().strip()
    app_file = os.environ.get("APP_FILE") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "app.json")

    nc = Nats(url, user, password)
    say("connected to %s%s" % (url, " as " + user if user else ""))
    with open(app_file) as f:
        app = json.load(f)
    app["uuid"] = str(uuid.uuid4())  # the key and the uuid field must be equal
    app_uuid = app["uuid"]
    say("app " + app_uuid)

    # Subscribe before applying, so nothing is missed. A plain subscription to a KV subject sees
    # changes only (which is all there is for a new app); events: from now on.
    status_subject = "$KV.task-executor.TaskStatus." + app_uuid
    status_sid = nc.subscribe(status_subject)
    events_sid = nc.subscribe("eve.events." + app_uuid)
    nc.flush()
    seen = []
    last = {"value": None}

    def show_events():
        for m in nc.take(events_sid):
            e = json.loads(m.data)
            seen.append(e["type"])
            say("event %s: %s" % (e["type"], e["message"]))

    def status_until(done, what):
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            try:
                m = nc.next_msg(lambda m: m.sid == status_sid, max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                say("timed out waiting for %s; last status %s" % (what, json.dumps(last["value"])))
                sys.exit(1)
            finally:
                show_events()
            value = None if is_delete(m) else json.loads(m.data)
            old = last["value"]
            if value is None:
                say("status %s: gone" % app_uuid)
            elif old is None or value["state"] != old["state"]:
                task = " task %d" % value["taskId"] if value.get("taskId") else ""
                say("status %s: %s%s" % (app_uuid, value["state"], task))
            if value and value.get("error"):
                say("error (%s): %s" % (value["error"]["source"], value["error"]["message"]))
            last["value"] = value
            if done(value):
                return value

    # Apply: a publish to the key's subject with a reply subject gets JetStream's acknowledgement.
    ack = js_ack(nc.request("$KV.controller.AppInstanceConfig." + app_uuid, json.dumps(app).encode()))
    say("applied at revision %d" % ack["seq"])
    running = status_until(lambda s: s is not None and s["state"] in ("RUNNING", "FAILED"), "RUNNING")
    if running["state"] != "RUNNING":
        say("the app did not run: " + running["state"])
        sys.exit(1)
    show_events()
    say(
        "RUNNING: anchor PID %d, memory limit %s bytes, log %s"
        % (running["taskId"], running["memoryLimitBytes"], running["logPath"])
    )

    # Delete: a message with header KV-Operation: DEL and an empty body, acknowledged too.
    js_ack(nc.request("$KV.controller.AppInstanceConfig." + app_uuid, b"", headers={"KV-Operation": "DEL"}))
    say("deleted the config")
    status_until(lambda s: s is None, "the status to go")
    # The last events (exited, deleted) may come a moment after the status.
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        try:
            nc.next_msg(lambda m: False, end - time.monotonic())
        except TimeoutError:
            break
    show_events()
    say("events seen: " + ", ".join(seen))
    nc.close()
    say("done")


if __name__ == "__main__":
    try:
        main()
    except (NatsError, OSError) as err:
        say("error: %s" % err)
        sys.exit(1)
