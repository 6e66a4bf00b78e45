"""The systemd units, sysusers.d and tmpfiles.d files, and the man pages.

The units checked are the ones meson configured into $SMTPOOL_BUILD/systemd/
(default ./build).  systemd-analyze and systemd-sysusers work without
systemd running as PID 1, so these tests run in a container too.  The
last class starts the built daemon the way smtpoold.socket and
smtpoold.service do (an inherited listening socket, NOTIFY_SOCKET and
WATCHDOG_USEC) and checks the notifications the unit relies on.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))  # tests/, for smtpool_client

import smtpool_client  # noqa: E402

COMMAND_TIMEOUT = 60  # seconds for one systemd-analyze or sysusers run

# Directives of smtpoold.service that confine the daemon, with the value
# each must have.
HARDENING = [
    ("NoNewPrivileges", "yes"),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("PrivateTmp", "yes"),
    ("PrivateDevices", "yes"),
    ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
    ("CapabilityBoundingSet", ""),
    ("SystemCallFilter", "@system-service"),
    ("SystemCallArchitectures", "native"),
    ("MemoryDenyWriteExecute", "yes"),
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectControlGroups", "yes"),
    ("ProtectClock", "yes"),
    ("ProtectHostname", "yes"),
    ("RestrictNamespaces", "yes"),
    ("RestrictRealtime", "yes"),
    ("RestrictSUIDSGID", "yes"),
    ("LockPersonality", "yes"),
    ("UMask", "0077"),
]

# Settings of smtpoold.service that the daemon's behaviour depends on.
SERVICE_SETTINGS = [
    ("Unit", "Requires", "smtpoold.socket"),
    ("Unit", "After", "smtpoold.socket"),
    ("Service", "Type", "notify"),
    ("Service", "ExecReload", "/bin/kill -HUP $MAINPID"),
    ("Service", "WatchdogSec", "30s"),
    ("Service", "Restart", "on-failure"),
    ("Service", "User", "smtpool"),
    ("Service", "Group", "smtpool"),
    ("Service", "RuntimeDirectory", "smtpool"),
    ("Service", "RuntimeDirectoryPreserve", "yes"),
    ("Install", "Also", "smtpoold.socket"),
]

SOCKET_SETTINGS = [
    ("Socket", "ListenStream", "/run/smtpool/smtpool.sock"),
    ("Socket", "SocketMode", "0660"),
    ("Socket", "SocketUser", "smtpool"),
    ("Socket", "SocketGroup", "smtpool"),
    ("Socket", "RemoveOnStop", "yes"),
    ("Install", "WantedBy", "sockets.target"),
]

# Highest exposure "systemd-analyze security" may give the service, in
# tenths: systemd 252 rates the unit 1.6, and 10.0 means unconfined.
MAX_EXPOSURE = 20

MAN_PAGES = ["smtpoold.8", "smtpool.1", "smtpoold.yaml.5"]


def build_dir():
    return os.path.abspath(os.environ.get("SMTPOOL_BUILD", "build"))


def daemon_path():
    return os.path.join(build_dir(), "daemon", "smtpoold")


def read_unit(path):
    """Parse a unit file into {section: {key: [value, ...]}}.

    Values of a key given twice are kept in order, as systemd adds most
    list settings up.  Comments and blank lines are skipped.
    """
    sections = {}
    current = None
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                current = sections.setdefault(line[1:-1], {})
                continue
            if current is None or "=" not in line:
                raise ValueError("%s:%d: not a section or key=value: %r"
                                 % (path, number, line))
            key, value = line.split("=", 1)
            current.setdefault(key.strip(), []).append(value.strip())
    return sections


def run(argv, **kwargs):
    return subprocess.run(argv, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT, **kwargs)


def require_tool(test, name):
    path = shutil.which(name)
    if path is None:
        test.skipTest("%s is not installed (Debian package systemd)" % name)
    return path


class UnitFilesTest(unittest.TestCase):
    """The configured units: syntax, settings and sandbox."""

    def setUp(self):
        self.units = os.path.join(build_dir(), "systemd")
        self.service = os.path.join(self.units, "smtpoold.service")
        self.socket = os.path.join(self.units, "smtpoold.socket")
        self.folder = tempfile.mkdtemp(prefix="spu-")
        self.addCleanup(shutil.rmtree, self.folder, ignore_errors=True)

    def copy_units(self):
        """Copy both units into the test folder, with ExecStart pointing
        at the built daemon, because systemd-analyze verify checks that
        the program exists.  Return the two copies."""
        self.assertTrue(os.access(daemon_path(), os.X_OK),
                        "%s is missing; build smtpoold first"
                        % daemon_path())
        with open(self.service, encoding="utf-8") as f:
            text = f.read()
        text, count = re.subn(r"^ExecStart=\S+", "ExecStart=" + daemon_path(),
                              text, flags=re.MULTILINE)
        self.assertEqual(count, 1, "one ExecStart= line expected")
        service = os.path.join(self.folder, "smtpoold.service")
        with open(service, "w", encoding="utf-8") as f:
            f.write(text)
        socket_unit = os.path.join(self.folder, "smtpoold.socket")
        shutil.copyfile(self.socket, socket_unit)
        return service, socket_unit

    def verify(self, *options, env=None):
        analyze = require_tool(self, "systemd-analyze")
        service, socket_unit = self.copy_units()
        result = run([analyze, "verify"] + list(options) +
                     [socket_unit, service], env=env)
        self.assertEqual(result.returncode, 0, result.stderr)
        # verify exits 0 after warnings such as an unknown key or value,
        # so any output counts as a failure.
        self.assertEqual(result.stderr.strip(), "")
        self.assertEqual(result.stdout.strip(), "")

    def test_units_configured(self):
        for path in (self.service, self.socket):
            with self.subTest(unit=os.path.basename(path)):
                self.assertTrue(os.path.isfile(path), path)
                with open(path, encoding="utf-8") as f:
                    self.assertNotRegex(f.read(), r"@[a-z_]+@",
                                        "unsubstituted variable")

    def test_exec_start_uses_sbindir(self):
        service = read_unit(self.service)["Service"]
        self.assertEqual(len(service["ExecStart"]), 1)
        self.assertRegex(service["ExecStart"][0], r"^/\S*/smtpoold$")

    def test_units_verify_cleanly(self):
        self.verify("--man=no")

    def test_documentation_pages_exist(self):
        man_dir = os.path.join(build_dir(), "man")
        built = [os.path.join(man_dir, page) for page in MAN_PAGES]
        if not all(os.path.isfile(page) for page in built):
            self.skipTest("man pages not built (scdoc missing or -Dman="
                          "disabled)")
        require_tool(self, "man")
        # man(1) finds the pages in a MANPATH laid out as manN/NAME.N.
        man_path = os.path.join(self.folder, "man")
        for page in built:
            section_dir = os.path.join(man_path, "man" + page[-1])
            os.makedirs(section_dir, exist_ok=True)
            shutil.copy(page, section_dir)
        env = dict(os.environ, MANPATH=man_path)
        self.verify("--man=yes", env=env)

    def test_service_settings(self):
        unit = read_unit(self.service)
        for section, key, value in SERVICE_SETTINGS:
            with self.subTest(key=key):
                self.assertIn(value, unit.get(section, {}).get(key, []),
                              "[%s] %s=%s expected" % (section, key, value))

    def test_service_hardening(self):
        service = read_unit(self.service)["Service"]
        for key, value in HARDENING:
            with self.subTest(key=key):
                self.assertIn(value, service.get(key, []),
                              "%s=%s expected" % (key, value))

    def test_private_users_off(self):
        # A private user namespace maps other users to "nobody", so the
        # peer credentials would never match access.users or groups.
        service = read_unit(self.service)["Service"]
        self.assertNotIn("yes", service.get("PrivateUsers", []))

    def test_no_restart_on_config_error(self):
        service = read_unit(self.service)["Service"]
        statuses = " ".join(service.get("RestartPreventExitStatus", []))
        self.assertIn("78", statuses.split())
        self.assertIn("64", statuses.split())

    def test_socket_settings(self):
        unit = read_unit(self.socket)
        for section, key, value in SOCKET_SETTINGS:
            with self.subTest(key=key):
                self.assertEqual(unit.get(section, {}).get(key), [value])

    def test_security_exposure_low(self):
        analyze = require_tool(self, "systemd-analyze")
        service, _ = self.copy_units()
        result = run([analyze, "security", "--offline=yes",
                      "--threshold=%d" % MAX_EXPOSURE, service])
        exposure = re.search(r"Overall exposure level for \S+: ([\d.]+)",
                             result.stdout)
        self.assertIsNotNone(exposure, result.stdout + result.stderr)
        self.assertEqual(result.returncode, 0,
                         "exposure %s is above %.1f"
                         % (exposure.group(1), MAX_EXPOSURE / 10))


class SystemUserTest(unittest.TestCase):
    """sysusers.d and tmpfiles.d, applied to a scratch root folder."""

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="spu-root-")
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        os.mkdir(os.path.join(self.root, "etc"))
        self.sysusers_conf = os.path.join(ROOT, "systemd", "sysusers.d",
                                          "smtpool.conf")
        self.tmpfiles_conf = os.path.join(ROOT, "systemd", "tmpfiles.d",
                                          "smtpool.conf")

    def create_user(self):
        sysusers = require_tool(self, "systemd-sysusers")
        result = run([sysusers, "--root=" + self.root, self.sysusers_conf])
        self.assertEqual(result.returncode, 0, result.stderr)
        entries = {}
        for name in ("passwd", "group"):
            with open(os.path.join(self.root, "etc", name),
                      encoding="utf-8") as f:
                entries[name] = [line.rstrip("\n").split(":")
                                 for line in f if line.strip()]
        return entries

    def test_sysusers_dry_run_clean(self):
        sysusers = require_tool(self, "systemd-sysusers")
        result = run([sysusers, "--dry-run", "--root=" + self.root,
                      self.sysusers_conf])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertNotIn("ignoring", result.stderr.lower())

    def test_sysusers_creates_user_and_group(self):
        entries = self.create_user()
        users = [e for e in entries["passwd"] if e[0] == "smtpool"]
        groups = [e for e in entries["group"] if e[0] == "smtpool"]
        self.assertEqual(len(users), 1, entries["passwd"])
        self.assertEqual(len(groups), 1, entries["group"])
        self.assertEqual(users[0][3], groups[0][2], "primary group")
        self.assertLess(int(users[0][2]), 1000, "system uid expected")
        self.assertTrue(users[0][6].endswith("nologin"), users[0])

    def test_tmpfiles_restricts_config_folder(self):
        tmpfiles = require_tool(self, "systemd-tmpfiles")
        if os.geteuid() != 0:
            self.skipTest("systemd-tmpfiles must run as root to set the "
                          "folder's group")
        entries = self.create_user()
        gid = int([e for e in entries["group"] if e[0] == "smtpool"][0][2])
        # A folder left by "meson install" exists with mode 0755 first.
        folder = os.path.join(self.root, "etc", "smtpool")
        os.mkdir(folder, 0o755)
        result = run([tmpfiles, "--create", "--root=" + self.root,
                      self.tmpfiles_conf])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr.strip(), "")
        info = os.stat(folder)
        self.assertEqual(info.st_mode & 0o7777, 0o750)
        self.assertEqual(info.st_uid, 0)
        self.assertEqual(info.st_gid, gid)


class ManPageTest(unittest.TestCase):
    """The man pages render, and the configuration example is valid."""

    def setUp(self):
        self.man_dir = os.path.join(build_dir(), "man")
        if not all(os.path.isfile(os.path.join(self.man_dir, page))
                   for page in MAN_PAGES):
            self.skipTest("man pages not built (scdoc missing or -Dman="
                          "disabled)")

    def test_pages_render_without_warnings(self):
        groff = shutil.which("groff")
        if groff is None:
            self.skipTest("groff is not installed")
        for page in MAN_PAGES:
            with self.subTest(page=page):
                result = run([groff, "-man", "-ww", "-z", "-Tutf8",
                              os.path.join(self.man_dir, page)])
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertEqual(result.stderr.strip(), "")

    def test_yaml_page_example_is_valid(self):
        source = os.path.join(ROOT, "man", "smtpoold.yaml.5.scd")
        with open(source, encoding="utf-8") as f:
            text = f.read()
        example = re.search(r"^# EXAMPLE\n\n```\n(.*?)^```", text,
                            re.MULTILINE | re.DOTALL)
        self.assertIsNotNone(example, "EXAMPLE section with a code block")
        folder = tempfile.mkdtemp(prefix="spu-")
        self.addCleanup(shutil.rmtree, folder, ignore_errors=True)
        # smtpoold -t loads the certificate files the example names, so
        # they are made here and the example points at them.
        yaml_text = example.group(1)
        for name in sorted(set(re.findall(r"/etc/smtpool/([\w.-]+\.pem)",
                                          yaml_text))):
            cert = os.path.join(folder, name)
            made = run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                        "-nodes", "-subj", "/CN=smtpool example CA",
                        "-days", "2", "-keyout",
                        os.path.join(folder, name + ".key"), "-out", cert])
            self.assertEqual(made.returncode, 0, made.stderr)
            yaml_text = yaml_text.replace("/etc/smtpool/" + name, cert)
        path = os.path.join(folder, "example.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(yaml_text)
        result = run([daemon_path(), "-t", "-c", path])
        self.assertEqual(result.returncode, 0, result.stderr)


class NotifyListener:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages = []  # every "KEY=VALUE" line received, in order

    def close(self):
        self.sock.close()

    def wait_for(self, prefix, timeout):
        """Return the first line starting with prefix, waiting up to
        timeout seconds, or None."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.messages:
                if line.startswith(prefix):
                    return line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                return None
            self.messages += data.decode("utf-8", "replace").splitlines()


