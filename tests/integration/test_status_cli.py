"""smtpool status and smtpool metrics: the table, JSON and Prometheus text
against a running daemon, output escaping against a scripted fake daemon,
and exit codes."""

import json
import os
import re
import socket
import struct
import subprocess
import threading

import smtpool_client
from base import IntegrationTest, closed_port, headers
from daemon import cli_path

EX_OK = 0
EX_USAGE = 64
EX_UNAVAILABLE = 69
EX_PROTOCOL = 76

SECRET = "Hunter22"
DRIVERS = "UAuthLoginSMTP/OPT"
COLUMNS = ["CONNECTION", "DRIVERS", "IDLE", "BUSY", "OPENING", "WAITING",
           "SENT", "ERRORS", "OLDEST"]

# Prometheus text format 0.0.4: metric and label names, a sample line.
METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE_LINE = re.compile(r"^(%s)(\{.*\})? (\S+)$" % METRIC_NAME)
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def parse_labels(text):
    """Parse '{a="x",b="y"}' with the format's escapes (\\\\, \\", \\n)
    into a dict, or raise ValueError."""
    if not (text.startswith("{") and text.endswith("}")):
        raise ValueError("labels not in braces: %r" % text)
    body = text[1:-1]
    labels = {}
    pos = 0
    while pos < len(body):
        match = LABEL_NAME.match(body, pos)
        if match is None or body[match.end():match.end() + 2] != '="':
            raise ValueError("bad label name at %d in %r" % (pos, text))
        name = match.group(0)
        pos = match.end() + 2
        value = []
        while True:
            if pos >= len(body):
                raise ValueError("unterminated label value in %r" % text)
            char = body[pos]
            if char == '"':
                pos += 1
                break
            if char == "\\":
                escaped = body[pos + 1:pos + 2]
                if escaped not in ("\\", '"', "n"):
                    raise ValueError("bad escape \\%s in %r"
                                     % (escaped, text))
                value.append("\n" if escaped == "n" else escaped)
                pos += 2
                continue
            if char == "\n":
                raise ValueError("raw line feed in %r" % text)
            value.append(char)
            pos += 1
        if name in labels:
            raise ValueError("label %s twice in %r" % (name, text))
        labels[name] = "".join(value)
        if pos < len(body):
            if body[pos] != ",":
                raise ValueError("expected ',' at %d in %r" % (pos, text))
            pos += 1
    return labels


def parse_prometheus(text):
    """Parse text exposition format 0.0.4 strictly enough for the tests.

    Returns {family: {"help": str, "type": str, "samples": [(labels,
    value)]}}.  Raises ValueError for a line that does not parse, a sample
    without HELP and TYPE before it, a family split in two, or two samples
    with the same labels.
    """
    families = {}
    current = None
    finished = set()
    if not text.endswith("\n"):
        raise ValueError("output does not end with a line feed")
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            kind, rest = line[2:6].lower(), line[7:]
            name, _, value = rest.partition(" ")
            if not re.fullmatch(METRIC_NAME, name):
                raise ValueError("bad metric name in %r" % line)
            if name != current:
                if name in finished or name in families:
                    raise ValueError("family %s split in two" % name)
                if current is not None:
                    finished.add(current)
                current = name
                families[name] = {"samples": []}
            if kind in families[name]:
                raise ValueError("second %s line for %s" % (kind, name))
            if kind == "type" and value not in ("counter", "gauge"):
                raise ValueError("unexpected type in %r" % line)
            families[name][kind] = value
            continue
        match = SAMPLE_LINE.match(line)
        if match is None:
            raise ValueError("not a sample line: %r" % line)
        name, labels, value = match.groups()
        if name != current or "help" not in families[name] or \
                "type" not in families[name]:
            raise ValueError("sample %r without HELP and TYPE before it"
                             % line)
        labels = parse_labels(labels) if labels else {}
        if any(labels == seen for seen, _ in families[name]["samples"]):
            raise ValueError("duplicate labels in %r" % line)
        families[name]["samples"].append((labels, float(value)))
    return families


def sample(families, name, **labels):
    """Return the value of the sample of name with exactly these labels."""
    values = [value for seen, value in families[name]["samples"]
              if seen == labels]
    if len(values) != 1:
        raise AssertionError("%d samples of %s%r in %r"
                             % (len(values), name, labels, families[name]))
    return values[0]


