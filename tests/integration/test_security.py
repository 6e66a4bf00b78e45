"""Security contexts (SetSecurity, GetSecurity and LogonSMTP with STARTTLS
and SMTP AUTH drivers) against a private Postfix with Cyrus SASL and
against peer_security.py, a scripted server for the faults Postfix does
not produce.

Every test ends by checking that no password or token it used, raw or in
the base64 forms AUTH sends, appears in the daemon log or in any reply.
"""

import base64
import struct
import unittest

from base import IntegrationTest, closed_port, headers
from mta_postfix import DOMAIN, PostfixMta
from peers import PythonPeer

OP_SET_SECURITY = 0x08
OP_GET_SECURITY = 0x09
BODY = "sent with a security context\n"

# Distinctive secrets, so a leak is found by a substring search.
ALICE = "alice"
ALICE_PASSWORD = "pw-Alice-7f3a9c41"
WRONG_PASSWORD = "pw-Wrong-0b8e2d55"
TOKEN = "tok-ya29.a0Goodc3f1"
TOKEN_2 = "tok-ya29.a0Newer77e2"
BAD_TOKEN = "tok-ya29.a0Expired9d4"

STARTTLS = "SMTP=UStartTLSSMTP"
LOGIN = "SMTP=UAuthLoginSMTP"
PLAIN = "SMTP=UAuthPlainSMTP"
XOAUTH2 = "SMTP=UAuthXOAUTH2SMTP"
OAUTHBEARER = "SMTP=UAuthOAuthBearerSMTP"


def credentials(user, password):
    return "user=%s;password=%s" % (user, password)


def bearer(user, token):
    return "user=%s;token=%s" % (user, token)


def b64(text):
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


class SecurityPeer(PythonPeer):
    """peer_security.py; keyword options map to its flags (tls=(cert,
    key), no_starttls, starttls_reply, starttls_inject, auth="MECHS",
    auth_after_tls, users={user: password}, tokens=[...])."""

    script = "peer_security.py"

    def __init__(self, workdir, tls=None, users=None, tokens=(),
                 **options):
        args = []
        if tls:
            args += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        for user, password in (users or {}).items():
            args += ["--user", "%s:%s" % (user, password)]
        for token in tokens:
            args += ["--token", token]
        for name, value in options.items():
            flag = "--" + name.replace("_", "-")
            if value is True:
                args.append(flag)
            elif value not in (None, False):
                args += [flag, value]
        super().__init__(workdir, *args)

    def commands(self, conn=None):
        """Return the lines received, optionally of one connection."""
        return [e["line"] for e in self.record.events("command")
                if conn is None or e["conn"] == conn]

    def command_events(self):
        return self.record.events("command")


class Session:
    """A daemon session that keeps every reply for the secret check."""

    def __init__(self, client, replies):
        self.client = client
        self.replies = replies

    def _keep(self, reply):
        self.replies.append(reply)
        return reply

    def logon(self, conn, user="", password=""):
        return self._keep(self.client.logon(conn, user, password))

    def logoff(self):
        return self._keep(self.client.logoff())

    def sendmail(self, server, header_list, text):
        return self._keep(self.client.sendmail(server, header_list, text))

    def get_response(self):
        return self._keep(self.client.get_response())

    def set_security(self, properties, parameters=""):
        if hasattr(self.client, "set_security"):
            reply = self.client.set_security(properties, parameters)
        else:
            reply = self.client.request(OP_SET_SECURITY,
                                        [properties, parameters])
        return self._keep(reply)

    def get_security(self, index, properties="SMTP="):
        if hasattr(self.client, "get_security"):
            reply = self.client.get_security(index, properties)
        else:
            reply = self.client.request(OP_GET_SECURITY,
                                        [struct.pack(">i", index),
                                         properties])
        return self._keep(reply)

    def close(self):
        self.client.close()


