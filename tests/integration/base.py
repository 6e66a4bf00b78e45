"""Common base class of the integration tests.

Each test gets a private folder, and the daemon and peers it starts are
stopped when it ends.  Stopping the daemon checks that it exits 0 on
SIGTERM and that no sanitizer error shows in its log.
"""

import atexit
import os
import shutil
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # tests/, for smtpool_client

import smtpool_client  # noqa: E402
from daemon import Daemon, DaemonError  # noqa: E402
from peers import (Certificates, PeerMissing, Recorder, Scripted,  # noqa
                   SmtpSink, closed_port)

# Time a test lets one client operation take before it counts as hung.
CLIENT_TIMEOUT = 60


def _remove_shared_certificates():
    if Certificates._shared is not None:
        Certificates._shared.remove()


atexit.register(_remove_shared_certificates)


class IntegrationTest(unittest.TestCase):
    """Base class: folder, daemon, peers and clients with cleanup."""

    def setUp(self):
        # Short folder names keep the socket path within sun_path.
        self.folder = tempfile.mkdtemp(prefix="spit-")
        self.addCleanup(shutil.rmtree, self.folder, ignore_errors=True)
        self.daemon = None

    # Peers -----------------------------------------------------------

    def _peer(self, factory, *args, **kwargs):
        try:
            peer = factory(self.folder, *args, **kwargs)
        except PeerMissing as e:
            self.skipTest(str(e))
        self.addCleanup(peer.stop)
        return peer

    def recorder(self, **options):
        return self._peer(Recorder, **options)

    def scripted(self, **options):
        return self._peer(Scripted, **options)

    def sink(self, *args):
        return self._peer(SmtpSink, *args)

    def certificates(self):
        try:
            return Certificates.shared()
        except PeerMissing as e:
            self.skipTest(str(e))

    # Daemon ----------------------------------------------------------

    def start_daemon(self, config=None, tls=False, args=()):
        """Start smtpoold for this test; tls=True trusts the test CA in
        the default TLS profile."""
        ca = self.certificates().ca_cert if tls else None
        daemon = Daemon(self.folder, config=config, ca_certificate=ca,
                        args=args)
        try:
            daemon.start()
        except DaemonError as e:
            self.fail(str(e))
        self.addCleanup(self._stop_daemon, daemon)
        self.daemon = daemon
        return daemon

    def _stop_daemon(self, daemon):
        status = daemon.stop()
        self.assertEqual(status, 0, "smtpoold did not exit 0 on SIGTERM;"
                         " log tail:\n" + daemon.log_text()[-3000:])
        self.assertEqual(daemon.sanitizer_report(), [],
                         "sanitizer errors in the smtpoold log")

    def client(self, daemon=None):
        """Open a new session on the daemon (default: this test's)."""
        daemon = daemon or self.daemon
        c = smtpool_client.Client(daemon.socket, timeout=CLIENT_TIMEOUT)
        self.addCleanup(c.close)
        return c

    # Checks ----------------------------------------------------------

    def assertStatus(self, reply, expected, context="reply"):
        """Check a reply's status, showing the whole reply on failure."""
        self.assertEqual(reply.status, expected,
                         "%s: expected status %d, got %r" %
                         (context, expected, reply))


def headers(to="rcpt@example.test", sender="sender@example.test",
            subject="test message", **more):
    """Build a SendMail header list; more maps labels to values."""
    items = []
    if to is not None:
        items.append("TO=" + to)
    if sender is not None:
        items.append("FROM=" + sender)
    if subject is not None:
        items.append("SUBJECT=" + subject.replace(";", ";;"))
    for label, value in more.items():
        items.append("%s=%s" % (label.upper(), value))
    return ";".join(items)
