"""smtpoold as a system service: socket activation, systemd notifications,
access control by peer credentials, configuration reload on SIGHUP, the
draining shutdown on SIGTERM, and the STATUS request.

The access tests switch users, so they run only as root (as in CI).
"""

import grp
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import threading
import time
import unittest

from base import IntegrationTest, closed_port, headers
from daemon import cli_path, merge, yaml_dump
from service_helpers import (STATUS_TOTALS, NotifyListener, ServiceDaemon,
                             query_status, run_probe_as,
                             service_environment)

import smtpool_client  # noqa: E402 (base puts tests/ on sys.path)

BODY = "service test message\n"
NOBODY = 65534
SECRET = "Hunter22"
# Seconds a daemon may take to exit after SIGTERM when no transaction is
# still running.
EXIT_TIMEOUT = 8


def run_in_thread(target):
    """Start target() in a thread.  Return the thread and a list that
    receives target's return value or exception."""
    result = []

    def runner():
        try:
            result.append(target())
        except Exception as e:  # checked by the caller
            result.append(e)

    thread = threading.Thread(target=runner)
    thread.start()
    return thread, result


def run_threads(count, target):
    """Run target(i) in count threads at once; return results by index."""
    threads = [run_in_thread(lambda i=i: target(i)) for i in range(count)]
    results = []
    for thread, result in threads:
        thread.join(120)
        results.append(result[0] if result else "thread still running")
    return results


class ServiceTest(IntegrationTest):
    """IntegrationTest with a daemon whose environment the test sets."""

    def start_service(self, config=None, env=None, activate=None):
        daemon = ServiceDaemon(self.folder, config=config, env=env,
                               activate=activate)
        try:
            daemon.start()
        except Exception as e:
            self.fail(str(e))
        self.addCleanup(self._stop_daemon, daemon)
        self.daemon = daemon
        return daemon

    def notify_listener(self):
        listener = NotifyListener(os.path.join(self.folder, "notify"))
        self.addCleanup(listener.close)
        return listener

    def terminate(self):
        """Send SIGTERM to the daemon; return the time it was sent."""
        self.daemon.proc.send_signal(signal.SIGTERM)
        return time.monotonic()

    def wait_exit(self, timeout=EXIT_TIMEOUT):
        try:
            return self.daemon.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.fail("smtpoold still running %d s after SIGTERM; log "
                      "tail:\n%s" % (timeout, self.daemon.log_text()[-3000:]))

    def send_one(self, conn, **header_fields):
        """SendMail on a new session; return the reply."""
        return self.client().sendmail(conn, headers(**header_fields), BODY)


# ---- Socket activation ----------------------------------------------------

class SocketActivationTest(ServiceTest):

    def setUp(self):
        super().setUp()
        self.activate = shutil.which("systemd-socket-activate")
        if self.activate is None:
            self.skipTest("systemd-socket-activate is not installed "
                          "(Debian package systemd)")

    def test_activated_socket_served(self):
        self.start_service(activate=self.activate)
        reply = self.client().get_response()
        self.assertStatus(reply, -10)
        self.assertTrue(self.daemon.log_lines("daemon.socket-activated"),
                        self.daemon.log_text()[-2000:])

    def test_activated_socket_sends_mail(self):
        sink = self.sink()
        self.start_service(activate=self.activate)
        session = self.client()
        self.assertStatus(session.logon(sink.conn()), 0, "LogonSMTP")
        self.assertStatus(session.sendmail("", headers(), BODY), 0,
                          "SendMail")

    def test_activated_socket_file_kept(self):
        self.start_service(activate=self.activate)
        self.terminate()
        self.assertEqual(self.wait_exit(), 0, self.daemon.log_text())
        self.assertTrue(os.path.exists(self.daemon.socket),
                        "the activated socket file must stay")


# ---- sd_notify --------------------------------------------------------------

