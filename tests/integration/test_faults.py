"""Server behaviour that real servers rarely show: rejecting greetings,
multi-line greetings, EHLO rejected, silence, slowness and overlong
replies.  The scripted peer produces each one."""

import time
import unittest

from base import IntegrationTest, headers

BODY = "fault test\n"


class GreetingTest(IntegrationTest):

    # NOTE: the protocol does not say whether a rejecting greeting is a
    # network problem (-9) or a protocol error with the server (-8), so
    # these tests accept either and check the reply code instead.
    def test_greeting_421_fails_logon(self):
        server = self.scripted(greeting=["421 4.3.2 scripted.test busy"])
        self.start_daemon()
        session = self.client()
        reply = session.logon(server.conn())
        self.assertIn(reply.status, (-8, -9), repr(reply))
        response = session.get_response()
        self.assertStatus(response, 0)
        self.assertEqual(response.smtp_code, 421)

    def test_greeting_554_fails_logon(self):
        server = self.scripted(greeting=["554 5.3.2 no service here"])
        self.start_daemon()
        session = self.client()
        reply = session.logon(server.conn())
        self.assertIn(reply.status, (-8, -9), repr(reply))
        self.assertEqual(session.get_response().smtp_code, 554)

    def test_greeting_554_fails_sendmail(self):
        server = self.scripted(greeting=["554 5.3.2 no service here"])
        self.start_daemon()
        reply = self.client().sendmail(server.conn(), headers(), BODY)
        self.assertLess(reply.status, 0)
        self.assertEqual(server.record.messages(), [])

    def test_multi_line_greeting_is_accepted(self):
        server = self.scripted(greeting=["220-scripted.test first line",
                                         "220-second line",
                                         "220 scripted.test ready"])
        self.start_daemon()
        session = self.client()
        self.assertStatus(session.logon(server.conn()), 0)
        self.assertStatus(session.sendmail("", headers(), BODY), 0)
        self.assertEqual(len(server.record.wait_messages(1)), 1)

    def test_ehlo_rejected_falls_back_to_helo(self):
        server = self.scripted(ehlo_reply="500 5.5.1 command unrecognized")
        self.start_daemon()
        session = self.client()
        self.assertStatus(session.logon(server.conn()), 0)
        self.assertStatus(session.sendmail("", headers(), BODY), 0)
        commands = [c.upper() for c in server.record.commands()]
        self.assertIn("EHLO SMTPOOL.TEST", commands)
        self.assertIn("HELO SMTPOOL.TEST", commands)
        self.assertEqual(len(server.record.wait_messages(1)), 1)

    def test_ehlo_uses_configured_helo_name(self):
        server = self.scripted()
        self.start_daemon({"helo_name": "client.example.test"})
        self.assertStatus(self.client().logon(server.conn()), 0)
        self.assertIn("EHLO client.example.test", server.record.commands())


class TimingTest(IntegrationTest):

    def test_silent_server_times_out_with_minus_9(self):
        server = self.scripted(silent=True)
        self.start_daemon({"timeouts": {"greeting": 2}})
        started = time.monotonic()
        reply = self.client().logon(server.conn())
        elapsed = time.monotonic() - started
        self.assertStatus(reply, -9)
        self.assertGreaterEqual(elapsed, 1.5)
        self.assertLess(elapsed, 8, "greeting timeout is 2 s")

    def test_slow_replies_within_timeouts_succeed(self):
        server = self.scripted(slow=0.3)
        self.start_daemon()
        session = self.client()
        self.assertStatus(session.logon(server.conn()), 0)
        self.assertStatus(session.sendmail("", headers(), BODY), 0)
        self.assertEqual(len(server.record.wait_messages(1)), 1)

    def test_replies_slower_than_timeout_fail_with_minus_9(self):
        server = self.scripted(slow=3)
        self.start_daemon({"timeouts": {"greeting": 1, "helo": 1}})
        reply = self.client().logon(server.conn())
        self.assertStatus(reply, -9)


class OverlongReplyTest(IntegrationTest):

    def test_overlong_greeting_fails_logon_and_daemon_goes_on(self):
        bad = self.scripted(long_reply=100000)
        good = self.sink()
        self.start_daemon()
        reply = self.client().logon(bad.conn())
        self.assertIn(reply.status, (-8, -9), repr(reply))
        self.assertStatus(self.client().logon(good.conn()), 0)

    def test_response_text_is_cut_to_512_bytes(self):
        server = self.scripted(greeting=["554 " + "z" * 900])
        self.start_daemon()
        session = self.client()
        self.assertLess(session.logon(server.conn()).status, 0)
        response = session.get_response()
        self.assertStatus(response, 0)
        self.assertLessEqual(len(response.extras[0].encode()), 512)


if __name__ == "__main__":
    unittest.main()