class SecurityTest(IntegrationTest):
    """Base: Postfix and scripted peers, sessions that keep their
    replies, and the secret check after the daemon has stopped."""

    def setUp(self):
        super().setUp()
        self.replies = []
        self.secrets = {ALICE_PASSWORD, WRONG_PASSWORD, TOKEN, TOKEN_2,
                        BAD_TOKEN}
        # Cleanups run last-in first-out, so this one runs after the
        # daemon started later in the test has stopped and flushed its
        # log.
        self.addCleanup(self.check_no_secrets)

    # Peers and sessions ------------------------------------------------

    def postfix(self):
        """Start a private Postfix with user alice (ALICE_PASSWORD)."""
        return self._peer(PostfixMta, self.certificates(),
                          {ALICE: ALICE_PASSWORD})

    def security_peer(self, tls=True, **options):
        certs = self.certificates()
        if tls:
            options["tls"] = (certs.server_cert, certs.server_key)
        return self._peer(SecurityPeer, **options)

    def new_session(self):
        return Session(self.client(), self.replies)

    def set_context(self, session, *drivers):
        """Send SetSecurity for each (properties, parameters) pair and
        check that every one returns 0."""
        for properties, parameters in drivers:
            self.assertStatus(session.set_security(properties, parameters),
                              0, "SetSecurity %s" % properties)

    def assertDriver(self, session, index, properties, in_use):
        reply = session.get_security(index)
        self.assertStatus(reply, 0, "GetSecurity %d" % index)
        self.assertEqual(reply.extras[0], properties)
        self.assertEqual(reply.extras[1],
                         "INUSE=TRUE" if in_use else "INUSE=FALSE")

    # Secret check ------------------------------------------------------

    def secret_forms(self):
        """Return every secret in the forms a leak could take: raw,
        base64 alone (AUTH LOGIN) and the AUTH PLAIN, XOAUTH2 and
        OAUTHBEARER responses the tests provoke."""
        forms = set()
        for secret in self.secrets:
            forms.add(secret)
            forms.add(b64(secret))
        for password in (ALICE_PASSWORD, WRONG_PASSWORD):
            forms.add(b64("\0%s\0%s" % (ALICE, password)))
            forms.add(b64("%s\0%s\0%s" % (ALICE, ALICE, password)))
        for token in (TOKEN, TOKEN_2, BAD_TOKEN):
            forms.add(b64("user=%s\x01auth=Bearer %s\x01\x01"
                          % (ALICE, token)))
        return forms

    def check_no_secrets(self):
        texts = []
        if self.daemon is not None:
            texts.append(("daemon log", self.daemon.log_text()))
        for reply in self.replies:
            texts.append(("reply %r" % (reply.message,),
                          "\n".join([reply.message] + reply.extras)))
        for form in self.secret_forms():
            for where, text in texts:
                leaks = [line for line in text.splitlines() if form in line]
                self.assertEqual(leaks, [], "secret %r appears in the %s"
                                 % (form, where))


