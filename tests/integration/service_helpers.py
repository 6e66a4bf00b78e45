"""Helpers for test_service.py: a daemon started with a chosen environment
or under systemd-socket-activate, a stand-in for systemd's NOTIFY_SOCKET, a
STATUS query that decodes the STATUS_ROW frames, and a client run as
another user.

Run as a script (`service_helpers.py probe SOCKET WAIT`), this file is that
other user's client: it connects, sends GET_RESPONSE, and prints the first
frame it gets back as JSON.  The script part uses the standard library
only, so it works under any uid that can read this file.
"""

import json
import os
import socket
import struct
import subprocess
import sys
import time

from daemon import Daemon, DaemonError, daemon_path, wait_for_socket

SYSTEM_PYTHON = "/usr/bin/python3"

OP_GET_RESPONSE = 0x07
OP_STATUS = 0x0a
OP_REPLY = 0x80
OP_ERROR = 0x81
OP_STATUS_ROW = 0x82

# Fields of a STATUS_ROW frame, in order, with their wire types.
STATUS_ROW_FIELDS = [("server", "str"), ("drivers", "str"),
                     ("idle", "i32"), ("busy", "i32"), ("opening", "i32"),
                     ("waiting", "i32"), ("sent", "i64"), ("errors", "i64"),
                     ("oldest_age", "i64")]

# Names of the daemon totals in the REPLY to STATUS, in order.
STATUS_TOTALS = ["sessions", "keys", "idle", "busy", "opening", "waiting",
                 "opened", "reused", "sent", "errors", "uptime", "version"]

# Environment variables through which systemd talks to a service; the
# daemon must see only those a test sets.
SYSTEMD_VARIABLES = ("LISTEN_", "NOTIFY_", "WATCHDOG_")

# Sanitizer settings handed on to a daemon run under
# systemd-socket-activate, which passes no other variable by itself.
SANITIZER_VARIABLES = ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS")


# ---- Frames -----------------------------------------------------------

def encode_frame(op, fields=()):
    """Build one protocol version 1 frame of byte-string fields."""
    payload = b"".join(struct.pack(">I", len(f)) + f for f in fields)
    return b"SP" + bytes([1, op]) + struct.pack(">I", len(payload)) + payload


def split_fields(payload):
    """Split a frame payload into its fields; raise ValueError when a
    field length runs past the end."""
    fields = []
    offset = 0
    while offset < len(payload):
        if len(payload) - offset < 4:
            raise ValueError("payload ends inside a field length")
        (length,) = struct.unpack_from(">I", payload, offset)
        offset += 4
        if length > len(payload) - offset:
            raise ValueError("field %d declares %d bytes, %d remain"
                             % (len(fields), length, len(payload) - offset))
        fields.append(payload[offset:offset + length])
        offset += length
    return fields


def receive_exactly(sock, count):
    """Read count bytes; return fewer only when the peer closed."""
    data = bytearray()
    while len(data) < count:
        piece = sock.recv(count - len(data))
        if not piece:
            break
        data += piece
    return bytes(data)


def read_frame(sock):
    """Read one frame.  Return (op, payload, raw bytes), or None when the
    daemon closed the connection before a whole frame came."""
    header = receive_exactly(sock, 8)
    if len(header) < 8:
        return None
    if header[0:2] != b"SP" or header[2] != 1:
        raise ValueError("frame header %r is not SP version 1" % header)
    (length,) = struct.unpack_from(">I", header, 4)
    payload = receive_exactly(sock, length)
    if len(payload) < length:
        return None
    return header[3], payload, header + payload


def decode_reply_fields(fields):
    """Return status, SMTP code, enhanced code, message and extras of a
    REPLY or ERROR frame as a dict."""
    if len(fields) < 4:
        raise ValueError("reply has %d fields, expected at least 4"
                         % len(fields))
    return {"status": struct.unpack(">i", fields[0])[0],
            "smtp_code": struct.unpack(">i", fields[1])[0],
            "enhanced": fields[2].decode("utf-8", "replace"),
            "message": fields[3].decode("utf-8", "replace"),
            "extras": [f.decode("utf-8", "replace") for f in fields[4:]]}


