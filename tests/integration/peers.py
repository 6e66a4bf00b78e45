"""SMTP peers for the integration tests, all listening on 127.0.0.1.

- SmtpSink: Postfix's smtp-sink, unpacked (never installed) from Debian's
  postfix package into SMTPOOL_PEERS_DIR (default /var/tmp/smtpool-peers)
  by .ci/run.  Fast, checks nothing; for plain sends and throughput.
- Recorder: peer_recorder.py (aiosmtpd) in its own /usr/bin/python3
  process; records connections and messages, can reject and delay.
- Scripted: peer_scripted.py, a raw-socket server for injected faults.
- Certificates: a test CA, a server certificate it signs for
  DNS:localhost and IP:127.0.0.1, one it signs for another name, and a
  self-signed one, made with the openssl command.

Every peer runs as a child process and is stopped by its PID.  Start-up
waits are bounded; a peer that does not come up raises PeerError with its
output.
"""

import base64
import json
import os
import select
import shutil
import socket
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SYSTEM_PYTHON = "/usr/bin/python3"
START_TIMEOUT = 15.0


class PeerError(Exception):
    """A peer could not be started."""


class PeerMissing(Exception):
    """A peer's program is not available; the test is skipped."""


def free_port():
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port():
    """Return a port on 127.0.0.1 that had no listener a moment ago, so a
    connection to it is refused unless another process takes it."""
    return free_port()


def wait_for_listener(port, proc, timeout=START_TIMEOUT):
    """Wait until 127.0.0.1:port accepts a connection.  Raises PeerError
    if proc exits first or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PeerError("exited with status %d before listening "
                "on port %d" % (proc.returncode, port))
        try:
            with socket.create_connection(("127.0.0.1", port),
                timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise PeerError("nothing listening on port %d after %.0f s"
        % (port, timeout))


def stop_process(proc, timeout=10):
    """Terminate one child process by its PID and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