class PostfixDriverTest(SecurityTest):
    """Each driver against Postfix: the logon works, the message is
    accepted, and Postfix logged the TLS session and the SASL login."""

    def setUp(self):
        super().setUp()
        self.mta = self.postfix()
        self.start_daemon(tls=True)
        self.session = self.new_session()

    def sasl_logins(self, listener, method):
        """Wait for and return the Postfix log lines of messages accepted
        after AUTH with method by alice."""
        pattern = (r"sasl_method=%s, sasl_username=%s@%s"
                   % (method, ALICE, DOMAIN))
        return self.mta.wait_log(
            lambda: self.mta.log_lines(listener, pattern))

    def test_starttls_alone_succeeds(self):
        self.set_context(self.session, (STARTTLS, ""))
        self.assertStatus(self.session.logon(self.mta.conn("starttls")), 0)
        self.assertStatus(self.session.sendmail("", headers(), BODY), 0)
        self.assertDriver(self.session, 1, STARTTLS + ";USE=MAND", True)
        tls = self.mta.wait_log(lambda: self.mta.log_lines(
            "starttls", r"TLS connection established"))
        self.assertTrue(tls, "Postfix logged no TLS session")
        self.assertEqual(self.mta.log_lines("starttls", "sasl_method="), [])

    def test_starttls_by_host_name_succeeds(self):
        self.set_context(self.session, (STARTTLS, ""))
        reply = self.session.logon(self.mta.conn("starttls", "localhost"))
        self.assertStatus(reply, 0)

    def test_starttls_auth_login_succeeds(self):
        self.set_context(self.session, (STARTTLS, ""),
                         (LOGIN, credentials(ALICE, ALICE_PASSWORD)))
        self.assertStatus(self.session.logon(self.mta.conn("starttls")), 0)
        self.assertStatus(self.session.sendmail("", headers(), BODY), 0)
        self.assertEqual(len(self.sasl_logins("starttls", "LOGIN")), 1)
        self.assertDriver(self.session, 1, STARTTLS + ";USE=MAND", True)
        self.assertDriver(self.session, 2, LOGIN + ";USE=MAND", True)

    def test_starttls_auth_plain_succeeds(self):
        self.set_context(self.session, (STARTTLS, ""),
                         (PLAIN, credentials(ALICE, ALICE_PASSWORD)))
        self.assertStatus(self.session.logon(self.mta.conn("starttls")), 0)
        self.assertStatus(self.session.sendmail("", headers(), BODY), 0)
        self.assertEqual(len(self.sasl_logins("starttls", "PLAIN")), 1)

    def test_auth_plain_with_authzid_succeeds(self):
        # Cyrus SASL lets a user act as itself without an authorization
        # rule, so the authzid is the same user.
        self.set_context(self.session, (STARTTLS, ""),
                         (PLAIN, credentials(ALICE, ALICE_PASSWORD)
                          + ";authzid=" + ALICE))
        self.assertStatus(self.session.logon(self.mta.conn("starttls")), 0)
        self.assertStatus(self.session.sendmail("", headers(), BODY), 0)
        self.assertEqual(len(self.sasl_logins("starttls", "PLAIN")), 1)

    def test_implicit_tls_auth_login_succeeds(self):
        self.set_context(self.session,
                         (LOGIN, credentials(ALICE, ALICE_PASSWORD)))
        self.assertStatus(self.session.logon(self.mta.conn("tls")), 0)
        self.assertStatus(self.session.sendmail("", headers(), BODY), 0)
        self.assertEqual(len(self.sasl_logins("tls", "LOGIN")), 1)

    def test_sendmail_without_logon_uses_context(self):
        self.set_context(self.session, (STARTTLS, ""),
                         (LOGIN, credentials(ALICE, ALICE_PASSWORD)))
        reply = self.session.sendmail(self.mta.conn("starttls"), headers(),
                                      BODY)
        self.assertStatus(reply, 0)
        self.assertEqual(len(self.sasl_logins("starttls", "LOGIN")), 1)

    def test_mandatory_xoauth2_not_offered_returns_minus_7(self):
        self.set_context(self.session, (STARTTLS, ""),
                         (XOAUTH2, bearer(ALICE, TOKEN)))
        reply = self.session.logon(self.mta.conn("starttls"))
        self.assertStatus(reply, -7)
        self.assertTrue(reply.message)

    def test_optional_xoauth2_not_offered_is_skipped(self):
        self.set_context(self.session, (STARTTLS, ""),
                         (XOAUTH2 + ";USE=OPT", bearer(ALICE, TOKEN)))
        self.assertStatus(self.session.logon(self.mta.conn("starttls")), 0)
        self.assertDriver(self.session, 1, STARTTLS + ";USE=MAND", True)
        self.assertDriver(self.session, 2, XOAUTH2 + ";USE=OPT", False)

    def test_wrong_password_returns_minus_8(self):
        self.set_context(self.session, (STARTTLS, ""),
                         (LOGIN, credentials(ALICE, WRONG_PASSWORD)))
        reply = self.session.logon(self.mta.conn("starttls"))
        self.assertStatus(reply, -8)
        response = self.session.get_response()
        self.assertStatus(response, 0, "GetSMTPResponse")
        self.assertEqual(response.smtp_code, 535)
        self.assertTrue(self.mta.wait_log(
            lambda: self.mta.auth_failures("starttls") == 1))

    def test_invalid_parameters_return_minus_8_at_logon(self):
        # SetSecurity accepts the parameters, the logon checks them.
        self.set_context(self.session, (STARTTLS, ""),
                         (LOGIN, "user=" + ALICE))
        reply = self.session.logon(self.mta.conn("starttls"))
        self.assertStatus(reply, -8)
        self.assertIn("UAuthLoginSMTP", reply.message)
        self.assertIn("password", reply.message.lower())

    def test_unknown_parameter_value_not_echoed(self):
        self.set_context(self.session, (STARTTLS, ""),
                         (LOGIN, "user=alice;pasword=" + ALICE_PASSWORD))
        reply = self.session.logon(self.mta.conn("starttls"))
        self.assertStatus(reply, -8)
        self.assertIn("UAuthLoginSMTP", reply.message)

    def test_auth_on_plain_listener_refused_by_default(self):
        self.set_context(self.session,
                         (PLAIN, credentials(ALICE, ALICE_PASSWORD)))
        reply = self.session.logon(self.mta.conn("plain"))
        self.assertStatus(reply, -8)
        self.assertIn("allow_plaintext_auth", reply.message)
        # smtpd's disconnect line counts the commands it received.
        summaries = self.mta.wait_log(lambda: self.mta.log_lines(
            "plain", r"disconnect from .* ehlo="))
        self.assertEqual(len(summaries), 1)
        self.assertNotIn("auth=", summaries[0])