class NotifyTest(ServiceTest):

    def start_notified(self, **variables):
        notify = self.notify_listener()
        env = service_environment(NOTIFY_SOCKET=notify.path, **variables)
        self.start_service(env=env)
        ready = notify.wait_for("READY=1", 15)
        self.assertIsNotNone(ready, "no READY=1; log:\n"
                             + self.daemon.log_text()[-2000:])
        return notify, ready

    def test_ready_status_reload_stopping(self):
        sink = self.sink()
        notify, ready = self.start_notified()
        status = notify.wait_for("STATUS=", 7)
        self.assertIsNotNone(status, "no STATUS= within 7 s")
        text = notify.lines[status][1]
        self.assertIn("sessions=", text)
        self.assertIn("sent=0", text)

        self.assertStatus(self.send_one(sink.conn()), 0)
        # STATUS= is refreshed every 5 s.
        sent = notify.wait_for(
            lambda line: line.startswith("STATUS=") and
            re.search(r"\bsent=1\b", line), 7, status + 1)
        self.assertIsNotNone(sent, "no STATUS= with sent=1 within 7 s:\n"
                             + notify.text())

        mark = len(notify.lines)
        self.daemon.proc.send_signal(signal.SIGHUP)
        reloading = notify.wait_for("RELOADING=1", 10, mark)
        self.assertIsNotNone(reloading, "no RELOADING=1 after SIGHUP")
        again = notify.wait_for("READY=1", 10, reloading + 1)
        self.assertIsNotNone(again, "no READY=1 after RELOADING=1")
        # A fresh STATUS= follows the reload without waiting for the timer.
        refreshed = notify.wait_for("STATUS=", 2, again + 1)
        self.assertIsNotNone(refreshed, "no STATUS= after the reload")

        mark = len(notify.lines)
        self.terminate()
        self.assertEqual(self.wait_exit(), 0)
        self.assertIsNotNone(notify.wait_for("STOPPING=1", 5, mark),
                             "no STOPPING=1 after SIGTERM:\n" + notify.text())

    def test_watchdog_every_half_interval(self):
        notify, ready = self.start_notified(WATCHDOG_USEC=1000000)
        started = time.monotonic()
        notify.collect(2.5 - (time.monotonic() - notify.lines[ready][0]))
        pings = [t for t, line in notify.lines if line == "WATCHDOG=1"]
        self.assertGreaterEqual(len(pings), 2, "WATCHDOG=1 within 2.5 s "
                                "of READY=1 (collected %.1f s):\n%s"
                                % (time.monotonic() - started,
                                   notify.text()))

    def test_no_watchdog_unless_asked(self):
        notify, _ = self.start_notified()
        notify.collect(3)
        self.assertNotIn("WATCHDOG=1", [line for _, line in notify.lines])


# ---- Access control ----------------------------------------------------------

