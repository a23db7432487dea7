"""Replicas without a broker (--peers, --peer-secret): three real replicas on loopback sharing
one file:// remote, none of them polling. A webhook to one makes the other two fetch; a notice
with a wrong signature is refused and fetches nothing; a peer that never answers does not slow
the webhook's answer and costs a warning.
"""

import hashlib
import hmac
import http.client
import json
import os
import socket
import threading
import unittest

from almanac_harness import Server, ServerTestCase, wait_until

PEER_SECRET = "itest-peer-secret-5b1e"


def github_push(paths):
    return json.dumps({"ref": "refs/heads/main", "before": "0" * 40, "after": "1" * 40,
                       "commits": [{"id": "1" * 40, "added": [], "modified": list(paths),
                                    "removed": []}]})


def free_ports(n):
    """n distinct ports the kernel had free a moment ago (the replicas must know each other's
    ports before they start)."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def signed(body, secret=PEER_SECRET):
    return "sha256=" + hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()


class Replica(Server):
    """A server on a port chosen in advance (peers name each other by port)."""

    def __init__(self, repo, workdir, port, extra_args):
        super().__init__(repo, workdir, refresh_interval=0, extra_args=extra_args)
        i = self.args.index("--port")
        self.args[i + 1] = str(port)


class PeersTest(ServerTestCase):

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit({"application.yml": "shared: 1\n", "orders.yml": "color: red\n"},
                        "first")
        secret_file = os.path.join(cls.tmp, "peer-secret")
        with open(secret_file, "w") as f:
            f.write(PEER_SECRET + "\n")
        os.chmod(secret_file, 0o600)
        ports = free_ports(3)
        # Every replica lists all three, itself included, as a Service's DNS name would.
        peers = ",".join("127.0.0.1:%d" % p for p in ports)
        cls.replicas = []
        for port in ports:
            s = Replica(cls.repo.uri, cls.tmp, port,
                        ["--peers", peers, "--peer-secret", secret_file])
            cls.servers.append(s)
            cls.replicas.append(s.start())
        cls.lock = threading.Lock()

    def etag(self, server):
        r = server.get("/orders/dev")
        self.assertEqual(r.status, 200, r)
        return r.header("etag")

    def test_webhook_to_one_replica_makes_the_others_fetch(self):
        with self.lock:
            a, b, c = self.replicas
            tags = [self.etag(s) for s in (b, c)]
            commit = self.repo.commit({"orders.yml": "color: peers\n"}, "peers")
            r = a.post("/monitor", github_push(["orders.yml"]).encode(),
                       {"Content-Type": "application/json", "X-GitHub-Event": "push"})
            self.assertEqual(r.status, 200, r)
            # Nobody polls: only the notice from A can bring the commit to B and C.
            for server, tag in zip((b, c), tags):
                w = server.get("/orders/dev?watch=%s&timeout=20" % tag)
                self.assertEqual(w.status, 200, w)
                self.assertEqual(w.json()["version"], commit)
            # A's own notice came back to it (it lists itself) and was recognised.
            self.assertTrue(a.wait_for_log(r"peer notice from \S+ .*our own, ignored"),
                            a.log_tail())

    def test_notice_naming_the_current_commit_fetches_nothing(self):
        with self.lock:
            c = self.replicas[2]
            version = c.get("/orders/dev").json()["version"]
            body = json.dumps({"origin": "other:1:cd", "commit": version})
            r = c.post("/actuator/peer-refresh", body.encode(),
                       {"Content-Type": "application/json",
                        "X-Almanac-Peer-Signature": signed(body)})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json(), {"fetching": False})

    def test_malformed_notice_400(self):
        with self.lock:
            body = "[1,2]"
            r = self.replicas[0].post("/actuator/peer-refresh", body.encode(),
                                      {"Content-Type": "application/json",
                                       "X-Almanac-Peer-Signature": signed(body)})
            self.assertErrorBody(r, 400)

class ReceiveOnlyTest(ServerTestCase):
    """--peer-secret without --peers: a replica that is told, on its own (no other replica's
    fetch can interfere with what it fetches)."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit({"orders.yml": "color: red\n"}, "first")
        secret_file = os.path.join(cls.tmp, "peer-secret")
        with open(secret_file, "w") as f:
            f.write(PEER_SECRET + "\n")
        cls.server = cls.start_server(cls.repo.uri, refresh_interval=0,
                                      extra_args=["--peer-secret", secret_file])

    def etag(self, server):
        r = server.get("/orders/dev")
        self.assertEqual(r.status, 200, r)
        return r.header("etag")

    def test_wrong_secret_refused_and_fetches_nothing(self):
        b = self.server
        tag = self.etag(b)
        self.repo.commit({"orders.yml": "color: forged\n"}, "forged")
        body = json.dumps({"origin": "intruder:1:ab", "commit": None})
        for sig in (signed(body, "wrong-secret"), None, "sha256=", signed(body)[:-2]):
            with self.subTest(signature=sig):
                headers = {"Content-Type": "application/json"}
                if sig is not None:
                    headers["X-Almanac-Peer-Signature"] = sig
                r = b.post("/actuator/peer-refresh", body.encode(), headers)
                self.assertErrorBody(r, 401)
        # Nothing fetched the commit: a watcher holding B's version sees no change.
        w = b.get("/orders/dev?watch=%s&timeout=2" % tag)
        self.assertEqual(w.status, 304, w)
        # The same notice, signed right, is obeyed.
        ok = b.post("/actuator/peer-refresh", body.encode(),
                    {"Content-Type": "application/json",
                     "X-Almanac-Peer-Signature": signed(body)})
        self.assertEqual(ok.status, 200, ok)
        self.assertEqual(ok.json(), {"fetching": True})
        w = b.get("/orders/dev?watch=%s&timeout=20" % tag)
        self.assertEqual(w.status, 200, w)