class DaemonConfigTest(SecurityTest):
    """Tests that need their own daemon configuration, and AUTH over
    plain text (allow_plaintext_auth: no by default, loopback, yes)."""

    def test_loopback_allows_auth_to_127_0_0_1(self):
        mta = self.postfix()
        self.start_daemon({"allow_plaintext_auth": "loopback"}, tls=True)
        session = self.new_session()
        self.set_context(session,
                         (PLAIN, credentials(ALICE, ALICE_PASSWORD)))
        self.assertStatus(session.logon(mta.conn("plain")), 0)
        self.assertStatus(session.sendmail("", headers(), BODY), 0)
        self.assertDriver(session, 1, PLAIN + ";USE=MAND", True)
        lines = mta.wait_log(lambda: mta.log_lines(
            "plain", "sasl_method=PLAIN, sasl_username=alice@"))
        self.assertEqual(len(lines), 1)

    def test_yes_allows_auth_login_in_plain_text(self):
        mta = self.postfix()
        self.start_daemon({"allow_plaintext_auth": "yes"}, tls=True)
        session = self.new_session()
        self.set_context(session,
                         (LOGIN, credentials(ALICE, ALICE_PASSWORD)))
        self.assertStatus(session.logon(mta.conn("plain")), 0)

    def test_explicit_no_refuses_auth(self):
        mta = self.postfix()
        self.start_daemon({"allow_plaintext_auth": "no"}, tls=True)
        session = self.new_session()
        self.set_context(session,
                         (PLAIN, credentials(ALICE, ALICE_PASSWORD)))
        reply = session.logon(mta.conn("plain"))
        self.assertStatus(reply, -8)
        self.assertIn("allow_plaintext_auth", reply.message)

    def test_untrusted_certificate_returns_minus_8(self):
        # The daemon trusts another CA (the self-signed certificate), so
        # Postfix's certificate does not verify.
        mta = self.postfix()
        other = self.certificates().selfsigned_cert
        self.start_daemon({"tls": {"default": {"ca_certificate": other}}},
                          tls=True)
        session = self.new_session()
        self.set_context(session, (STARTTLS, ""),
                         (LOGIN, credentials(ALICE, ALICE_PASSWORD)))
        self.assertStatus(session.logon(mta.conn("starttls")), -8)
        self.assertEqual(mta.log_lines("starttls", "sasl_"), [])

    def test_mandatory_auth_without_starttls_sends_no_auth(self):
        # The server offers AUTH PLAIN LOGIN in plain text and no
        # STARTTLS: the daemon must refuse before sending anything.
        peer = self.security_peer(tls=False, auth="PLAIN LOGIN",
                                  users={ALICE: ALICE_PASSWORD})
        self.start_daemon(tls=True)
        session = self.new_session()
        self.set_context(session,
                         (PLAIN, credentials(ALICE, ALICE_PASSWORD)))
        reply = session.logon(peer.conn())
        self.assertStatus(reply, -8)
        self.assertIn("allow_plaintext_auth", reply.message)
        self.assertIn("AUTH", reply.message)
        commands = peer.commands()
        self.assertTrue(commands, "the daemon reached the server")
        self.assertEqual([c for c in commands if "AUTH" in c.upper()], [])
        self.assertEqual([c for c in commands if ALICE_PASSWORD in c], [])

    def test_optional_auth_without_starttls_is_skipped(self):
        peer = self.security_peer(tls=False, auth="PLAIN LOGIN",
                                  users={ALICE: ALICE_PASSWORD})
        self.start_daemon(tls=True)
        session = self.new_session()
        self.set_context(session, (PLAIN + ";USE=OPT",
                                   credentials(ALICE, ALICE_PASSWORD)))
        self.assertStatus(session.logon(peer.conn()), 0)
        self.assertDriver(session, 1, PLAIN + ";USE=OPT", False)
        self.assertStatus(session.sendmail("", headers(), BODY), 0)
        self.assertEqual([c for c in peer.commands()
                          if c.upper().startswith("AUTH")], [])

    def test_mandatory_starttls_not_offered_returns_minus_7(self):
        peer = self.security_peer(tls=False, auth="PLAIN LOGIN")
        self.start_daemon(tls=True)
        session = self.new_session()
        self.set_context(session, (STARTTLS, ""),
                         (PLAIN, credentials(ALICE, ALICE_PASSWORD)))
        self.assertStatus(session.logon(peer.conn()), -7)
        self.assertEqual([c for c in peer.commands()
                          if c.upper().startswith(("AUTH", "STARTTLS"))],
                         [])