class SocketActivationTest(unittest.TestCase):
    """smtpoold started the way the units start it."""

    WATCHDOG_USEC = 2000000  # the daemon should ping every second

    def setUp(self):
        if not os.access(daemon_path(), os.X_OK):
            self.fail("%s is missing; build smtpoold first" % daemon_path())
        # Short folder names keep the socket paths within sun_path.
        self.folder = tempfile.mkdtemp(prefix="spu-")
        self.addCleanup(shutil.rmtree, self.folder, ignore_errors=True)
        self.socket_path = os.path.join(self.folder, "smtpool.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(self.listener.close)
        self.listener.bind(self.socket_path)
        os.chmod(self.socket_path, 0o660)
        self.listener.listen(16)
        self.notify = NotifyListener(os.path.join(self.folder, "notify"))
        self.addCleanup(self.notify.close)
        self.config = os.path.join(self.folder, "smtpoold.yaml")
        with open(self.config, "w", encoding="utf-8") as f:
            f.write("log:\n  level: info\n")
        self.log_path = os.path.join(self.folder, "daemon.log")
        self.proc = None

    def start_daemon(self, *args):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("LISTEN_", "NOTIFY_", "WATCHDOG_"))}
        env.update(LISTEN_FDS="1", NOTIFY_SOCKET=self.notify.path,
                   WATCHDOG_USEC=str(self.WATCHDOG_USEC))
        listen_fd = self.listener.fileno()

        def put_socket_at_fd_3():
            # systemd passes sockets from fd 3 (SD_LISTEN_FDS_START) on.
            # dup2() does nothing when the socket is fd 3 already, so
            # close-on-exec is cleared separately.
            os.dup2(listen_fd, 3)
            os.set_inheritable(3, True)

        log = open(self.log_path, "wb")
        self.addCleanup(log.close)
        # The shell sets LISTEN_PID to its own pid, which exec hands on to
        # the daemon, as sd_listen_fds(3) requires.
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", 'LISTEN_PID=$$; export LISTEN_PID; '
             'exec "$0" "$@"', daemon_path(), "-c", self.config] +
            list(args),
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            close_fds=False, preexec_fn=put_socket_at_fd_3)
        self.addCleanup(self.kill_daemon)

    def kill_daemon(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def log_text(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop_daemon(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.fail("smtpoold did not exit within 40 s of SIGTERM; "
                      "log:\n" + self.log_text())

    def test_ready_watchdog_status_and_stopping(self):
        self.start_daemon()
        ready = self.notify.wait_for("READY=1", 15)
        self.assertIsNotNone(ready, "no READY=1; log:\n" + self.log_text())
        self.assertIsNotNone(self.notify.wait_for("WATCHDOG=1", 5),
                             "no WATCHDOG=1 within 5 s")
        status = self.notify.wait_for("STATUS=", 12)
        self.assertIsNotNone(status, "no STATUS= within 12 s")
        self.assertIn("sessions=", status)
        self.assertEqual(self.stop_daemon(), 0, self.log_text())
        self.assertIsNotNone(self.notify.wait_for("STOPPING=1", 5))

    def test_serves_passed_socket(self):
        other = os.path.join(self.folder, "other.sock")
        self.start_daemon("-s", other)
        self.assertIsNotNone(self.notify.wait_for("READY=1", 15),
                             "no READY=1; log:\n" + self.log_text())
        with smtpool_client.Client(self.socket_path, timeout=30) as client:
            reply = client.get_response()
        self.assertEqual(reply.status, -10, reply)
        self.assertFalse(os.path.exists(other),
                         "-s must be ignored under socket activation")

    def test_socket_file_kept_after_stop(self):
        self.start_daemon()
        self.assertIsNotNone(self.notify.wait_for("READY=1", 15),
                             "no READY=1; log:\n" + self.log_text())
        self.assertEqual(self.stop_daemon(), 0, self.log_text())
        # The socket unit owns the file; the daemon must leave it.
        self.assertTrue(os.path.exists(self.socket_path))


if __name__ == "__main__":
    unittest.main()
