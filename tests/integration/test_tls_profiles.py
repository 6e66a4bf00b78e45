"""Named TLS profiles against peer_tls.py, an implicit-TLS server that can
require a client certificate, cap the protocol version and limit the
TLS 1.2 ciphers: client certificates, min_tls_version, ciphers,
verify_server_name lists, verify_server no, and profile names in the
connection string.

The certificates beyond the shared test set are made once per run with
the openssl command.  The test CA signs one server certificate for a
wildcard name and one for an IP address with another DNS name.  A second
CA signs a client certificate, and one more key matches no certificate.
"""

import os
import shutil
import subprocess
import tempfile
import unittest

from base import IntegrationTest, headers
from daemon import SANITIZER_MARKS, Daemon, daemon_path
from peers import Certificates, PeerError, PeerMissing, PythonPeer

BODY = "sent with a TLS profile\n"
# Seconds a daemon expected to reject its configuration may run.
FAILED_START_TIMEOUT = 20
CLIENT_SUBJECT = "CN=smtpool-client.test"
TLS12_CIPHER = "ECDHE-RSA-AES128-GCM-SHA256"
OTHER_TLS12_CIPHER = "ECDHE-RSA-AES256-GCM-SHA384"


class TlsPeer(PythonPeer):
    """peer_tls.py with a certificate and key.  client_ca makes it require
    a client certificate signed by that CA.  max_version ("1.2" or "1.3")
    caps the protocol version, and ciphers limits the TLS 1.2 ciphers."""

    script = "peer_tls.py"

    def __init__(self, workdir, cert, key, client_ca=None, max_version=None,
                 ciphers=None):
        args = ["--cert", cert, "--key", key]
        if client_ca:
            args += ["--client-ca", client_ca]
        if max_version:
            args += ["--max-version", max_version]
        if ciphers:
            args += ["--ciphers", ciphers]
        super().__init__(workdir, *args)

    def tls_events(self):
        return self.record.events("tls")

    def tls_errors(self):
        return self.record.events("tls_error")


class ProfileCertificates:
    """Certificates for these tests, beside the shared set (base):

      wildcard_cert/key   signed by the test CA for DNS:*.smtpool.test
      ipname_cert/key     signed by the test CA for DNS:mail.other.test
                          and IP:127.0.0.1
      client_ca_cert      a second CA, for client certificates only
      client_cert/key     signed by client_ca_cert, CN=smtpool-client.test
      stray_key           an RSA key that matches no certificate
    """

    _shared = None

    @classmethod
    def shared(cls):
        if cls._shared is None:
            cls._shared = cls(Certificates.shared(),
                              tempfile.mkdtemp(prefix="smtpool-profcerts-"))
        return cls._shared

    def __init__(self, base, folder):
        self.base = base
        self.folder = folder
        self.wildcard_cert, self.wildcard_key = self._signed(
            "wildcard", base.ca_cert, base.ca_key, "/CN=*.smtpool.test",
            "subjectAltName=DNS:*.smtpool.test\n"
            "extendedKeyUsage=serverAuth\n")
        self.ipname_cert, self.ipname_key = self._signed(
            "ipname", base.ca_cert, base.ca_key, "/CN=mail.other.test",
            "subjectAltName=DNS:mail.other.test,IP:127.0.0.1\n"
            "extendedKeyUsage=serverAuth\n")

        self.client_ca_key = self._path("client-ca.key")
        self.client_ca_cert = self._path("client-ca.pem")
        self._openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes",
                      "-keyout", self.client_ca_key, "-out",
                      self.client_ca_cert, "-days", "2",
                      "-subj", "/CN=smtpool test client CA",
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self.client_cert, self.client_key = self._signed(
            "client", self.client_ca_cert, self.client_ca_key,
            "/O=smtpool tests/" + CLIENT_SUBJECT,
            "extendedKeyUsage=clientAuth\n")

        self.stray_key = self._path("stray.key")
        self._openssl("genpkey", "-algorithm", "RSA", "-pkeyopt",
                      "rsa_keygen_bits:2048", "-out", self.stray_key)

    def _path(self, name):
        return os.path.join(self.folder, name)

    def _openssl(self, *args):
        result = subprocess.run(["openssl"] + list(args),
                                stdin=subprocess.DEVNULL,
                                capture_output=True, timeout=60)
        if result.returncode != 0:
            raise PeerError("openssl %s failed: %s" % (
                args[0], result.stderr.decode(errors="replace")))

    def _signed(self, name, ca_cert, ca_key, subject, extensions):
        key = self._path(name + ".key")
        csr = self._path(name + ".csr")
        cert = self._path(name + ".pem")
        ext = self._path(name + ".ext")
        with open(ext, "w", encoding="ascii") as f:
            f.write("basicConstraints=CA:FALSE\n" + extensions)
        self._openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout",
                      key, "-out", csr, "-subj", subject)
        self._openssl("x509", "-req", "-in", csr, "-CA", ca_cert,
                      "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
                      "-out", cert, "-extfile", ext)
        return cert, key

    def remove(self):
        shutil.rmtree(self.folder, ignore_errors=True)