class ScriptedStartTlsTest(SecurityTest):
    """STARTTLS faults and the second EHLO, seen by the scripted
    server."""

    def setUp(self):
        super().setUp()
        self.start_daemon(tls=True)
        self.session = self.new_session()

    def test_starttls_454_returns_minus_8(self):
        peer = self.security_peer(
            starttls_reply="454 4.7.0 TLS not available")
        self.set_context(self.session, (STARTTLS, ""))
        reply = self.session.logon(peer.conn())
        self.assertStatus(reply, -8)
        response = self.session.get_response()
        self.assertEqual(response.smtp_code, 454)

    def test_starttls_response_injection_returns_minus_8(self):
        peer = self.security_peer(starttls_inject=True, auth="PLAIN",
                                  auth_after_tls=True,
                                  users={ALICE: ALICE_PASSWORD})
        self.set_context(self.session, (STARTTLS, ""),
                         (PLAIN, credentials(ALICE, ALICE_PASSWORD)))
        self.assertStatus(self.session.logon(peer.conn()), -8)
        self.assertEqual([c for c in peer.commands()
                          if c.upper().startswith("AUTH")], [])
        self.assertEqual([e for e in peer.record.events("tls")
                          if e.get("ok")], [])

    def test_second_ehlo_sent_after_starttls(self):
        peer = self.security_peer(auth="PLAIN LOGIN", auth_after_tls=True,
                                  users={ALICE: ALICE_PASSWORD})
        self.set_context(self.session, (STARTTLS, ""),
                         (PLAIN, credentials(ALICE, ALICE_PASSWORD)))
        self.assertStatus(self.session.logon(peer.conn()), 0)
        verbs = [c.split(" ", 1)[0].upper() for c in peer.commands(1)]
        self.assertEqual(verbs[:4], ["EHLO", "STARTTLS", "EHLO", "AUTH"])
        auth = [e for e in peer.command_events()
                if e["line"].upper().startswith("AUTH")]
        self.assertEqual(len(auth), 1)
        self.assertTrue(auth[0]["tls"], "AUTH was sent before TLS")

    def test_auth_offered_only_after_tls_succeeds(self):
        peer = self.security_peer(auth="LOGIN", auth_after_tls=True,
                                  users={ALICE: ALICE_PASSWORD})
        self.set_context(self.session, (STARTTLS, ""),
                         (LOGIN, credentials(ALICE, ALICE_PASSWORD)))
        self.assertStatus(self.session.logon(peer.conn()), 0)
        self.assertStatus(self.session.sendmail("", headers(), BODY), 0)
        messages = peer.record.wait_messages(1)
        self.assertEqual(len(messages), 1)
        self.assertTrue(messages[0]["tls"])


