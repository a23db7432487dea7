"""Many odd but well-formed requests, generated from a fixed seed: every one is answered with a
client error or a success (never a 5xx, never a dropped connection), every error carries the
JSON error body, and the server is still alive at the end. Run it against a sanitizer build to
turn it into a memory-safety check of the request path."""

import json
import random
import unittest

from almanac_harness import ServerTestCase

SEED = 20261122
REQUESTS = 1500

PIECES = ["orders", "payments", "app", "dev", "prod", "main", "v1", "a", "-", "--", ",", ",,",
          ".", "..", "...", "(_)", "(_", "_)", "%", "%2", "%2e", "%2E", "%2f", "%2F", "%25",
          "%252e", "%00", "%0a", "%0d%0a", "%20", "+", "@", "%40", "~", "!", "$", "'", "*",
          ";", "=", "&", "[", "]", "[0]", "{", "}", "%7B", "%7D", "%c3%a9", "%e2%82%ac",
          "%f0%9f%9a%80", "%ff", "%c0%af", "\\", "%5c", ":", "#x".replace("#", "%23"),
          ".yml", ".yaml", ".json", ".properties", ".txt", "x" * 300]
SUFFIXES = ["", "?resolvePlaceholders=false", "?useDefaultLabel", "?watch=%22x%22&timeout=0",
            "?watch=&timeout=", "?timeout=-1&watch=1", "?a=%ff", "?=&&=="]
OK_STATUSES = {200, 304, 400, 404, 405, 414}


def random_segment(rng):
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 4)))


def field(rng, valid):
    """A valid value most of the time, else a valid one with odd pieces around it, else junk."""
    roll = rng.random()
    if roll < 0.5:
        return rng.choice(valid)
    if roll < 0.8:
        return rng.choice(["", rng.choice(PIECES)]) + rng.choice(valid) + rng.choice(PIECES)
    return random_segment(rng)


def random_path(rng):
    names = ["orders", "payments", "app", "orders,payments", "orders(_)sub"]
    profiles = ["dev", "prod", "dev,prod", "default", "a-b_c.d+e@f"]
    labels = ["main", "v1", "(_)main", "feature(_)x"]
    kind = rng.randrange(5)
    if kind == 0:
        path = "/%s/%s" % (field(rng, names), field(rng, profiles))
    elif kind == 1:
        path = "/%s/%s/%s" % (field(rng, names), field(rng, profiles), field(rng, labels))
    elif kind == 2:
        path = "/%s-%s%s" % (field(rng, names), field(rng, profiles),
                             rng.choice([".yml", ".yaml", ".json", ".properties", ".txt"]))
        if rng.random() < 0.3:
            path = "/" + field(rng, labels) + path
    elif kind == 3:
        path = "/%s/%s/%s/%s" % (field(rng, names), field(rng, profiles), field(rng, labels),
                                 field(rng, ["notes.txt", "sub(_)notes.txt", "orders.yml"]))
    else:
        path = "/" + "/".join(random_segment(rng) for _ in range(rng.randint(1, 6)))
    return path + rng.choice(SUFFIXES)


class RobustnessTest(ServerTestCase):

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit({"application.yml": "shared: ${orders.color:none}\n",
                         "orders.yml": "color: red\nlist: [1, 2]\n",
                         "orders-dev.properties": "a.b=c\n",
                         "app-dev.yml": "x: ${x}\n",
                         "notes.txt": "n ${color}\n"}, "robustness")
        cls.repo.tag("v1")
        cls.server = cls.start_server(cls.repo.uri, search_paths="{application},{profile}")

    def test_random_paths(self):
        rng = random.Random(SEED)
        bad = []
        for _ in range(REQUESTS):
            path = random_path(rng)
            method = rng.choice(["GET", "GET", "GET", "HEAD"])
            r = self.server.request(method, path)
            if r.status not in OK_STATUSES:
                bad.append((method, path, r.status, r.body[:200]))
                continue
            if r.status >= 400 and method == "GET":
                try:
                    body = json.loads(r.body)
                    assert body["status"] == r.status
                except Exception:  # any malformed error body is reported
                    bad.append((method, path, r.status, "error body: %r" % r.body[:200]))
        self.assertEqual(bad[:10], [])
        self.assertTrue(self.server.alive())
        self.assertEqual(self.server.get("/orders/dev").status, 200)

    def test_random_headers(self):
        rng = random.Random(SEED + 1)
        values = ["", " ", "x" * 2000, "\t", "application/json", "*/*", "Basic", "Basic Og==",
                  "Bearer", "Bearer " + "A" * 500, "\"\"", "W/\"x\"", "*", ",,,",
                  "application/vnd.spring-cloud.config-server.v2+json;q=0.5, text/plain"]
        names = ["Accept", "Authorization", "If-None-Match", "X-Request-Id", "Last-Event-ID",
                 "Accept-Encoding", "Range", "Expect", "traceparent", "Cookie"]
        bad = []
        for _ in range(300):
            headers = {rng.choice(names): rng.choice(values) for _ in range(rng.randint(1, 4))}
            path = rng.choice(["/orders/dev", "/orders-dev.yml", "/orders/dev/main/notes.txt",
                               "/actuator/health", "/orders/dev/v1"])
            r = self.server.get(path, headers)
            if r.status not in OK_STATUSES | {406, 416, 417}:
                bad.append((path, headers, r.status, r.body[:200]))
        self.assertEqual(bad[:10], [])
        self.assertTrue(self.server.alive())


if __name__ == "__main__":
    unittest.main()