class AccessTest(ServiceTest):

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest("switching users for the client needs root")
        # Other users must reach the socket inside the test folder.
        os.chmod(self.folder, 0o711)

    def start_with_access(self, **access):
        return self.start_service({"access": access,
                                   "socket": {"mode": "0666"}})

    def assertDenied(self, result, uid):
        self.assertEqual(result.get("op"), smtpool_client.OP_ERROR, result)
        self.assertEqual(result.get("status"), -8, result)
        self.assertIn("access denied", result.get("message", ""))
        self.assertIn("uid %d (%s)" % (uid, pwd.getpwuid(uid).pw_name),
                      result.get("message", ""))
        self.assertTrue(result.get("closed"), "not disconnected: %r"
                        % result)

    def assertAllowed(self, result):
        self.assertEqual(result.get("op"), smtpool_client.OP_REPLY, result)
        self.assertEqual(result.get("status"), -10, result)

    def denied_in_process(self):
        """Connect as this process (root) and expect an ERROR -8 frame
        before any request, then end-of-file."""
        client = self.client()
        reply = client.read_reply()
        self.assertTrue(reply.is_error, reply)
        self.assertStatus(reply, -8)
        self.assertIn("access denied", reply.message)
        self.assertIn("uid 0 (root)", reply.message)
        with self.assertRaises(smtpool_client.ConnectionClosed):
            client.read_reply()

    def test_unlisted_uid_denied(self):
        self.start_with_access(users=[NOBODY])
        self.denied_in_process()
        self.assertTrue(self.daemon.log_lines("daemon.access-denied"),
                        self.daemon.log_text()[-2000:])
        denied = self.daemon.log_lines("daemon.access-denied")[0]
        self.assertIn("uid=0", denied)
        # The daemon goes on serving the allowed user.
        self.assertAllowed(run_probe_as(self.daemon.socket, NOBODY, NOBODY))

    def test_listed_user_name_allowed(self):
        self.start_with_access(users=["root"])
        self.assertStatus(self.client().get_response(), -10)
        result = run_probe_as(self.daemon.socket, NOBODY, NOBODY,
                              wait_close=5)
        self.assertDenied(result, NOBODY)
        self.assertTrue(self.daemon.log_lines("daemon.access-denied"))

    def test_primary_gid_allowed(self):
        # The peer's gid is the client's effective gid at connect time,
        # here one that is not nobody's group in the passwd file.
        gid = 4242
        self.start_with_access(groups=[gid])
        self.assertAllowed(run_probe_as(self.daemon.socket, NOBODY, gid))
        result = run_probe_as(self.daemon.socket, NOBODY, NOBODY,
                              wait_close=5)
        self.assertDenied(result, NOBODY)
        self.denied_in_process()

    def test_supplementary_gid_allowed(self):
        member = find_group_member()
        if member is None:
            self.skipTest("no user in this system's group database is a "
                          "listed member of a group other than its own")
        user, group = member
        self.start_with_access(groups=[group.gr_name])
        # Connect with the user's primary gid: only the group database
        # membership can allow it.
        result = run_probe_as(self.daemon.socket, user.pw_uid, user.pw_gid,
                              groups=[group.gr_gid])
        self.assertAllowed(result)
        self.denied_in_process()


def find_group_member():
    """Return (passwd entry, group entry) for a user listed as a member of
    a group that is not its primary group, or None."""
    for group in grp.getgrall():
        for name in group.gr_mem:
            try:
                user = pwd.getpwnam(name)
            except KeyError:
                continue
            if user.pw_gid != group.gr_gid and user.pw_uid != 0:
                return user, group
    return None


# ---- Reload -------------------------------------------------------------------

class ReloadTest(ServiceTest):

    def rewrite_config(self, extra):
        """Write the daemon's configuration with extra merged in; return
        the file's text."""
        config = merge(self.daemon.config, extra)
        text = yaml_dump(config) + "\n"
        with open(self.daemon.config_path, "w", encoding="utf-8") as f:
            f.write(text)
        return text

    def reload(self, event):
        """Send SIGHUP and wait for the log event (daemon.reloaded or
        daemon.reload-failed) to show up once more than before."""
        before = len(self.daemon.log_lines(event))
        self.daemon.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while len(self.daemon.log_lines(event)) <= before:
            if time.monotonic() > deadline:
                self.fail("no %s within 10 s of SIGHUP; log tail:\n%s"
                          % (event, self.daemon.log_text()[-2000:]))
            time.sleep(0.05)
        return self.daemon.log_lines(event)[-1]

    def concurrent_sends(self, server, count):
        results = run_threads(count, lambda i: self.send_one(
            server.conn(), to="user%d@example.test" % i))
        for i, reply in enumerate(results):
            self.assertIsInstance(reply, smtpool_client.Reply,
                                  "client %d: %r" % (i, reply))
            self.assertStatus(reply, 0, "client %d" % i)

    def test_reload_raises_connection_limit(self):
        server = self.recorder(data_end_delay=1)
        self.start_service({"pool": {"max_connections_per_key": 1}})
        self.concurrent_sends(server, 3)
        self.assertEqual(server.record.max_active(), 1)

        self.rewrite_config({"pool": {"max_connections_per_key": 3}})
        line = self.reload("daemon.reloaded")
        self.assertIn("max_per_key=3", line)
        self.concurrent_sends(server, 3)
        self.assertEqual(len(server.record.wait_messages(6)), 6)
        self.assertEqual(server.record.max_active(), 3)

    def test_invalid_reload_keeps_running_config(self):
        server = self.recorder(data_end_delay=1)
        self.start_service({"pool": {"max_connections_per_key": 1}})
        text = self.rewrite_config({"pool": {"max_connections_per_key": 3,
                                             "colour": "blue"}})
        line_number = text.splitlines().index("  colour: \"blue\"") + 1
        failed = self.reload("daemon.reload-failed")
        position = re.search(re.escape(self.daemon.config_path)
                             + r":(\d+):(\d+):", failed)
        self.assertIsNotNone(position, "FILE:LINE:COLUMN in %r" % failed)
        self.assertEqual(int(position.group(1)), line_number, failed)
        self.assertIn("colour", failed)
        self.assertEqual(self.daemon.proc.poll(), None, "daemon exited")

        # Still one connection at a time: the old limit stays.
        self.concurrent_sends(server, 2)
        self.assertEqual(len(server.record.wait_messages(2)), 2)
        self.assertEqual(server.record.max_active(), 1)