class ScriptedOAuthTest(SecurityTest):
    """XOAUTH2 and OAUTHBEARER success and error challenges."""

    def setUp(self):
        super().setUp()
        self.peer = self.security_peer(auth="XOAUTH2 OAUTHBEARER",
                                       auth_after_tls=True,
                                       tokens=[TOKEN, TOKEN_2])
        self.start_daemon(tls=True)
        self.session = self.new_session()

    def auth_lines(self):
        return [e for e in self.peer.command_events()
                if e["line"].upper().startswith("AUTH")]

    def following_line(self, event):
        """Return the line the client sent after event on its
        connection."""
        same = [e for e in self.peer.command_events()
                if e["conn"] == event["conn"]]
        return same[same.index(event) + 1]["line"]

    def test_xoauth2_succeeds(self):
        self.set_context(self.session, (STARTTLS, ""),
                         (XOAUTH2, bearer(ALICE, TOKEN)))
        self.assertStatus(self.session.logon(self.peer.conn()), 0)
        self.assertStatus(self.session.sendmail("", headers(), BODY), 0)
        auth = self.auth_lines()
        self.assertEqual(len(auth), 1)
        words = auth[0]["line"].split()
        self.assertEqual(words[:2], ["AUTH", "XOAUTH2"])
        response = base64.b64decode(words[2]).decode()
        self.assertEqual(response, "user=%s\x01auth=Bearer %s\x01\x01"
                         % (ALICE, TOKEN))
        self.assertDriver(self.session, 2, XOAUTH2 + ";USE=MAND", True)

    def test_oauthbearer_succeeds(self):
        self.set_context(self.session, (STARTTLS, ""),
                         (OAUTHBEARER, bearer(ALICE, TOKEN)))
        self.assertStatus(self.session.logon(self.peer.conn()), 0)
        self.assertStatus(self.session.sendmail("", headers(), BODY), 0)
        auth = self.auth_lines()
        self.assertEqual(len(auth), 1)
        words = auth[0]["line"].split()
        self.assertEqual(words[:2], ["AUTH", "OAUTHBEARER"])
        response = base64.b64decode(words[2]).decode()
        self.assertTrue(response.startswith("n,a=%s,\x01host=" % ALICE),
                        response)
        self.assertIn("\x01port=%d\x01" % self.peer.port, response)
        self.assertTrue(response.endswith("\x01auth=Bearer %s\x01\x01"
                                          % TOKEN), response)

    def test_xoauth2_error_challenge_returns_minus_8(self):
        self.set_context(self.session, (STARTTLS, ""),
                         (XOAUTH2, bearer(ALICE, BAD_TOKEN)))
        reply = self.session.logon(self.peer.conn())
        self.assertStatus(reply, -8)
        auth = self.auth_lines()
        self.assertEqual(len(auth), 1)
        # The client replies to the error challenge with an empty line.
        self.assertEqual(self.following_line(auth[0]), "")
        response = self.session.get_response()
        self.assertStatus(response, 0, "GetSMTPResponse")
        self.assertEqual(response.smtp_code, 535)
        self.assertIn("Username and Password not accepted",
                      response.extras[0])
        self.assertIn("401", reply.message + "\n" + response.extras[0])

    def test_oauthbearer_error_challenge_returns_minus_8(self):
        self.set_context(self.session, (STARTTLS, ""),
                         (OAUTHBEARER, bearer(ALICE, BAD_TOKEN)))
        self.assertStatus(self.session.logon(self.peer.conn()), -8)
        auth = self.auth_lines()
        self.assertEqual(len(auth), 1)
        self.assertEqual(self.following_line(auth[0]), "AQ==")
        response = self.session.get_response()
        self.assertEqual(response.smtp_code, 535)

    def test_new_token_opens_new_connection(self):
        self.set_context(self.session, (STARTTLS, ""),
                         (XOAUTH2, bearer(ALICE, TOKEN)))
        self.assertStatus(self.session.logon(self.peer.conn()), 0)
        self.assertStatus(self.session.logoff(), 0)
        self.assertStatus(self.session.set_security("SMTP="), 0)
        self.set_context(self.session, (STARTTLS, ""),
                         (XOAUTH2, bearer(ALICE, TOKEN_2)))
        self.assertStatus(self.session.logon(self.peer.conn()), 0)
        self.assertEqual(self.peer.record.connection_count(), 2)
        # A session still presenting the old token reuses the idle
        # connection made with it.
        old = self.new_session()
        self.set_context(old, (STARTTLS, ""),
                         (XOAUTH2, bearer(ALICE, TOKEN)))
        self.assertStatus(old.logon(self.peer.conn()), 0)
        self.assertEqual(self.peer.record.connection_count(), 2)
        self.assertEqual(len(self.auth_lines()), 2)


