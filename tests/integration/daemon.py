"""Daemon fixture: writes a YAML configuration into a private folder, starts
the built smtpoold on a private socket, and stops it with SIGTERM.

The build folder comes from SMTPOOL_BUILD (default ./build).  The daemon's
stderr goes to a log file whose text the tests read (log_text()), for
example to check that no password appears in it.
"""

import json
import os
import signal
import socket
import subprocess
import time

START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0

# Lines a sanitizer prints when it finds an error in the daemon.
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
    "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer")


class DaemonError(Exception):
    """The daemon did not start or did not stop as expected."""


def build_dir():
    return os.path.abspath(os.environ.get("SMTPOOL_BUILD", "build"))


def daemon_path():
    return os.path.join(build_dir(), "daemon", "smtpoold")


def cli_path():
    return os.path.join(build_dir(), "client", "smtpool")


def yaml_scalar(value):
    if value is True:
        return "yes"
    if value is False:
        return "no"
    if isinstance(value, int):
        return str(value)
    # A JSON string is a valid YAML double-quoted scalar.
    return json.dumps(str(value))


def yaml_dump(data, indent=0):
    """Render nested dicts, lists and scalars as block-style YAML."""
    pad = "  " * indent
    lines = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append("%s%s:" % (pad, key))
            lines.append(yaml_dump(value, indent + 1))
        elif isinstance(value, (list, tuple)):
            items = ", ".join(yaml_scalar(v) for v in value)
            lines.append("%s%s: [%s]" % (pad, key, items))
        else:
            lines.append("%s%s: %s" % (pad, key, yaml_scalar(value)))
    return "\n".join(line for line in lines if line)


def merge(base, extra):
    """Merge extra into base recursively; a None value deletes a key."""
    for key, value in extra.items():
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def default_config(folder, ca_certificate=None):
    """Configuration with short timeouts and a private socket."""
    config = {
        "socket": {"path": os.path.join(folder, "smtpool.sock"),
            "mode": "0600"},
        "log": {"level": "debug"},
        "helo_name": "smtpool.test",
        "max_clients": 64,
        "spool": {"memory_limit": 1048576,
            "directory": folder},
        "pool": {"max_connections_per_key": 4, "idle_timeout": 30,
            "max_messages_per_connection": 100,
            "max_connection_age": 600, "wait_timeout": 10},
        "timeouts": {"connect": 5, "greeting": 5, "helo": 5,
            "mail": 5, "rcpt": 5, "data_init": 5, "data_block": 5,
            "data_done": 10, "rset": 5, "quit": 2},
    }
    if ca_certificate:
        config["tls"] = {"default": {"verify_server": True,
            "ca_certificate": ca_certificate}}
    return config


def wait_for_socket(path, proc, timeout=START_TIMEOUT):
    """Wait until the Unix socket at path accepts a connection.  Returns
    None, or a message saying why it did not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return "exited with status %d before its socket " \
                "was ready" % proc.returncode
        if os.path.exists(path):
            with socket.socket(socket.AF_UNIX,
                socket.SOCK_STREAM) as s:
                try:
                    s.connect(path)
                    return None
                except OSError:
                    pass
        time.sleep(0.05)
    return "socket %s not accepting after %.0f s" % (path, timeout)


class Daemon:
    """One smtpoold process with its own configuration and socket."""

    def __init__(self, folder, config=None, ca_certificate=None,
        args=()):
        self.folder = folder
        self.config = merge(default_config(folder, ca_certificate),
            config or {})
        self.socket = self.config["socket"]["path"]
        self.config_path = os.path.join(folder, "smtpoold.yaml")
        with open(self.config_path, "w", encoding="utf-8") as f:
            f.write(yaml_dump(self.config) + "\n")
        self.log_path = os.path.join(folder, "smtpoold.log")
        self.args = list(args)
        self.proc = None

    def start(self):
        path = daemon_path()
        if not os.access(path, os.X_OK):
            raise DaemonError("%s not found: build the project "
                "first (meson compile -C %s)" % (path, build_dir()))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [path, "-c", self.config_path] + self.args,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        problem = wait_for_socket(self.socket, self.proc)
        if problem:
            self.kill()
            raise DaemonError("smtpoold %s; log:\n%s"
                % (problem, self.log_text()[-3000:]))
        return self

    def log_text(self):
        try:
            with open(self.log_path, encoding="utf-8",
                errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def sanitizer_report(self):
        """Return the sanitizer error lines of the log, if any."""
        return [line for line in self.log_text().splitlines()
            if any(mark in line for mark in SANITIZER_MARKS)]

    def stop(self):
        """Send SIGTERM and return the exit status (None if the
        daemon had to be killed)."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)