class DeadPeerTest(ServerTestCase):
    """A peer that accepts the connection and never answers."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit({"orders.yml": "color: red\n"}, "first")
        secret_file = os.path.join(cls.tmp, "peer-secret")
        with open(secret_file, "w") as f:
            f.write(PEER_SECRET)
        cls.silent = socket.socket()
        cls.silent.bind(("127.0.0.1", 0))
        cls.silent.listen(8)
        cls.server = cls.start_server(
            cls.repo.uri, refresh_interval=0,
            extra_args=["--peers", "127.0.0.1:%d" % cls.silent.getsockname()[1],
                        "--peer-secret", secret_file])

    @classmethod
    def tearDownClass(cls):
        cls.silent.close()
        super().tearDownClass()

    def test_dead_peer_does_not_slow_the_webhook(self):
        tag = self.server.get("/orders/dev").header("etag")
        commit = self.repo.commit({"orders.yml": "color: alone\n"}, "alone")
        r = self.server.post("/monitor", github_push(["orders.yml"]).encode(),
                             {"Content-Type": "application/json", "X-GitHub-Event": "push"})
        self.assertEqual(r.status, 200, r)
        # Order of events: the answer came before the notice was given up (a sender in the
        # webhook's path would have waited for its timeout and logged the failure first).
        self.assertNotRegex(self.server.log(), r"peer \S+ not told")
        # The notice is on its way to the silent peer, which holds it unanswered...
        self.silent.settimeout(20)
        conn, _ = self.silent.accept()
        try:
            # ...while this replica has answered the webhook and fetched the push regardless.
            w = self.server.get("/orders/dev?watch=%s&timeout=20" % tag)
            self.assertEqual(w.status, 200, w)
            self.assertEqual(w.json()["version"], commit)
            self.assertTrue(self.server.wait_for_log(r"peer \S+ not told: .*", 20),
                            self.server.log_tail())
        finally:
            conn.close()


class PeersSettingsTest(unittest.TestCase):

    def test_peers_without_secret_refused(self):
        from almanac_harness import SERVER_BIN, require_server_bin
        import subprocess
        require_server_bin()
        out = subprocess.run([SERVER_BIN, "--repo", "/nonexistent", "--peers", "x"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(out.returncode, 2, out)
        self.assertIn(b"--peer-secret", out.stderr)


if __name__ == "__main__":
    unittest.main()
