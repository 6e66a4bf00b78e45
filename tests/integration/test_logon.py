"""LogonSMTP, LogoffSMTP and GetSMTPResponse against real and scripted
servers: every status a test can provoke."""

import unittest

from base import IntegrationTest, closed_port


class LogonTest(IntegrationTest):

    def setUp(self):
        super().setUp()
        self.server = self.sink()
        self.start_daemon()
        self.session = self.client()

    def test_logon_to_running_server_returns_0(self):
        self.assertStatus(self.session.logon(self.server.conn()), 0)

    def test_logon_without_connector_returns_0(self):
        reply = self.session.logon("127.0.0.1+%d" % self.server.port)
        self.assertStatus(reply, 0)

    def test_logon_with_user_returns_minus_2(self):
        reply = self.session.logon(self.server.conn(), user="alice")
        self.assertStatus(reply, -2)

    def test_logon_with_password_returns_minus_2(self):
        reply = self.session.logon(self.server.conn(), password="secret")
        self.assertStatus(reply, -2)

    def test_second_logon_returns_minus_3(self):
        self.assertStatus(self.session.logon(self.server.conn()), 0)
        self.assertStatus(self.session.logon(self.server.conn()), -3)

    def test_logon_after_logoff_returns_0(self):
        self.assertStatus(self.session.logon(self.server.conn()), 0)
        self.assertStatus(self.session.logoff(), 0)
        self.assertStatus(self.session.logon(self.server.conn()), 0)

    def test_logon_to_closed_port_returns_minus_9(self):
        reply = self.session.logon("TCP:127.0.0.1+%d" % closed_port())
        self.assertStatus(reply, -9)
        self.assertTrue(reply.message, "a -9 reply explains itself")

    def test_logon_with_port_over_65535_returns_minus_9(self):
        reply = self.session.logon("TCP:127.0.0.1+99999")
        self.assertStatus(reply, -9)
        self.assertIn("99999", reply.message)

    def test_logon_with_non_numeric_port_returns_minus_9(self):
        self.assertStatus(self.session.logon("TCP:127.0.0.1+smtp"), -9)

    def test_logon_with_unknown_connector_returns_minus_9(self):
        reply = self.session.logon("UDP:127.0.0.1+%d" % self.server.port)
        self.assertStatus(reply, -9)

    def test_logon_with_profile_on_tcp_returns_minus_9(self):
        reply = self.session.logon("TCP:127.0.0.1+%d:default"
                                   % self.server.port)
        self.assertStatus(reply, -9)

    def test_failed_logon_leaves_session_logged_off(self):
        self.assertStatus(self.session.logon("TCP:127.0.0.1+99999"), -9)
        self.assertStatus(self.session.logoff(), -8)
        self.assertStatus(self.session.logon(self.server.conn()), 0)

    def test_logoff_without_logon_returns_minus_8(self):
        self.assertStatus(self.session.logoff(), -8)

    def test_logoff_after_logon_returns_0(self):
        self.assertStatus(self.session.logon(self.server.conn()), 0)
        self.assertStatus(self.session.logoff(), 0)

    def test_second_logoff_returns_minus_8(self):
        self.assertStatus(self.session.logon(self.server.conn()), 0)
        self.assertStatus(self.session.logoff(), 0)
        self.assertStatus(self.session.logoff(), -8)

    def test_get_response_before_any_exchange_returns_minus_10(self):
        self.assertStatus(self.session.get_response(), -10)

    def test_get_response_after_logon_returns_server_reply(self):
        self.assertStatus(self.session.logon(self.server.conn()), 0)
        reply = self.session.get_response()
        self.assertStatus(reply, 0)
        self.assertGreaterEqual(reply.smtp_code, 200)
        self.assertLess(reply.smtp_code, 300)
        self.assertEqual(len(reply.extras), 1, "one extra: server text")
        self.assertLessEqual(len(reply.extras[0].encode()), 512)

    def test_sessions_log_on_independently(self):
        other = self.client()
        self.assertStatus(self.session.logon(self.server.conn()), 0)
        self.assertStatus(other.logon(self.server.conn()), 0)
        self.assertStatus(other.logoff(), 0)
        self.assertStatus(self.session.logon(self.server.conn()), -3)


class LogonUndefinedProfileTest(IntegrationTest):

    def test_logon_with_undefined_profile_returns_minus_9(self):
        certs = self.certificates()
        server = self.recorder(tls=(certs.server_cert, certs.server_key))
        self.start_daemon(tls=True)
        reply = self.client().logon("TLS:127.0.0.1+%d:nosuchprofile"
                                    % server.port)
        self.assertStatus(reply, -9)
        self.assertIn("nosuchprofile", reply.message)
        self.assertEqual(server.record.connection_count(), 0,
                         "an undefined profile fails before connecting")


if __name__ == "__main__":
    unittest.main()
