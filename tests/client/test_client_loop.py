"""The watch driven by a program's own event loop (alm_watch_new, alm_watch_fd,
alm_watch_timeout_ms, alm_watch_perform), through the two example programs: examples/watch_poll.c
with poll(2) and examples/watch_libuv.c with libuv. Each runs against a real almanac-server on a
real Git repository: it boots, parks a long-poll, a commit lands and POST /actuator/refresh
announces it, and the example prints the change; at SIGINT it reports how many callbacks ran and
how many of them off the loop's thread (must be none). The poll example also fails over from a
server that stops to the next one of `A,B`.
"""

import os
import re
import signal
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import almanac_harness as h  # noqa: E402
from clitest import read_line, reap, spawn, watchers  # noqa: E402

POLL_BIN = os.environ.get("ALMANAC_POLL_EXAMPLE_BIN", "")
LIBUV_BIN = os.environ.get("ALMANAC_LIBUV_EXAMPLE_BIN", "")


class EventLoopExamplesTest(h.ServerTestCase):
    @classmethod
    def setUpServers(cls):
        if not POLL_BIN:
            raise unittest.SkipTest("ALMANAC_POLL_EXAMPLE_BIN is not set")

    def start(self, binary, *urls):
        proc = spawn(binary, "svc", "default", server=",".join(urls))
        self.addCleanup(reap, proc)
        return proc

    def follow_a_change(self, binary):
        repo = self.make_repo(os.path.basename(binary))
        first = repo.commit({"svc.yml": "color: blue\nsize: 1\n"}, "blue")
        server = self.start_server(repo.uri)
        url = "http://127.0.0.1:%d" % server.port
        proc = self.start(binary, url)
        self.assertEqual(read_line(proc, 30), "booted on version %s\n" % first)
        self.assertTrue(h.wait_until(lambda: watchers(server) >= 1, deadline=20),
                        server.log_tail())
        second = repo.commit({"svc.yml": "color: green\nshape: round\n"}, "green")
        server.refresh()
        self.assertEqual(read_line(proc, 30), "version %s -> %s\n" % (first, second))
        lines = {read_line(proc, 30) for _ in range(3)}
        self.assertEqual(lines, {"  + shape\n", "  ~ color\n", "  - size\n"})
        # Parked again on the new version, then stopped.
        self.assertTrue(h.wait_until(lambda: watchers(server) >= 1, deadline=20),
                        server.log_tail())
        proc.send_signal(signal.SIGINT)
        last = read_line(proc, 30)
        m = re.fullmatch(r"stopping on version (\w+) \(fresh\); (\d+) callbacks, (\d+) off the "
                         r"loop thread\n", last)
        self.assertIsNotNone(m, last)
        self.assertEqual(m.group(1), second)
        # on_change and at least the INFO line of the change ran, all on the loop's thread.
        self.assertGreaterEqual(int(m.group(2)), 2, last)
        self.assertEqual(m.group(3), "0", last)
        self.assertEqual(proc.wait(timeout=30), 0)

    def test_poll_example_follows_a_change(self):
        self.follow_a_change(POLL_BIN)

    def test_libuv_example_follows_a_change(self):
        if not LIBUV_BIN:
            self.skipTest("libuv (libuv1-dev) was not found at build time, so the libuv "
                          "example was not built")
        self.follow_a_change(LIBUV_BIN)

    def test_poll_example_fails_over_to_the_next_server(self):
        repo = self.make_repo("failover")
        first = repo.commit({"svc.yml": "color: blue\n"}, "blue")
        a = self.start_server(repo.uri)
        b = self.start_server(repo.uri)
        proc = self.start(POLL_BIN, *["http://127.0.0.1:%d" % s.port for s in (a, b)])
        self.assertEqual(read_line(proc, 30), "booted on version %s\n" % first)
        self.assertTrue(h.wait_until(lambda: watchers(a) >= 1, deadline=20), a.log_tail())
        second = repo.commit({"svc.yml": "color: green\n"}, "green")
        b.refresh()  # only B knows the new commit; A never will
        self.assertEqual(a.stop(), 0)
        self.assertEqual(read_line(proc, 30), "version %s -> %s\n" % (first, second))
        self.assertEqual(read_line(proc, 30), "  ~ color\n")
        proc.send_signal(signal.SIGINT)
        self.assertRegex(read_line(proc, 30), r"^stopping on version %s \(fresh\); \d+ "
                                              r"callbacks, 0 off the loop thread\n$" % second)
        self.assertEqual(proc.wait(timeout=30), 0)
        self.assertIn("asking the next server in", proc.stderr.read().decode())


if __name__ == "__main__":
    unittest.main()