# ---- Draining shutdown ----------------------------------------------------------

class DrainTest(ServiceTest):

    def start_transaction(self, server):
        """Start a SendMail in a thread and wait until the daemon is
        connected to the server for it."""
        session = self.client()
        thread, result = run_in_thread(
            lambda: session.sendmail(server.conn(), headers(), BODY))
        self.addCleanup(thread.join, 30)
        deadline = time.monotonic() + 10
        while server.record.connection_count() == 0:
            if time.monotonic() > deadline:
                self.fail("the daemon did not connect to the server")
            time.sleep(0.05)
        # Let the dialogue reach the end of DATA, where the server waits.
        time.sleep(0.5)
        return thread, result

    def test_transaction_finishes_within_drain_timeout(self):
        server = self.recorder(data_end_delay=3)
        self.start_service({"shutdown": {"drain_timeout": 20}})
        idle = self.client()
        thread, result = self.start_transaction(server)

        self.terminate()
        # A client without a request in progress is let go at once.
        idle.sock.settimeout(2)
        self.assertEqual(idle.sock.recv(1), b"",
                         "idle client not disconnected")
        # New clients cannot connect while the transaction finishes.
        self.assertFalse(os.path.exists(self.daemon.socket),
                         "socket file still there after SIGTERM")
        with self.assertRaises(OSError):
            smtpool_client.Client(self.daemon.socket, timeout=5)

        thread.join(30)
        self.assertTrue(result, "SendMail got no reply")
        self.assertIsInstance(result[0], smtpool_client.Reply, result)
        self.assertStatus(result[0], 0, "SendMail during the drain")
        self.assertEqual(len(server.record.wait_messages(1)), 1)
        self.assertEqual(self.wait_exit(), 0)
        # The connection went idle after the message and got QUIT.
        self.assertTrue(self.daemon.log_lines("upstream.quit"),
                        self.daemon.log_text()[-2000:])

    def test_drain_waits_for_message_body(self):
        server = self.recorder()
        self.start_service({"shutdown": {"drain_timeout": 20}})
        session = self.client()
        session.send_frame(smtpool_client.OP_SENDMAIL,
                           [server.conn(), headers(), smtpool_client.i64(0)])
        session.send_frame(smtpool_client.OP_PART, ["text", "", ""])
        # NOTE: the daemon logs nothing when a SENDMAIL frame arrives, so
        # this pause is what lets it read the frame before SIGTERM.
        time.sleep(1)

        self.terminate()
        time.sleep(0.5)
        session.send_frame(smtpool_client.OP_CHUNK, [BODY])
        session.send_frame(smtpool_client.OP_END)
        self.assertStatus(session.read_reply(), 0, "SendMail whose body "
                          "arrived after SIGTERM")
        self.assertEqual(len(server.record.wait_messages(1)), 1)
        with self.assertRaises(smtpool_client.ConnectionClosed):
            session.read_reply()
        self.assertEqual(self.wait_exit(), 0)

    def test_drain_timeout_cuts_transaction_off(self):
        server = self.recorder(data_end_delay=10)
        self.start_service({"shutdown": {"drain_timeout": 1}})
        thread, result = self.start_transaction(server)

        sent = self.terminate()
        self.assertEqual(self.wait_exit(), 0)
        self.assertLess(time.monotonic() - sent, EXIT_TIMEOUT)
        thread.join(10)
        self.assertTrue(result, "SendMail got no reply")
        reply = result[0]
        self.assertIsInstance(reply, smtpool_client.Reply, result)
        self.assertStatus(reply, -9, "SendMail cut off")
        self.assertIn("cut off", reply.message)
        self.assertTrue(self.daemon.log_lines("session.cut-off"))

    def cut_off_pool_wait(self, server):
        """Run a transaction that outlasts a 1 s drain_timeout while a
        second SendMail waits for the only connection of its key, then
        SIGTERM.  Return the replies of both."""
        self.start_service({"shutdown": {"drain_timeout": 1},
                            "pool": {"max_connections_per_key": 1}})
        first, first_result = self.start_transaction(server)
        session = self.client()
        second, second_result = run_in_thread(
            lambda: session.sendmail(server.conn(), headers(), BODY))
        self.addCleanup(second.join, 30)
        problem = self.daemon.wait_log("pool.wait", 10)
        self.assertIsNone(problem, "second SendMail not waiting for the "
                          "pool: %s" % problem)

        self.terminate()
        self.assertEqual(self.wait_exit(), 0)
        first.join(10)
        second.join(10)
        return first_result, second_result

    def test_drain_timeout_cuts_pool_wait_off(self):
        server = self.recorder(data_end_delay=10)
        for result in self.cut_off_pool_wait(server):
            self.assertTrue(result, "SendMail got no reply")
            self.assertIsInstance(result[0], smtpool_client.Reply, result)
            self.assertStatus(result[0], -9, "SendMail cut off")
            self.assertIn("cut off", result[0].message)

    # Cutting off the running transaction frees the key's only slot; the
    # waiting request must not get a new connection for it.
    def test_cut_off_opens_no_connection(self):
        server = self.recorder(data_end_delay=10)
        self.cut_off_pool_wait(server)
        self.assertEqual(server.record.connection_count(), 1)