def parse_totals_line(line):
    """Split "name=value name=value ..." into a dict of strings."""
    return dict(item.split("=", 1) for item in line.split())


class FakeDaemon:
    """A Unix socket that replies to one STATUS request with scripted frames,
    for output the real daemon cannot produce (odd bytes in a key, missing
    totals).  Serves one connection in a thread, bounded by a timeout."""

    def __init__(self, folder, frames):
        self.path = os.path.join(folder, "fake.sock")
        self.frames = frames
        self.request_op = None
        self.error = None
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(1)
        self.listener.settimeout(30)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(30)
                header = b""
                while len(header) < smtpool_client.HEADER_SIZE:
                    piece = conn.recv(smtpool_client.HEADER_SIZE
                                      - len(header))
                    if not piece:
                        return
                    header += piece
                self.request_op = header[3]
                (length,) = struct.unpack_from(">I", header, 4)
                while length > 0:
                    piece = conn.recv(length)
                    if not piece:
                        return
                    length -= len(piece)
                for frame in self.frames:
                    conn.sendall(frame)
        except OSError as e:
            self.error = e

    def stop(self):
        self.thread.join(35)
        self.listener.close()
        if os.path.exists(self.path):
            os.unlink(self.path)


def status_row(connection, drivers, idle, busy, opening, waiting, sent,
               errors, oldest_age):
    """Encode a STATUS_ROW frame; text arguments may be bytes."""
    i32, i64 = smtpool_client.i32, smtpool_client.i64
    return smtpool_client.encode_frame(smtpool_client.OP_STATUS_ROW, [
        connection, drivers, i32(idle), i32(busy), i32(opening),
        i32(waiting), i64(sent), i64(errors), i64(oldest_age)])


def status_reply(*totals):
    return smtpool_client.encode_frame(smtpool_client.OP_REPLY, [
        smtpool_client.i32(0), smtpool_client.i32(0), "", "pool status"]
        + list(totals))