def decode_status_row(payload):
    """Decode a STATUS_ROW payload into a dict named by STATUS_ROW_FIELDS."""
    fields = split_fields(payload)
    if len(fields) != len(STATUS_ROW_FIELDS):
        raise ValueError("STATUS_ROW has %d fields, expected %d"
                         % (len(fields), len(STATUS_ROW_FIELDS)))
    row = {}
    for (name, kind), data in zip(STATUS_ROW_FIELDS, fields):
        if kind == "str":
            row[name] = data.decode("utf-8", "replace")
        elif kind == "i32":
            if len(data) != 4:
                raise ValueError("%s is %d bytes, expected 4"
                                 % (name, len(data)))
            row[name] = struct.unpack(">i", data)[0]
        else:
            if len(data) != 8:
                raise ValueError("%s is %d bytes, expected 8"
                                 % (name, len(data)))
            row[name] = struct.unpack(">q", data)[0]
    return row


class StatusResult:
    """Result of one STATUS request: its rows, totals and raw bytes."""

    def __init__(self, rows, reply, raw):
        self.rows = rows      # one dict per pool key
        self.reply = reply    # the closing REPLY, as decode_reply_fields
        self.raw = raw        # every byte received, for secret checks
        self.totals = {}
        for extra in reply["extras"]:
            name, _, value = extra.partition("=")
            self.totals[name] = value

    def row(self, server):
        """Return the rows whose connection string is server."""
        return [r for r in self.rows if r["server"] == server]


def query_status(path, timeout=30, max_rows=1000):
    """Send STATUS on a new connection to path and read the STATUS_ROW
    frames and the REPLY.  Raises ValueError on an unexpected frame or
    when the daemon hangs up early."""
    rows = []
    raw = bytearray()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(encode_frame(OP_STATUS))
        for _ in range(max_rows + 1):
            frame = read_frame(sock)
            if frame is None:
                raise ValueError("daemon closed the connection during "
                                 "STATUS after %d rows" % len(rows))
            op, payload, data = frame
            raw += data
            if op == OP_STATUS_ROW:
                rows.append(decode_status_row(payload))
            elif op == OP_REPLY:
                reply = decode_reply_fields(split_fields(payload))
                return StatusResult(rows, reply, bytes(raw))
            else:
                raise ValueError("unexpected opcode 0x%02x in the reply "
                                 "to STATUS: %r" % (op, payload[:200]))
    raise ValueError("more than %d STATUS_ROW frames" % max_rows)


# ---- Daemon with its own environment ------------------------------------