# ---- STATUS ------------------------------------------------------------------

class PoolStatusTest(ServiceTest):
    """Base class: a pool with known counts to query."""

    def prepare_pool(self):
        """Log on, send two messages, and fail a logon to a closed port.
        Return the sink and its normalized connection string."""
        sink = self.sink()
        self.start_service()
        session = self.client()
        self.assertStatus(session.logon(sink.conn()), 0, "LogonSMTP")
        for i in range(2):
            self.assertStatus(session.sendmail("", headers(), BODY), 0,
                              "SendMail %d" % i)
        failed = self.client().logon("TCP:127.0.0.1+%d" % closed_port())
        self.assertStatus(failed, -9, "LogonSMTP to a closed port")
        return sink, "TCP:127.0.0.1+%d" % sink.port


class StatusTest(PoolStatusTest):

    def test_status_rows_and_totals(self):
        sink, key = self.prepare_pool()
        status = query_status(self.daemon.socket)
        self.assertEqual(status.reply["status"], 0, status.reply)
        rows = status.row(key)
        self.assertEqual(len(rows), 1, status.rows)
        row = rows[0]
        self.assertEqual(row["drivers"], "")
        self.assertEqual(row["sent"], 2)
        self.assertEqual(row["idle"], 1)
        self.assertEqual(row["busy"], 0)
        self.assertEqual(row["opening"], 0)
        self.assertEqual(row["waiting"], 0)
        self.assertEqual(row["errors"], 0)
        self.assertGreaterEqual(row["oldest_age"], 0)

        self.assertEqual([e.partition("=")[0]
                          for e in status.reply["extras"]], STATUS_TOTALS)
        totals = status.totals
        self.assertEqual(int(totals["sent"]), 2)
        self.assertGreaterEqual(int(totals["errors"]), 1)
        self.assertGreaterEqual(int(totals["sessions"]), 1)
        self.assertGreaterEqual(int(totals["keys"]), 1)
        self.assertEqual(int(totals["idle"]), 1)
        self.assertGreaterEqual(int(totals["opened"]), 1)
        self.assertEqual(int(totals["reused"]), 2)
        self.assertGreaterEqual(int(totals["uptime"]), 0)
        self.assertNotEqual(totals["version"], "")

    def test_status_drivers_without_parameters(self):
        sink = self.sink()
        self.start_service({"allow_plaintext_auth": "no"})
        session = self.client()
        self.assertStatus(session.set_security(
            "SMTP=UAuthLoginSMTP;USE=OPT", "user=u;password=" + SECRET), 0,
            "SetSecurity")
        # The optional AUTH driver is skipped over plain text.
        self.assertStatus(session.sendmail(sink.conn(), headers(), BODY), 0,
                          "SendMail")
        status = query_status(self.daemon.socket)
        rows = status.row("TCP:127.0.0.1+%d" % sink.port)
        self.assertEqual([r["drivers"] for r in rows], ["UAuthLoginSMTP/OPT"])
        self.assertEqual(rows[0]["sent"], 1)
        self.assertNotIn(SECRET.encode(), status.raw)
        self.assertNotIn(SECRET, self.daemon.log_text())

    def test_status_on_empty_pool(self):
        self.start_service()
        status = query_status(self.daemon.socket)
        self.assertEqual(status.rows, [])
        self.assertEqual(status.reply["status"], 0)
        self.assertEqual(status.totals.get("keys"), "0")
        self.assertEqual(status.totals.get("sent"), "0")


