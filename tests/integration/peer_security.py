#!/usr/bin/python3
"""Scripted SMTP server for STARTTLS and SMTP AUTH faults that real servers
do not produce on demand.  Standard library only (asyncio, ssl).

It binds 127.0.0.1 on the given port (0 picks a free one) and prints
"READY PORT" on stdout.  It writes a JSON-lines record of connect,
disconnect, "tls" (handshake done or failed) and message events.  Every
line the client sends becomes a "command" event, AUTH continuation lines
included and nothing redacted, so tests can check what reached the server.
After the security steps every mode accepts a normal mail transaction.

  --tls-cert PEM --tls-key PEM
                     enable STARTTLS with this certificate
  --no-starttls      do not offer STARTTLS (502 if sent anyway)
  --starttls-reply R reply to STARTTLS with R (e.g. "454 4.7.0 TLS not
                     available") and stay in plain text
  --starttls-inject  reply to STARTTLS with "220 ready" and "250 forged" in
                     one send, then start the handshake
  --auth MECHS       mechanisms listed in the EHLO AUTH line, space
                     separated (default: none, no AUTH line)
  --auth-after-tls   list AUTH only in the EHLO reply after STARTTLS
  --user USER:PASS   account for PLAIN and LOGIN (repeatable)
  --token TOKEN      bearer token accepted by XOAUTH2 and OAUTHBEARER
                     (repeatable); any other token gets the error
                     challenge (a 334 with base64 JSON), then 535
"""

import argparse
import asyncio
import base64
import binascii
import json
import ssl
import sys
import time

XOAUTH2_ERROR = {"status": "401", "schemes": "Bearer",
                 "scope": "https://mail.example.test/"}
OAUTHBEARER_ERROR = {"status": "invalid_token", "schemes": "bearer",
                     "scope": "https://mail.example.test/"}
AUTH_FAILED = "535 5.7.8 Username and Password not accepted"
INJECTED = b"220 ready\r\n250 forged\r\n"


