"""Implicit TLS to the recording server: trusted and untrusted
certificates, host name checks and named profiles."""

import unittest

from base import IntegrationTest, headers

BODY = "sent over TLS\n"


class ImplicitTlsTest(IntegrationTest):

    def setUp(self):
        super().setUp()
        self.certs = self.certificates()

    def tls_recorder(self, cert, key):
        return self.recorder(tls=(cert, key))

    def test_tls_with_test_ca_succeeds_by_ip(self):
        server = self.tls_recorder(self.certs.server_cert,
                                   self.certs.server_key)
        self.start_daemon(tls=True)
        session = self.client()
        self.assertStatus(session.logon(server.conn("TLS")), 0)
        self.assertStatus(session.sendmail("", headers(), BODY), 0)
        self.assertEqual(len(server.record.wait_messages(1)), 1)

    def test_tls_with_test_ca_succeeds_by_name(self):
        server = self.tls_recorder(self.certs.server_cert,
                                   self.certs.server_key)
        self.start_daemon(tls=True)
        reply = self.client().sendmail(server.conn("TLS", "localhost"),
                                       headers(), BODY)
        self.assertStatus(reply, 0)
        self.assertEqual(len(server.record.wait_messages(1)), 1)

    def test_untrusted_certificate_returns_minus_8(self):
        server = self.tls_recorder(self.certs.selfsigned_cert,
                                   self.certs.selfsigned_key)
        self.start_daemon(tls=True)
        reply = self.client().logon(server.conn("TLS"))
        self.assertStatus(reply, -8)
        self.assertTrue(reply.message)

    def test_untrusted_certificate_sends_no_message(self):
        server = self.tls_recorder(self.certs.selfsigned_cert,
                                   self.certs.selfsigned_key)
        self.start_daemon(tls=True)
        reply = self.client().sendmail(server.conn("TLS"), headers(), BODY)
        self.assertStatus(reply, -8)
        self.assertEqual(server.record.messages(), [])

    def test_wrong_host_name_returns_minus_8(self):
        server = self.tls_recorder(self.certs.wrongname_cert,
                                   self.certs.wrongname_key)
        self.start_daemon(tls=True)
        self.assertStatus(self.client().logon(server.conn("TLS")), -8)

    def test_tls_to_plain_server_returns_minus_8(self):
        server = self.recorder()
        self.start_daemon(tls=True)
        self.assertStatus(self.client().logon(server.conn("TLS")), -8)

    def test_profile_with_listed_name_accepts_other_name(self):
        server = self.tls_recorder(self.certs.wrongname_cert,
                                   self.certs.wrongname_key)
        profile = {"ca_certificate": self.certs.ca_cert,
                   "verify_server_name": ["DNS:mail.invalid"]}
        self.start_daemon({"tls": {"profiles": {"relay": profile}}},
                          tls=True)
        reply = self.client().logon("TLS:127.0.0.1+%d:relay" % server.port)
        self.assertStatus(reply, 0)

    def test_profile_without_name_check_accepts_other_name(self):
        server = self.tls_recorder(self.certs.wrongname_cert,
                                   self.certs.wrongname_key)
        profile = {"ca_certificate": self.certs.ca_cert,
                   "verify_server_name": False}
        self.start_daemon({"tls": {"profiles": {"anyname": profile}}},
                          tls=True)
        reply = self.client().logon("TLS:127.0.0.1+%d:anyname" % server.port)
        self.assertStatus(reply, 0)

    def test_profile_without_verification_accepts_self_signed(self):
        server = self.tls_recorder(self.certs.selfsigned_cert,
                                   self.certs.selfsigned_key)
        self.start_daemon({"tls": {"profiles": {
            "insecure": {"verify_server": False}}}}, tls=True)
        reply = self.client().logon("TLS:127.0.0.1+%d:insecure"
                                    % server.port)
        self.assertStatus(reply, 0)

    def test_tls_1_3_minimum_succeeds(self):
        server = self.tls_recorder(self.certs.server_cert,
                                   self.certs.server_key)
        self.start_daemon({"tls": {"profiles": {"modern": {
            "ca_certificate": self.certs.ca_cert,
            "min_tls_version": "1.3"}}}}, tls=True)
        reply = self.client().logon("TLS:127.0.0.1+%d:modern" % server.port)
        self.assertStatus(reply, 0)


if __name__ == "__main__":
    unittest.main()