class SetSecurityTest(SecurityTest):
    """SetSecurity and GetSecurity status codes and context lifetime."""

    def setUp(self):
        super().setUp()
        self.start_daemon(tls=True)
        self.session = self.new_session()

    def test_driver_appended_and_listed(self):
        self.set_context(self.session, (STARTTLS, ""),
                         (LOGIN + ";USE=OPT",
                          credentials(ALICE, ALICE_PASSWORD)))
        self.assertDriver(self.session, 1, STARTTLS + ";USE=MAND", False)
        self.assertDriver(self.session, 2, LOGIN + ";USE=OPT", False)
        self.assertStatus(self.session.get_security(3), -1)

    def test_empty_driver_removes_context(self):
        self.set_context(self.session, (STARTTLS, ""))
        self.assertStatus(self.session.set_security("SMTP="), 0)
        self.assertStatus(self.session.get_security(1), -1)

    def test_unknown_entry_point_returns_minus_4(self):
        reply = self.session.set_security("SMTP=UAuthCramMD5SMTP")
        self.assertStatus(reply, -4)
        self.assertStatus(self.session.get_security(1), -1)

    def test_entry_point_is_case_sensitive(self):
        self.assertStatus(self.session.set_security("SMTP=ustarttlssmtp"),
                          -4)

    def test_starttls_not_first_returns_minus_5(self):
        self.set_context(self.session,
                         (LOGIN, credentials(ALICE, ALICE_PASSWORD)))
        self.assertStatus(self.session.set_security(STARTTLS), -5)
        self.assertStatus(self.session.get_security(2), -1)

    def test_invalid_use_value_returns_minus_1(self):
        self.assertStatus(self.session.set_security(
            STARTTLS + ";USE=MAYBE"), -1)

    def test_properties_without_smtp_returns_minus_1(self):
        self.assertStatus(self.session.set_security("UStartTLSSMTP"), -1)

    def test_get_security_bad_keyword_returns_minus_2(self):
        self.set_context(self.session, (STARTTLS, ""))
        self.assertStatus(self.session.get_security(1, "POP3="), -2)

    def test_get_security_missing_index_returns_minus_1(self):
        self.assertStatus(self.session.get_security(1), -1)
        self.set_context(self.session, (STARTTLS, ""))
        self.assertStatus(self.session.get_security(0), -1)
        self.assertStatus(self.session.get_security(2), -1)
        self.assertStatus(self.session.get_security(-1), -1)

    def test_context_locked_while_logged_on(self):
        peer = self.security_peer()
        self.set_context(self.session, (STARTTLS, ""))
        self.assertStatus(self.session.logon(peer.conn()), 0)
        reply = self.session.set_security(LOGIN, credentials(
            ALICE, ALICE_PASSWORD))
        self.assertStatus(reply, -3)
        self.assertStatus(self.session.set_security("SMTP="), -3)
        self.assertStatus(self.session.logoff(), 0)
        self.assertStatus(self.session.set_security("SMTP="), 0)

    def test_context_kept_after_minus_8_then_replaced(self):
        peer = self.security_peer(
            starttls_reply="454 4.7.0 TLS not available")
        self.set_context(self.session, (STARTTLS, ""))
        self.assertStatus(self.session.logon(peer.conn()), -8)
        # The failed context is still listed and usable for another
        # logon.  INUSE stays FALSE because STARTTLS did not succeed.
        self.assertDriver(self.session, 1, STARTTLS + ";USE=MAND", False)
        self.assertStatus(self.session.logon(peer.conn()), -8)
        self.assertEqual(peer.commands().count("STARTTLS"), 2)
        # The next SetSecurity starts a new context.
        self.set_context(self.session,
                         (LOGIN, credentials(ALICE, ALICE_PASSWORD)))
        self.assertDriver(self.session, 1, LOGIN + ";USE=MAND", False)
        self.assertStatus(self.session.get_security(2), -1)

    def test_context_kept_after_minus_7_then_replaced(self):
        peer = self.security_peer(tls=False)
        self.set_context(self.session, (STARTTLS, ""))
        self.assertStatus(self.session.logon(peer.conn()), -7)
        self.assertDriver(self.session, 1, STARTTLS + ";USE=MAND", False)
        self.set_context(self.session, (PLAIN + ";USE=OPT",
                                        credentials(ALICE, ALICE_PASSWORD)))
        self.assertDriver(self.session, 1, PLAIN + ";USE=OPT", False)
        self.assertStatus(self.session.get_security(2), -1)

    def test_context_appended_after_minus_9(self):
        self.set_context(self.session, (STARTTLS, ""))
        reply = self.session.logon("TCP:127.0.0.1+%d" % closed_port())
        self.assertStatus(reply, -9)
        self.set_context(self.session,
                         (LOGIN, credentials(ALICE, ALICE_PASSWORD)))
        self.assertDriver(self.session, 1, STARTTLS + ";USE=MAND", False)
        self.assertDriver(self.session, 2, LOGIN + ";USE=MAND", False)


