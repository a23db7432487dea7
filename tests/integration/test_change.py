"""How clients learn of change: long-poll watch (?watch=<etag>&timeout=<s>), the /events stream,
webhooks on POST /monitor (with and without a secret) and POST /actuator/refresh.

No sleeps: a watcher woken by a refresh is raced on purpose (a watcher that arrives after the
refresh holds an old version and is answered at once), and /events is read after its headers
arrived, which is when the server has registered the subscriber.
"""

import hashlib
import hmac
import http.client
import json
import os
import threading
import unittest

from almanac_harness import ServerTestCase, wait_until

WEBHOOK_SECRET = "itest-webhook-secret-0c6a"


def github_push(paths, ref="refs/heads/main"):
    return json.dumps({"ref": ref, "before": "0" * 40, "after": "1" * 40,
                       "repository": {"full_name": "example/config"},
                       "commits": [{"id": "1" * 40, "added": [], "modified": list(paths),
                                    "removed": []}]})


class WatchTest(ServerTestCase):

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit({"application.yml": "shared: 1\n", "orders.yml": "color: red\n",
                         "payments.yml": "pay: 1\n"}, "first")
        cls.server = cls.start_server(cls.repo.uri, refresh_interval=0)
        cls.lock = threading.Lock()

    def new_connection(self):
        return http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=20)

    def current(self, path="/orders/dev"):
        r = self.server.get(path)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("etag"), r.headers)
        return r

    def watch_in_thread(self, path):
        """Starts a watch request on its own connection; returns (thread, result dict)."""
        result = {}

        def run():
            conn = self.new_connection()
            try:
                conn.request("GET", path)
                r = conn.getresponse()
                result["status"] = r.status
                result["headers"] = {k.lower(): v for k, v in r.getheaders()}
                result["body"] = r.read()
            except Exception as e:  # reported by the test thread
                result["error"] = e
            finally:
                conn.close()

        t = threading.Thread(target=run)
        t.start()
        return t, result

    def test_stale_version_answered_at_once(self):
        # The connection's 20 s timeout fails this test if the server waits the full 60 s.
        r = self.server.get('/orders/dev?watch="not-the-current-version"&timeout=60')
        self.assertEqual(r.status, 200, r)
        env = r.json()
        self.assertEqual(env["name"], "orders")
        self.assertEqual(r.header("etag"), self.current().header("etag"))

    def test_current_version_times_out_304(self):
        etag = self.current().header("etag")
        for version in (etag, etag.strip('"')):
            with self.subTest(version=version):
                r = self.server.get("/orders/dev?watch=%s&timeout=1" % version)
                self.assertEqual(r.status, 304, r)
                self.assertEqual(r.body, b"")

    def test_watch_woken_by_change_and_not_by_unrelated_commit(self):
        with self.lock:
            before = self.current()
            etag = before.header("etag")

            # A commit that does not touch orders: the watcher gets 304 at its deadline.
            t, result = self.watch_in_thread("/orders/dev?watch=%s&timeout=2" % etag)
            self.repo.commit({"payments.yml": "pay: %d\n" % (os.getpid() % 1000 + 2)}, "pay")
            self.server.refresh()
            t.join(30)
            self.assertFalse(t.is_alive())
            self.assertNotIn("error", result, result)
            self.assertEqual(result["status"], 304, result)

            # A commit that changes orders: the watcher gets the new Environment.
            t, result = self.watch_in_thread("/orders/dev?watch=%s&timeout=60" % etag)
            commit = self.repo.commit({"orders.yml": "color: c%d\n" % len(self.repo.head())},
                                      "orders")
            self.server.refresh()
            t.join(30)
            self.assertFalse(t.is_alive(), "watcher not woken by a change")
            self.assertNotIn("error", result, result)
            self.assertEqual(result["status"], 200, result)
            env = json.loads(result["body"])
            self.assertEqual(env["version"], commit)
            self.assertNotEqual(result["headers"].get("etag"), etag)

    def test_watch_labelled(self):
        with self.lock:
            commit = self.repo.head()
            etag = self.current("/orders/dev/" + commit).header("etag")
            r = self.server.get("/orders/dev/%s?watch=%s&timeout=1" % (commit, etag))
            self.assertEqual(r.status, 304, r)

    def test_events_stream(self):
        with self.lock:
            conn = self.new_connection()
            try:
                conn.request("GET", "/events", headers={"Accept": "text/event-stream"})
                r = conn.getresponse()
                self.assertEqual(r.status, 200)
                self.assertTrue(r.getheader("Content-Type", "").startswith("text/event-stream"))
                commit = self.repo.commit({"orders.yml": "color: ev%s\n" % self.repo.head()[:6]},
                                          "orders for events")
                self.server.refresh()
                buf = b""
                event = None
                while event is None:
                    chunk = r.read1(65536)
                    if not chunk:
                        break
                    buf += chunk
                    while b"\n\n" in buf:
                        frame, buf = buf.split(b"\n\n", 1)
                        fields = {}
                        for line in frame.decode().split("\n"):
                            if line and not line.startswith(":") and ":" in line:
                                k, v = line.split(":", 1)
                                fields[k] = v[1:] if v.startswith(" ") else v
                        if fields.get("event") == "refresh":
                            data = json.loads(fields["data"])
                            if data.get("commit") == commit:
                                event = data
                self.assertIsNotNone(event, "no refresh event for %s" % commit)
                self.assertIn("orders", json.dumps(event))
            finally:
                conn.close()


