"""SendMail statuses: success, refused recipients and senders, size limits,
quota, rejected messages and invalid arguments."""

import unittest

from base import IntegrationTest, closed_port, headers

BODY = "Hello,\nthis is a test message.\n"


class SendMailSinkTest(IntegrationTest):
    """Cases that need no server-side check: smtp-sink accepts all."""

    def setUp(self):
        super().setUp()
        self.server = self.sink()
        self.start_daemon()
        self.session = self.client()

    def test_one_shot_sendmail_without_logon_returns_0(self):
        reply = self.session.sendmail(self.server.conn(), headers(), BODY)
        self.assertStatus(reply, 0)

    def test_sendmail_after_logon_returns_0(self):
        self.assertStatus(self.session.logon(self.server.conn()), 0)
        reply = self.session.sendmail("", headers(), BODY)
        self.assertStatus(reply, 0)

    def test_sendmail_to_closed_port_returns_minus_9(self):
        reply = self.session.sendmail("TCP:127.0.0.1+%d" % closed_port(),
                                      headers(), BODY)
        self.assertStatus(reply, -9)

    def test_sendmail_to_unparsable_server_returns_minus_9(self):
        reply = self.session.sendmail("TCP:127.0.0.1+0", headers(), BODY)
        self.assertStatus(reply, -9)

    def test_invalid_to_address_returns_minus_2(self):
        reply = self.session.sendmail(self.server.conn(),
                                      headers(to="not-an-address"), BODY)
        self.assertStatus(reply, -2)

    def test_invalid_from_address_returns_minus_2(self):
        reply = self.session.sendmail(self.server.conn(),
                                      headers(sender="bad@@example.test"),
                                      BODY)
        self.assertStatus(reply, -2)

    def test_invalid_cc_address_returns_minus_2(self):
        reply = self.session.sendmail(self.server.conn(),
                                      headers(cc="no at sign"), BODY)
        self.assertStatus(reply, -2)

    def test_missing_to_returns_minus_12(self):
        reply = self.session.sendmail(self.server.conn(), headers(to=None),
                                      BODY)
        self.assertStatus(reply, -12)

    def test_missing_from_returns_minus_12(self):
        reply = self.session.sendmail(self.server.conn(),
                                      headers(sender=None), BODY)
        self.assertStatus(reply, -12)

    def test_message_over_maxsize_returns_minus_6(self):
        reply = self.session.sendmail(self.server.conn(), headers(),
                                      "x" * 5000, maxsize=1000)
        self.assertStatus(reply, -6)

    def test_message_under_maxsize_returns_0(self):
        reply = self.session.sendmail(self.server.conn(), headers(),
                                      BODY, maxsize=100000)
        self.assertStatus(reply, 0)

    def test_unknown_label_returns_minus_1(self):
        reply = self.session.sendmail(self.server.conn(),
                                      headers() + ";COLOR=blue", BODY)
        self.assertStatus(reply, -1)

    def test_repeated_label_returns_minus_1(self):
        reply = self.session.sendmail(
            self.server.conn(), headers() + ";SUBJECT=again", BODY)
        self.assertStatus(reply, -1)

    def test_priority_out_of_range_returns_minus_1(self):
        reply = self.session.sendmail(self.server.conn(),
                                      headers(priority="9"), BODY)
        self.assertStatus(reply, -1)

    def test_priority_in_range_returns_0(self):
        reply = self.session.sendmail(self.server.conn(),
                                      headers(priority="1"), BODY)
        self.assertStatus(reply, 0)

    def test_attachment_name_with_slash_returns_minus_1(self):
        reply = self.session.sendmail(
            self.server.conn(), headers(), BODY,
            attachments=[("../etc/passwd", b"data", "")])
        self.assertStatus(reply, -1)

    def test_failed_sendmail_leaves_session_usable(self):
        reply = self.session.sendmail(
            self.server.conn(), "COLOR=blue", BODY,
            attachments=[("a.bin", b"x" * 70000, "")])
        self.assertStatus(reply, -1)
        reply = self.session.sendmail(self.server.conn(), headers(), BODY)
        self.assertStatus(reply, 0)

    def test_get_response_after_sendmail_returns_250(self):
        self.assertStatus(self.session.sendmail(self.server.conn(),
                                                headers(), BODY), 0)
        reply = self.session.get_response()
        self.assertStatus(reply, 0)
        self.assertEqual(reply.smtp_code, 250)

    def test_large_message_in_many_chunks_returns_0(self):
        body = ("0123456789" * 7 + "\n") * 20000  # about 1.4 MB
        reply = self.session.sendmail(self.server.conn(), headers(), body,
                                      chunk_size=4096)
        self.assertStatus(reply, 0)