class Record:
    """Reader of the JSON-lines record a Recorder or Scripted peer
    writes."""

    def __init__(self, path):
        self.path = path

    def events(self, kind=None):
        out = []
        try:
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    if not line.endswith("\n"):
                        break  # line still being written
                    event = json.loads(line)
                    if kind is None or event["event"] == kind:
                        out.append(event)
        except FileNotFoundError:
            pass
        return out

    def connection_count(self):
        return len(self.events("connect"))

    def max_active(self):
        return max((e["active"] for e in self.events("connect")),
            default=0)

    def messages(self):
        """Return the accepted messages, each a dict with mail_from,
        rcpt_tos, conn and data (bytes as received, dots unstuffed)."""
        out = []
        for e in self.events("message"):
            e = dict(e)
            e["data"] = base64.b64decode(e["data"])
            out.append(e)
        return out

    def commands(self):
        return [e["line"] for e in self.events("command")]

    def wait_messages(self, count, timeout=10.0):
        """Wait until at least count messages are recorded; return the
        messages (possibly fewer when the time ran out)."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages()
            if len(msgs) >= count or time.monotonic() >= deadline:
                return msgs
            time.sleep(0.05)


class PythonPeer:
    """A peer script run by /usr/bin/python3 that prints "READY PORT"."""

    script = None

    def __init__(self, workdir, *args):
        if not os.access(SYSTEM_PYTHON, os.X_OK):
            raise PeerMissing("%s not found" % SYSTEM_PYTHON)
        fd, self.record_path = tempfile.mkstemp(prefix="record-",
            suffix=".jsonl", dir=workdir)
        os.close(fd)
        self.record = Record(self.record_path)
        self.stderr_path = self.record_path + ".stderr"
        cmd = [SYSTEM_PYTHON, os.path.join(HERE, self.script),
            "--record", self.record_path] + [str(a) for a in args]
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=err)
        self.port = self._read_port()

    def _read_port(self):
        deadline = time.monotonic() + START_TIMEOUT
        buf = b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                stop_process(self.proc)
                raise PeerError("%s did not start: %s" % (
                    self.script, self.stderr_text()[-2000:]))
            ready, _, _ = select.select([self.proc.stdout], [], [],
                min(left, 0.5))
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 256)
                if not chunk:
                    continue
                buf += chunk
        words = buf.split(b"\n", 1)[0].split()
        if len(words) != 2 or words[0] != b"READY":
            stop_process(self.proc)
            raise PeerError("%s printed %r instead of READY PORT"
                % (self.script, buf))
        return int(words[1])

    def stderr_text(self):
        try:
            with open(self.stderr_path, encoding="utf-8",
                errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def conn(self, connector="TCP", host="127.0.0.1"):
        """Return the connection string of this peer."""
        return "%s:%s+%d" % (connector, host, self.port)

    def stop(self):
        stop_process(self.proc)
        if self.proc.stdout:
            self.proc.stdout.close()


class Recorder(PythonPeer):
    """aiosmtpd recording server; keyword options map to its flags:
    reject_rcpt=[...], reject_sender=[...], rcpt_reply={addr: reply},
    data_end_reply=str, data_end_delay=float, size=int,
    tls=(cert, key)."""

    script = "peer_recorder.py"

    def __init__(self, workdir, reject_rcpt=(), reject_sender=(),
        rcpt_reply=None, data_end_reply=None, data_end_delay=0, size=0,
        tls=None):
        args = []
        for a in reject_rcpt:
            args += ["--reject-rcpt", a]
        for a in reject_sender:
            args += ["--reject-sender", a]
        for a, reply in (rcpt_reply or {}).items():
            args += ["--rcpt-reply", "%s=%s" % (a, reply)]
        if data_end_reply:
            args += ["--data-end-reply", data_end_reply]
        if data_end_delay:
            args += ["--data-end-delay", data_end_delay]
        if size:
            args += ["--size", size]
        if tls:
            args += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        super().__init__(workdir, *args)


class Scripted(PythonPeer):
    """Raw-socket fault server; keyword options map to its flags
    (greeting=[lines], ehlo_reply, mail_reply, data_reply, idle_close,
    idle_421, drop_in_data, drop_count, silent, slow, long_reply)."""

    script = "peer_scripted.py"

    def __init__(self, workdir, **options):
        args = []
        for name, value in options.items():
            flag = "--" + name.replace("_", "-")
            if value is True:
                args.append(flag)
            elif isinstance(value, (list, tuple)):
                for v in value:
                    args += [flag, v]
            elif value not in (None, False):
                args += [flag, value]
        super().__init__(workdir, *args)


def peers_dir():
    return os.environ.get("SMTPOOL_PEERS_DIR", "/var/tmp/smtpool-peers")


def postfix_tool(name):
    """Return the path of a Postfix tool unpacked in the peers folder,
    or raise PeerMissing naming what is absent and how to get it."""
    path = os.path.join(peers_dir(), "usr", "sbin", name)
    if not os.access(path, os.X_OK):
        raise PeerMissing("%s not found: unpack Debian's postfix package "
            "there (apt-get download postfix; dpkg -x postfix_*.deb %s),"
            " as .ci/run does" % (path, peers_dir()))
    return path


def postfix_env():
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.path.join(peers_dir(), "usr", "lib",
        "postfix")
    return env


class SmtpSink:
    """Postfix smtp-sink on a free port of 127.0.0.1 (run as nobody when
    the tests run as root, as smtp-sink requires)."""

    def __init__(self, workdir, extra_args=()):
        path = postfix_tool("smtp-sink")
        self.stderr_path = os.path.join(workdir, "smtp-sink.stderr")
        last_error = None
        # The port is chosen before smtp-sink binds it, so another
        # process may take it in between: try a few ports.
        for _ in range(3):
            self.port = free_port()
            cmd = [path]
            if os.geteuid() == 0:
                cmd += ["-u", "nobody"]
            cmd += list(extra_args)
            cmd += ["127.0.0.1:%d" % self.port, "256"]
            with open(self.stderr_path, "ab") as err:
                self.proc = subprocess.Popen(cmd,
                    env=postfix_env(),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=err)
            try:
                wait_for_listener(self.port, self.proc)
                return
            except PeerError as e:
                last_error = e
                stop_process(self.proc)
        raise PeerError("smtp-sink: %s" % last_error)

    def conn(self, connector="TCP", host="127.0.0.1"):
        return "%s:%s+%d" % (connector, host, self.port)

    def stop(self):
        stop_process(self.proc)


class Certificates:
    """Test certificates made with the openssl command in a private
    folder:

      ca_cert            the test CA (daemon's ca_certificate)
      server_cert/key    signed by the CA for DNS:localhost, IP:127.0.0.1
      wrongname_cert/key signed by the CA for DNS:mail.invalid only
      selfsigned_cert/key self-signed for DNS:localhost, IP:127.0.0.1
    """

    _shared = None

    @classmethod
    def shared(cls):
        """Return one set made on first use and kept for the process."""
        if cls._shared is None:
            cls._shared = cls(tempfile.mkdtemp(prefix="smtpool-certs-"))
        return cls._shared

    def __init__(self, folder):
        if shutil.which("openssl") is None:
            raise PeerMissing("openssl command not found")
        self.folder = folder
        self.ca_key = self._path("ca.key")
        self.ca_cert = self._path("ca.pem")
        self._openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-keyout", self.ca_key, "-out", self.ca_cert, "-days", "2",
            "-subj", "/CN=smtpool test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self.server_cert, self.server_key = self._signed("server",
            "DNS:localhost,IP:127.0.0.1")
        self.wrongname_cert, self.wrongname_key = self._signed(
            "wrongname", "DNS:mail.invalid")
        self.selfsigned_key = self._path("selfsigned.key")
        self.selfsigned_cert = self._path("selfsigned.pem")
        self._openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-keyout", self.selfsigned_key, "-out",
            self.selfsigned_cert, "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")

    def _path(self, name):
        return os.path.join(self.folder, name)

    def _openssl(self, *args):
        result = subprocess.run(["openssl"] + list(args),
            stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        if result.returncode != 0:
            raise PeerError("openssl %s failed: %s" % (args[0],
                result.stderr.decode(errors="replace")))

    def _signed(self, name, san):
        key = self._path(name + ".key")
        csr = self._path(name + ".csr")
        cert = self._path(name + ".pem")
        ext = self._path(name + ".ext")
        with open(ext, "w", encoding="ascii") as f:
            f.write("subjectAltName=%s\n"
                "basicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n" % san)
        self._openssl("req", "-newkey", "rsa:2048", "-nodes",
            "-keyout", key, "-out", csr, "-subj", "/CN=" + name)
        self._openssl("x509", "-req", "-in", csr, "-CA", self.ca_cert,
            "-CAkey", self.ca_key, "-CAcreateserial", "-days", "2",
            "-out", cert, "-extfile", ext)
        return cert, key

    def remove(self):
        shutil.rmtree(self.folder, ignore_errors=True)
