"""Errors and operations: broken files, invalid names and profiles, ETag and If-None-Match across
refreshes, health, metrics, an unreachable remote, oversized requests, request ids."""

import os
import re
import shutil
import tempfile
import unittest

from almanac_harness import (GitRepo, Server, ServerTestCase, require_server_bin,
                             sanitizer_report)

FILES = {
    "application.yml": "shared: yes\n",
    "orders.yml": "color: red\n",
    "broken.yml": "ok: 1\nbad: [unclosed\nmore: 2\n",
    "dupkey.yml": "a: 1\nb: 2\na: 3\n",
}


class BrokenFileTest(ServerTestCase):

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit(FILES, "with broken files")
        cls.server = cls.start_server(cls.repo.uri)

    def test_broken_yaml_500_names_file(self):
        for path in ("/broken/dev", "/broken-dev.yml", "/broken-dev.properties"):
            with self.subTest(path=path):
                body = self.assertErrorBody(self.server.get(path), 500)
                self.assertIn("broken.yml", body["message"])

    def test_broken_yaml_message_has_line(self):
        body = self.assertErrorBody(self.server.get("/broken/dev"), 500)
        self.assertRegex(body["message"], r"broken\.yml\D*\d+")

    def test_duplicate_key_500(self):
        body = self.assertErrorBody(self.server.get("/dupkey/dev"), 500)
        self.assertIn("dupkey.yml", body["message"])

    def test_other_apps_unaffected(self):
        r = self.server.get("/orders/dev")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.server.get("/orders-dev.yml").status, 200)
        self.assertEqual(self.server.get("/nosuchapp/dev").status, 200)

    def test_bad_profiles_400(self):
        for profiles in ("dev$", "-dev", "dev-", ".dev", "dev.", "dev,", ",dev", "dev,,prod",
                         "de%20v", "dev%2Fx", "dev(_)x", "dev;x", "dev*", "_dev",
                         "%2e%2e"):
            with self.subTest(profiles=profiles):
                self.assertErrorBody(self.server.get("/orders/" + profiles), 400)

    def test_bad_profiles_400_in_documents(self):
        for path in ("/orders-dev$.yml", "/orders-dev,.properties", "/orders-dev%2Fx.json"):
            with self.subTest(path=path):
                self.assertEqual(self.server.get(path).status, 400)

    def test_valid_unusual_profiles(self):
        for profiles in ("a-b_c.d+e@f", "dev,prod", "x1", "A9"):
            with self.subTest(profiles=profiles):
                r = self.server.get("/orders/" + profiles)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json()["profiles"], [profiles])

    def test_bad_names_400(self):
        for name in ("..", "a..b", "a%23b", "%23", "(_)orders", "(_)", "orders%2F..%2Fx"):
            with self.subTest(name=name):
                self.assertErrorBody(self.server.get("/%s/dev" % name), 400)

    def test_bad_labels_400(self):
        for label in ("..", "ma..in", "(_)main", "main%23x", "..(_)x"):
            with self.subTest(label=label):
                self.assertErrorBody(self.server.get("/orders/dev/" + label), 400)

    def test_invalid_utf8_is_a_client_error(self):
        # Bytes that are not UTF-8 cannot be echoed in JSON: a 4xx with a valid JSON body.
        for path in ("/%ff/dev", "/orders/dev/%ff", "/orders/%ff", "/orders/dev/main/%c0%af",
                     "/%c0%ae%c0%ae/dev", "/%ff-dev.yml"):
            with self.subTest(path=path):
                r = self.server.get(path)
                self.assertIn(r.status, (400, 404), r)
                self.assertEqual(r.json()["status"], r.status)

    def test_long_names_profiles_labels(self):
        for path in ("/" + "a" * 5000 + "/dev",
                     "/orders/" + ",".join(["p%d" % i for i in range(2000)]),
                     "/orders/dev/" + "b" * 5000, "/orders/dev/main/" + "c" * 5000,
                     "/" + ",".join(["app%d" % i for i in range(1000)]) + "/dev"):
            with self.subTest(path=path[:40]):
                r = self.server.get(path)
                self.assertIn(r.status, (200, 400, 404, 414), r)
        self.assertTrue(self.server.alive())
        self.assertEqual(self.server.get("/orders/dev").status, 200)

    def test_error_body_path(self):
        body = self.assertErrorBody(self.server.get("/orders/dev$"), 400)
        self.assertEqual(body["error"], "Bad Request")
        self.assertIn(body["path"], ("/orders/dev$", "/orders/dev%24"))

    def test_unknown_route_404(self):
        for path in ("/", "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z/"
                     "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z/"
                     "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z"):
            with self.subTest(path=path[:20]):
                r = self.server.get(path)
                self.assertIn(r.status, (400, 404), r)
                self.assertErrorBody(r, r.status)
        self.assertTrue(self.server.alive())

    def test_empty_segments_and_trailing_slash(self):
        for path in ("//orders/dev", "/orders//dev"):
            with self.subTest(path=path):
                self.assertIn(self.server.get(path).status, (400, 404))
        self.assertIn(self.server.get("/orders/dev/").status, (200, 404))

    def test_health(self):
        r = self.server.get("/actuator/health")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("content-type").startswith("application/"), r.headers)
        self.assertEqual(r.json()["status"], "UP")

    def test_metrics(self):
        self.server.get("/orders/dev")
        r = self.server.get("/metrics")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("content-type").startswith("text/plain"), r.headers)
        self.assertIn("almanac_http_requests_total", r.text)
        # Prometheus text: every sample line is "name{labels} value" or "name value".
        for line in r.text.splitlines():
            if line and not line.startswith("#"):
                self.assertRegex(line, r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? \S+$")

    def metric_sum(self, name):
        total = 0.0
        for line in self.server.get("/metrics").text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def test_request_counter_counts(self):
        before = self.metric_sum("almanac_http_requests_total")
        for _ in range(7):
            self.assertEqual(self.server.get("/orders/dev").status, 200)
        after = self.metric_sum("almanac_http_requests_total")
        # 7 requests, plus the /metrics request that read "before" (counted once it finished)
        self.assertGreaterEqual(after - before, 7)
        self.assertLessEqual(after - before, 9)

    def test_request_id_in_log(self):
        rid = "itest-req-4711-zz"
        r = self.server.get("/orders/dev", {"X-Request-Id": rid})
        self.assertEqual(r.status, 200)
        self.assertIsNotNone(self.server.wait_for_log(re.escape(rid)),
                             "request id not found in the log")

    def test_oversized_request_line(self):
        req = b"GET /" + b"a" * 300000 + b"/dev HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        answer = self.server.raw(req)
        self.assertRegex(answer[:12], rb"^HTTP/1\.[01] 4\d\d")
        self.assertTrue(self.server.alive())
        self.assertEqual(self.server.get("/actuator/health").status, 200)

    def test_oversized_headers(self):
        headers = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"v" * 4000) for i in range(100))
        req = b"GET /orders/dev HTTP/1.1\r\nHost: x\r\n" + headers + b"Connection: close\r\n\r\n"
        answer = self.server.raw(req)
        self.assertRegex(answer[:12], rb"^HTTP/1\.[01] 4\d\d")
        self.assertTrue(self.server.alive())
        self.assertEqual(self.server.get("/orders/dev").status, 200)

    def test_malformed_request_lines(self):
        for line in (b"FOO BAR BAZ\r\n\r\n", b"GET /orders/dev\r\n\r\n",
                     b"GET /orders/dev HTTP/9.9\r\nHost: x\r\n\r\n"):
            with self.subTest(line=line):
                answer = self.server.raw(line)
                self.assertRegex(answer[:12], rb"^HTTP/1\.[01] [45]\d\d")
        self.assertEqual(self.server.get("/actuator/health").status, 200)

    def test_garbage_request(self):
        # Whether the server answers or just drops it, it must stay up; a short wait suffices.
        answer = self.server.raw(b"\x00\x01\x02 not http at all\r\n\r\n", timeout=2)
        if answer:
            self.assertRegex(answer[:12], rb"^HTTP/1\.[01] 4\d\d")
        self.assertTrue(self.server.alive())
        self.assertEqual(self.server.get("/actuator/health").status, 200)


