"""smtpoold as a program: configuration errors, running without a
configuration file, the socket file, signals and what its log must never
contain."""

import os
import re
import signal
import socket
import subprocess
import unittest

from base import IntegrationTest, headers
from daemon import daemon_path, wait_for_socket

EX_CONFIG = 78
SYSTEM_CONFIG = "/etc/smtpool/smtpoold.yaml"
SECRET = "Pw-7c41e9-do-not-log"


class ConfigTest(IntegrationTest):

    def run_daemon(self, *args):
        result = subprocess.run([daemon_path()] + list(args),
                                stdin=subprocess.DEVNULL,
                                capture_output=True, timeout=30)
        return result.returncode, result.stderr.decode(errors="replace")

    def write_config(self, text):
        path = os.path.join(self.folder, "bad.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def assertConfigError(self, path, line, key, *args):
        status, err = self.run_daemon("-c", path, *args)
        self.assertEqual(status, EX_CONFIG, err)
        match = re.search(re.escape(path) + r":(\d+):(\d+):", err)
        self.assertIsNotNone(match, "FILE:LINE:COLUMN in %r" % err)
        self.assertEqual(int(match.group(1)), line, err)
        self.assertIn(key, err)

    def test_unknown_key_exits_78_with_position(self):
        path = self.write_config(
            "socket:\n  path: \"%s/s.sock\"\npool:\n"
            "  max_connections_per_key: 2\n  colour: blue\n" % self.folder)
        self.assertConfigError(path, 5, "colour")

    def test_unknown_top_level_key_exits_78(self):
        path = self.write_config("log:\n  level: info\nfrobnicate: 1\n")
        self.assertConfigError(path, 3, "frobnicate")

    def test_invalid_number_exits_78(self):
        path = self.write_config("pool:\n  max_connections_per_key: many\n")
        self.assertConfigError(path, 2, "max_connections_per_key")

    def test_unknown_tls_option_exits_78(self):
        path = self.write_config("tls:\n  default:\n    verify_srever: yes\n")
        self.assertConfigError(path, 3, "verify_srever")

    def test_check_config_reports_unknown_key(self):
        path = self.write_config("log:\n  levle: info\n")
        self.assertConfigError(path, 2, "levle", "-t")

    def test_check_config_accepts_valid_file(self):
        path = self.write_config("log:\n  level: info\npool:\n"
                                 "  idle_timeout: 2m\n")
        status, err = self.run_daemon("-c", path, "-t")
        self.assertEqual(status, 0, err)

    def test_missing_config_file_exits_nonzero(self):
        status, err = self.run_daemon(
            "-c", os.path.join(self.folder, "absent.yaml"))
        self.assertNotEqual(status, 0)
        self.assertIn("absent.yaml", err)

    def test_version_option_exits_0(self):
        result = subprocess.run([daemon_path(), "-V"], capture_output=True,
                                stdin=subprocess.DEVNULL, timeout=30)
        self.assertEqual(result.returncode, 0)
        self.assertRegex((result.stdout + result.stderr).decode(),
                         r"\d+\.\d+")


class NoConfigTest(IntegrationTest):

    def test_daemon_without_config_file_serves_socket_option(self):
        if os.path.exists(SYSTEM_CONFIG):
            self.skipTest("%s exists, so the daemon would read it"
                          % SYSTEM_CONFIG)
        sink = self.sink()
        path = os.path.join(self.folder, "bare.sock")
        log = open(os.path.join(self.folder, "bare.log"), "wb")
        self.addCleanup(log.close)
        proc = subprocess.Popen([daemon_path(), "-s", path],
                                stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        self.assertIsNone(wait_for_socket(path, proc))
        import smtpool_client
        with smtpool_client.Client(path, timeout=60) as session:
            self.assertStatus(session.logon(sink.conn()), 0)
            self.assertStatus(session.sendmail("", headers(), "bare\n"), 0)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(15), 0)


class LifecycleTest(IntegrationTest):

    def test_sigint_exits_0(self):
        daemon = self.start_daemon()
        daemon.proc.send_signal(signal.SIGINT)
        self.assertEqual(daemon.proc.wait(15), 0)

    def test_stale_socket_file_is_replaced(self):
        path = os.path.join(self.folder, "smtpool.sock")
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(path)
        stale.close()
        sink = self.sink()
        self.start_daemon()
        self.assertStatus(self.client().logon(sink.conn()), 0)

    def test_second_daemon_on_live_socket_exits_nonzero(self):
        sink = self.sink()
        first = self.start_daemon()
        result = subprocess.run([daemon_path(), "-c", first.config_path],
                                stdin=subprocess.DEVNULL,
                                capture_output=True, timeout=30)
        self.assertNotEqual(result.returncode, 0)
        self.assertStatus(self.client().logon(sink.conn()), 0,
                          "the first daemon keeps its socket")

    def test_client_disconnect_while_logged_on_is_harmless(self):
        sink = self.sink()
        self.start_daemon()
        for _ in range(5):
            session = self.client()
            self.assertStatus(session.logon(sink.conn()), 0)
            session.close()
        self.assertStatus(self.client().logon(sink.conn()), 0)


class SecretTest(IntegrationTest):

    def test_logon_password_never_logged(self):
        sink = self.sink()
        daemon = self.start_daemon(args=["-v"])
        session = self.client()
        reply = session.logon(sink.conn(), user="alice", password=SECRET)
        self.assertStatus(reply, -2)
        self.assertNotIn(SECRET, reply.message)
        self.assertStatus(session.logon(sink.conn(), password=SECRET), -2)
        self.assertStatus(session.logon(sink.conn()), 0)
        self.assertStatus(session.sendmail("", headers(), "x\n"), 0)
        session.close()
        self.assertEqual(daemon.stop(), 0)
        self.assertNotIn(SECRET, daemon.log_text())
        self.assertTrue(daemon.log_text(), "the daemon logged something")

    def test_password_in_broken_frame_never_logged(self):
        import smtpool_client as sp
        self.start_daemon(args=["-v"])
        session = self.client()
        session.send_frame(sp.OP_LOGON, ["127.0.0.1+25", "bob", SECRET],
                           version=7)
        reply = session.read_reply()
        self.assertStatus(reply, -99)
        self.assertNotIn(SECRET, reply.message)
        self.assertNotIn(SECRET, self.daemon.log_text())


if __name__ == "__main__":
    unittest.main()
