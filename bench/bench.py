#!/usr/bin/python3
"""Throughput benchmark: messages per second through smtpoold compared with
direct SMTP, both against the same Postfix smtp-sink on 127.0.0.1.

  (a) daemon: smtpool-bench forks PROCS client processes; each logs on once
      and sends COUNT messages with a body of BYTES bytes through smtpoold.
  (b) direct: smtp-source -s PROCS -d -m PROCS*COUNT -l BYTES sends the same
      number of messages over PROCS connections that it keeps open.

Each round runs (a) then (b); the medians over the rounds and their ratio
daemon/direct are printed last.  The daemon runs with pool limits raised
so that, like smtp-source -d, it keeps its connections for the whole run
(see BENCH_CONFIG).

Usage: bench/bench.py [--build DIR] [-p PROCS] [-n COUNT] [-l BYTES]
                      [--rounds N]
Needs the built tree (DIR/daemon/smtpoold, DIR/client/libsmtpool.so) and
smtp-sink and smtp-source unpacked in SMTPOOL_PEERS_DIR, as .ci/run does.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # keep tests/integration free of caches
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from daemon import Daemon  # noqa: E402
from peers import SmtpSink, postfix_env, postfix_tool  # noqa: E402

# Pool settings that keep PROCS upstream connections for the whole run, as
# smtp-source -d does, and a log level that skips per-message lines.
BENCH_CONFIG = {
    "log": {"level": "notice"},
    "pool": {"max_connections_per_key": 4,
             "max_messages_per_connection": 1000000,
             "max_connection_age": 86400, "idle_timeout": 600,
             "wait_timeout": 60},
    "timeouts": {"connect": 30, "greeting": 60, "helo": 60, "mail": 60,
                 "rcpt": 60, "data_init": 60, "data_block": 60,
                 "data_done": 60, "rset": 20, "quit": 20},
}

RESULT_LINE = re.compile(r"messages=(\d+) failed=(\d+) seconds=([\d.]+)")


def bench_client(build, scratch):
    """Return the smtpool-bench binary: the one the build made, or one
    compiled here against the build's libsmtpool."""
    built = os.path.join(build, "bench", "smtpool-bench")
    if os.access(built, os.X_OK):
        return built
    out = os.path.join(scratch, "smtpool-bench")
    libdir = os.path.join(build, "client")
    cmd = ["cc", "-std=c11", "-O2", "-D_GNU_SOURCE",
           "-I", os.path.join(ROOT, "client"),
           os.path.join(ROOT, "bench", "bench_client.c"), "-o", out,
           "-L", libdir, "-lsmtpool", "-Wl,-rpath," + libdir]
    subprocess.run(cmd, check=True)
    return out


def run_daemon_round(client, socket_path, conn, procs, count, size):
    result = subprocess.run([client, "-s", socket_path, "-c", conn,
                             "-p", str(procs), "-n", str(count),
                             "-l", str(size)],
                            capture_output=True, text=True, timeout=3600)
    match = RESULT_LINE.search(result.stdout)
    if result.returncode != 0 or not match:
        raise RuntimeError("smtpool-bench failed (status %d): %s %s"
                           % (result.returncode, result.stdout,
                              result.stderr))
    messages, failed, seconds = match.groups()
    return int(messages) - int(failed), float(seconds)


def run_direct_round(port, procs, count, size):
    total = procs * count
    cmd = [postfix_tool("smtp-source"), "-s", str(procs), "-d",
           "-m", str(total), "-l", str(size), "127.0.0.1:%d" % port]
    started = time.monotonic()
    result = subprocess.run(cmd, env=postfix_env(), capture_output=True,
                            text=True, timeout=3600)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError("smtp-source failed (status %d): %s"
                           % (result.returncode, result.stderr))
    return total, seconds


def bench_main(argv):
    p = argparse.ArgumentParser(description="Compare messages per second "
                                "through smtpoold with direct SMTP.")
    p.add_argument("--build", default=os.path.join(ROOT, "build"),
                   help="meson build folder (default: build)")
    p.add_argument("-p", dest="procs", type=int, default=4,
                   help="client processes and SMTP sessions (default 4)")
    p.add_argument("-n", dest="count", type=int, default=10000,
                   help="messages per process and round (default 10000)")
    p.add_argument("-l", dest="size", type=int, default=1024,
                   help="message body size in bytes (default 1024)")
    p.add_argument("--rounds", type=int, default=3,
                   help="rounds of both measurements (default 3)")
    options = p.parse_args(argv)
    build = os.path.abspath(options.build)
    os.environ["SMTPOOL_BUILD"] = build

    scratch = tempfile.mkdtemp(prefix="spbench-")
    sink = daemon = None
    try:
        client = bench_client(build, scratch)
        sink = SmtpSink(scratch)
        daemon = Daemon(scratch, config=BENCH_CONFIG).start()
        conn = "TCP:127.0.0.1+%d" % sink.port
        daemon_rates = []
        direct_rates = []
        for round_number in range(1, options.rounds + 1):
            sent, seconds = run_daemon_round(client, daemon.socket, conn,
                                             options.procs, options.count,
                                             options.size)
            daemon_rates.append(sent / seconds)
            print("round %d daemon: %d messages in %.2f s = %.0f msg/s"
                  % (round_number, sent, seconds, sent / seconds))
            sent, seconds = run_direct_round(sink.port, options.procs,
                                             options.count, options.size)
            direct_rates.append(sent / seconds)
            print("round %d direct: %d messages in %.2f s = %.0f msg/s"
                  % (round_number, sent, seconds, sent / seconds),
                  flush=True)
        daemon_rate = statistics.median(daemon_rates)
        direct_rate = statistics.median(direct_rates)
        print("daemon: %.0f msg/s (median of %d rounds, %d processes x %d "
              "messages of %d bytes)" % (daemon_rate, options.rounds,
                                         options.procs, options.count,
                                         options.size))
        print("direct: %.0f msg/s (smtp-source -s %d -d -l %d)"
              % (direct_rate, options.procs, options.size))
        print("ratio daemon/direct: %.2f" % (daemon_rate / direct_rate))
        return 0
    finally:
        if daemon is not None:
            status = daemon.stop()
            if status != 0:
                print("smtpoold exited with status %s; log tail:\n%s"
                      % (status, daemon.log_text()[-2000:]),
                      file=sys.stderr)
        if sink is not None:
            sink.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(bench_main(sys.argv[1:]))