class SharingTest(SecurityTest):
    """Pool sharing between sessions, counted in the Postfix log."""

    def setUp(self):
        super().setUp()
        self.mta = self.postfix()
        self.start_daemon(tls=True)

    def logged_on_session(self, password):
        session = self.new_session()
        self.set_context(session, (STARTTLS, ""),
                         (LOGIN, credentials(ALICE, password)))
        return session, session.logon(self.mta.conn("starttls"))

    def test_identical_contexts_share_one_connection(self):
        first, reply = self.logged_on_session(ALICE_PASSWORD)
        self.assertStatus(reply, 0)
        self.assertStatus(first.sendmail("", headers(), BODY), 0)
        second, reply = self.logged_on_session(ALICE_PASSWORD)
        self.assertStatus(reply, 0)
        self.assertStatus(second.sendmail("", headers(), BODY), 0)
        logins = self.mta.wait_log(lambda: len(self.mta.log_lines(
            "starttls", "sasl_username=")) >= 2)
        self.assertTrue(logins, "Postfix did not log both messages")
        self.assertEqual(self.mta.new_connections("starttls"), 1)

    def test_different_passwords_never_share(self):
        first, reply = self.logged_on_session(ALICE_PASSWORD)
        self.assertStatus(reply, 0)
        second, reply = self.logged_on_session(WRONG_PASSWORD)
        self.assertStatus(reply, -8)
        self.assertTrue(self.mta.wait_log(
            lambda: self.mta.new_connections("starttls") == 2))
        # Postfix logs through postlogd, so the failure line may come
        # after the connect line.
        self.assertTrue(self.mta.wait_log(
            lambda: self.mta.auth_failures("starttls") == 1))
        # The first session is unaffected.
        self.assertStatus(first.sendmail("", headers(), BODY), 0)
        self.assertEqual(self.mta.new_connections("starttls"), 2)


if __name__ == "__main__":
    unittest.main()
