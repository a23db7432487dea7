"""HTTP behaviour clients rely on: keep-alive and pipelining, HTTP/1.0, Connection: close,
methods on every route, ETags on every configuration response, JSON logs, configuration from
ALMANAC_* environment variables and from --config FILE."""

import json
import os
import re
import unittest

from almanac_harness import Server, ServerTestCase

FILES = {
    "application.yml": "shared: 1\n",
    "orders.yml": "color: red\nport: 8081\n",
    "nginx.conf": "listen ${port};\n",
}


def split_responses(data):
    """Splits raw bytes holding several HTTP/1.1 responses with Content-Length bodies."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower().decode()] = v.strip().decode()
        n = int(headers.get("content-length", "0"))
        out.append((status, headers, rest[:n]))
        data = rest[n:]
    return out


class HttpTest(ServerTestCase):

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit(FILES, "http")
        cls.server = cls.start_server(cls.repo.uri)

    def test_pipelined_requests(self):
        req = (b"GET /orders/dev HTTP/1.1\r\nHost: x\r\n\r\n"
               b"GET /orders-dev.properties HTTP/1.1\r\nHost: x\r\n\r\n"
               b"GET /orders/dev/main/nginx.conf HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answers = split_responses(self.server.raw(req))
        self.assertEqual([a[0] for a in answers], [200, 200, 200])
        self.assertEqual(json.loads(answers[0][2])["name"], "orders")
        self.assertIn(b"color: red", answers[1][2])
        self.assertEqual(answers[2][2], b"listen 8081;\n")

    def test_http10(self):
        answer = self.server.raw(b"GET /orders/dev HTTP/1.0\r\n\r\n")
        self.assertRegex(answer[:12], rb"^HTTP/1\.[01] 200")
        status, headers, body = split_responses(answer)[0]
        self.assertEqual(json.loads(body)["name"], "orders")

    def test_connection_close_honoured(self):
        answer = self.server.raw(b"GET /orders/dev HTTP/1.1\r\nHost: x\r\n"
                                 b"Connection: close\r\n\r\n", timeout=10)
        self.assertEqual(len(split_responses(answer)), 1)

    def test_every_read_route_has_etag_and_304(self):
        for path in ("/orders/dev", "/orders/dev/main", "/orders-dev.yml", "/orders-dev.json",
                     "/main/orders-dev.properties"):
            with self.subTest(path=path):
                r = self.server.get(path)
                self.assertEqual(r.status, 200, r)
                etag = r.header("etag")
                self.assertTrue(etag, r.headers)
                self.assertRegex(etag, r'^(W/)?"[^"]+"$')
                again = self.server.get(path, {"If-None-Match": etag})
                self.assertEqual(again.status, 304, again)
                self.assertEqual(again.body, b"")
                self.assertEqual(again.header("etag"), etag)
                star = self.server.get(path, {"If-None-Match": "*"})
                self.assertEqual(star.status, 304, star)

    def test_etag_differs_between_formats(self):
        tags = {self.server.get(p).header("etag") for p in
                ("/orders/dev", "/orders-dev.yml", "/orders-dev.json", "/orders-dev.properties")}
        self.assertNotIn(None, tags)
        self.assertEqual(len(tags), 4)

    def test_methods(self):
        for path in ("/orders/dev", "/orders-dev.yml", "/orders/dev/main/nginx.conf",
                     "/actuator/health"):
            for method in ("POST", "PUT", "DELETE", "PATCH"):
                with self.subTest(path=path, method=method):
                    r = self.server.request(method, path, body=b"x",
                                            headers={"Content-Type": "text/plain"})
                    self.assertEqual(r.status, 405, r)
            with self.subTest(path=path, method="HEAD"):
                self.assertEqual(self.server.head(path).status, 200)

    def test_options_does_not_serve_config(self):
        r = self.server.request("OPTIONS", "/orders/dev")
        self.assertIn(r.status, (200, 204, 405), r)
        self.assertNotIn(b"color", r.body)


class JsonLogTest(ServerTestCase):
    """--log-format json: every line of the log is one JSON object."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit(FILES, "http")
        cls.server = cls.start_server(cls.repo.uri, extra_args=["--log-format", "json"])

    def test_lines_are_json_with_request_id(self):
        rid = "json-log-req-99"
        self.assertEqual(self.server.get("/orders/dev", {"X-Request-Id": rid}).status, 200)
        self.assertIsNotNone(self.server.wait_for_log(re.escape(rid)))
        found = False
        for line in self.server.log().splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            for key in ("time", "level", "message"):
                self.assertIn(key, entry, line)
            if entry.get("request_id") == rid:
                found = True
        self.assertTrue(found, "no log line carries request_id %s" % rid)


class EnvironmentConfigTest(ServerTestCase):
    """ALMANAC_* variables and --config FILE configure the server like flags do."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit(dict(FILES, **{"sub/orders.yml": "where: sub\n"}), "http")

    def test_environment_variables(self):
        s = Server(self.repo.uri, self.tmp, env={"ALMANAC_SEARCH_PATHS": "sub"})
        type(self).servers.append(s)
        s.start()
        names = [ps["name"] for ps in s.get("/orders/dev").json()["propertySources"]]
        self.assertIn(self.repo.uri + "/sub/orders.yml", names)

    def test_flag_beats_environment(self):
        s = Server(self.repo.uri, self.tmp, search_paths="nosuchdir",
                   env={"ALMANAC_SEARCH_PATHS": "sub"})
        type(self).servers.append(s)
        s.start()
        names = [ps["name"] for ps in s.get("/orders/dev").json()["propertySources"]]
        self.assertNotIn(self.repo.uri + "/sub/orders.yml", names)

    def test_config_file(self):
        path = os.path.join(self.tmp, "almanac.yml")
        with open(path, "w") as f:
            f.write("search-paths: sub\n")
        s = Server(self.repo.uri, self.tmp, extra_args=["--config", path])
        type(self).servers.append(s)
        s.start()
        names = [ps["name"] for ps in s.get("/orders/dev").json()["propertySources"]]
        self.assertIn(self.repo.uri + "/sub/orders.yml", names)

    def test_repo_as_plain_path(self):
        s = Server(self.repo.path, self.tmp)
        type(self).servers.append(s)
        s.start()
        r = s.get("/orders/dev")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["version"], self.repo.head())
        for ps in r.json()["propertySources"]:
            self.assertIn(self.repo.path, ps["name"])

    def test_unknown_flag_fails_with_message(self):
        s = Server(self.repo.uri, self.tmp, extra_args=["--no-such-flag", "1"])
        type(self).servers.append(s)
        s.launch()
        self.assertNotEqual(s.wait_exit(), 0)
        self.assertIn("no-such-flag", s.log())


if __name__ == "__main__":
    unittest.main()
