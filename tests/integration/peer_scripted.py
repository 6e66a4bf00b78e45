#!/usr/bin/python3
"""Scripted raw-socket SMTP server for faults real servers do not produce on
demand.  Standard library only (asyncio).

It binds 127.0.0.1 on the given port (0 picks a free one), prints
"READY PORT" on stdout and writes the same JSON-lines record as
peer_recorder.py (connect, disconnect and message events), plus one
"command" event per command line received.  Without options it is a small
but correct SMTP server; each option injects one fault:

  --greeting LINE      greeting reply line, repeatable for a multi-line one
  --ehlo-reply REPLY   reply to EHLO with REPLY (HELO still works)
  --mail-reply REPLY   reply to MAIL with REPLY
  --data-reply REPLY   reply to the DATA command with REPLY
  --idle-close S       close a connection that sent nothing for S seconds
  --idle-421 S         send 421 to such a connection, then close it
  --drop-in-data WHEN  "at-command": close on the DATA command, no reply;
                       "mid": close after the first line of message data;
                       "after-dot": close after the final dot, no reply
  --drop-count N       apply --drop-in-data to the first N connections only
  --silent             accept connections and never send anything
  --slow S             wait S seconds before every reply
  --long-reply N       greeting made of one line of N characters
"""

import argparse
import asyncio
import base64
import json
import sys
import time


class ScriptedServer:
    """One listening socket; each connection runs scripted_session()."""

    def __init__(self, options):
        self.options = options
        self.record = open(options.record, "a", encoding="utf-8")
        self.counter = 0
        self.active = 0

    def log(self, **event):
        event["time"] = time.time()
        self.record.write(json.dumps(event) + "\n")
        self.record.flush()

    async def reply(self, writer, text):
        """Send a reply; text may hold several lines separated by LF."""
        if self.options.slow > 0:
            await asyncio.sleep(self.options.slow)
        data = "".join(line + "\r\n" for line in text.split("\n"))
        writer.write(data.encode("utf-8", "surrogateescape"))
        await writer.drain()

    async def read_command(self, reader, writer):
        """Read one command line, applying the idle options.  Returns
        None when the connection is to be closed."""
        idle = self.options.idle_close or self.options.idle_421
        try:
            if idle > 0:
                line = await asyncio.wait_for(reader.readline(),
                    idle)
            else:
                line = await reader.readline()
        except asyncio.TimeoutError:
            if self.options.idle_421:
                await self.reply(writer,
                    "421 4.4.2 scripted.test idle too long, "
                    "closing")
            return None
        if not line:
            return None
        return line

    async def read_data(self, reader, writer, conn):
        """Read message data up to the final dot.  Returns the
        unstuffed bytes, or None when the connection is to be closed."""
        drop = self.options.drop_in_data
        if drop and conn > self.options.drop_count > 0:
            drop = None
        lines = []
        while True:
            line = await reader.readline()
            if not line:
                return None
            if line == b".\r\n":
                break
            if drop == "mid":
                return None
            if line.startswith(b"."):
                line = line[1:]
            lines.append(line)
        if drop == "after-dot":
            return None
        return b"".join(lines)

    async def session(self, reader, writer):
        self.counter += 1
        self.active += 1
        conn = self.counter
        self.log(event="connect", conn=conn, active=self.active)
        try:
            await self.dialogue(reader, writer, conn)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.active -= 1
            self.log(event="disconnect", conn=conn,
                active=self.active)
            writer.close()

    async def dialogue(self, reader, writer, conn):
        opt = self.options
        if opt.silent:
            await reader.read()
            return
        if opt.long_reply:
            await self.reply(writer, "220 " + "x" * opt.long_reply)
        else:
            await self.reply(writer, "\n".join(opt.greeting or
                ["220 scripted.test ESMTP ready"]))
        mail_from = None
        rcpts = []
        while True:
            line = await self.read_command(reader, writer)
            if line is None:
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            self.log(event="command", conn=conn, line=text)
            verb = text.split(" ", 1)[0].upper()
            if verb == "EHLO":
                await self.reply(writer, opt.ehlo_reply or
                    "250-scripted.test\n250-8BITMIME\n"
                    "250-ENHANCEDSTATUSCODES\n250 SIZE 10485760")
            elif verb == "HELO":
                await self.reply(writer, "250 scripted.test")
            elif verb == "MAIL":
                if opt.mail_reply:
                    await self.reply(writer, opt.mail_reply)
                    continue
                mail_from = text[len("MAIL FROM:"):]
                rcpts = []
                await self.reply(writer, "250 2.1.0 OK")
            elif verb == "RCPT":
                rcpts.append(text[len("RCPT TO:"):])
                await self.reply(writer, "250 2.1.5 OK")
            elif verb == "DATA":
                if (opt.drop_in_data == "at-command" and
                        not conn > opt.drop_count > 0):
                    return
                if opt.data_reply:
                    await self.reply(writer, opt.data_reply)
                    continue
                await self.reply(writer,
                    "354 End data with <CR><LF>.<CR><LF>")
                data = await self.read_data(reader, writer, conn)
                if data is None:
                    return
                self.log(event="message", conn=conn,
                    mail_from=mail_from, rcpt_tos=rcpts,
                    data=base64.b64encode(data).decode("ascii"))
                mail_from = None
                rcpts = []
                await self.reply(writer, "250 2.0.0 OK queued")
            elif verb == "RSET":
                mail_from = None
                rcpts = []
                await self.reply(writer, "250 2.0.0 OK")
            elif verb == "NOOP":
                await self.reply(writer, "250 2.0.0 OK")
            elif verb == "QUIT":
                await self.reply(writer, "221 2.0.0 Bye")
                return
            else:
                await self.reply(writer,
                    "502 5.5.2 command not recognized")


def scripted_parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--record", required=True)
    p.add_argument("--greeting", action="append", default=[])
    p.add_argument("--ehlo-reply")
    p.add_argument("--mail-reply")
    p.add_argument("--data-reply")
    p.add_argument("--idle-close", type=float, default=0)
    p.add_argument("--idle-421", type=float, default=0)
    p.add_argument("--drop-in-data", choices=["at-command", "mid", "after-dot"])
    p.add_argument("--drop-count", type=int, default=0)
    p.add_argument("--silent", action="store_true")
    p.add_argument("--slow", type=float, default=0)
    p.add_argument("--long-reply", type=int, default=0)
    options = p.parse_args(argv)
    if options.ehlo_reply:
        options.ehlo_reply = options.ehlo_reply.replace("|", "\n")
    return options


async def scripted_main(options):
    server = ScriptedServer(options)
    listener = await asyncio.start_server(server.session, "127.0.0.1",
        options.port, limit=1 << 20)
    port = listener.sockets[0].getsockname()[1]
    print("READY %d" % port, flush=True)
    async with listener:
        await listener.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(scripted_main(scripted_parse_args(sys.argv[1:])))
    except KeyboardInterrupt:
        pass