# ---- smtpool status and smtpool metrics ----------------------------------------

class StatusCommandTest(PoolStatusTest):
    """The CLI's view of STATUS.  Skipped while the build's smtpool has
    no status command."""

    # NOTE: written from the documented output formats before the status
    # and metrics commands existed, so these tests have not run yet.

    def setUp(self):
        super().setUp()
        if not os.access(cli_path(), os.X_OK):
            self.skipTest("%s is missing" % cli_path())
        probe = subprocess.run([cli_path(), "status", "--help"],
                               stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=30)
        if probe.returncode != 0:
            self.skipTest("this smtpool has no status command")

    def cli(self, *args):
        result = subprocess.run([cli_path(), "--socket", self.daemon.socket]
                                + list(args), stdin=subprocess.DEVNULL,
                                capture_output=True, timeout=30, text=True)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout

    def test_status_table(self):
        _, key = self.prepare_pool()
        lines = [line for line in self.cli("status").splitlines()
                 if key in line]
        self.assertEqual(len(lines), 1, "one table row for %s" % key)
        cells = lines[0].split()
        # The column layout is the CLI's own, so only the cells the row
        # must contain are checked: idle 1 and sent 2.
        self.assertIn("1", cells)
        self.assertIn("2", cells)

    def test_status_json(self):
        _, key = self.prepare_pool()
        data = json.loads(self.cli("status", "--json"))
        self.assertEqual(sorted(data), ["keys", "totals"])
        rows = [row for row in data["keys"] if key in row.values()]
        self.assertEqual(len(rows), 1, data["keys"])
        self.assertEqual(int(data["totals"]["sent"]), 2)
        self.assertGreaterEqual(int(data["totals"]["errors"]), 1)

    def test_metrics_exposition(self):
        _, key = self.prepare_pool()
        text = self.cli("metrics")
        sample = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? '
                            r'[-+0-9.eE]+$')
        for line in text.splitlines():
            if line.startswith("#"):
                self.assertRegex(line, r"^# (HELP|TYPE) smtpool_")
            else:
                self.assertRegex(line, sample)
        label = 'key="%s"' % key
        self.assertRegex(text, r'(?m)^smtpool_messages_sent_total\{'
                         r'(?=[^}]*%s)[^}]*\} 2$' % re.escape(label))
        self.assertRegex(text, r'(?m)^smtpool_connections\{(?=[^}]*%s)'
                         r'(?=[^}]*state="idle")[^}]*\} 1$'
                         % re.escape(label))
        for name in ("smtpool_sessions", "smtpool_uptime_seconds",
                     "smtpool_connections_opened_total",
                     "smtpool_connections_reused_total"):
            self.assertRegex(text, r"(?m)^# TYPE %s " % name)
