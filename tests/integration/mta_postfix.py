"""A private Postfix instance with STARTTLS and SMTP AUTH for the security
tests, run from Debian's postfix package unpacked (never installed) into
SMTPOOL_PEERS_DIR (default /var/tmp/smtpool-peers).

The fixture writes its own main.cf and master.cf into a folder of the
test and keeps the queue, the data folder and the mail log there.  It runs
Postfix's master in the foreground (`master -d`), so stopping it is one
SIGTERM to a PID we own.  Three smtpd listeners on 127.0.0.1:

  starttls  STARTTLS offered (smtpd_tls_security_level=may); AUTH PLAIN
            and LOGIN offered only after STARTTLS (smtpd_tls_auth_only)
  tls       implicit TLS (smtpd_tls_wrappermode) with AUTH PLAIN LOGIN
  plain     no TLS at all; AUTH PLAIN LOGIN offered in plain text

Users live in a Cyrus SASL sasldb made with saslpasswd2 (Debian package
sasl2-bin) in the realm DOMAIN.  Every message is accepted and delivered
to the discard transport.  Each listener logs under its own syslog_name
("postfix/starttls/smtpd" ...) to a private maillog_file, so tests count
connections and AUTH results per listener.

Requirements: root (master drops privileges to the postfix user, which
is created with `useradd --system` when missing, like the postdrop
group), the postfix package unpacked in the peers folder, and
saslpasswd2.  A missing piece raises PeerMissing so the test is skipped.
"""

import grp
import os
import pwd
import re
import shutil
import signal
import subprocess
import time

from peers import (PeerError, PeerMissing, free_port, peers_dir,
                   wait_for_listener)

START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
LISTENERS = ("starttls", "tls", "plain")
DOMAIN = "example.test"


def postfix_daemon_dir():
    return os.path.join(peers_dir(), "usr", "lib", "postfix", "sbin")


def postfix_check_requirements():
    """Raise PeerMissing when Postfix cannot run here, naming the fix."""
    if os.geteuid() != 0:
        raise PeerMissing("the Postfix instance needs root: its master "
                          "drops privileges to the postfix user")
    master = os.path.join(postfix_daemon_dir(), "master")
    if not os.access(master, os.X_OK):
        raise PeerMissing("%s not found: unpack Debian's postfix package "
                          "there (apt-get download postfix; dpkg -x "
                          "postfix_*.deb %s)" % (master, peers_dir()))
    if shutil.which("saslpasswd2") is None:
        raise PeerMissing("saslpasswd2 not found: install Debian's "
                          "sasl2-bin and libsasl2-modules")


def postfix_ensure_accounts():
    """Create the postdrop group and the postfix user when missing."""
    try:
        grp.getgrnam("postdrop")
    except KeyError:
        postfix_run(["groupadd", "--system", "postdrop"])
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        postfix_run(["useradd", "--system", "--user-group",
                     "--no-create-home", "--home-dir", "/nonexistent",
                     "--shell", "/usr/sbin/nologin", "postfix"])


def postfix_run(cmd, stdin=None):
    result = subprocess.run(cmd, input=stdin, capture_output=True,
                            timeout=30)
    if result.returncode != 0:
        raise PeerError("%s exited %d: %s" % (
            cmd[0], result.returncode,
            result.stderr.decode(errors="replace")))


