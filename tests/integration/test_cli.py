"""The smtpool command: "send" and "shell" against a running daemon, their
output lines and exit codes (sysexits.h)."""

import email
import os
import subprocess
import unittest

from base import IntegrationTest, closed_port
from daemon import cli_path

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_UNAVAILABLE = 69


class CliTest(IntegrationTest):

    def setUp(self):
        super().setUp()
        if not os.access(cli_path(), os.X_OK):
            self.fail("%s not found: build the project first" % cli_path())

    def smtpool(self, *args, stdin=b"", env=None):
        """Run the CLI; return (exit status, stdout, stderr) as text."""
        result = subprocess.run([cli_path()] + list(args), input=stdin,
                                capture_output=True, timeout=60, env=env)
        return (result.returncode, result.stdout.decode(errors="replace"),
                result.stderr.decode(errors="replace"))

    def write(self, name, data):
        path = os.path.join(self.folder, name)
        with open(path, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
        return path

    def send_args(self, server, *more):
        return ["--socket", self.daemon.socket, "send", "--server", server,
                "--from", "app@example.test", "--to", "ops@example.test",
                "--subject", "CLI test"] + list(more)


class CliSendTest(CliTest):

    def test_send_to_smtp_sink_exits_0(self):
        sink = self.sink()
        self.start_daemon()
        body = self.write("body.txt", "Hello from the CLI.\n")
        status, out, err = self.smtpool(*self.send_args(sink.conn(),
                                                        "--body", body))
        self.assertEqual(status, EX_OK, out + err)
        self.assertRegex(out, r"(?m)^SendMail: 0\b")

    def test_send_reads_body_from_stdin(self):
        server = self.recorder()
        self.start_daemon()
        status, out, err = self.smtpool(*self.send_args(server.conn()),
                                        stdin=b"body from stdin\n")
        self.assertEqual(status, EX_OK, out + err)
        messages = server.record.wait_messages(1)
        self.assertEqual(len(messages), 1)
        self.assertIn(b"body from stdin", messages[0]["data"])

    def test_send_with_attachment_delivers_file(self):
        server = self.recorder()
        self.start_daemon()
        content = bytes(range(256)) * 8
        attachment = self.write("data.bin", content)
        status, out, err = self.smtpool(
            *self.send_args(server.conn(), "--attach", attachment,
                            "--bcc", "audit@example.test"),
            stdin=b"see attachment\n")
        self.assertEqual(status, EX_OK, out + err)
        messages = server.record.wait_messages(1)
        self.assertEqual(len(messages), 1)
        self.assertIn("audit@example.test", messages[0]["rcpt_tos"])
        msg = email.message_from_bytes(messages[0]["data"])
        parts = [p for p in msg.walk() if p.get_filename()]
        self.assertEqual([p.get_filename() for p in parts], ["data.bin"])
        self.assertEqual(parts[0].get_payload(decode=True), content)

    def test_send_prints_smtp_reply_line(self):
        sink = self.sink()
        self.start_daemon()
        status, out, err = self.smtpool(*self.send_args(sink.conn()),
                                        stdin=b"x\n")
        self.assertEqual(status, EX_OK, out + err)
        self.assertRegex(out, r"(?m)^smtp: 250\b")

    def test_send_with_invalid_to_exits_65(self):
        sink = self.sink()
        self.start_daemon()
        args = self.send_args(sink.conn())
        args[args.index("ops@example.test")] = "not-an-address"
        status, out, err = self.smtpool(*args, stdin=b"x\n")
        self.assertEqual(status, EX_DATAERR, out + err)
        self.assertRegex(out, r"(?m)^SendMail: -2\b")

    def test_send_to_closed_port_exits_65(self):
        self.start_daemon()
        status, out, err = self.smtpool(
            *self.send_args("TCP:127.0.0.1+%d" % closed_port()),
            stdin=b"x\n")
        self.assertEqual(status, EX_DATAERR, out + err)
        self.assertRegex(out, r"(?m)^SendMail: -9\b")

    def test_send_with_missing_body_file_exits_66(self):
        sink = self.sink()
        self.start_daemon()
        status, out, err = self.smtpool(*self.send_args(
            sink.conn(), "--body", os.path.join(self.folder, "absent.txt")))
        self.assertEqual(status, EX_NOINPUT, out + err)
        self.assertIn("absent.txt", err)

    def test_send_without_server_exits_64(self):
        self.start_daemon()
        status, out, err = self.smtpool(
            "--socket", self.daemon.socket, "send",
            "--from", "a@example.test", "--to", "b@example.test")
        self.assertEqual(status, EX_USAGE, out + err)

    def test_send_without_daemon_exits_69(self):
        missing = os.path.join(self.folder, "no-daemon.sock")
        status, out, err = self.smtpool(
            "--socket", missing, "send", "--server", "127.0.0.1+25",
            "--from", "a@example.test", "--to", "b@example.test",
            stdin=b"x\n")
        self.assertEqual(status, EX_UNAVAILABLE, out + err)
        self.assertIn("no-daemon.sock", err)

    def test_send_uses_smtpool_socket_variable(self):
        sink = self.sink()
        self.start_daemon()
        env = dict(os.environ, SMTPOOL_SOCKET=self.daemon.socket)
        status, out, err = self.smtpool(
            "send", "--server", sink.conn(), "--from", "a@example.test",
            "--to", "b@example.test", stdin=b"x\n", env=env)
        self.assertEqual(status, EX_OK, out + err)

    def test_unknown_command_exits_64(self):
        status, out, err = self.smtpool("frobnicate")
        self.assertEqual(status, EX_USAGE, out + err)


class CliShellTest(CliTest):

    def shell(self, script, *args):
        path = self.write("script.txt", script)
        return self.smtpool("--socket", self.daemon.socket, "shell", path,
                            *args)

    def test_shell_script_runs_each_operation(self):
        server = self.recorder()
        self.start_daemon()
        body = "Body read from a file.\nSecond line.\n"
        body_path = self.write("body.txt", body)
        script = (
            "# log on, send, read the reply, log off\n"
            'LogonSMTP "%s" "" ""\n'
            'SendMail "" "FROM=app@example.test;TO=ops@example.test;'
            'SUBJECT=shell test" "@%s" "" 0\n'
            "GetSMTPResponse\n"
            "LogoffSMTP\n" % (server.conn(), body_path))
        status, out, err = self.shell(script)
        self.assertEqual(status, EX_OK, out + err)
        lines = out.splitlines()
        self.assertEqual(len(lines), 4, out)
        self.assertRegex(lines[0], r"^LogonSMTP: 0\b")
        self.assertRegex(lines[1], r"^SendMail: 0\b")
        self.assertRegex(lines[2], r"^GetSMTPResponse: 0 250\b")
        self.assertRegex(lines[3], r"^LogoffSMTP: 0\b")
        messages = server.record.wait_messages(1)
        self.assertEqual(len(messages), 1)
        msg = email.message_from_bytes(messages[0]["data"])
        self.assertEqual(msg.get_payload(decode=True).decode()
                         .replace("\r\n", "\n"), body)

    def test_shell_accepts_call_syntax_and_any_case(self):
        sink = self.sink()
        self.start_daemon()
        script = ('logonsmtp("%s", "", "")\n'
                  'SENDMAIL("", "FROM=a@example.test;TO=b@example.test", '
                  '"Hello,\\nbye.\\n", "", 0)\n'
                  "logoffsmtp()\n" % sink.conn())
        status, out, err = self.shell(script)
        self.assertEqual(status, EX_OK, out + err)
        self.assertEqual([line.split(":")[0] for line in out.splitlines()],
                         ["LogonSMTP", "SendMail", "LogoffSMTP"])
        self.assertNotRegex(out, r": -\d")

    def test_shell_reports_negative_status_and_exits_65(self):
        sink = self.sink()
        self.start_daemon()
        script = ("LogoffSMTP\n"
                  'LogonSMTP "%s" "" ""\n'
                  'LogonSMTP "%s" "" ""\n' % (sink.conn(), sink.conn()))
        status, out, err = self.shell(script)
        self.assertEqual(status, EX_DATAERR, out + err)
        lines = out.splitlines()
        self.assertRegex(lines[0], r"^LogoffSMTP: -8\b")
        self.assertRegex(lines[1], r"^LogonSMTP: 0\b")
        self.assertRegex(lines[2], r"^LogonSMTP: -3\b")

    def test_shell_get_response_before_exchange_prints_minus_10(self):
        self.start_daemon()
        status, out, err = self.shell("GetSMTPResponse\n")
        self.assertEqual(status, EX_DATAERR, out + err)
        self.assertRegex(out, r"^GetSMTPResponse: -10\b")

    def test_shell_syntax_error_names_line_and_goes_on(self):
        sink = self.sink()
        self.start_daemon()
        script = ('LogonSMTP "%s" "" ""\n'
                  'SendMail "unterminated\n'
                  "LogoffSMTP\n" % sink.conn())
        status, out, err = self.shell(script)
        self.assertEqual(status, EX_DATAERR, out + err)
        self.assertIn("line 2", err)
        self.assertRegex(out, r"(?m)^LogoffSMTP: 0\b")

    def test_shell_reads_script_from_stdin(self):
        sink = self.sink()
        self.start_daemon()
        status, out, err = self.smtpool(
            "--socket", self.daemon.socket, "shell",
            stdin=('LogonSMTP "%s" "" ""\nLogoffSMTP\n'
                   % sink.conn()).encode())
        self.assertEqual(status, EX_OK, out + err)
        self.assertEqual(len(out.splitlines()), 2, out)

    def test_shell_with_missing_script_exits_66(self):
        self.start_daemon()
        status, out, err = self.smtpool(
            "--socket", self.daemon.socket, "shell",
            os.path.join(self.folder, "absent.script"))
        self.assertEqual(status, EX_NOINPUT, out + err)


if __name__ == "__main__":
    unittest.main()
