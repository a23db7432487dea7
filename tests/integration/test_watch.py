"""Refresh and watch: webhooks, long-poll watchers, Server-Sent Events, polling, a remote that
goes away, and graceful shutdown — against a real server and a real Git remote."""

import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import unittest

from almanac_harness import GitRepo, Server, require_server_bin, wait_until

SECRET = "webhook-test-secret"


def long_poll(port, path, timeout=30):
    """GET on its own connection (a parked request holds its connection). Returns
    (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout + 30)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


class Poller(threading.Thread):
    """A long-poll request running in the background."""

    def __init__(self, port, path, timeout=30):
        super().__init__(daemon=True)
        self.port, self.path, self.timeout = port, path, timeout
        self.result = None
        self.started_at = time.monotonic()
        self.finished_at = None

    def run(self):
        try:
            self.result = long_poll(self.port, self.path, self.timeout)
        except Exception as e:  # surfaced by the test's assertions
            self.result = e
        self.finished_at = time.monotonic()


def github_push(paths):
    body = json.dumps({"ref": "refs/heads/main",
                       "commits": [{"added": [], "modified": paths, "removed": []}]})
    sig = hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
    return body, {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sig,
                  "Content-Type": "application/json"}


def parked_watchers(server):
    text = server.get("/metrics").text
    m = re.search(r"^almanac_watchers (\d+)", text, re.M)
    return int(m.group(1)) if m else -1


def fetches(server):
    text = server.get("/metrics").text
    m = re.search(r'^almanac_git_fetch_total\{result="ok"\} (\d+)', text, re.M)
    return int(m.group(1)) if m else -1


class WatchTest(unittest.TestCase):
    def setUp(self):
        require_server_bin()
        self.tmp = tempfile.mkdtemp(prefix="almanac-watch-")
        self.repo = GitRepo(self.tmp)
        self.repo.commit({"orders.yml": "orders:\n  limit: 1\n",
                          "billing.yml": "billing:\n  currency: EUR\n",
                          "application.yml": "shared: true\n"}, "first")
        secret_file = os.path.join(self.tmp, "webhook.secret")
        with open(secret_file, "w") as f:
            f.write(SECRET + "\n")
        self.server = Server(self.repo.uri, self.tmp,
                             extra_args=["--webhook-secret", secret_file]).start()

    def tearDown(self):
        try:
            if self.server.alive():
                self.assertEqual(self.server.stop(), 0, self.server.log_tail())
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def etag(self, path):
        r = self.server.get(path)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("ETag"), "no ETag on " + path)
        return r.header("ETag")

    def test_webhook_wakes_only_the_watchers_whose_environment_changed(self):
        orders_tag = self.etag("/orders/dev")
        billing_tag = self.etag("/billing/dev")
        orders = Poller(self.server.port, "/orders/dev?watch=%s&timeout=30" % orders_tag.strip('"'))
        billing = Poller(self.server.port, "/billing/dev?watch=%s&timeout=4" % billing_tag)
        orders.start()
        billing.start()
        self.assertEqual(wait_until(lambda: parked_watchers(self.server) == 2), True)

        commit = self.repo.commit({"orders.yml": "orders:\n  limit: 2\n"}, "raise the limit")
        body, headers = github_push(["orders.yml"])
        r = self.server.post("/monitor", body, headers)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), ["orders"])

        orders.join(20)
        self.assertFalse(orders.is_alive(), "the orders watcher was not woken")
        status, headers, data = orders.result
        self.assertEqual(status, 200)
        env = json.loads(data)
        self.assertEqual(env["version"], commit)
        self.assertEqual(env["propertySources"][0]["source"], {"orders.limit": 2})
        self.assertNotEqual(headers["etag"], orders_tag)

        billing.join(20)
        status, headers, data = billing.result
        self.assertEqual(status, 304, "billing did not change: its watcher must time out")
        self.assertEqual(headers["etag"], billing_tag)
        self.assertGreater(billing.finished_at - billing.started_at, 3.0 * 0.85)

    def test_commit_to_application_yml_wakes_every_environment_with_its_own_answer(self):
        # More watched Environments than the registry renders on one thread (64): with three
        # cores or more the groups are shared out among threads, and each watcher must still
        # get its own Environment.
        apps = ["app%02d" % i for i in range(80)]
        self.repo.commit({"%s.yml" % a: "%s:\n  id: %d\n" % (a, i) for i, a in enumerate(apps)},
                         "a fleet")
        self.assertEqual(self.server.post("/actuator/refresh").status, 200)
        pollers = []
        for app in apps:
            tag = self.etag("/%s/dev" % app)
            pollers.append(Poller(self.server.port,
                                  "/%s/dev?watch=%s&timeout=60" % (app, tag.strip('"'))))
        for p in pollers:
            p.start()
        self.assertEqual(wait_until(lambda: parked_watchers(self.server) == len(apps)), True)

        commit = self.repo.commit({"application.yml": "shared: false\n"}, "every application")
        body, headers = github_push(["application.yml"])
        r = self.server.post("/monitor", body, headers)
        self.assertEqual(r.status, 200, r)
        for i, (app, p) in enumerate(zip(apps, pollers)):
            p.join(30)
            self.assertFalse(p.is_alive(), "the %s watcher was not woken" % app)
            status, headers, data = p.result
            self.assertEqual(status, 200, app)
            env = json.loads(data)
            self.assertEqual((env["name"], env["version"]), (app, commit))
            sources = {s["name"].rsplit("/", 1)[-1]: s["source"] for s in env["propertySources"]}
            self.assertEqual(sources["%s.yml" % app], {"%s.id" % app: i})
            self.assertEqual(sources["application.yml"], {"shared": False})
            self.assertEqual(headers["etag"], self.etag("/%s/dev" % app))
        if (os.cpu_count() or 1) >= 3:  # as the server counts them (online CPUs)
            self.server.wait_for_log(r"woke 80 watcher\(s\) of 80 watched environment\(s\) "
                                     r"\(rendered in parallel\)")

    def test_stale_version_is_answered_at_once(self):
        status, headers, data = long_poll(self.server.port, "/orders/dev?watch=%22old%22&timeout=60")
        self.assertEqual(status, 200)
        self.assertEqual(headers["etag"], self.etag("/orders/dev"))
        self.assertEqual(json.loads(data)["name"], "orders")

    def test_timeout_answers_304_with_the_same_etag(self):
        tag = self.etag("/orders/dev,prod")
        status, headers, data = long_poll(self.server.port, "/orders/dev,prod?watch=%s&timeout=1" % tag)
        self.assertEqual(status, 304)
        self.assertEqual(headers["etag"], tag)
        self.assertEqual(data, b"")

    def test_bad_timeout_is_rejected(self):
        tag = self.etag("/orders/dev")
        for bad in ("abc", "-1", "0", "1.5"):
            r = self.server.get("/orders/dev?watch=%s&timeout=%s" % (tag, bad))
            self.assertEqual(r.status, 400, bad)

    def test_commit_that_changes_nothing_wakes_nobody(self):
        tag = self.etag("/orders/dev")
        watcher = Poller(self.server.port, "/orders/dev?watch=%s&timeout=3" % tag)
        watcher.start()
        self.assertEqual(wait_until(lambda: parked_watchers(self.server) == 1), True)
        self.repo.commit({"README.md": "only the readme\n"}, "docs")
        r = self.server.post("/actuator/refresh")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.json()["changed"])
        watcher.join(20)
        self.assertEqual(watcher.result[0], 304)

    def test_bad_signature_is_refused_and_refreshes_nothing(self):
        before = fetches(self.server)
        self.repo.commit({"orders.yml": "orders:\n  limit: 9\n"}, "unsigned change")
        body, headers = github_push(["orders.yml"])
        headers["X-Hub-Signature-256"] = "sha256=" + "0" * 64
        r = self.server.post("/monitor", body, headers)
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.json()["status"], 401)
        del headers["X-Hub-Signature-256"]
        self.assertEqual(self.server.post("/monitor", body, headers).status, 401)
        # A refresh would have run within the coalescing window (at most one second).
        time.sleep(1.5)
        self.assertEqual(fetches(self.server), before)
        env = self.server.get("/orders/dev").json()
        self.assertEqual(env["propertySources"][0]["source"], {"orders.limit": 1})

    def test_gitlab_token_gitea_signature_and_spring_form(self):
        body = json.dumps({"commits": [{"added": ["billing-prod.yml"], "modified": [],
                                        "removed": []}]})
        r = self.server.post("/monitor", body, {"X-Gitlab-Event": "Push Hook",
                                                "X-Gitlab-Token": SECRET})
        self.assertEqual((r.status, r.json()), (200, ["billing-prod", "billing"]))
        r = self.server.post("/monitor", body, {"X-Gitlab-Event": "Push Hook",
                                                "X-Gitlab-Token": SECRET + "x"})
        self.assertEqual(r.status, 401)
        sig = hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
        r = self.server.post("/monitor", body, {"X-Gitea-Event": "push", "X-Gitea-Signature": sig})
        self.assertEqual(r.status, 200, r)
        r = self.server.post("/monitor", "path=application.yml",
                             {"Content-Type": "application/x-www-form-urlencoded",
                              "Authorization": "Bearer " + SECRET})
        self.assertEqual((r.status, r.json()), (200, ["*"]))
        r = self.server.post("/monitor", "{not json", {"X-Gitea-Event": "push",
            "X-Gitea-Signature": hmac.new(SECRET.encode(), b"{not json", hashlib.sha256).hexdigest()})
        self.assertEqual(r.status, 400, r)

    def test_burst_of_webhooks_costs_at_most_two_fetches(self):
        # The first notification fetches at once (leading edge); the rest of the burst arrives
        # during that fetch and coalesces into one more.
        before = fetches(self.server)
        body, headers = github_push(["orders.yml"])
        for _ in range(10):
            self.assertEqual(self.server.post("/monitor", body, headers).status, 200)
        self.assertTrue(wait_until(lambda: fetches(self.server) > before, deadline=10))
        time.sleep(1.5)  # past the coalescing window: nothing more may follow
        self.assertIn(fetches(self.server), (before + 1, before + 2))

    def test_events_stream_delivers_refresh_and_resumes(self):
        sock = socket.create_connection(("127.0.0.1", self.server.port), timeout=20)
        sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        received = b""
        while b"retry:" not in received:
            received += sock.recv(4096)
        self.assertIn(b"text/event-stream", received)
        commit = self.repo.commit({"billing.yml": "billing:\n  currency: USD\n"}, "dollars")
        self.assertEqual(self.server.post("/actuator/refresh").status, 200)
        while b"\n\ndata" not in received and b"data: " not in received:
            received += sock.recv(4096)
        while not received.rstrip(b"\r\n0").endswith(b"}"):
            received += sock.recv(4096)
        sock.close()
        text = received.decode()
        m = re.search(r"id: (\d+)\r?\nevent: refresh\r?\ndata: (\{.*\})", text)
        self.assertIsNotNone(m, text)
        data = json.loads(m.group(2))
        self.assertEqual(data, {"commit": commit, "applications": ["billing"]})

        # A client that saw nothing after id-1 gets the event again on reconnect.
        sock = socket.create_connection(("127.0.0.1", self.server.port), timeout=20)
        sock.sendall(("GET /events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: %d\r\n\r\n"
                      % (int(m.group(1)) - 1)).encode())
        again = b""
        while b'"applications"' not in again:
            chunk = sock.recv(4096)
            self.assertTrue(chunk, "stream closed before the replayed event")
            again += chunk
        sock.close()
        self.assertIn(commit.encode(), again)

    def test_watch_on_a_branch_label(self):
        self.repo.branch("feature/x")
        self.server.post("/actuator/refresh")
        tag = self.etag("/orders/dev/feature(_)x")
        watcher = Poller(self.server.port, "/orders/dev/feature(_)x?watch=%s&timeout=30" % tag)
        watcher.start()
        self.assertEqual(wait_until(lambda: parked_watchers(self.server) == 1), True)
        self.repo.checkout("feature/x")
        commit = self.repo.commit({"orders.yml": "orders:\n  limit: 5\n"}, "on the branch")
        self.repo.checkout("main")
        self.server.post("/actuator/refresh")
        watcher.join(20)
        status, _, data = watcher.result
        self.assertEqual(status, 200)
        env = json.loads(data)
        self.assertEqual((env["label"], env["version"]), ("feature(_)x", commit))

    def test_shutdown_answers_parked_watchers(self):
        tag = self.etag("/orders/dev")
        watcher = Poller(self.server.port, "/orders/dev?watch=%s&timeout=120" % tag)
        watcher.start()
        self.assertEqual(wait_until(lambda: parked_watchers(self.server) == 1), True)
        self.assertEqual(self.server.stop(), 0)
        watcher.join(20)
        # not 304 ("unchanged", which would make a client wait out its window): 503, ask again
        self.assertEqual(watcher.result[0], 503)
        self.assertLess(watcher.finished_at - watcher.started_at, 60)


class EmptyWebhookSecretTest(unittest.TestCase):
    def test_empty_secret_file_stops_the_server(self):
        require_server_bin()
        tmp = tempfile.mkdtemp(prefix="almanac-secret-")
        try:
            repo = GitRepo(tmp)
            repo.commit({"orders.yml": "a: 1\n"}, "first")
            empty = os.path.join(tmp, "empty.secret")
            with open(empty, "w") as f:
                f.write("\n")
            server = Server(repo.uri, tmp, extra_args=["--webhook-secret", empty])
            server.launch()
            self.assertEqual(server.wait_exit(), 1)
            self.assertIn("--webhook-secret", server.log())
            self.assertIn("is empty", server.log())
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class PollAndOutageTest(unittest.TestCase):
    def setUp(self):
        require_server_bin()
        self.tmp = tempfile.mkdtemp(prefix="almanac-poll-")
        self.repo = GitRepo(self.tmp)
        self.first = self.repo.commit({"orders.yml": "orders:\n  limit: 1\n"}, "first")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_poll_only_mode_picks_up_a_commit(self):
        server = Server(self.repo.uri, self.tmp, refresh_interval=1).start()
        try:
            second = self.repo.commit({"orders.yml": "orders:\n  limit: 2\n"}, "second")
            version = wait_until(lambda: server.get("/orders/dev").json()["version"] == second,
                                 deadline=15)
            self.assertTrue(version, "the poller did not pick up the commit")
        finally:
            self.assertEqual(server.stop(), 0)

    def test_remote_deleted_keeps_serving_and_health_degrades(self):
        server = Server(self.repo.uri, self.tmp, refresh_interval=0).start()
        try:
            self.assertEqual(server.get("/actuator/health").json()["components"]["repository"]
                             ["status"], "UP")
            shutil.rmtree(self.repo.path)
            r = server.post("/actuator/refresh")
            self.assertEqual(r.status, 503, r)  # the upstream is unavailable, we are not
            self.assertIn("cannot fetch", r.json()["message"])
            env = server.get("/orders/dev").json()
            self.assertEqual((env["version"], env["propertySources"][0]["source"]),
                             (self.first, {"orders.limit": 1}))
            health = server.get("/actuator/health")
            self.assertEqual(health.status, 200)
            repo = health.json()["components"]["repository"]
            self.assertEqual(repo["status"], "DEGRADED")
            self.assertIn("lastError", repo["details"])
            self.assertIn("lastFetchAgeSeconds", repo["details"])
            metrics = server.get("/metrics").text
            self.assertRegex(metrics, r'almanac_git_fetch_total\{result="failed"\} [1-9]')
        finally:
            self.assertEqual(server.stop(), 0)


if __name__ == "__main__":
    unittest.main()
