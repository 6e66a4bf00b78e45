"""Connection pool behaviour seen from the server side: reuse, the limit per
key, replacement of dead idle connections, retry and the wait timeout."""

import threading
import time
import unittest

from base import IntegrationTest, headers

BODY = "pooled message\n"


def run_threads(count, target):
    """Run target(i) in count threads; return the results by index.  A
    thread that raised leaves its exception as the result."""
    results = [None] * count

    def runner(i):
        try:
            results[i] = target(i)
        except Exception as e:  # reported by the caller's assertions
            results[i] = e

    threads = [threading.Thread(target=runner, args=(i,))
               for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


class PoolReuseTest(IntegrationTest):

    def test_two_sessions_in_turn_share_one_connection(self):
        server = self.recorder()
        self.start_daemon()
        first = self.client()
        self.assertStatus(first.logon(server.conn()), 0)
        self.assertStatus(first.sendmail("", headers(), BODY), 0)
        self.assertStatus(first.logoff(), 0)
        first.close()
        second = self.client()
        self.assertStatus(second.logon(server.conn()), 0)
        self.assertStatus(second.sendmail("", headers(), BODY), 0)
        self.assertEqual(len(server.record.wait_messages(2)), 2)
        self.assertEqual(server.record.connection_count(), 1)

    def test_one_shot_sendmails_share_one_connection(self):
        server = self.recorder()
        self.start_daemon()
        for _ in range(3):
            reply = self.client().sendmail(server.conn(), headers(), BODY)
            self.assertStatus(reply, 0)
        self.assertEqual(len(server.record.wait_messages(3)), 3)
        self.assertEqual(server.record.connection_count(), 1)

    def test_equivalent_connection_strings_share_connection(self):
        server = self.recorder()
        self.start_daemon()
        forms = ["127.0.0.1+%d", "TCP:127.0.0.1+%d", "tcp:127.0.0.1+%d"]
        for form in forms:
            reply = self.client().sendmail(form % server.port, headers(),
                                           BODY)
            self.assertStatus(reply, 0, form)
        self.assertEqual(server.record.connection_count(), 1)

    def test_messages_on_reused_connection_keep_own_recipients(self):
        server = self.recorder()
        self.start_daemon()
        session = self.client()
        self.assertStatus(session.logon(server.conn()), 0)
        for i in range(3):
            reply = session.sendmail(
                "", headers(to="user%d@example.test" % i), BODY)
            self.assertStatus(reply, 0)
        messages = server.record.wait_messages(3)
        self.assertEqual([m["rcpt_tos"] for m in messages],
                         [["user0@example.test"], ["user1@example.test"],
                          ["user2@example.test"]])

    def test_connection_replaced_after_message_limit(self):
        server = self.recorder()
        self.start_daemon({"pool": {"max_messages_per_connection": 2}})
        session = self.client()
        for _ in range(4):
            self.assertStatus(session.sendmail(server.conn(), headers(),
                                               BODY), 0)
        self.assertEqual(len(server.record.wait_messages(4)), 4)
        self.assertEqual(server.record.connection_count(), 2)


class PoolLimitTest(IntegrationTest):

    def test_twenty_clients_never_exceed_four_connections(self):
        # A delay at the end of DATA keeps transactions overlapping, so
        # the clients really compete for the four connections.
        server = self.recorder(data_end_delay=0.2)
        self.start_daemon({"pool": {"max_connections_per_key": 4,
                                    "wait_timeout": 60}})

        def one_client(i):
            session = self.client()
            logon = session.logon(server.conn())
            sent = session.sendmail(
                "", headers(to="client%d@example.test" % i), BODY)
            logoff = session.logoff()
            return (logon.status, sent.status, logoff.status)

        results = run_threads(20, one_client)
        self.assertEqual(results, [(0, 0, 0)] * 20)
        messages = server.record.wait_messages(20)
        self.assertEqual(len(messages), 20)
        self.assertEqual(sorted(m["rcpt_tos"][0] for m in messages),
                         sorted("client%d@example.test" % i
                                for i in range(20)))
        self.assertLessEqual(server.record.max_active(), 4)
        self.assertGreaterEqual(server.record.max_active(), 2,
                                "the pool opened more than one connection")

    def test_no_connection_within_wait_timeout_returns_minus_9(self):
        server = self.recorder(data_end_delay=4)
        self.start_daemon({"pool": {"max_connections_per_key": 1,
                                    "wait_timeout": 1}})
        slow = self.client()
        waiting = self.client()
        results = {}

        def slow_send():
            results["slow"] = slow.sendmail(server.conn(), headers(), BODY)

        thread = threading.Thread(target=slow_send)
        thread.start()
        # Give the first transaction time to take the only connection.
        deadline = time.monotonic() + 10
        while (server.record.connection_count() == 0
               and time.monotonic() < deadline):
            time.sleep(0.05)
        time.sleep(0.5)
        started = time.monotonic()
        reply = waiting.sendmail(server.conn(), headers(), BODY)
        elapsed = time.monotonic() - started
        thread.join(30)
        self.assertStatus(reply, -9)
        self.assertLess(elapsed, 3.5, "waited about wait_timeout (1 s)")
        self.assertStatus(results["slow"], 0)
        self.assertEqual(server.record.max_active(), 1)


class PoolFaultTest(IntegrationTest):

    def test_idle_connection_closed_by_server_is_replaced(self):
        server = self.scripted(idle_close=1)
        self.start_daemon()
        session = self.client()
        self.assertStatus(session.logon(server.conn()), 0)
        time.sleep(2)
        self.assertStatus(session.sendmail("", headers(), BODY), 0)
        self.assertEqual(len(server.record.wait_messages(1)), 1)
        self.assertEqual(server.record.connection_count(), 2)

    def test_idle_connection_given_421_is_replaced(self):
        server = self.scripted(idle_421=1)
        self.start_daemon()
        session = self.client()
        self.assertStatus(session.logon(server.conn()), 0)
        time.sleep(2)
        self.assertStatus(session.sendmail("", headers(), BODY), 0)
        self.assertEqual(len(server.record.wait_messages(1)), 1)
        self.assertEqual(server.record.connection_count(), 2)

    def test_pooled_drop_at_data_retried_once(self):
        # The server closes the first connection on the DATA command, so
        # the end of DATA cannot have been sent and a retry is due.  (A
        # drop after the first data line is no such proof: a small message
        # may already have been written whole, final dot included.)
        server = self.scripted(drop_in_data="at-command", drop_count=1)
        self.start_daemon()
        session = self.client()
        self.assertStatus(session.logon(server.conn()), 0)
        self.assertStatus(session.sendmail("", headers(), BODY), 0)
        messages = server.record.wait_messages(1)
        self.assertEqual(len(messages), 1)
        self.assertEqual(server.record.connection_count(), 2)

    def test_drop_in_data_on_every_connection_fails(self):
        server = self.scripted(drop_in_data="mid")
        self.start_daemon()
        reply = self.client().sendmail(server.conn(), headers(), BODY)
        self.assertLess(reply.status, 0, "a dropped DATA is never success")
        self.assertStatus(reply, -9)
        self.assertEqual(server.record.messages(), [])

    def test_drop_after_final_dot_fails_without_resend(self):
        server = self.scripted(drop_in_data="after-dot")
        self.start_daemon()
        session = self.client()
        self.assertStatus(session.logon(server.conn()), 0)
        reply = session.sendmail("", headers(), BODY)
        self.assertLess(reply.status, 0, "no 250 to the end of DATA")
        data_commands = [c for c in server.record.commands()
                         if c.upper() == "DATA"]
        self.assertEqual(len(data_commands), 1,
                         "no automatic resend after the final dot")

    def test_daemon_keeps_serving_after_dropped_data(self):
        bad = self.scripted(drop_in_data="mid")
        good = self.recorder()
        self.start_daemon()
        session = self.client()
        self.assertLess(session.sendmail(bad.conn(), headers(),
                                         BODY).status, 0)
        self.assertStatus(session.sendmail(good.conn(), headers(), BODY), 0)


if __name__ == "__main__":
    unittest.main()
