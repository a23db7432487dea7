"""libalmanac and the CLI when the server side is at fault (see docs/operations.md, "What
Almanac does when…"): a replica that cannot find the default branch, servers restarting under
parked watchers, and a cache file that is odd, damaged or cannot be written.
"""

import json
import os
import signal
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import almanac_harness as h  # noqa: E402
from clitest import CLI_BIN, read_line, require_cli_bin, run_cli, spawn, watchers  # noqa: E402


class DefaultBranchMissingTest(h.ServerTestCase):
    @classmethod
    def setUpServers(cls):
        require_cli_bin()
        cls.repo = cls.make_repo()
        cls.commit = cls.repo.commit({"orders.yml": "db:\n  url: jdbc:pg://prod\n"}, "one")
        cls.repo.branch("release")
        cls.server = cls.start_server(cls.repo.uri)

    def test_404_for_the_default_label_falls_back_to_the_cache(self):
        url = "http://127.0.0.1:%d" % self.server.port
        cache = os.path.join(self.tmp, "orders.cache.json")
        r = run_cli("get", "orders", "default", "--cache-file", cache, server=url)
        self.assertEqual(r.code, 0, r)

        # main deleted on the remote; a replica that starts now (empty cache dir) has no
        # default branch at all and answers 404 to every read without a label
        self.repo.git("checkout", "-q", "--detach")
        self.repo.git("branch", "-D", "main")
        fresh = self.start_server(self.repo.uri)
        fresh_url = "http://127.0.0.1:%d" % fresh.port
        self.assertEqual(fresh.get("/orders/default").status, 404)

        r = run_cli("get", "orders", "default", "--cache-file", cache, "--key", "db.url",
                    server=fresh_url)
        self.assertEqual((r.code, r.out), (0, "jdbc:pg://prod\n"), r)
        self.assertIn("using the copy cached", r.err)

        # without a cache, or with --fail-fast, 404 stays what it is
        r = run_cli("get", "orders", "default", server=fresh_url)
        self.assertEqual(r.code, 3, r)
        r = run_cli("get", "orders", "default", "--cache-file", cache, "--fail-fast",
                    server=fresh_url)
        self.assertEqual(r.code, 3, r)
        # a label the caller names is the caller's question: 404 is final
        label_cache = os.path.join(self.tmp, "orders-release.cache.json")
        r = run_cli("get", "orders", "default", "--label", "release", "--cache-file",
                    label_cache, server=url)
        self.assertEqual(r.code, 0, r)
        self.repo.git("branch", "-D", "release")
        fresh.refresh()
        r = run_cli("get", "orders", "default", "--label", "release", "--cache-file",
                    label_cache, server=fresh_url)
        self.assertEqual(r.code, 3, r)
        self.repo.git("branch", "main", self.commit)


class OddCacheFileTest(h.ServerTestCase):
    @classmethod
    def setUpServers(cls):
        require_cli_bin()

    def test_fifo_at_the_cache_path_does_not_hang(self):
        fifo = os.path.join(self.tmp, "cache.fifo")
        os.mkfifo(fifo)
        # nothing listens there and nobody writes the FIFO: the CLI must give up, not block
        r = run_cli("get", "orders", "prod", "--cache-file", fifo, "--retries", "1",
                    server="http://127.0.0.1:1", timeout=30)
        self.assertEqual(r.code, 6, r)
        self.assertIn("not a regular file", r.err)


class CacheWriteFailsTest(h.ServerTestCase):
    """A cache file that cannot be written (a full disk) must not go unnoticed: the next boot
    without a server would find no copy."""

    @classmethod
    def setUpServers(cls):
        require_cli_bin()
        cls.repo = cls.make_repo()
        big = "".join("k%d: %s\n" % (i, "v" * 1000) for i in range(200))  # ~200 KB
        cls.repo.commit({"orders.yml": big}, "big")
        cls.server = cls.start_server(cls.repo.uri)

    def test_full_disk_is_one_warning_line(self):
        tiny = os.path.join(self.tmp, "tiny")
        os.makedirs(tiny)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", tiny],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if mounted.returncode != 0:
            self.skipTest("cannot mount a 64 KiB tmpfs for a full disk (needs root): %s"
                          % mounted.stdout.decode().strip())
        self.addCleanup(subprocess.run, ["umount", "-l", tiny])
        cache = os.path.join(tiny, "orders.cache.json")
        url = "http://127.0.0.1:%d" % self.server.port
        r = run_cli("get", "orders", "default", "--cache-file", cache, "--key", "k1",
                    server=url)
        self.assertEqual((r.code, r.out), (0, "v" * 1000 + "\n"), r)
        lines = r.err.splitlines()
        self.assertEqual(len(lines), 1, r.err)
        self.assertIn("configuration fetched, but not cached", lines[0])
        self.assertIn("No space left on device", lines[0])
        self.assertEqual(os.listdir(tiny), [])  # no temporary file left on the full disk


class WatchFailoverTest(h.ServerTestCase):
    """A watcher parked on a server that stops goes to the next server at once, not after the
    rest of its poll window (here 600 s, so the old behaviour cannot pass by luck)."""

    @classmethod
    def setUpServers(cls):
        require_cli_bin()
        cls.repo = cls.make_repo()
        cls.repo.commit({"svc.yml": "color: blue\n"}, "blue")

    def watch(self, *urls):
        return spawn(CLI_BIN, "watch", "svc", "default", "--server", ",".join(urls), "--wait",
                     "600", "--verbose")

    def fail_over(self, color, take_down):
        """A watch parked on A, a commit only B serves, then take_down(A): the watch prints the
        commit, got from B, and says on stderr that it moved on."""
        a = self.start_server(self.repo.uri)
        b = self.start_server(self.repo.uri)
        proc = self.watch(*("http://127.0.0.1:%d" % s.port for s in (a, b)))
        try:
            read_line(proc, 30)
            self.assertTrue(h.wait_until(lambda: watchers(a) >= 1, deadline=20))
            head = self.repo.commit({"svc.yml": "color: %s\n" % color}, color)
            b.refresh()  # only B knows the new commit; A never will
            take_down(a)
            second = json.loads(read_line(proc, 30))
            self.assertEqual(second["color"], color, second)
            self.assertEqual(b.get("/svc/default").json()["version"], head)
        finally:
            proc.kill()
            proc.wait()
            err = proc.stderr.read().decode()
            proc.stdout.close()
            proc.stderr.close()
        self.assertIn("asking the next server in", err)

    def test_stopping_server_sends_watchers_to_the_next_one(self):
        self.fail_over("green", lambda a: self.assertEqual(a.stop(), 0))

    def test_dropped_connection_sends_watchers_to_the_next_one(self):
        def drop(a):
            a.proc.send_signal(signal.SIGKILL)  # no goodbye: the connection just drops
            a.proc.wait()
        self.fail_over("red", drop)


if __name__ == "__main__":
    unittest.main()