class SendMailRecorderTest(IntegrationTest):
    """Cases where the server refuses something or the envelope must be
    checked."""

    def test_sendmail_after_logon_ignores_server_argument(self):
        server = self.recorder()
        self.start_daemon()
        session = self.client()
        self.assertStatus(session.logon(server.conn()), 0)
        reply = session.sendmail("TCP:127.0.0.1+%d" % closed_port(),
                                 headers(), BODY)
        self.assertStatus(reply, 0)
        self.assertEqual(len(server.record.wait_messages(1)), 1)

    def test_one_refused_recipient_returns_1(self):
        server = self.recorder(reject_rcpt=["gone@example.test"])
        self.start_daemon()
        reply = self.client().sendmail(
            server.conn(),
            headers(to="ok@example.test, gone@example.test"), BODY)
        self.assertStatus(reply, 1)
        messages = server.record.wait_messages(1)
        self.assertEqual(len(messages), 1)
        self.assertEqual(messages[0]["rcpt_tos"], ["ok@example.test"])

    def test_two_refused_recipients_return_2(self):
        server = self.recorder(reject_rcpt=["a@example.test",
                                            "c@example.test"])
        self.start_daemon()
        reply = self.client().sendmail(
            server.conn(), headers(to="a@example.test, b@example.test",
                                   cc="c@example.test"), BODY)
        self.assertStatus(reply, 2)

    def test_every_recipient_refused_returns_minus_2(self):
        server = self.recorder(reject_rcpt=["gone@example.test"])
        self.start_daemon()
        reply = self.client().sendmail(server.conn(),
                                       headers(to="gone@example.test"), BODY)
        self.assertStatus(reply, -2)
        self.assertEqual(server.record.messages(), [])

    def test_refused_sender_returns_minus_2(self):
        server = self.recorder(reject_sender=["spammer@example.test"])
        self.start_daemon()
        reply = self.client().sendmail(
            server.conn(), headers(sender="spammer@example.test"), BODY)
        self.assertStatus(reply, -2)

    def test_message_over_server_size_returns_minus_6(self):
        server = self.recorder(size=4000)
        self.start_daemon()
        reply = self.client().sendmail(server.conn(), headers(),
                                       "y" * 10000)
        self.assertStatus(reply, -6)
        self.assertEqual(server.record.messages(), [])

    def test_message_under_server_size_returns_0(self):
        server = self.recorder(size=40000)
        self.start_daemon()
        reply = self.client().sendmail(server.conn(), headers(),
                                       "y" * 10000)
        self.assertStatus(reply, 0)

    def test_rcpt_452_returns_minus_15(self):
        server = self.recorder(rcpt_reply={
            "full@example.test": "452 4.2.2 Mailbox full"})
        self.start_daemon()
        reply = self.client().sendmail(server.conn(),
                                       headers(to="full@example.test"), BODY)
        self.assertStatus(reply, -15)

    def test_data_end_552_quota_returns_minus_15(self):
        server = self.recorder(data_end_reply="552 5.2.2 Mailbox full")
        self.start_daemon()
        reply = self.client().sendmail(server.conn(), headers(), BODY)
        self.assertStatus(reply, -15)

    def test_data_end_552_5_3_4_returns_minus_6(self):
        server = self.recorder(
            data_end_reply="552 5.3.4 Message too big for system")
        self.start_daemon()
        reply = self.client().sendmail(server.conn(), headers(), BODY)
        self.assertStatus(reply, -6)

    def test_data_end_554_returns_minus_11(self):
        server = self.recorder(
            data_end_reply="554 5.6.0 Message content rejected")
        self.start_daemon()
        session = self.client()
        reply = session.sendmail(server.conn(), headers(), BODY)
        self.assertStatus(reply, -11)
        response = session.get_response()
        self.assertStatus(response, 0)
        self.assertEqual(response.smtp_code, 554)
        self.assertIn("content rejected", response.extras[0])

    def test_data_end_451_returns_minus_11(self):
        server = self.recorder(
            data_end_reply="451 4.3.0 Temporary failure")
        self.start_daemon()
        reply = self.client().sendmail(server.conn(), headers(), BODY)
        self.assertStatus(reply, -11)

    def test_data_command_rejected_returns_minus_11(self):
        server = self.scripted(data_reply="554 5.5.1 No valid recipients")
        self.start_daemon()
        reply = self.client().sendmail(server.conn(), headers(), BODY)
        self.assertStatus(reply, -11)

    def test_mail_451_returns_minus_11(self):
        server = self.scripted(mail_reply="451 4.3.2 Try again later")
        self.start_daemon()
        reply = self.client().sendmail(server.conn(), headers(), BODY)
        self.assertStatus(reply, -11)

    def test_pooled_connection_works_after_rejected_message(self):
        server = self.recorder(reject_rcpt=["gone@example.test"])
        self.start_daemon()
        session = self.client()
        self.assertStatus(session.logon(server.conn()), 0)
        self.assertStatus(session.sendmail(
            "", headers(to="gone@example.test"), BODY), -2)
        self.assertStatus(session.sendmail("", headers(), BODY), 0)
        messages = server.record.wait_messages(1)
        self.assertEqual(len(messages), 1)
        self.assertEqual(messages[0]["rcpt_tos"], ["rcpt@example.test"])


if __name__ == "__main__":
    unittest.main()
