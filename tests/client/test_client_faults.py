"""libalmanac and the CLI when the server side is at fault (see docs/operations.md, "What
Almanac does when…"): a replica that cannot find the default branch, servers restarting under
parked watchers, and a cache file that is odd or damaged.
"""

import json
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import almanac_harness as h  # noqa: E402
from clitest import require_cli_bin, run_cli  # noqa: E402


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


if __name__ == "__main__":
    unittest.main()
