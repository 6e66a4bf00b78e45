#!/usr/bin/python3
"""Recording SMTP server for the integration tests, built on aiosmtpd.

Runs in its own process under /usr/bin/python3 (Debian's python3-aiosmtpd
is importable only there).  It binds 127.0.0.1 on the given port (0 picks a
free one), prints "READY PORT" on stdout, and appends one JSON object per
line to the record file for every connection opened and closed and every
message accepted:

  {"event": "connect", "conn": N, "active": K, "time": T}
  {"event": "disconnect", "conn": N, "active": K, "time": T}
  {"event": "message", "conn": N, "mail_from": ..., "rcpt_tos": [...],
   "mail_options": [...], "data": BASE64}

"active" is the number of connections open after the event, so the tests
can check the maximum concurrency seen from the server side.  Options make
it reject given senders or recipients, reply to RCPT or to the end of DATA
with a chosen reply, advertise SIZE, delay the end of DATA, or speak implicit
TLS.
"""

import argparse
import asyncio
import base64
import json
import ssl
import sys
import time

from aiosmtpd.smtp import SMTP


class RecordLog:
    """Append-only JSON-lines file, flushed after every event."""

    def __init__(self, path):
        self.file = open(path, "a", encoding="utf-8")

    def write(self, **event):
        event["time"] = time.time()
        self.file.write(json.dumps(event) + "\n")
        self.file.flush()


class RecordingHandler:
    """aiosmtpd handler that applies the scripted replies and records
    accepted messages."""

    def __init__(self, options, log):
        self.options = options
        self.log = log
        self.rcpt_replies = {}
        for item in options.rcpt_reply:
            address, _, reply = item.partition("=")
            self.rcpt_replies[address.lower()] = reply
        for address in options.reject_rcpt:
            self.rcpt_replies[address.lower()] = \
                "550 5.1.1 <%s>: recipient rejected" % address
        self.reject_senders = {a.lower() for a in options.reject_sender}

    async def handle_MAIL(self, server, session, envelope, address,
        mail_options):
        if address.lower() in self.reject_senders:
            return "550 5.7.1 <%s>: sender rejected" % address
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address,
        rcpt_options):
        reply = self.rcpt_replies.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.options.data_end_delay > 0:
            await asyncio.sleep(self.options.data_end_delay)
        if self.options.data_end_reply:
            return self.options.data_end_reply
        self.log.write(event="message", conn=server.recorder_conn,
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            mail_options=list(envelope.mail_options),
            data=base64.b64encode(
            envelope.original_content).decode("ascii"))
        return "250 2.0.0 OK queued"


class RecordingSMTP(SMTP):
    """SMTP protocol that records when connections open and close."""

    counter = 0
    active = 0

    def __init__(self, handler, log, **kwargs):
        super().__init__(handler, **kwargs)
        self.recorder_log = log
        self.recorder_conn = None

    def connection_made(self, transport):
        if self.recorder_conn is None:
            RecordingSMTP.counter += 1
            RecordingSMTP.active += 1
            self.recorder_conn = RecordingSMTP.counter
            self.recorder_log.write(event="connect",
                conn=self.recorder_conn,
                active=RecordingSMTP.active)
        super().connection_made(transport)

    def connection_lost(self, error):
        if self.recorder_conn is not None:
            RecordingSMTP.active -= 1
            self.recorder_log.write(event="disconnect",
                conn=self.recorder_conn,
                active=RecordingSMTP.active)
            self.recorder_conn = None
        super().connection_lost(error)


def recorder_parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--record", required=True,
        help="JSON-lines file that receives the events")
    p.add_argument("--tls-cert", help="PEM certificate: implicit TLS")
    p.add_argument("--tls-key", help="PEM key for --tls-cert")
    p.add_argument("--reject-rcpt", action="append", default=[],
        metavar="ADDR", help="reply to RCPT TO:<ADDR> with 550 5.1.1")
    p.add_argument("--reject-sender", action="append", default=[],
        metavar="ADDR", help="reply to MAIL FROM:<ADDR> with 550 5.7.1")
    p.add_argument("--rcpt-reply", action="append", default=[],
        metavar="ADDR=REPLY", help="reply to RCPT TO:<ADDR> with REPLY")
    p.add_argument("--data-end-reply", metavar="REPLY",
        help="reply to the end of DATA with REPLY (message not recorded)")
    p.add_argument("--data-end-delay", type=float, default=0,
        metavar="SECONDS", help="wait before replying to the end of DATA")
    p.add_argument("--size", type=int, default=0,
        help="advertise and enforce SIZE N (0: no SIZE)")
    return p.parse_args(argv)


async def recorder_main(options):
    log = RecordLog(options.record)
    handler = RecordingHandler(options, log)
    ssl_context = None
    if options.tls_cert:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(options.tls_cert, options.tls_key)

    def recorder_factory():
        return RecordingSMTP(handler, log,
            data_size_limit=options.size or None,
            hostname="recorder.test", ident="recorder",
            timeout=60)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(recorder_factory, "127.0.0.1",
        options.port, ssl=ssl_context)
    port = server.sockets[0].getsockname()[1]
    print("READY %d" % port, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(recorder_main(recorder_parse_args(sys.argv[1:])))
    except KeyboardInterrupt:
        pass