class StatusCliTest(IntegrationTest):

    def setUp(self):
        super().setUp()
        if not os.access(cli_path(), os.X_OK):
            self.fail("%s not found: build the project first" % cli_path())

    def smtpool(self, *args, socket_path=None):
        """Run the CLI; return (exit status, stdout, stderr) as text."""
        path = socket_path or self.daemon.socket
        result = subprocess.run([cli_path(), "--socket", path] + list(args),
                                capture_output=True, timeout=60)
        return (result.returncode, result.stdout.decode(errors="replace"),
                result.stderr.decode(errors="replace"))

    def fake(self, frames):
        fake = FakeDaemon(self.folder, frames)
        self.addCleanup(fake.stop)
        return fake

    def run_traffic(self):
        """Send 2 messages through one logged-on session whose context has
        an OPT AUTH driver with a password (skipped over plain text), and
        fail one logon to a closed port.  Returns the smtp-sink's
        connection string; both sessions stay open."""
        sink = self.sink()
        self.start_daemon()
        sender = self.client()
        self.assertStatus(sender.set_security(
            "SMTP=UAuthLoginSMTP;USE=OPT",
            "user=u;password=" + SECRET), 0, "SetSecurity")
        self.assertStatus(sender.logon(sink.conn()), 0, "LogonSMTP")
        for number in (1, 2):
            self.assertStatus(sender.sendmail("", headers(), "body\n"), 0,
                              "SendMail %d" % number)
        self.assertStatus(sender.logoff(), 0, "LogoffSMTP")
        failing = self.client()
        self.assertStatus(failing.logon("TCP:127.0.0.1+%d" % closed_port()),
                          smtpool_client.STATUS_NETWORK, "LogonSMTP")
        self.sender = sender
        return sink.conn()

    def assert_no_secret(self, *outputs):
        for text in outputs:
            self.assertNotIn(SECRET, text)

    # Against smtpoold ---------------------------------------------------

    def test_status_table_rows_and_totals(self):
        conn = self.run_traffic()
        status, out, err = self.smtpool("status")
        self.assertEqual(status, EX_OK, out + err)
        self.assert_no_secret(out, err)
        lines = out.splitlines()
        self.assertEqual(len(lines), 3, out)
        self.assertEqual(lines[0].split(), COLUMNS)
        row = lines[1].split()
        self.assertEqual(row[0], conn)
        self.assertEqual(row[1], DRIVERS)
        self.assertEqual(row[2:8], ["1", "0", "0", "0", "2", "0"])
        self.assertRegex(row[8], r"^\d+s$")
        # Columns line up: each header starts where its values start or,
        # for right-aligned counts, ends where they end.
        self.assertEqual(lines[1].index(DRIVERS), lines[0].index("DRIVERS"))
        self.assertEqual(len(lines[1]), len(lines[0]))

        totals = parse_totals_line(lines[2])
        self.assertEqual(list(totals), ["sessions", "keys", "idle", "busy",
                                        "opening", "waiting", "opened",
                                        "reused", "sent", "errors",
                                        "uptime", "version"])
        # The two test sessions and the CLI's own.
        self.assertEqual(totals["sessions"], "3")
        self.assertEqual(totals["keys"], "1")
        self.assertEqual(totals["idle"], "1")
        self.assertEqual(totals["busy"], "0")
        self.assertEqual(totals["opening"], "0")
        self.assertEqual(totals["waiting"], "0")
        self.assertGreaterEqual(int(totals["opened"]), 1)
        self.assertRegex(totals["reused"], r"^\d+$")
        self.assertEqual(totals["sent"], "2")
        self.assertEqual(totals["errors"], "1")
        self.assertRegex(totals["uptime"], r"^\d+s$")
        self.assertRegex(totals["version"], r"^\S+$")

    def test_status_json_numbers(self):
        conn = self.run_traffic()
        status, out, err = self.smtpool("status", "--json")
        self.assertEqual(status, EX_OK, out + err)
        self.assert_no_secret(out, err)
        data = json.loads(out)
        self.assertEqual(sorted(data), ["keys", "totals"])
        self.assertEqual(len(data["keys"]), 1, data)
        key = data["keys"][0]
        self.assertEqual(key["connection"], conn)
        self.assertEqual(key["drivers"], [DRIVERS])
        for name, value in (("idle", 1), ("busy", 0), ("opening", 0),
                            ("waiting", 0), ("sent", 2), ("errors", 0)):
            self.assertEqual(key[name], value, name)
        self.assertIsInstance(key["oldest_age_seconds"], int)
        totals = data["totals"]
        self.assertEqual(totals["sessions"], 3)
        self.assertEqual(totals["keys"], 1)
        self.assertEqual(totals["sent"], 2)
        self.assertEqual(totals["errors"], 1)
        self.assertIsInstance(totals["uptime_seconds"], int)
        self.assertIsInstance(totals["version"], str)

    def test_status_matches_python_client(self):
        self.run_traffic()
        rows, totals = self.sender.status()
        self.assertEqual(len(rows), 1)
        status, out, err = self.smtpool("status", "--json")
        self.assertEqual(status, EX_OK, out + err)
        key = json.loads(out)["keys"][0]
        self.assertEqual(key["connection"], rows[0].connection)
        self.assertEqual(key["drivers"], rows[0].drivers.split("+"))
        self.assertEqual(key["sent"], rows[0].sent)
        self.assertEqual(key["errors"], rows[0].errors)
        self.assertEqual(totals["sent"], 2)
        self.assertEqual(totals["errors"], 1)
        self.assert_no_secret(repr(rows), repr(totals))

    def test_metrics_parse_as_prometheus(self):
        conn = self.run_traffic()
        status, out, err = self.smtpool("metrics")
        self.assertEqual(status, EX_OK, out + err)
        self.assert_no_secret(out, err)
        families = parse_prometheus(out)
        types = {"smtpool_connections": "gauge",
                 "smtpool_waiting_requests": "gauge",
                 "smtpool_messages_sent_total": "counter",
                 "smtpool_errors_total": "counter",
                 "smtpool_oldest_connection_age_seconds": "gauge",
                 "smtpool_sessions": "gauge",
                 "smtpool_connections_opened_total": "counter",
                 "smtpool_connections_reused_total": "counter",
                 "smtpool_messages_sent_all_total": "counter",
                 "smtpool_errors_all_total": "counter",
                 "smtpool_uptime_seconds": "gauge",
                 "smtpool_info": "gauge"}
        self.assertEqual({name: family["type"]
                          for name, family in families.items()}, types)

        key = {"key": conn, "drivers": DRIVERS}
        for state, value in (("idle", 1), ("busy", 0), ("opening", 0)):
            self.assertEqual(sample(families, "smtpool_connections",
                                    state=state, **key), value, state)
        self.assertEqual(sample(families, "smtpool_waiting_requests", **key),
                         0)
        self.assertEqual(sample(families, "smtpool_messages_sent_total",
                                **key), 2)
        self.assertEqual(sample(families, "smtpool_errors_total", **key), 0)
        self.assertGreaterEqual(sample(
            families, "smtpool_oldest_connection_age_seconds", **key), 0)

        self.assertEqual(sample(families, "smtpool_sessions"), 3)
        self.assertEqual(sample(families, "smtpool_messages_sent_all_total"),
                         2)
        self.assertEqual(sample(families, "smtpool_errors_all_total"), 1)
        self.assertGreaterEqual(
            sample(families, "smtpool_connections_opened_total"), 1)
        self.assertEqual(len(families["smtpool_info"]["samples"]), 1)
        labels, value = families["smtpool_info"]["samples"][0]
        self.assertEqual(list(labels), ["version"])
        self.assertEqual(value, 1)

    def test_secret_not_in_daemon_log(self):
        self.run_traffic()
        for args in (("status",), ("status", "--json"), ("metrics",)):
            status, out, err = self.smtpool(*args)
            self.assertEqual(status, EX_OK, out + err)
        self.assertNotIn(SECRET, self.daemon.log_text())

    def test_empty_pool_prints_header_and_totals(self):
        self.start_daemon()
        status, out, err = self.smtpool("status")
        self.assertEqual(status, EX_OK, out + err)
        lines = out.splitlines()
        self.assertEqual(len(lines), 2, out)
        self.assertEqual(lines[0].split(), COLUMNS)
        self.assertEqual(parse_totals_line(lines[1])["keys"], "0")
        status, out, err = self.smtpool("status", "--json")
        self.assertEqual(status, EX_OK, out + err)
        self.assertEqual(json.loads(out)["keys"], [])
        status, out, err = self.smtpool("metrics")
        self.assertEqual(status, EX_OK, out + err)
        families = parse_prometheus(out)
        self.assertNotIn("smtpool_connections", families)
        self.assertEqual(sample(families, "smtpool_sessions"), 1)

    # Exit codes and usage -----------------------------------------------

    def test_no_daemon_exits_69(self):
        missing = os.path.join(self.folder, "absent.sock")
        for args in (("status",), ("status", "--json"), ("metrics",)):
            status, out, err = self.smtpool(*args, socket_path=missing)
            self.assertEqual(status, EX_UNAVAILABLE, args)
            self.assertEqual(out, "", args)
            self.assertIn("absent.sock", err)

    def test_usage_errors_exit_64(self):
        missing = os.path.join(self.folder, "absent.sock")
        for args in (("metrics", "--json"), ("status", "extra"),
                     ("status", "--bogus")):
            status, out, err = self.smtpool(*args, socket_path=missing)
            self.assertEqual(status, EX_USAGE, args)
            self.assertEqual(out, "", args)

    def test_help_describes_commands(self):
        missing = os.path.join(self.folder, "absent.sock")
        status, out, _ = self.smtpool("metrics", "--help",
                                      socket_path=missing)
        self.assertEqual(status, EX_OK)
        self.assertIn("textfile", out)
        self.assertIn("smtpool_connections", out)
        status, out, _ = self.smtpool("status", "--help",
                                      socket_path=missing)
        self.assertEqual(status, EX_OK)
        self.assertIn("--json", out)

    # Against a scripted daemon ------------------------------------------

    def test_odd_bytes_escaped_in_every_format(self):
        connection = 'TCP:a"b\\c\nd+25'
        drivers = b"X/MAND+Caf\xc3\xa9/OPT+Bad\xff/MAND"
        # A reply has at most 16 fields, so "reused" makes way for a name
        # the CLI does not know.
        frames = [status_row(connection, drivers, 1, 2, 3, 4, 5, 6, 3723),
                  status_reply("sessions=1", "keys=1", "idle=1", "busy=2",
                               "opening=3", "waiting=4", "opened=7",
                               "sent=5", "errors=6",
                               "uptime=99", 'version=1.0"x',
                               "future=42")]
        for args in (("status",), ("status", "--json"), ("metrics",)):
            fake = self.fake(frames)
            status, out, err = self.smtpool(*args, socket_path=fake.path)
            fake.stop()
            self.assertEqual(fake.request_op, smtpool_client.OP_STATUS)
            self.assertEqual(status, EX_OK, out + err)
            if args == ("status",):
                lines = out.splitlines()
                self.assertEqual(len(lines), 3, out)
                self.assertTrue(lines[1].startswith(
                    'TCP:a"b\\c\\x0ad+25  '), lines[1])
                self.assertIn("1h02m03s", lines[1])
                self.assertNotIn("future", out)
            elif args == ("metrics",):
                families = parse_prometheus(out)
                labels = families["smtpool_errors_total"]["samples"][0][0]
                self.assertEqual(labels["key"], connection)
                self.assertEqual(labels["drivers"],
                                 "X/MAND+Caf\u00e9/OPT+Bad\ufffd/MAND")
                self.assertEqual(families["smtpool_info"]["samples"][0][0],
                                 {"version": '1.0"x'})
            else:
                data = json.loads(out)
                key = data["keys"][0]
                self.assertEqual(key["connection"], connection)
                self.assertEqual(key["drivers"],
                                 ["X/MAND", "Caf\u00e9/OPT", "Bad\ufffd/MAND"])
                self.assertEqual(key["oldest_age_seconds"], 3723)
                self.assertEqual(data["totals"]["version"], '1.0"x')
                self.assertNotIn("future", data["totals"])

    def test_missing_totals_shown_as_absent(self):
        frames = [status_reply("sessions=2")]
        for args in (("status",), ("status", "--json"), ("metrics",)):
            fake = self.fake(frames)
            status, out, err = self.smtpool(*args, socket_path=fake.path)
            fake.stop()
            self.assertEqual(status, EX_OK, out + err)
            if args == ("status",):
                totals = parse_totals_line(out.splitlines()[1])
                self.assertEqual(totals["sessions"], "2")
                self.assertEqual(totals["keys"], "-")
                self.assertEqual(totals["version"], "-")
            elif args == ("metrics",):
                families = parse_prometheus(out)
                self.assertEqual(list(families), ["smtpool_sessions"])
            else:
                totals = json.loads(out)["totals"]
                self.assertEqual(totals["sessions"], 2)
                self.assertIsNone(totals["keys"])
                self.assertIsNone(totals["version"])

    def test_duplicate_labels_merged_in_metrics(self):
        frames = [status_row("TCP:h+25", "", 1, 0, 0, 0, 3, 1, 10),
                  status_row("TCP:h+25", "", 0, 1, 0, 0, 4, 0, 20),
                  status_reply("sessions=1")]
        fake = self.fake(frames)
        status, out, err = self.smtpool("metrics", socket_path=fake.path)
        fake.stop()
        self.assertEqual(status, EX_OK, out + err)
        families = parse_prometheus(out)
        key = {"key": "TCP:h+25", "drivers": ""}
        self.assertEqual(sample(families, "smtpool_connections",
                                state="idle", **key), 1)
        self.assertEqual(sample(families, "smtpool_connections",
                                state="busy", **key), 1)
        self.assertEqual(sample(families, "smtpool_messages_sent_total",
                                **key), 7)
        self.assertEqual(sample(
            families, "smtpool_oldest_connection_age_seconds", **key), 20)

    def test_error_frame_exits_76(self):
        frames = [smtpool_client.encode_frame(smtpool_client.OP_ERROR, [
            smtpool_client.i32(-99), smtpool_client.i32(0), "",
            "unknown opcode 0x0a"])]
        fake = self.fake(frames)
        status, out, err = self.smtpool("status", socket_path=fake.path)
        fake.stop()
        self.assertEqual(status, EX_PROTOCOL, out + err)
        self.assertEqual(out, "")
        self.assertIn("unknown opcode 0x0a", err)

    def test_malformed_total_exits_76(self):
        frames = [status_reply("sessions=many")]
        fake = self.fake(frames)
        status, out, err = self.smtpool("metrics", socket_path=fake.path)
        fake.stop()
        self.assertEqual(status, EX_PROTOCOL, out + err)
        self.assertEqual(out, "")
        self.assertIn("sessions=many", err)