class PostfixMta:
    """One private Postfix instance; see the module comment.

    users maps SASL user names (without realm) to passwords.  Port
    attributes: starttls_port, tls_port, plain_port.
    """

    def __init__(self, workdir, certs, users=None):
        postfix_check_requirements()
        postfix_ensure_accounts()
        self.users = dict(users or {})
        # The postfix user must reach the sasldb and queue below the
        # test folder, which mkdtemp made 0700: allow traversal only.
        os.chmod(workdir, 0o711)
        self.top = os.path.join(workdir, "postfix")
        self.config_dir = os.path.join(self.top, "etc")
        self.queue_dir = os.path.join(self.top, "queue")
        self.data_dir = os.path.join(self.top, "data")
        self.log_path = os.path.join(self.top, "maillog")
        self.stderr_path = os.path.join(self.top, "master.stderr")
        self.sasldb = os.path.join(self.config_dir, "sasl", "sasldb2")
        self.certs = certs
        self.proc = None

        self._make_folders()
        self._make_users()
        last_error = None
        # Ports are picked before master binds them, so another process
        # may take one in between: try a few sets.
        for _ in range(3):
            self.starttls_port = free_port()
            self.tls_port = free_port()
            self.plain_port = free_port()
            self._write_config()
            try:
                self._start()
                return
            except PeerError as e:
                last_error = e
                self.stop()
        raise PeerError("Postfix did not start: %s" % last_error)

    # Set-up ----------------------------------------------------------

    def _make_folders(self):
        postfix = pwd.getpwnam("postfix")
        postdrop = grp.getgrnam("postdrop")
        os.makedirs(os.path.join(self.config_dir, "sasl"), mode=0o755)
        os.chmod(self.top, 0o755)
        os.makedirs(self.queue_dir, mode=0o755)
        # Owners and modes as Debian's postfix-files sets them.
        layout = [("pid", 0, 0, 0o755),
                  ("private", postfix.pw_uid, 0, 0o700),
                  ("public", postfix.pw_uid, postdrop.gr_gid, 0o710),
                  ("maildrop", postfix.pw_uid, postdrop.gr_gid, 0o730)]
        for name in ("active", "bounce", "corrupt", "defer", "deferred",
                     "flush", "hold", "incoming", "saved", "trace"):
            layout.append((name, postfix.pw_uid, 0, 0o700))
        for name, uid, gid, mode in layout:
            path = os.path.join(self.queue_dir, name)
            os.mkdir(path)
            os.chown(path, uid, gid)
            os.chmod(path, mode)
        os.mkdir(self.data_dir)
        os.chown(self.data_dir, postfix.pw_uid, postfix.pw_gid)
        os.chmod(self.data_dir, 0o700)

    def _make_users(self):
        for user, password in self.users.items():
            postfix_run(["saslpasswd2", "-p", "-c", "-f", self.sasldb,
                         "-u", DOMAIN, user],
                        stdin=password.encode("utf-8"))
        if os.path.exists(self.sasldb):
            # smtpd reads the sasldb as the postfix user.
            postfix = pwd.getpwnam("postfix")
            os.chown(self.sasldb, 0, postfix.pw_gid)
            os.chmod(self.sasldb, 0o640)
        with open(os.path.join(self.config_dir, "sasl", "smtpd.conf"),
                  "w", encoding="ascii") as f:
            f.write("pwcheck_method: auxprop\n"
                    "auxprop_plugin: sasldb\n"
                    "mech_list: PLAIN LOGIN\n"
                    "sasldb_path: %s\n" % self.sasldb)

    def _write_config(self):
        libdir = os.path.join(peers_dir(), "usr", "lib", "postfix")
        main = {
            "compatibility_level": "3.6",
            "config_directory": self.config_dir,
            "queue_directory": self.queue_dir,
            "data_directory": self.data_dir,
            "daemon_directory": postfix_daemon_dir(),
            "command_directory": os.path.join(peers_dir(), "usr", "sbin"),
            "shlib_directory": libdir,
            "meta_directory": os.path.join(peers_dir(), "etc", "postfix"),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            # The unpacked libraries are not in the loader's path, and
            # master passes only the listed variables to its children.
            "import_environment": "MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ "
                                  "LANG=C POSTLOG_SERVICE POSTLOG_HOSTNAME "
                                  "LD_LIBRARY_PATH=" + libdir,
            "maillog_file": self.log_path,
            "maillog_file_prefixes": self.top,
            "myhostname": "mail." + DOMAIN,
            "mydomain": DOMAIN,
            "myorigin": DOMAIN,
            "mydestination": "",
            "relay_domains": "",
            "relayhost": "",
            "local_recipient_maps": "",
            "local_header_rewrite_clients": "",
            "default_transport": "discard",
            "relay_transport": "discard",
            "local_transport": "discard",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_peername_lookup": "no",
            "smtputf8_enable": "no",
            "biff": "no",
            "alias_maps": "",
            "alias_database": "",
            "smtpd_sasl_type": "cyrus",
            "smtpd_sasl_path": "smtpd",
            "cyrus_sasl_config_path": os.path.join(self.config_dir,
                                                   "sasl"),
            "smtpd_sasl_local_domain": DOMAIN,
            "smtpd_tls_cert_file": self.certs.server_cert,
            "smtpd_tls_key_file": self.certs.server_key,
            "smtpd_tls_loglevel": "1",
            "tls_random_source": "dev:/dev/urandom",
        }
        with open(os.path.join(self.config_dir, "main.cf"), "w",
                  encoding="utf-8") as f:
            for key, value in main.items():
                f.write("%s = %s\n" % (key, value))

        listeners = [
            (self.starttls_port, "starttls",
             ["smtpd_tls_security_level=may", "smtpd_sasl_auth_enable=yes",
              "smtpd_tls_auth_only=yes"]),
            (self.tls_port, "tls",
             ["smtpd_tls_wrappermode=yes", "smtpd_sasl_auth_enable=yes"]),
            (self.plain_port, "plain",
             ["smtpd_tls_security_level=none",
              "smtpd_sasl_auth_enable=yes", "smtpd_tls_auth_only=no"]),
        ]
        lines = []
        for port, name, options in listeners:
            lines.append("127.0.0.1:%d inet n - n - - smtpd" % port)
            for option in ["syslog_name=postfix/" + name] + options:
                lines.append("  -o " + option)
        # Internal services, none chrooted.
        lines += [
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "tlsmgr unix - - n 1000? 1 tlsmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "discard unix - - n - - discard",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
        ]
        with open(os.path.join(self.config_dir, "master.cf"), "w",
                  encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")

    def _start(self):
        env = dict(os.environ)
        env["MAIL_CONFIG"] = self.config_dir
        env["LD_LIBRARY_PATH"] = os.path.join(peers_dir(), "usr", "lib",
                                              "postfix")
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [os.path.join(postfix_daemon_dir(), "master"), "-d",
                 "-c", self.config_dir],
                env=env, stdin=subprocess.DEVNULL, stdout=err,
                stderr=err)
        try:
            for port in (self.starttls_port, self.tls_port,
                         self.plain_port):
                wait_for_listener(port, self.proc, START_TIMEOUT)
        except PeerError as e:
            raise PeerError("%s; stderr: %s; log: %s" % (
                e, self._read(self.stderr_path)[-1500:],
                self.log_text()[-1500:]))
        # wait_for_listener opened one connection per port: wait until
        # smtpd has logged them, so tests count only their own.
        self.wait_log(lambda: all(self.connect_count(n) >= 1
                                  for n in LISTENERS), 10)
        self.baseline = {n: self.connect_count(n) for n in LISTENERS}

    # Use ---------------------------------------------------------------

    def conn(self, listener="starttls", host="127.0.0.1"):
        """Return the connection string of one listener."""
        port = {"starttls": self.starttls_port, "tls": self.tls_port,
                "plain": self.plain_port}[listener]
        connector = "TLS" if listener == "tls" else "TCP"
        return "%s:%s+%d" % (connector, host, port)

    @staticmethod
    def _read(path):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_text(self):
        return self._read(self.log_path)

    def log_lines(self, listener, pattern):
        """Return the log lines of one listener's smtpd matching the
        regular expression pattern."""
        tag = re.compile(r"postfix/%s/smtpd\[\d+\]: " % re.escape(listener))
        rx = re.compile(pattern)
        return [line for line in self.log_text().splitlines()
                if tag.search(line) and rx.search(line)]

    def connect_count(self, listener):
        """Return the number of connections the listener has logged."""
        return len(self.log_lines(listener, r": connect from "))

    def new_connections(self, listener):
        """Return the connections made since start-up, without the
        start-up probe."""
        return self.connect_count(listener) - self.baseline[listener]

    def auth_failures(self, listener):
        return len(self.log_lines(listener, r"SASL \S+ authentication "
                                  r"failed"))

    def sasl_clients(self, listener):
        """Return the sasl_username values of accepted messages."""
        out = []
        for line in self.log_lines(listener, r"sasl_username="):
            out.append(line.rsplit("sasl_username=", 1)[1].strip())
        return out

    def wait_log(self, condition, timeout=10.0):
        """Wait until condition() is true (Postfix logs through a
        separate process, so lines arrive a little late).  Returns the
        last value of condition()."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value or time.monotonic() >= deadline:
                return value
            time.sleep(0.1)

    def stop(self):
        """Stop master (SIGTERM, which stops its children) and reap it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)
