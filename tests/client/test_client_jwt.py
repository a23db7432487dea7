"""The almanac CLI (and libalmanac's token_file option under it) with a bearer token kept in a
file that is replaced the way the kubelet rotates a projected ServiceAccount token: a new file
renamed over the old one. Against a real almanac-server whose --auth-file trusts a test issuer's
JWKS; tokens minted with the openssl CLI in the Kubernetes shape (tests/integration/jwt_tools.py).
"""

import json
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import almanac_harness as h  # noqa: E402
from clitest import CLI_BIN, read_line, reap, require_cli_bin, run_cli, spawn  # noqa: E402
from jwt_tools import ISSUER, Key, jwks, k8s_claims, mint  # noqa: E402

ADMIN_TOKEN = "client-jwt-admin-token-51d2"


class TokenFileTest(h.ServerTestCase):
    @classmethod
    def setUpServers(cls):
        require_cli_bin()
        import hashlib
        cls.repo = cls.make_repo()
        cls.repo.commit({"orders.yml": "color: red\n", "team-a-web.yml": "web: 1\n"}, "initial")
        cls.key = Key(cls.tmp, "RSA", "client-key")
        keys = os.path.join(cls.tmp, "jwks.json")
        with open(keys, "w") as f:
            f.write(jwks(cls.key))
        auth = os.path.join(cls.tmp, "auth.yml")
        with open(auth, "w") as f:
            f.write("tokens:\n"
                    "  - sha256: %s\n"
                    "    admin: true\n"
                    "issuers:\n"
                    "  - name: cluster\n"
                    "    issuer: %s\n"
                    "    audiences: [almanac]\n"
                    "    jwks-file: %s\n"
                    "    subjects:\n"
                    "      - match: \"system:serviceaccount:shop:*\"\n"
                    "        applications: [orders]\n"
                    "      - namespace: team-a\n"
                    "        applications: [\"team-a-*\"]\n"
                    % (hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest(), ISSUER, keys))
        os.chmod(auth, 0o600)
        cls.server = cls.start_server(cls.repo.uri, extra_args=[
            "--auth-file", auth, "--auth-failures-per-minute", "0"])
        cls.url = "http://127.0.0.1:%d" % cls.server.port
        cls.token_file = os.path.join(cls.tmp, "token")

    def rotate(self, namespace, serviceaccount, **claims):
        """Writes a fresh token beside the file and renames it over: readers see the old file
        or the new one, never half of one."""
        tmp = self.token_file + ".new"
        with open(tmp, "w") as f:
            f.write(mint(self.key, dict(k8s_claims(namespace, serviceaccount), **claims)) + "\n")
        os.replace(tmp, self.token_file)

    def refresh(self):
        r = self.server.post("/actuator/refresh", headers={"Authorization": "Bearer " +
                                                           ADMIN_TOKEN})
        self.assertEqual(r.status, 200, r)

    def test_get_with_the_file_replaced_between_two_calls(self):
        self.rotate("shop", "orders")
        r = run_cli("get", "orders", "default", "--token-file", self.token_file, "--key", "color",
                    server=self.url)
        self.assertEqual((r.code, r.out.strip()), (0, "red"), r)
        # Another workload's token now: orders is no longer readable, team-a-web is.
        self.rotate("team-a", "web")
        r = run_cli("get", "orders", "default", "--token-file", self.token_file, "--fail-fast",
                    "--retries", "1", server=self.url)
        self.assertNotEqual(r.code, 0, r)
        self.assertIn("403", r.err, r)
        r = run_cli("get", "team-a-web", "default", "--key", "web", server=self.url,
                    env={"ALMANAC_TOKEN_FILE": self.token_file})
        self.assertEqual((r.code, r.out.strip()), (0, "1"), r)
        # An expired token in the file: refused.
        self.rotate("shop", "orders", exp=int(time.time()) - 3600)
        r = run_cli("get", "orders", "default", "--token-file", self.token_file, "--fail-fast",
                    "--retries", "1", server=self.url)
        self.assertNotEqual(r.code, 0, r)
        self.assertIn("401", r.err, r)

    def test_missing_or_empty_token_file(self):
        r = run_cli("get", "orders", "default", "--token-file",
                    os.path.join(self.tmp, "no-such-token"), server=self.url)
        self.assertNotEqual(r.code, 0, r)
        self.assertIn("no-such-token", r.err, r)
        empty = os.path.join(self.tmp, "empty-token")
        open(empty, "w").close()
        r = run_cli("get", "orders", "default", "--token-file", empty, server=self.url)
        self.assertNotEqual(r.code, 0, r)
        self.assertIn("does not hold one token", r.err, r)
        # A token file replaces every other credential; both at once is a usage error.
        self.rotate("shop", "orders")
        r = run_cli("get", "orders", "default", "--token-file", self.token_file, "--user", "u",
                    "--password", "p", server=self.url)
        self.assertNotEqual(r.code, 0, r)
        self.assertIn("token file replaces", r.err, r)

    def test_watch_reads_the_rotated_token_in_the_same_process(self):
        self.rotate("shop", "orders")
        proc = spawn(CLI_BIN, "watch", "orders", "default", "--server", self.url, "--token-file",
                     self.token_file, "--count", "3", "--wait", "60")
        try:
            self.assertEqual(json.loads(read_line(proc, 30))["color"], "red")
            self.rotate("shop", "orders-v2")
            self.repo.commit({"orders.yml": "color: green\n"}, "green")
            self.refresh()
            self.assertEqual(json.loads(read_line(proc, 30))["color"], "green")
            self.repo.commit({"orders.yml": "color: blue\n"}, "blue")
            self.refresh()
            self.assertEqual(json.loads(read_line(proc, 30))["color"], "blue")
            self.assertEqual(proc.wait(timeout=15), 0)
        finally:
            reap(proc)
        # The first request came with the first token, a later one with the rotated token.
        log = self.server.log()
        first = log.find("user=system:serviceaccount:shop:orders\n")
        later = log.find("user=system:serviceaccount:shop:orders-v2")
        self.assertGreaterEqual(first, 0, log[-3000:])
        self.assertGreater(later, first, log[-3000:])


if __name__ == "__main__":
    unittest.main()