def security_b64decode(text):
    """Decode base64 text, or return None when it is not base64."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None


def security_b64encode_json(obj):
    text = json.dumps(obj, separators=(",", ":"))
    return base64.b64encode(text.encode("ascii")).decode("ascii")


def security_parse_xoauth2(raw):
    """Return (user, token) from "user=U^Aauth=Bearer T^A^A", or None."""
    fields = {}
    for item in raw.decode("utf-8", "replace").split("\x01"):
        if "=" in item:
            key, value = item.split("=", 1)
            fields[key] = value
    auth = fields.get("auth", "")
    if "user" not in fields or not auth.startswith("Bearer "):
        return None
    return fields["user"], auth[len("Bearer "):]


def security_parse_oauthbearer(raw):
    """Return (user, token) from an RFC 7628 initial response
    "n,a=U,^Ahost=H^Aport=P^Aauth=Bearer T^A^A", or None."""
    text = raw.decode("utf-8", "replace")
    gs2, _, rest = text.partition("\x01")
    parts = gs2.split(",")
    if len(parts) < 2 or parts[0] not in ("n", "y", "p"):
        return None
    user = parts[1][2:] if parts[1].startswith("a=") else ""
    for item in rest.split("\x01"):
        if item.startswith("auth=Bearer "):
            return user, item[len("auth=Bearer "):]
    return None


class SecurityServer:
    """One listening socket; each connection runs dialogue()."""

    def __init__(self, options):
        self.options = options
        self.record = open(options.record, "a", encoding="utf-8")
        self.counter = 0
        self.active = 0
        self.users = dict(u.split(":", 1) for u in options.user)
        self.ssl = None
        if options.tls_cert:
            self.ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ssl.load_cert_chain(options.tls_cert, options.tls_key)

    def log(self, **event):
        event["time"] = time.time()
        self.record.write(json.dumps(event) + "\n")
        self.record.flush()

    async def reply(self, writer, text):
        """Send a reply; text may hold several lines separated by LF."""
        data = "".join(line + "\r\n" for line in text.split("\n"))
        writer.write(data.encode("utf-8"))
        await writer.drain()

    async def read_line(self, reader, conn, tls):
        """Read and record one line; None at end of file."""
        line = await reader.readline()
        if not line:
            return None
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        self.log(event="command", conn=conn, tls=tls, line=text)
        return text

    async def session(self, reader, writer):
        self.counter += 1
        self.active += 1
        conn = self.counter
        self.log(event="connect", conn=conn, active=self.active)
        try:
            await self.dialogue(reader, writer, conn)
        except (ConnectionError, asyncio.IncompleteReadError,
                ssl.SSLError, OSError):
            pass
        finally:
            self.active -= 1
            self.log(event="disconnect", conn=conn, active=self.active)
            writer.close()

    def ehlo_reply(self, tls):
        opt = self.options
        lines = ["250-security.test", "250-8BITMIME",
                 "250-ENHANCEDSTATUSCODES"]
        if not tls and self.ssl and not opt.no_starttls:
            lines.append("250-STARTTLS")
        if opt.auth and (tls or not opt.auth_after_tls):
            lines.append("250-AUTH " + opt.auth)
        lines.append("250 SIZE 10485760")
        return "\n".join(lines)

    async def starttls(self, reader, writer, conn):
        """Run the STARTTLS step; returns True when TLS is now on."""
        opt = self.options
        if opt.no_starttls or self.ssl is None:
            await self.reply(writer, "502 5.5.1 STARTTLS not offered")
            return False
        if opt.starttls_reply:
            await self.reply(writer, opt.starttls_reply)
            return False
        if opt.starttls_inject:
            # Both replies in one segment, as an attacker in the path
            # would inject them before the handshake.
            writer.write(INJECTED)
        else:
            writer.write(b"220 2.0.0 Ready to start TLS\r\n")
        await writer.drain()
        try:
            await writer.start_tls(self.ssl)
        except (ssl.SSLError, ConnectionError, OSError) as e:
            self.log(event="tls", conn=conn, ok=False, error=str(e))
            raise ConnectionError("TLS handshake failed") from e
        self.log(event="tls", conn=conn, ok=True)
        return True

    async def auth(self, reader, writer, conn, tls, args):
        """Run one AUTH exchange; returns True on success."""
        words = args.split()
        mech = words[0].upper() if words else ""
        offered = (self.options.auth or "").upper().split()
        if mech not in offered:
            await self.reply(writer, "504 5.5.4 mechanism not offered")
            return False
        initial = words[1] if len(words) > 1 else None
        if initial is None:
            prompt = {"LOGIN": "334 VXNlcm5hbWU6"}.get(mech, "334 ")
            await self.reply(writer, prompt)
            initial = await self.read_line(reader, conn, tls)
            if initial is None:
                return False
        raw = b"" if initial == "=" else security_b64decode(initial)
        if raw is None:
            await self.reply(writer, "501 5.5.2 invalid base64")
            return False

        if mech == "PLAIN":
            parts = raw.split(b"\0")
            ok = (len(parts) == 3 and self.users.get(
                parts[1].decode("utf-8", "replace"))
                == parts[2].decode("utf-8", "replace"))
        elif mech == "LOGIN":
            user = raw.decode("utf-8", "replace")
            await self.reply(writer, "334 UGFzc3dvcmQ6")
            line = await self.read_line(reader, conn, tls)
            password = security_b64decode(line or "")
            ok = (password is not None and
                  self.users.get(user) == password.decode("utf-8",
                                                          "replace"))
        elif mech in ("XOAUTH2", "OAUTHBEARER"):
            return await self.auth_bearer(reader, writer, conn, tls,
                                          mech, raw)
        else:
            ok = False
        await self.reply(writer, "235 2.7.0 Authentication successful"
                         if ok else AUTH_FAILED)
        return ok

    async def auth_bearer(self, reader, writer, conn, tls, mech, raw):
        """Run XOAUTH2 or OAUTHBEARER: 235 for a known token, else the
        error challenge, the client's reply to it, and 535."""
        if mech == "XOAUTH2":
            parsed = security_parse_xoauth2(raw)
            challenge = XOAUTH2_ERROR
        else:
            parsed = security_parse_oauthbearer(raw)
            challenge = OAUTHBEARER_ERROR
        if parsed and parsed[1] in self.options.token:
            await self.reply(writer, "235 2.7.0 Accepted")
            return True
        await self.reply(writer, "334 " + security_b64encode_json(challenge))
        # The client must reply to the challenge (XOAUTH2: an empty line,
        # OAUTHBEARER: "AQ==") before the final reply.  read_line records
        # whatever it sends.
        if await self.read_line(reader, conn, tls) is None:
            return False
        await self.reply(writer, AUTH_FAILED)
        return False

    async def dialogue(self, reader, writer, conn):
        await self.reply(writer, "220 security.test ESMTP ready")
        tls = False
        mail_from = None
        rcpts = []
        while True:
            text = await self.read_line(reader, conn, tls)
            if text is None:
                return
            verb, _, args = text.partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                await self.reply(writer, self.ehlo_reply(tls))
            elif verb == "HELO":
                await self.reply(writer, "250 security.test")
            elif verb == "STARTTLS" and not tls:
                tls = await self.starttls(reader, writer, conn)
            elif verb == "AUTH":
                await self.auth(reader, writer, conn, tls, args)
            elif verb == "MAIL":
                mail_from = text[len("MAIL FROM:"):]
                rcpts = []
                await self.reply(writer, "250 2.1.0 OK")
            elif verb == "RCPT":
                rcpts.append(text[len("RCPT TO:"):])
                await self.reply(writer, "250 2.1.5 OK")
            elif verb == "DATA":
                await self.reply(writer,
                                 "354 End data with <CR><LF>.<CR><LF>")
                data = await self.read_data(reader)
                if data is None:
                    return
                self.log(event="message", conn=conn, tls=tls,
                         mail_from=mail_from, rcpt_tos=rcpts,
                         data=base64.b64encode(data).decode("ascii"))
                mail_from = None
                rcpts = []
                await self.reply(writer, "250 2.0.0 OK queued")
            elif verb in ("RSET", "NOOP"):
                await self.reply(writer, "250 2.0.0 OK")
            elif verb == "QUIT":
                await self.reply(writer, "221 2.0.0 Bye")
                return
            else:
                await self.reply(writer, "502 5.5.2 command not recognized")

    @staticmethod
    async def read_data(reader):
        """Read message data up to the final dot; returns the unstuffed
        bytes, or None at end of file."""
        lines = []
        while True:
            line = await reader.readline()
            if not line:
                return None
            if line == b".\r\n":
                return b"".join(lines)
            if line.startswith(b"."):
                line = line[1:]
            lines.append(line)


def security_parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--record", required=True)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--no-starttls", action="store_true")
    p.add_argument("--starttls-reply")
    p.add_argument("--starttls-inject", action="store_true")
    p.add_argument("--auth", default="")
    p.add_argument("--auth-after-tls", action="store_true")
    p.add_argument("--user", action="append", default=[])
    p.add_argument("--token", action="append", default=[])
    options = p.parse_args(argv)
    if bool(options.tls_cert) != bool(options.tls_key):
        p.error("--tls-cert and --tls-key go together")
    for user in options.user:
        if ":" not in user:
            p.error("--user expects USER:PASSWORD, got %r" % user)
    return options


async def security_main(options):
    server = SecurityServer(options)
    listener = await asyncio.start_server(server.session, "127.0.0.1",
                                          options.port, limit=1 << 20)
    port = listener.sockets[0].getsockname()[1]
    print("READY %d" % port, flush=True)
    async with listener:
        await listener.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(security_main(security_parse_args(sys.argv[1:])))
    except KeyboardInterrupt:
        pass