def alias_bomb(levels=9, fanout=10):
    """A "billion laughs" YAML document: each level refers to the one below fanout times."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append("l%d: &l%d [%s]" % (i, i, ", ".join(["*l%d" % (i - 1)] * fanout)))
    return "\n".join(lines) + "\n"


class HostileFileTest(ServerTestCase):
    """Repository content is trusted only so far: expansion bombs and deep nesting are refused
    without taking the server down."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit({
            "application.yml": "shared: yes\n",
            "orders.yml": "color: red\n",
            "bomb.yml": alias_bomb(),
            "deep.yml": "a: " + "[" * 100000 + "]" * 100000 + "\n",
            "deepmap.yml": "".join("%sk%d:\n" % ("  " * i, i) for i in range(5000)),
        }, "hostile files")
        cls.server = cls.start_server(cls.repo.uri)

    def test_alias_bomb(self):
        r = self.server.get("/bomb/dev")
        self.assertErrorBody(r, 500)
        self.assertIn("bomb.yml", r.json()["message"])
        self.assertTrue(self.server.alive())

    def test_deep_nesting(self):
        for app in ("deep", "deepmap"):
            with self.subTest(app=app):
                r = self.server.get("/%s/dev" % app)
                self.assertErrorBody(r, 500)
                self.assertIn(app + ".yml", r.json()["message"])
        self.assertTrue(self.server.alive())

    def test_others_still_served(self):
        self.server.get("/bomb/dev")
        r = self.server.get("/orders/dev")
        self.assertEqual(r.status, 200, r)


