"""Message composition, checked on the bytes the server received."""

import email
import email.header
import email.policy
import email.utils
import re
import unittest

from base import IntegrationTest, headers

# A line ending that is not CRLF: LF without CR before it, or CR without LF
# after it.
BARE_LINE_END = re.compile(rb"(?<!\r)\n|\r(?!\n)")


def header_section(data):
    return data.split(b"\r\n\r\n", 1)[0]


def body_text(message):
    """Return the decoded text part with CRLF turned into LF."""
    part = message
    if message.is_multipart():
        part = next(p for p in message.walk()
                    if p.get_content_type() == "text/plain")
    payload = part.get_payload(decode=True)
    charset = part.get_content_charset() or "us-ascii"
    return payload.decode(charset).replace("\r\n", "\n")


class ComposeTest(IntegrationTest):

    def setUp(self):
        super().setUp()
        self.server = self.recorder()
        self.start_daemon()
        self.session = self.client()

    def send(self, header_list, text, attachments=()):
        """Send one message; return (raw bytes, parsed message,
        envelope recipients)."""
        reply = self.session.sendmail(self.server.conn(), header_list, text,
                                      attachments=list(attachments))
        self.assertStatus(reply, 0)
        messages = self.server.record.wait_messages(1)
        self.assertEqual(len(messages), 1)
        data = messages[0]["data"]
        parsed = email.message_from_bytes(data, policy=email.policy.compat32)
        return data, parsed, messages[0]["rcpt_tos"]

    def test_message_has_date_message_id_and_mime_version(self):
        _, msg, _ = self.send(headers(), "body\n")
        self.assertIsNotNone(msg["Date"])
        self.assertIsNotNone(email.utils.parsedate_tz(msg["Date"]),
                             "Date parses as RFC 5322: %r" % msg["Date"])
        self.assertRegex(msg["Message-ID"] or "", r"^<[^<>@\s]+@[^<>@\s]+>$")
        self.assertEqual((msg["MIME-Version"] or "").strip(), "1.0")

    def test_message_ids_differ_between_messages(self):
        self.assertStatus(self.session.sendmail(self.server.conn(),
                                                headers(), "one\n"), 0)
        self.assertStatus(self.session.sendmail(self.server.conn(),
                                                headers(), "two\n"), 0)
        messages = self.server.record.wait_messages(2)
        ids = [email.message_from_bytes(m["data"])["Message-ID"]
               for m in messages]
        self.assertEqual(len(ids), 2)
        self.assertNotEqual(ids[0], ids[1])

    def test_from_to_cc_and_subject_headers_match_list(self):
        _, msg, rcpts = self.send(
            headers(to="Ann Example <ann@example.test>",
                    sender="bob@example.test", subject="Quarterly report",
                    cc="carl@example.test", reply="help@example.test"),
            "body\n")
        self.assertIn("ann@example.test", msg["To"])
        self.assertIn("Ann Example", msg["To"])
        self.assertIn("bob@example.test", msg["From"])
        self.assertIn("carl@example.test", msg["Cc"])
        self.assertIn("help@example.test", msg["Reply-To"])
        self.assertEqual(msg["Subject"], "Quarterly report")
        self.assertEqual(sorted(rcpts),
                         ["ann@example.test", "carl@example.test"])

    def test_envelope_sender_is_from_address(self):
        self.send(headers(sender="Bob <bob@example.test>"), "body\n")
        messages = self.server.record.messages()
        self.assertEqual(messages[0]["mail_from"], "bob@example.test")

    def test_subject_with_semicolon_survives(self):
        _, msg, _ = self.send(headers(subject="part 1; part 2"), "body\n")
        self.assertEqual(msg["Subject"], "part 1; part 2")

    def test_non_ascii_subject_uses_rfc_2047(self):
        subject = "Grüße aus Köln, ½ € später"
        data, msg, _ = self.send(headers(subject=subject), "body\n")
        head = header_section(data)
        self.assertTrue(all(b < 0x80 for b in head),
                        "header section is ASCII only")
        self.assertRegex(head.decode("ascii"), r"(?i)=\?utf-8\?[bq]\?")
        decoded = str(email.header.make_header(
            email.header.decode_header(msg["Subject"])))
        self.assertEqual(decoded, subject)

    def test_non_ascii_body_decodes_to_original(self):
        text = "Grüße, naïve café.\nZweite Zeile: 日本語\n"
        data, msg, _ = self.send(headers(), text)
        self.assertEqual(body_text(msg), text)
        part = next(p for p in msg.walk()
                    if p.get_content_type() == "text/plain")
        self.assertEqual(part.get_content_charset(), "utf-8")

    def test_attachment_decodes_to_original_with_file_name(self):
        content = bytes(range(256)) * 40
        data, msg, _ = self.send(headers(), "see attachment\n",
                                 [("report.bin", content,
                                   "application/octet-stream")])
        self.assertTrue(msg.is_multipart())
        self.assertEqual(msg.get_content_type(), "multipart/mixed")
        parts = [p for p in msg.walk() if p.get_filename()]
        self.assertEqual(len(parts), 1)
        self.assertEqual(parts[0].get_filename(), "report.bin")
        self.assertEqual(parts[0]["Content-Transfer-Encoding"].strip().lower(),
                         "base64")
        self.assertEqual(parts[0].get_payload(decode=True), content)
        self.assertEqual(body_text(msg), "see attachment\n")

    def test_attachment_content_type_guessed_from_extension(self):
        _, msg, _ = self.send(headers(), "text\n",
                              [("notes.txt", b"plain notes\n", "")])
        parts = [p for p in msg.walk() if p.get_filename()]
        self.assertEqual(len(parts), 1)
        self.assertEqual(parts[0].get_content_type(), "text/plain")

    def test_two_attachments_keep_order_and_content(self):
        first = b"\x00\x01first" * 1000
        second = b"second\xff" * 3000
        _, msg, _ = self.send(headers(), "two files\n",
                              [("a.bin", first, ""), ("b.bin", second, "")])
        parts = [p for p in msg.walk() if p.get_filename()]
        self.assertEqual([p.get_filename() for p in parts],
                         ["a.bin", "b.bin"])
        self.assertEqual(parts[0].get_payload(decode=True), first)
        self.assertEqual(parts[1].get_payload(decode=True), second)

    def test_bcc_in_envelope_but_not_in_headers(self):
        data, msg, rcpts = self.send(
            headers(to="ann@example.test", bcc="hidden@example.test"),
            "body\n")
        self.assertIn("hidden@example.test", rcpts)
        self.assertIn("ann@example.test", rcpts)
        self.assertIsNone(msg["Bcc"])
        self.assertNotIn(b"hidden@example.test", data)

    def test_refused_recipient_left_out_of_to_header(self):
        self.server.stop()
        self.server = self.recorder(reject_rcpt=["gone@example.test"])
        reply = self.session.sendmail(
            self.server.conn(),
            headers(to="ok@example.test, gone@example.test"), "body\n")
        self.assertStatus(reply, 1)
        messages = self.server.record.wait_messages(1)
        self.assertEqual(len(messages), 1)
        msg = email.message_from_bytes(messages[0]["data"])
        self.assertIn("ok@example.test", msg["To"])
        self.assertNotIn("gone@example.test", msg["To"])

    def test_lone_dot_line_survives_dot_stuffing(self):
        text = "first\n.\nlast\n"
        data, msg, _ = self.send(headers(), text)
        self.assertEqual(body_text(msg), text)

    def test_leading_dots_survive_dot_stuffing(self):
        text = "..two dots\n.one dot\n...\n"
        _, msg, _ = self.send(headers(), text)
        self.assertEqual(body_text(msg), text)

    def test_body_cannot_end_data_early(self):
        text = "before\r\n.\r\nQUIT\r\nafter\n"
        _, msg, _ = self.send(headers(), text)
        self.assertEqual(body_text(msg), "before\n.\nQUIT\nafter\n")
        self.assertEqual(len(self.server.record.messages()), 1)

    def test_bare_lf_and_cr_become_crlf(self):
        data, msg, _ = self.send(headers(), "one\ntwo\rthree\r\nfour\n")
        self.assertIsNone(BARE_LINE_END.search(data),
                          "bare CR or LF on the wire: %r" % data)
        self.assertEqual(body_text(msg), "one\ntwo\nthree\nfour\n")

    def test_body_without_final_newline_arrives_whole(self):
        _, msg, _ = self.send(headers(), "no newline at the end")
        self.assertEqual(body_text(msg).rstrip("\n"), "no newline at the end")

    def test_long_body_line_is_wrapped_losslessly(self):
        text = "x" * 3000 + "\n"
        data, msg, _ = self.send(headers(), text)
        for line in data.split(b"\r\n"):
            self.assertLessEqual(len(line), 998, "line over 998 bytes")
        self.assertEqual(body_text(msg), text)


if __name__ == "__main__":
    unittest.main()