def service_environment(**variables):
    """Return this process's environment without the systemd variables,
    plus the given ones."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(SYSTEMD_VARIABLES)}
    env.update({k: str(v) for k, v in variables.items()})
    return env


class ServiceDaemon(Daemon):
    """smtpoold started with a chosen environment, optionally under
    systemd-socket-activate (activate=PATH of that program)."""

    def __init__(self, folder, config=None, env=None, activate=None):
        super().__init__(folder, config=config)
        self.env = env if env is not None else service_environment()
        self.activate = activate

    def command(self):
        argv = [daemon_path(), "-c", self.config_path] + self.args
        if self.activate is None:
            return argv
        prefix = [self.activate, "-l", self.socket]
        for name in SANITIZER_VARIABLES:
            if name in self.env:
                prefix += ["-E", "%s=%s" % (name, self.env[name])]
        return prefix + argv

    def start(self):
        if not os.access(daemon_path(), os.X_OK):
            raise DaemonError("%s not found: build the project first"
                              % daemon_path())
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), env=self.env,
                                         stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log)
        # Under systemd-socket-activate this first connection is what
        # makes it exec the daemon.
        problem = wait_for_socket(self.socket, self.proc)
        if problem is None:
            problem = self.wait_log("daemon.ready", 15)
        if problem:
            self.kill()
            raise DaemonError("smtpoold %s; log:\n%s"
                              % (problem, self.log_text()[-3000:]))
        return self

    def wait_log(self, text, timeout):
        """Wait until text shows in the log.  Returns None, or a message
        saying why it did not."""
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            if self.proc.poll() is not None:
                return "exited with status %d before logging %s" % (
                    self.proc.returncode, text)
            if time.monotonic() >= deadline:
                return "did not log %s within %.0f s" % (text, timeout)
            time.sleep(0.05)
        return None

    def log_lines(self, text):
        """Return the log lines that contain text."""
        return [line for line in self.log_text().splitlines()
                if text in line]


# ---- NOTIFY_SOCKET --------------------------------------------------------

class NotifyListener:
    """A datagram socket in place of systemd's NOTIFY_SOCKET that keeps
    every line received, in order, with its arrival time."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.lines = []  # (time.monotonic(), "KEY=VALUE")

    def close(self):
        self.sock.close()

    def receive(self, timeout):
        """Take the datagrams that arrive within timeout seconds; return
        after the first one, or when the time is up."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return
        now = time.monotonic()
        for line in data.decode("utf-8", "replace").splitlines():
            self.lines.append((now, line))

    def wait_for(self, match, timeout, start=0):
        """Return the index of the first line from index start on for which
        match(line) is true (a str is a prefix), waiting up to timeout
        seconds; None when none came."""
        if isinstance(match, str):
            prefix = match
            match = lambda line: line.startswith(prefix)  # noqa: E731
        deadline = time.monotonic() + timeout
        checked = start
        while True:
            for index in range(checked, len(self.lines)):
                if match(self.lines[index][1]):
                    return index
            checked = max(checked, len(self.lines))
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.receive(left)

    def collect(self, seconds):
        """Receive for the given number of seconds."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.receive(left)

    def text(self):
        return "\n".join(line for _, line in self.lines)


# ---- Client run as another user -------------------------------------------

def run_probe_as(path, uid, gid, groups=(), wait_close=0, timeout=30):
    """Run this file's probe as uid/gid with the given supplementary groups
    and return its JSON result (a dict), or raise RuntimeError with its
    output.  The caller must be root."""

    def drop_privileges():
        os.setgroups(list(groups))
        os.setgid(gid)
        os.setuid(uid)

    result = subprocess.run(
        [SYSTEM_PYTHON, os.path.abspath(__file__), "probe", path,
         str(wait_close)],
        cwd="/", stdin=subprocess.DEVNULL, capture_output=True,
        timeout=timeout, preexec_fn=drop_privileges)
    try:
        return json.loads(result.stdout.decode())
    except ValueError:
        raise RuntimeError("probe exited %d: %s %s" % (
            result.returncode, result.stdout.decode(errors="replace"),
            result.stderr.decode(errors="replace")))


def probe_main(argv):
    """Connect to argv[0], send GET_RESPONSE, print the first frame as
    JSON, and with argv[1] > 0 also whether the daemon closed the
    connection within that many seconds."""
    path, wait_close = argv[0], float(argv[1])
    out = {"uid": os.getuid(), "gid": os.getgid()}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(20)
        try:
            sock.connect(path)
        except OSError as e:
            out["connect_error"] = str(e)
            print(json.dumps(out))
            return 0
        try:
            sock.sendall(encode_frame(OP_GET_RESPONSE),
                         getattr(socket, "MSG_NOSIGNAL", 0))
        except OSError as e:
            # A refused client may find the connection closed already;
            # the ERROR frame is still waiting to be read.
            out["send_error"] = str(e)
        frame = read_frame(sock)
        if frame is None:
            out["op"] = None
        else:
            out["op"] = frame[0]
            out.update(decode_reply_fields(split_fields(frame[1])))
        if wait_close > 0:
            sock.settimeout(wait_close)
            try:
                out["closed"] = sock.recv(1) == b""
            except socket.timeout:
                out["closed"] = False
            except ConnectionResetError:
                out["closed"] = True
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "probe":
        sys.exit(probe_main(sys.argv[2:]))
    print("usage: service_helpers.py probe SOCKET WAIT_CLOSE_SECONDS",
          file=sys.stderr)
    sys.exit(64)
