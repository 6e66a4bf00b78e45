"""Socket protocol errors: each broken frame gets an ERROR frame (status
-99) and a disconnect, while other clients of the daemon carry on."""

import struct
import unittest

import smtpool_client as sp
from base import IntegrationTest, headers


class ProtocolErrorTest(IntegrationTest):

    def setUp(self):
        super().setUp()
        self.server = self.sink()
        self.start_daemon()
        # Opened first, so it shares the daemon with the broken client.
        self.bystander = self.client()
        self.session = self.client()

    def expect_error_and_close(self, words=()):
        """Read the ERROR frame, check it names each of words, and check
        that the daemon then closes the connection."""
        reply = self.session.read_reply()
        self.assertEqual(reply.op, sp.OP_ERROR, repr(reply))
        self.assertStatus(reply, -99)
        for word in words:
            self.assertIn(word, reply.message)
        with self.assertRaises(sp.ConnectionClosed):
            self.session.read_reply()
        self.assertStatus(self.bystander.logon(self.server.conn()), 0,
                          "another client keeps working")
        return reply

    def test_unsupported_version_names_both_versions(self):
        self.session.send_frame(sp.OP_LOGON, [self.server.conn(), "", ""],
                                version=2)
        self.expect_error_and_close(["2", "1"])

    def test_bad_magic_gets_error(self):
        self.session.send_frame(sp.OP_LOGOFF, [], magic=b"XX")
        self.expect_error_and_close()

    def test_oversized_payload_length_gets_error(self):
        header = b"SP" + bytes([1, sp.OP_LOGON]) + struct.pack(">I", 200000)
        self.session.send_raw(header)
        self.expect_error_and_close()

    def test_garbage_bytes_get_error(self):
        self.session.send_raw(b"EHLO garbage.example\r\n")
        self.expect_error_and_close()

    def test_field_length_past_payload_gets_error(self):
        payload = struct.pack(">I", 50) + b"short"
        self.session.send_raw(b"SP" + bytes([1, sp.OP_LOGON]) +
                              struct.pack(">I", len(payload)) + payload)
        self.expect_error_and_close()

    def test_wrong_field_count_gets_error(self):
        self.session.send_frame(sp.OP_LOGON, [self.server.conn()])
        self.expect_error_and_close()

    def test_too_many_fields_gets_error(self):
        self.session.send_frame(sp.OP_LOGON, ["x"] * 17)
        self.expect_error_and_close()

    def test_overlong_connection_string_gets_error(self):
        self.session.send_frame(sp.OP_LOGON, ["a" * 1025, "", ""])
        self.expect_error_and_close()

    def test_nul_in_text_field_gets_error(self):
        self.session.send_frame(sp.OP_LOGON, ["127.0.0.1\0+25", "", ""])
        self.expect_error_and_close()

    def test_unknown_opcode_gets_error(self):
        self.session.send_frame(0x30, [])
        self.expect_error_and_close()

    def test_reply_opcode_from_client_gets_error(self):
        self.session.send_frame(sp.OP_REPLY, [sp.i32(0), sp.i32(0), "", ""])
        self.expect_error_and_close()

    def test_chunk_outside_sendmail_gets_error(self):
        self.session.send_frame(sp.OP_CHUNK, [b"data"])
        self.expect_error_and_close()

    def test_end_outside_sendmail_gets_error(self):
        self.session.send_frame(sp.OP_END, [])
        self.expect_error_and_close()

    def test_chunk_before_part_gets_error(self):
        self.session.send_frame(sp.OP_SENDMAIL, [self.server.conn(),
                                                 headers(), sp.i64(0)])
        self.session.send_frame(sp.OP_CHUNK, [b"data"])
        self.expect_error_and_close()

    def test_second_text_part_gets_error(self):
        self.session.send_frame(sp.OP_SENDMAIL, [self.server.conn(),
                                                 headers(), sp.i64(0)])
        self.session.send_frame(sp.OP_PART, ["text", "", ""])
        self.session.send_frame(sp.OP_CHUNK, [b"one"])
        self.session.send_frame(sp.OP_PART, ["text", "", ""])
        self.expect_error_and_close()

    def test_text_part_after_attachment_gets_error(self):
        self.session.send_frame(sp.OP_SENDMAIL, [self.server.conn(),
                                                 headers(), sp.i64(0)])
        self.session.send_frame(sp.OP_PART, ["attachment", "a.txt", ""])
        self.session.send_frame(sp.OP_PART, ["text", "", ""])
        self.expect_error_and_close()

    def test_other_request_inside_sendmail_gets_error(self):
        self.session.send_frame(sp.OP_SENDMAIL, [self.server.conn(),
                                                 headers(), sp.i64(0)])
        self.session.send_frame(sp.OP_GET_RESPONSE, [])
        self.expect_error_and_close()

    def test_chunk_over_64_kib_gets_error(self):
        self.session.send_frame(sp.OP_SENDMAIL, [self.server.conn(),
                                                 headers(), sp.i64(0)])
        self.session.send_frame(sp.OP_PART, ["text", "", ""])
        self.session.send_frame(sp.OP_CHUNK, [b"x" * (64 * 1024 + 1)])
        self.expect_error_and_close()

    def test_valid_requests_after_error_elsewhere_still_work(self):
        self.session.send_raw(b"\xff" * 64)
        self.expect_error_and_close()
        reply = self.bystander.sendmail("", headers(), "after the error\n")
        self.assertStatus(reply, 0)

    def test_client_vanishing_mid_sendmail_leaves_daemon_working(self):
        self.session.send_frame(sp.OP_SENDMAIL, [self.server.conn(),
                                                 headers(), sp.i64(0)])
        self.session.send_frame(sp.OP_PART, ["text", "", ""])
        self.session.send_frame(sp.OP_CHUNK, [b"half a message"])
        self.session.close()
        self.assertStatus(self.bystander.sendmail(self.server.conn(),
                                                  headers(), "ok\n"), 0)

    def test_frames_split_into_single_bytes_are_accepted(self):
        frame = sp.encode_frame(sp.OP_LOGON, [self.server.conn(), "", ""])
        for i in range(len(frame)):
            self.session.send_raw(frame[i:i + 1])
        self.assertStatus(self.session.read_reply(), 0)


if __name__ == "__main__":
    unittest.main()