class RefreshETagTest(ServerTestCase):
    """ETag is a digest of the environment's content: a commit that does not change an
    environment keeps its ETag; one that does changes it. Refresh with POST /actuator/refresh."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.c1 = cls.repo.commit({"application.yml": "shared: yes\n",
                                  "orders.yml": "color: red\n",
                                  "payments.yml": "pay: 1\n"}, "first")
        cls.server = cls.start_server(cls.repo.uri, refresh_interval=0)

    def test_etag_lifecycle(self):
        s = self.server
        r1 = s.get("/orders/dev")
        self.assertEqual(r1.status, 200, r1)
        etag1 = r1.header("etag")
        self.assertTrue(etag1, r1.headers)
        self.assertEqual(r1.json()["version"], self.c1)

        r = s.get("/orders/dev", {"If-None-Match": etag1})
        self.assertEqual(r.status, 304)
        self.assertEqual(r.body, b"")
        self.assertEqual(s.get("/orders/dev", {"If-None-Match": '"nope"'}).status, 200)
        self.assertEqual(s.get("/orders/dev", {"If-None-Match": '"nope", ' + etag1}).status, 304)

        # An unrelated commit: a new version, the same content and ETag.
        c2 = self.repo.commit({"payments.yml": "pay: 2\n"}, "payments only")
        s.refresh()
        r2 = s.get("/orders/dev")
        self.assertEqual(r2.status, 200)
        self.assertEqual(r2.json()["version"], c2)
        self.assertEqual(r2.header("etag"), etag1)
        self.assertNotEqual(s.get("/payments/dev").json()["version"], self.c1)

        # A commit that changes orders: a new ETag, and the old one no longer matches.
        c3 = self.repo.commit({"orders.yml": "color: blue\n"}, "orders change")
        s.refresh()
        r3 = s.get("/orders/dev", {"If-None-Match": etag1})
        self.assertEqual(r3.status, 200, r3)
        self.assertEqual(r3.json()["version"], c3)
        self.assertEqual(r3.json()["propertySources"][0]["source"], {"color": "blue"})
        self.assertNotEqual(r3.header("etag"), etag1)
        self.assertEqual(s.get("/orders/dev", {"If-None-Match": r3.header("etag")}).status, 304)

        # The old commit is still there by id.
        r = s.get("/orders/dev/" + self.c1)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["propertySources"][0]["source"], {"color": "red"})

        # Documents follow the new default too.
        self.assertIn("color: blue", s.get("/orders-dev.properties").text.split("\n"))

    def test_refresh_requires_post(self):
        self.assertEqual(self.server.get("/actuator/refresh").status, 405)


class RemoteFailureTest(unittest.TestCase):
    """Start-up against an unreachable remote, with and without a cache."""

    def setUp(self):
        require_server_bin()
        self.tmp = tempfile.mkdtemp(prefix="almanac-itest-")
        self.servers = []

    def tearDown(self):
        self.tails = []
        reports = []
        for s in self.servers:
            s.stop()
            self.tails.append((s.repo, s.log_tail()))
            if sanitizer_report(s.log()):
                reports.append(sanitizer_report(s.log()))
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.assertEqual(reports, [], "sanitizer reports from almanac-server")

    def server(self, uri, cache_dir=None):
        s = Server(uri, self.tmp, cache_dir=cache_dir)
        self.servers.append(s)
        return s

    def test_unreachable_without_cache_exits(self):
        missing = os.path.join(self.tmp, "no-such-remote")
        s = self.server("file://" + missing)
        s.launch()
        code = s.wait_exit()
        self.assertNotEqual(code, 0, s.log_tail())
        self.assertIn("no-such-remote", s.log(), "the error does not name the remote")

    def test_sigterm_exits_cleanly(self):
        repo = GitRepo(self.tmp, "remote")
        repo.commit({"orders.yml": "color: red\n"}, "first")
        s = self.server(repo.uri).start()
        self.assertEqual(s.get("/orders/dev").status, 200)
        self.assertEqual(s.stop(), 0, s.log_tail())

    def test_remote_gone_with_cache_serves_degraded(self):
        repo = GitRepo(self.tmp, "remote")
        commit = repo.commit({"orders.yml": "color: red\n"}, "first")
        cache = os.path.join(self.tmp, "cache")
        os.makedirs(cache)

        first = self.server(repo.uri, cache_dir=cache).start()
        self.assertEqual(first.get("/orders/dev").status, 200)
        first.stop()

        shutil.rmtree(repo.path)
        second = self.server(repo.uri, cache_dir=cache).start()
        r = second.get("/orders/dev")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["version"], commit)
        self.assertEqual(r.json()["propertySources"][0]["source"], {"color": "red"})
        health = second.get("/actuator/health")
        self.assertEqual(health.status, 200, health)
        self.assertEqual(health.json()["status"], "UP")
        self.assertIn("degraded", health.text.lower())
        # Refreshing against the missing remote fails softly and keeps serving.
        second.post("/actuator/refresh")
        self.assertEqual(second.get("/orders/dev").status, 200)
        self.assertTrue(second.alive())

    def run(self, result=None):
        before = (len(result.failures), len(result.errors)) if result is not None else None
        outcome = super().run(result)
        if result is not None and (len(result.failures), len(result.errors)) != before:
            for repo, tail in getattr(self, "tails", []):
                print("\n----- almanac-server log (%s) -----\n%s" % (repo, tail))
        return outcome


if __name__ == "__main__":
    unittest.main()