def tearDownModule():
    if ProfileCertificates._shared is not None:
        ProfileCertificates._shared.remove()
        ProfileCertificates._shared = None


class ProfileTestCase(IntegrationTest):
    """Helpers: peers, a daemon with named profiles, and start-up
    failures."""

    def setUp(self):
        super().setUp()
        if shutil.which("openssl") is None:
            self.skipTest("openssl command not found")
        try:
            self.certs = ProfileCertificates.shared()
        except PeerMissing as e:
            self.skipTest(str(e))
        self.base = self.certs.base

    def tls_peer(self, cert=None, key=None, **options):
        """Start peer_tls.py, by default with the localhost/127.0.0.1
        certificate of the test CA."""
        return self._peer(TlsPeer, cert or self.base.server_cert,
                          key or self.base.server_key, **options)

    def profile(self, **keys):
        """A profile that trusts the test CA, plus keys."""
        prof = {"ca_certificate": self.base.ca_cert}
        prof.update(keys)
        return prof

    def start_profiles(self, **profiles):
        return self.start_daemon({"tls": {"profiles": profiles}}, tls=True)

    @staticmethod
    def conn(peer, profile, host="127.0.0.1"):
        return "TLS:%s+%d:%s" % (host, peer.port, profile)

    def logon_status(self, peer, profile, expected):
        """Log on through profile, check the status, return the reply."""
        reply = self.client().logon(self.conn(peer, profile))
        self.assertStatus(reply, expected, "LogonSMTP with profile %s"
                          % profile)
        return reply

    def failed_start(self, profiles):
        """Run smtpoold with these profiles, expecting it to exit on its
        own; return (exit status, stderr)."""
        config = Daemon(self.folder, config={"tls": {"profiles": profiles}},
                        ca_certificate=self.base.ca_cert)
        path = daemon_path()
        if not os.access(path, os.X_OK):
            self.fail("%s not found: build the project first" % path)
        proc = subprocess.Popen([path, "-c", config.config_path],
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            _, err = proc.communicate(timeout=FAILED_START_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=FAILED_START_TIMEOUT)
            self.fail("smtpoold still running after %d s with an invalid "
                      "TLS profile" % FAILED_START_TIMEOUT)
        text = err.decode("utf-8", "replace")
        self.assertEqual([line for line in text.splitlines()
                          if any(mark in line for mark in SANITIZER_MARKS)],
                         [], "sanitizer errors in the smtpoold output")
        return proc.returncode, text


class ClientCertificateTest(ProfileTestCase):
    """A server that requires a client certificate signed by its CA."""

    def mtls_profile(self, cert=None, key=None):
        return self.profile(client_certificate=cert or self.certs.client_cert,
                            client_key=key or self.certs.client_key)

    def test_client_certificate_logon_and_send(self):
        peer = self.tls_peer(client_ca=self.certs.client_ca_cert)
        self.start_profiles(mtls=self.mtls_profile())
        session = self.client()
        self.assertStatus(session.logon(self.conn(peer, "mtls")), 0)
        self.assertStatus(session.sendmail("", headers(), BODY), 0)
        self.assertEqual(len(peer.record.wait_messages(1)), 1)

        events = peer.tls_events()
        self.assertTrue(events, "the server recorded no handshake")
        for event in events:
            self.assertIn(CLIENT_SUBJECT, event["client_subject"] or "")

    def test_client_certificate_over_tls_1_2(self):
        peer = self.tls_peer(client_ca=self.certs.client_ca_cert,
                             max_version="1.2")
        self.start_profiles(mtls=self.mtls_profile())
        self.logon_status(peer, "mtls", 0)
        events = peer.tls_events()
        self.assertEqual(events[0]["version"], "TLSv1.2")
        self.assertIn(CLIENT_SUBJECT, events[0]["client_subject"] or "")

    def test_no_client_certificate_tls_1_3(self):
        # In TLS 1.3 the client finishes its handshake before the server
        # checks the certificate, so the failure reaches the daemon as an
        # alert on its first read, while it waits for the greeting.
        peer = self.tls_peer(client_ca=self.certs.client_ca_cert)
        self.start_profiles(plain=self.profile())
        reply = self.logon_status(peer, "plain", -8)
        self.assertTrue(reply.message)
        self.assertEqual(peer.tls_events(), [])
        self.assertTrue(peer.tls_errors())

    def test_no_client_certificate_tls_1_2(self):
        peer = self.tls_peer(client_ca=self.certs.client_ca_cert,
                             max_version="1.2")
        self.start_profiles(plain=self.profile())
        self.logon_status(peer, "plain", -8)
        self.assertEqual(peer.tls_events(), [])

    def test_no_client_certificate_sends_nothing(self):
        peer = self.tls_peer(client_ca=self.certs.client_ca_cert)
        self.start_profiles(plain=self.profile())
        reply = self.client().sendmail(self.conn(peer, "plain"), headers(),
                                       BODY)
        self.assertStatus(reply, -8)
        self.assertEqual(peer.record.messages(), [])

    def test_client_certificate_of_other_ca(self):
        # The self-signed certificate is not signed by the client CA.
        peer = self.tls_peer(client_ca=self.certs.client_ca_cert)
        self.start_profiles(other=self.mtls_profile(
            self.base.selfsigned_cert, self.base.selfsigned_key))
        self.logon_status(peer, "other", -8)
        self.assertEqual(peer.tls_events(), [])

    def test_client_certificate_of_other_ca_tls_1_2(self):
        peer = self.tls_peer(client_ca=self.certs.client_ca_cert,
                             max_version="1.2")
        self.start_profiles(other=self.mtls_profile(
            self.base.selfsigned_cert, self.base.selfsigned_key))
        self.logon_status(peer, "other", -8)
        self.assertEqual(peer.tls_events(), [])

    def test_mismatched_client_key_stops_start(self):
        status, err = self.failed_start({"mtls": self.mtls_profile(
            key=self.certs.stray_key)})
        self.assertEqual(status, 78, err)
        self.assertIn("mtls", err)
        self.assertIn(self.certs.stray_key, err)
        self.assertIn("client_key", err)
        self.assertIn("match", err)

    def test_check_config_loads_client_key(self):
        config = Daemon(self.folder, config={"tls": {"profiles": {
            "mtls": self.mtls_profile(key=self.certs.stray_key)}}},
            ca_certificate=self.base.ca_cert)
        proc = subprocess.run([daemon_path(), "-t", "-c", config.config_path],
                              stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=20)
        self.assertEqual(proc.returncode, 78, proc.stdout + proc.stderr)
        self.assertIn("mtls", proc.stderr)
        self.assertIn(self.certs.stray_key, proc.stderr)

    def test_missing_client_key_file_stops_start(self):
        missing = os.path.join(self.folder, "absent.key")
        status, err = self.failed_start({"mtls": self.mtls_profile(
            key=missing)})
        self.assertEqual(status, 78, err)
        self.assertIn("mtls", err)
        self.assertIn(missing, err)

    def test_certificate_without_key_stops_start(self):
        status, err = self.failed_start({"mtls": self.profile(
            client_certificate=self.certs.client_cert)})
        self.assertEqual(status, 78, err)
        self.assertIn("client_key", err)


class MinimumVersionTest(ProfileTestCase):
    """min_tls_version against a server capped at a protocol version."""

    def test_minimum_1_3_rejects_tls_1_2_server(self):
        peer = self.tls_peer(max_version="1.2")
        self.start_profiles(modern=self.profile(min_tls_version="1.3"))
        self.logon_status(peer, "modern", -8)
        self.assertEqual(peer.tls_events(), [])
        self.assertEqual(peer.record.messages(), [])

    def test_minimum_1_2_accepts_tls_1_2_server(self):
        peer = self.tls_peer(max_version="1.2")
        self.start_profiles(compat=self.profile(min_tls_version="1.2"))
        session = self.client()
        self.assertStatus(session.logon(self.conn(peer, "compat")), 0)
        self.assertStatus(session.sendmail("", headers(), BODY), 0)
        self.assertEqual(peer.tls_events()[0]["version"], "TLSv1.2")

    def test_minimum_1_3_uses_tls_1_3(self):
        peer = self.tls_peer()
        self.start_profiles(modern=self.profile(min_tls_version="1.3"))
        self.logon_status(peer, "modern", 0)
        self.assertEqual(peer.tls_events()[0]["version"], "TLSv1.3")

    def test_unknown_version_stops_start(self):
        status, err = self.failed_start({"old": self.profile(
            min_tls_version="1.1")})
        self.assertEqual(status, 78, err)
        self.assertIn("min_tls_version", err)


class CipherTest(ProfileTestCase):
    """ciphers against a server that offers one TLS 1.2 cipher."""

    def one_cipher_peer(self, max_version="1.2"):
        return self.tls_peer(max_version=max_version, ciphers=TLS12_CIPHER)

    def test_excluded_cipher_fails(self):
        peer = self.one_cipher_peer()
        self.start_profiles(strict=self.profile(ciphers=OTHER_TLS12_CIPHER))
        self.logon_status(peer, "strict", -8)
        self.assertEqual(peer.tls_events(), [])

    def test_included_cipher_succeeds(self):
        peer = self.one_cipher_peer()
        self.start_profiles(strict=self.profile(
            ciphers=OTHER_TLS12_CIPHER + ":" + TLS12_CIPHER))
        session = self.client()
        self.assertStatus(session.logon(self.conn(peer, "strict")), 0)
        self.assertStatus(session.sendmail("", headers(), BODY), 0)
        event = peer.tls_events()[0]
        self.assertEqual(event["version"], "TLSv1.2")
        self.assertEqual(event["cipher"], TLS12_CIPHER)

    def test_ciphers_leave_tls_1_3_alone(self):
        # The cipher list sets TLS 1.2 ciphers only, so a server that
        # also speaks TLS 1.3 is reached with a TLS 1.3 suite.
        peer = self.one_cipher_peer(max_version=None)
        self.start_profiles(strict=self.profile(ciphers=OTHER_TLS12_CIPHER))
        self.logon_status(peer, "strict", 0)
        self.assertEqual(peer.tls_events()[0]["version"], "TLSv1.3")

    def test_cipher_list_selecting_nothing_stops_start(self):
        status, err = self.failed_start({"strict": self.profile(
            ciphers="NO-SUCH-CIPHER")})
        self.assertEqual(status, 78, err)
        self.assertIn("tls.profiles.strict.ciphers", err)
        self.assertIn("NO-SUCH-CIPHER", err)


class NameListTest(ProfileTestCase):
    """verify_server_name lists, connecting by 127.0.0.1."""

    def run_list(self, cert, key, names, expected):
        peer = self.tls_peer(cert, key)
        self.start_profiles(listed=self.profile(verify_server_name=names))
        self.logon_status(peer, "listed", expected)
        return peer

    def wildcard(self, names, expected):
        return self.run_list(self.certs.wildcard_cert,
                             self.certs.wildcard_key, names, expected)

    def ipname(self, names, expected):
        return self.run_list(self.certs.ipname_cert, self.certs.ipname_key,
                             names, expected)

    def test_listed_wildcard_matches_wildcard_certificate(self):
        # OpenSSL lets a certificate's "*" label match a literal "*" in
        # the listed name, so the entry matches the same wildcard name.
        self.wildcard(["DNS:*.smtpool.test"], 0)

    def test_listed_host_matches_wildcard_certificate(self):
        # A concrete host is matched against the certificate's wildcard.
        self.wildcard(["DNS:mail.smtpool.test"], 0)

    def test_listed_subdomain_rejected_by_wildcard(self):
        # A wildcard covers exactly one label.
        self.wildcard(["DNS:a.mail.smtpool.test"], -8)

    def test_listed_parent_rejected_by_wildcard(self):
        self.wildcard(["DNS:smtpool.test"], -8)

    def test_listed_wildcard_against_concrete_certificate(self):
        # A listed wildcard is not a pattern: it does not match the
        # concrete DNS:mail.other.test of this certificate.
        self.ipname(["DNS:*.other.test"], -8)

    def test_listed_ip_matches_ip_san(self):
        self.ipname(["IP:127.0.0.1"], 0)

    def test_listed_other_dns_name_rejects(self):
        # The list replaces the check of the connection string's host,
        # so 127.0.0.1 in the certificate does not help.
        peer = self.ipname(["DNS:other.test"], -8)
        self.assertEqual(peer.record.messages(), [])

    def test_listed_other_ip_rejects(self):
        self.ipname(["IP:127.0.0.2"], -8)

    def test_two_ips_one_matching(self):
        self.ipname(["IP:127.0.0.2", "IP:127.0.0.1"], 0)

    def test_two_ips_none_matching(self):
        self.ipname(["IP:127.0.0.2", "IP:127.0.0.3"], -8)

    def test_mixed_list_ip_matching(self):
        self.ipname(["DNS:other.test", "IP:127.0.0.1"], 0)

    def test_mixed_list_dns_matching(self):
        self.ipname(["IP:127.0.0.2", "DNS:mail.other.test"], 0)

    def test_mixed_list_wildcard_matching(self):
        self.wildcard(["IP:127.0.0.9", "DNS:*.smtpool.test"], 0)

    def test_mixed_list_host_under_wildcard(self):
        self.wildcard(["IP:127.0.0.9", "DNS:mail.smtpool.test"], 0)

    def test_mixed_list_none_matching(self):
        self.wildcard(["IP:127.0.0.1", "DNS:other.test"], -8)

    def test_mixed_list_keeps_chain_check(self):
        # The self-signed certificate carries IP:127.0.0.1, but its chain
        # does not verify: a matching name must not hide that.
        self.run_list(self.base.selfsigned_cert, self.base.selfsigned_key,
                      ["DNS:other.test", "IP:127.0.0.1"], -8)

    def test_ip_list_keeps_chain_check(self):
        self.run_list(self.base.selfsigned_cert, self.base.selfsigned_key,
                      ["IP:127.0.0.1"], -8)

    def test_listed_name_sends_mail(self):
        peer = self.wildcard(["DNS:*.smtpool.test"], 0)
        reply = self.client().sendmail(self.conn(peer, "listed"), headers(),
                                       BODY)
        self.assertStatus(reply, 0)
        self.assertEqual(len(peer.record.wait_messages(1)), 1)

    def test_invalid_list_entry_stops_start(self):
        status, err = self.failed_start({"listed": self.profile(
            verify_server_name=["mail.smtpool.test"])})
        self.assertEqual(status, 78, err)
        self.assertIn("verify_server_name", err)


class NoVerificationTest(ProfileTestCase):
    """verify_server: no in a named profile."""

    def test_warning_names_profile(self):
        self.start_profiles(lab={"verify_server": False})
        warnings = [line for line in self.daemon.log_text().splitlines()
                    if "config.tls" in line]
        self.assertTrue(any("profile=lab" in line for line in warnings),
                        "no config.tls warning for profile lab in:\n"
                        + self.daemon.log_text()[-3000:])
        # The default profile verifies, so it gets no warning.
        self.assertFalse(any("profile=default" in line
                             for line in warnings), warnings)

    def test_untrusted_certificate_accepted(self):
        peer = self.tls_peer(self.base.selfsigned_cert,
                             self.base.selfsigned_key)
        self.start_profiles(lab={"verify_server": False})
        session = self.client()
        self.assertStatus(session.logon(self.conn(peer, "lab")), 0)
        self.assertStatus(session.sendmail("", headers(), BODY), 0)
        self.assertEqual(len(peer.record.wait_messages(1)), 1)

    def test_wrong_name_accepted(self):
        peer = self.tls_peer(self.certs.wildcard_cert,
                             self.certs.wildcard_key)
        self.start_profiles(lab={"verify_server": False})
        self.logon_status(peer, "lab", 0)

    def test_default_profile_still_verifies(self):
        peer = self.tls_peer(self.base.selfsigned_cert,
                             self.base.selfsigned_key)
        self.start_profiles(lab={"verify_server": False})
        self.assertStatus(self.client().logon(peer.conn("TLS")), -8)


class ProfileNameTest(ProfileTestCase):
    """Profile names in connection strings."""

    def test_undefined_profile_logon(self):
        peer = self.tls_peer()
        self.start_profiles(lab={"verify_server": False})
        reply = self.logon_status(peer, "nosuch", -9)
        self.assertIn("nosuch", reply.message)
        self.assertEqual(peer.record.connection_count(), 0)

    def test_undefined_profile_sendmail(self):
        peer = self.tls_peer()
        self.start_profiles(lab={"verify_server": False})
        reply = self.client().sendmail(self.conn(peer, "nosuch"), headers(),
                                       BODY)
        self.assertStatus(reply, -9)
        self.assertIn("nosuch", reply.message)
        self.assertEqual(peer.record.connection_count(), 0)

    def test_undefined_profile_without_profiles(self):
        peer = self.tls_peer()
        self.start_daemon(tls=True)
        reply = self.logon_status(peer, "nosuch", -9)
        self.assertIn("nosuch", reply.message)

    def test_profile_with_tcp_invalid(self):
        peer = self.tls_peer()
        self.start_profiles(lab={"verify_server": False})
        reply = self.client().logon("TCP:127.0.0.1+%d:lab" % peer.port)
        self.assertStatus(reply, -9)
        self.assertIn("TLS", reply.message)
        self.assertEqual(peer.record.connection_count(), 0)

    def test_profile_with_tcp_sendmail_invalid(self):
        peer = self.tls_peer()
        self.start_profiles(lab={"verify_server": False})
        reply = self.client().sendmail("TCP:127.0.0.1+%d:lab" % peer.port,
                                       headers(), BODY)
        self.assertStatus(reply, -9)
        self.assertEqual(peer.record.connection_count(), 0)

    def test_profile_name_case_sensitive(self):
        # Profile names are compared as written, so "LAB" is not "lab".
        peer = self.tls_peer()
        self.start_profiles(lab={"verify_server": False})
        self.logon_status(peer, "LAB", -9)

    def test_two_profiles_same_server(self):
        # One profile passes and one fails on the same server, so the
        # profile is part of what selects a connection.
        peer = self.tls_peer(self.base.selfsigned_cert,
                             self.base.selfsigned_key)
        self.start_profiles(lab={"verify_server": False},
                            strict=self.profile())
        self.logon_status(peer, "lab", 0)
        self.logon_status(peer, "strict", -8)
        self.logon_status(peer, "lab", 0)


if __name__ == "__main__":
    unittest.main()