class MonitorTest(ServerTestCase):
    """POST /monitor without a secret configured: any provider's push is accepted."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit({"application.yml": "shared: 1\n", "orders.yml": "color: red\n"},
                        "first")
        cls.server = cls.start_server(cls.repo.uri, refresh_interval=0)

    def post_push(self, headers, body):
        h = {"Content-Type": "application/json"}
        h.update(headers)
        return self.server.post("/monitor", body.encode(), h)

    def test_github_names(self):
        r = self.post_push({"X-GitHub-Event": "push"}, github_push(["config/foo-bar-dev.yml"]))
        self.assertEqual(r.status, 200, r)
        names = r.json()
        self.assertIsInstance(names, list)
        self.assertEqual([n for n in names if n.startswith("foo")],
                         ["foo-bar-dev", "foo-bar", "foo"])

    def test_application_means_every_application(self):
        r = self.post_push({"X-GitHub-Event": "push"}, github_push(["application-prod.yml"]))
        self.assertEqual(r.status, 200, r)
        self.assertIn("*", r.json())

    def test_gitlab(self):
        body = json.dumps({"object_kind": "push", "ref": "refs/heads/main",
                           "commits": [{"added": ["payments.properties"], "modified": [],
                                        "removed": []}]})
        r = self.post_push({"X-Gitlab-Event": "Push Hook"}, body)
        self.assertEqual(r.status, 200, r)
        self.assertIn("payments", r.json())

    def test_unknown_provider_400(self):
        r = self.post_push({}, github_push(["orders.yml"]))
        self.assertIn(r.status, (400, 404), r)

    def test_malformed_body_400(self):
        r = self.post_push({"X-GitHub-Event": "push"}, "{not json")
        self.assertEqual(r.status, 400, r)

    def test_push_refreshes(self):
        before = self.server.get("/orders/dev")
        etag = before.header("etag")
        commit = self.repo.commit({"orders.yml": "color: pushed\n"}, "pushed")
        r = self.post_push({"X-GitHub-Event": "push"}, github_push(["orders.yml"]))
        self.assertEqual(r.status, 200, r)
        # The refresh may run after the answer: wait for it with a watch, not a sleep.
        w = self.server.get("/orders/dev?watch=%s&timeout=15" % etag)
        self.assertEqual(w.status, 200, w)
        self.assertEqual(w.json()["version"], commit)


class SignedMonitorTest(ServerTestCase):
    """POST /monitor with --webhook-secret: signatures and tokens are checked."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit({"orders.yml": "color: red\n"}, "first")
        secret_file = os.path.join(cls.tmp, "webhook-secret")
        with open(secret_file, "w") as f:
            f.write(WEBHOOK_SECRET + "\n")
        os.chmod(secret_file, 0o600)
        cls.server = cls.start_server(cls.repo.uri, refresh_interval=0,
                                      extra_args=["--webhook-secret", secret_file])

    def post(self, headers, body):
        h = {"Content-Type": "application/json"}
        h.update(headers)
        return self.server.post("/monitor", body.encode(), h)

    def test_github_signature(self):
        body = github_push(["orders.yml"])
        sig = hmac.new(WEBHOOK_SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
        r = self.post({"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sig}, body)
        self.assertEqual(r.status, 200, r)
        self.assertIn("orders", r.json())

    def test_github_bad_signature(self):
        body = github_push(["orders.yml"])
        sig = hmac.new(b"wrong", body.encode(), hashlib.sha256).hexdigest()
        for headers in ({"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sig},
                        {"X-GitHub-Event": "push"}):
            with self.subTest(headers=headers):
                r = self.post(headers, body)
                self.assertIn(r.status, (401, 403), r)

    def test_signature_over_other_body(self):
        body = github_push(["orders.yml"])
        sig = hmac.new(WEBHOOK_SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
        r = self.post({"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + sig},
                      github_push(["payments.yml"]))
        self.assertIn(r.status, (401, 403), r)

    def test_gitlab_token(self):
        body = json.dumps({"object_kind": "push",
                           "commits": [{"added": [], "modified": ["orders.yml"], "removed": []}]})
        ok = self.post({"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": WEBHOOK_SECRET}, body)
        self.assertEqual(ok.status, 200, ok)
        bad = self.post({"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "nope"}, body)
        self.assertIn(bad.status, (401, 403), bad)


def fetch_count(server):
    """Fetches the server has run, from its own metrics (ok and failed)."""
    r = server.get("/metrics")
    if r.status != 200:
        raise AssertionError("GET /metrics -> %r" % r)
    total = 0
    for line in r.text.splitlines():
        if line.startswith("almanac_git_fetch_total{"):
            total += int(line.rsplit(" ", 1)[1])
    return total


class LeadingEdgeTest(ServerTestCase):
    """The first notification fetches at once (on a server that has not fetched yet: a second
    push within a second of the first waits for the end of that second, see BurstTest)."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit({"application.yml": "shared: 1\n", "orders.yml": "color: red\n"},
                        "first")
        cls.server = cls.start_server(cls.repo.uri, refresh_interval=0)
        cls.lock = threading.Lock()

    def push_hook(self, conn):
        body = github_push(["orders.yml"]).encode()
        conn.request("POST", "/monitor", body=body,
                     headers={"Content-Type": "application/json", "X-GitHub-Event": "push"})
        r = conn.getresponse()
        r.read()
        return r.status

    def connect(self):
        return http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)

    def refresh_requests(self):
        r = self.server.get("/metrics")
        counts = {}
        for line in r.text.splitlines():
            if line.startswith("almanac_refresh_requests_total{"):
                counts[line.split('"')[1]] = int(line.rsplit(" ", 1)[1])
        return counts

    def test_first_webhook_fetches_at_once(self):
        # The order of events, as the server accounts for them: the webhook found the refresher
        # idle and started the fetch itself (a debounced refresher would have held it back to
        # wait for quiet), and that fetch woke the watcher.
        with self.lock:
            etag = self.server.get("/orders/dev").header("etag")
            self.assertEqual(self.refresh_requests(), {"immediate": 0, "coalesced": 0})
            fetches = fetch_count(self.server)
            commit = self.repo.commit({"orders.yml": "color: lead\n"}, "lead")
            conn = self.connect()
            try:
                self.assertEqual(self.push_hook(conn), 200)
            finally:
                conn.close()
            w = self.server.get("/orders/dev?watch=%s&timeout=20" % etag)
            self.assertEqual(w.status, 200, w)
            self.assertEqual(w.json()["version"], commit)
            self.assertEqual(self.refresh_requests(), {"immediate": 1, "coalesced": 0})
            self.assertEqual(fetch_count(self.server), fetches + 1)


class BurstTest(LeadingEdgeTest):
    """Its own server: a fetch requested by another test must not open this one's gap."""

    test_first_webhook_fetches_at_once = None

    def test_burst_of_ten_costs_at_most_two_fetches(self):
        with self.lock:
            etag = self.server.get("/orders/dev").header("etag")
            commit = self.repo.commit({"orders.yml": "color: burst\n"}, "burst")
            before = fetch_count(self.server)
            statuses = []

            def one():
                conn = self.connect()
                try:
                    statuses.append(self.push_hook(conn))
                finally:
                    conn.close()

            threads = [threading.Thread(target=one) for _ in range(10)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            self.assertEqual(statuses, [200] * 10)
            w = self.server.get("/orders/dev?watch=%s&timeout=15" % etag)
            self.assertEqual(w.status, 200, w)
            self.assertEqual(w.json()["version"], commit)
            # The burst leaves at most one fetch pending after the first: wait for it to run.
            wait_until(lambda: fetch_count(self.server) - before >= 2, 5)
            self.assertLessEqual(fetch_count(self.server) - before, 2)
            counts = self.refresh_requests()
            self.assertEqual(counts["immediate"] + counts["coalesced"], 10, counts)
            self.assertLessEqual(counts["immediate"], 1, counts)


if __name__ == "__main__":
    unittest.main()
