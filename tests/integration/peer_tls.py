#!/usr/bin/python3
"""Implicit-TLS SMTP server with TLS options the aiosmtpd recorder lacks.
Standard library only (socket, ssl, threading).

It binds 127.0.0.1 on the given port (0 picks a free one), prints
"READY PORT" on stdout, and appends one JSON object per line to the record
file:

  {"event": "connect", "conn": N, "active": K, "time": T}
  {"event": "tls", "conn": N, "version": "TLSv1.2", "cipher": NAME,
   "client_subject": "CN=..." or null, "time": T}
  {"event": "tls_error", "conn": N, "error": TEXT, "time": T}
  {"event": "message", "conn": N, "mail_from": ..., "rcpt_tos": [...],
   "data": BASE64, "time": T}
  {"event": "disconnect", "conn": N, "active": K, "time": T}

The handshake runs before the greeting, as on port 465.  Options:

  --cert PEM --key PEM   server certificate chain and key (required)
  --client-ca PEM        require a client certificate signed by this CA
  --max-version V        highest protocol version offered: 1.2 or 1.3
  --ciphers LIST         OpenSSL cipher list for TLS 1.2

Each connection runs in its own thread with a socket timeout, so a client
that stops talking cannot hold the server forever.
"""

import argparse
import base64
import json
import socket
import ssl
import sys
import threading
import time

# Maximum length of a command or message line read, CRLF included.  RFC 5321
# allows 512 bytes for commands and 1000 for text lines.
MAX_LINE = 4096
# Seconds a connection may stay silent before the server drops it.
IDLE_TIMEOUT = 30
VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


class TlsPeerRecord:
    """Thread-safe append-only JSON-lines file, flushed after each event."""

    def __init__(self, path):
        self.file = open(path, "a", encoding="utf-8")
        self.lock = threading.Lock()
        self.counter = 0
        self.active = 0

    def write(self, **event):
        event["time"] = time.time()
        with self.lock:
            self.file.write(json.dumps(event) + "\n")
            self.file.flush()

    def opened(self):
        """Record a new connection and return its number."""
        with self.lock:
            self.counter += 1
            self.active += 1
            conn, active = self.counter, self.active
        self.write(event="connect", conn=conn, active=active)
        return conn

    def closed(self, conn):
        with self.lock:
            self.active -= 1
            active = self.active
        self.write(event="disconnect", conn=conn, active=active)


def tls_peer_path(line):
    """Return the address of "MAIL FROM:<a> OPTS" or "RCPT TO:<a>"."""
    arg = line.split(":", 1)[1].strip() if ":" in line else ""
    if arg.startswith("<"):
        return arg[1:].split(">", 1)[0]
    return arg.split(" ", 1)[0]


def tls_peer_subject(cert):
    """Format the subject of a getpeercert() dict as "CN=x,O=y"."""
    if not cert:
        return None
    parts = []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            short = {"commonName": "CN", "organizationName": "O"}.get(
                key, key)
            parts.append("%s=%s" % (short, value))
    return ",".join(parts)


def tls_peer_context(options):
    """Build the server SSL context from the command-line options."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(options.cert, options.key)
    if options.max_version:
        ctx.maximum_version = VERSIONS[options.max_version]
    if options.ciphers:
        ctx.set_ciphers(options.ciphers)
    if options.client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(options.client_ca)
    return ctx


class TlsPeerSession:
    """One SMTP session over an established TLS connection."""

    def __init__(self, tls_sock, conn, record):
        self.sock = tls_sock
        self.reader = tls_sock.makefile("rb")
        self.conn = conn
        self.record = record
        self.reset()

    def reset(self):
        self.mail_from = None
        self.rcpt_tos = []

    def send(self, text):
        self.sock.sendall(text.encode("ascii") + b"\r\n")

    def readline(self):
        line = self.reader.readline(MAX_LINE)
        if not line:
            raise EOFError("client closed the connection")
        return line

    def read_data(self):
        """Read message lines up to the lone ".", undoing dot-stuffing."""
        data = bytearray()
        while True:
            line = self.readline()
            if line in (b".\r\n", b".\n"):
                return bytes(data)
            if line.startswith(b"."):
                line = line[1:]
            data += line

    def run(self):
        self.send("220 tlspeer.test ESMTP ready")
        while True:
            line = self.readline().rstrip(b"\r\n").decode("utf-8",
                "replace")
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.send("250-tlspeer.test\r\n250-8BITMIME\r\n"
                    "250 ENHANCEDSTATUSCODES")
            elif verb == "HELO":
                self.send("250 tlspeer.test")
            elif verb == "MAIL":
                self.reset()
                self.mail_from = tls_peer_path(line)
                self.send("250 2.1.0 OK")
            elif verb == "RCPT":
                self.rcpt_tos.append(tls_peer_path(line))
                self.send("250 2.1.5 OK")
            elif verb == "DATA":
                if self.mail_from is None or not self.rcpt_tos:
                    self.send("503 5.5.1 MAIL and RCPT first")
                    continue
                self.send("354 end with <CRLF>.<CRLF>")
                data = self.read_data()
                self.record.write(event="message", conn=self.conn,
                    mail_from=self.mail_from, rcpt_tos=self.rcpt_tos,
                    data=base64.b64encode(data).decode("ascii"))
                self.reset()
                self.send("250 2.0.0 OK queued")
            elif verb == "RSET":
                self.reset()
                self.send("250 2.0.0 OK")
            elif verb == "NOOP":
                self.send("250 2.0.0 OK")
            elif verb == "QUIT":
                self.send("221 2.0.0 bye")
                return
            else:
                self.send("502 5.5.2 command not implemented")


def tls_peer_serve(raw, ctx, record):
    """Run the handshake and the SMTP session of one accepted socket."""
    conn = record.opened()
    tls_sock = None
    try:
        raw.settimeout(IDLE_TIMEOUT)
        try:
            tls_sock = ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            record.write(event="tls_error", conn=conn, error=str(e))
            return
        cipher = tls_sock.cipher()
        record.write(event="tls", conn=conn, version=tls_sock.version(),
            cipher=cipher[0] if cipher else None,
            client_subject=tls_peer_subject(tls_sock.getpeercert()))
        try:
            TlsPeerSession(tls_sock, conn, record).run()
        except (EOFError, ssl.SSLError, OSError):
            # The client left or the connection broke.  The session ends
            # either way, and the disconnect event below records it.
            pass
    finally:
        for s in (tls_sock, raw):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        record.closed(conn)


def tls_peer_parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--record", required=True,
        help="JSON-lines file that receives the events")
    p.add_argument("--cert", required=True, help="PEM server certificate")
    p.add_argument("--key", required=True, help="PEM key for --cert")
    p.add_argument("--client-ca", help="require a client certificate "
        "signed by a CA in this PEM file")
    p.add_argument("--max-version", choices=sorted(VERSIONS),
        help="highest TLS version offered")
    p.add_argument("--ciphers", help="OpenSSL cipher list for TLS 1.2")
    return p.parse_args(argv)


def tls_peer_main(options):
    ctx = tls_peer_context(options)
    record = TlsPeerRecord(options.record)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", options.port))
    listener.listen(64)
    print("READY %d" % listener.getsockname()[1], flush=True)
    while True:
        raw, _ = listener.accept()
        threading.Thread(target=tls_peer_serve, args=(raw, ctx, record),
            daemon=True).start()


if __name__ == "__main__":
    try:
        tls_peer_main(tls_peer_parse_args(sys.argv[1:]))
    except KeyboardInterrupt:
        pass
