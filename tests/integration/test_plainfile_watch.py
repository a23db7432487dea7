"""Plain files are first-class: `GET /{app}/{profile}/{label}/{path}` carries an ETag (a digest
of the rendered bytes), answers `If-None-Match` with 304, and `?watch=<etag>&timeout=` parks the
caller until the rendered file changes: an edit of the file itself, or of a value one of its
placeholders uses. A commit that leaves the rendered file as it was wakes nobody."""

import http.client
import json
import re
import socket
import threading
import unittest

from almanac_harness import ServerTestCase, wait_until

NGINX = "server_name ${gw.host};\nadd_header X-Version v1;\n"

FILES = {
    "application.yml": "company: Example\n",
    "gw.yml": "gw:\n  host: gw.example.com\n",
    "gw-prod.yml": "gw:\n  host: gw.prod.example.com\n",
    "other.yml": "unrelated: 1\n",
    "nginx.conf": NGINX,
    "static.txt": "no placeholders here\n",
}


def long_poll(port, path, timeout):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout + 30)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


class Poller(threading.Thread):
    def __init__(self, port, path, timeout):
        super().__init__(daemon=True)
        self.args = (port, path, timeout)
        self.result = None

    def run(self):
        try:
            self.result = long_poll(*self.args)
        except Exception as e:  # surfaced by the test's assertions
            self.result = e


def parked_watchers(server):
    for line in server.get("/metrics").text.splitlines():
        if line.startswith("almanac_watchers "):
            return int(float(line.split()[-1]))
    return -1


class PlainFileEtagTest(ServerTestCase):

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit(FILES, "plain files")
        cls.server = cls.start_server(cls.repo.uri)

    def setUp(self):
        # Each test starts from the same content (a new commit when a test changed it).
        self.repo.commit(FILES, "reset")
        self.server.refresh()

    def get(self, path, headers=None):
        r = self.server.get(path, headers)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("ETag"), "no ETag on " + path)
        return r

    def watch(self, path, etag, timeout):
        sep = "&" if "?" in path else "?"
        return Poller(self.server.port, "%s%swatch=%s&timeout=%d" % (path, sep, etag.strip('"'),
                                                                     timeout), timeout)

    def commit_and_refresh(self, files, message):
        commit = self.repo.commit(files, message)
        self.server.refresh()
        return commit

    def test_etag_and_if_none_match(self):
        r = self.get("/gw/prod/main/nginx.conf")
        tag = r.header("ETag")
        self.assertRegex(tag, r'^"[0-9a-f]{32}"$')
        self.assertEqual(r.text, "server_name gw.prod.example.com;\nadd_header X-Version v1;\n")
        again = self.server.get("/gw/prod/main/nginx.conf", {"If-None-Match": tag})
        self.assertEqual((again.status, again.body, again.header("ETag")), (304, b"", tag))
        # Another tag, or none: the file itself.
        other = self.server.get("/gw/prod/main/nginx.conf", {"If-None-Match": '"0000"'})
        self.assertEqual((other.status, other.body), (200, r.body))
        # The same file rendered for another profile is other bytes, another tag.
        self.assertNotEqual(self.get("/gw/dev/main/nginx.conf").header("ETag"), tag)
        # Equal bytes, equal tag, whichever way the file is named.
        self.assertEqual(self.get("/gw/prod/nginx.conf?useDefaultLabel").header("ETag"), tag)

    def test_a_commit_that_leaves_the_rendered_file_alone_keeps_its_tag(self):
        tag = self.get("/gw/prod/main/nginx.conf").header("ETag")
        self.commit_and_refresh({"other.yml": "unrelated: 2\n",
                                 "gw.yml": "gw:\n  host: gw.example.com\n  unused: x\n"},
                                "nothing nginx.conf uses")
        r = self.server.get("/gw/prod/main/nginx.conf", {"If-None-Match": tag})
        self.assertEqual(r.status, 304, r)

    def test_watch_is_woken_by_an_edit_of_the_file_only(self):
        conf_tag = self.get("/gw/prod/main/nginx.conf").header("ETag")
        static_tag = self.get("/gw/prod/main/static.txt").header("ETag")
        conf = self.watch("/gw/prod/main/nginx.conf", conf_tag, 30)
        static = self.watch("/gw/prod/main/static.txt", static_tag, 4)
        conf.start()
        static.start()
        self.assertTrue(wait_until(lambda: parked_watchers(self.server) == 2))
        self.commit_and_refresh({"nginx.conf": NGINX.replace("v1", "v2")}, "v2")
        conf.join(20)
        self.assertFalse(conf.is_alive(), "the nginx.conf watcher was not woken")
        status, headers, body = conf.result
        self.assertEqual(status, 200)
        self.assertEqual(body, b"server_name gw.prod.example.com;\nadd_header X-Version v2;\n")
        self.assertNotEqual(headers["etag"], conf_tag)
        self.assertEqual(headers["etag"], self.get("/gw/prod/main/nginx.conf").header("ETag"))
        static.join(20)
        status, headers, body = static.result
        self.assertEqual((status, headers["etag"], body), (304, static_tag, b""),
                         "static.txt did not change: its watcher must time out")

    def test_watch_is_woken_by_a_placeholder_only_change(self):
        conf_tag = self.get("/gw/prod/main/nginx.conf").header("ETag")
        dev_tag = self.get("/gw/dev/main/nginx.conf").header("ETag")
        prod = self.watch("/gw/prod/main/nginx.conf", conf_tag, 30)
        dev = self.watch("/gw/dev/main/nginx.conf", dev_tag, 4)
        prod.start()
        dev.start()
        self.assertTrue(wait_until(lambda: parked_watchers(self.server) == 2))
        # Only the prod value changes; nginx.conf itself is not touched.
        self.commit_and_refresh({"gw-prod.yml": "gw:\n  host: new.prod.example.com\n"},
                                "move the prod host")
        prod.join(20)
        self.assertFalse(prod.is_alive(), "a placeholder change must wake the file's watcher")
        status, headers, body = prod.result
        self.assertEqual(status, 200)
        self.assertIn(b"server_name new.prod.example.com;", body)
        dev.join(20)
        self.assertEqual(dev.result[0], 304, "the dev rendering did not change")
        self.assertEqual(dev.result[1]["etag"], dev_tag)

    def test_stale_tag_is_answered_at_once_and_timeout_is_304(self):
        current = self.get("/gw/prod/main/nginx.conf")
        status, headers, body = long_poll(self.server.port,
                                          "/gw/prod/main/nginx.conf?watch=%22old%22&timeout=60", 60)
        self.assertEqual((status, headers["etag"], body),
                         (200, current.header("ETag"), current.body))
        status, headers, body = long_poll(
            self.server.port, "/gw/prod/nginx.conf?useDefaultLabel&watch=%s&timeout=1"
            % current.header("ETag").strip('"'), 1)
        self.assertEqual((status, headers["etag"], body), (304, current.header("ETag"), b""))

    def test_events_name_the_changed_plain_files(self):
        sock = socket.create_connection(("127.0.0.1", self.server.port), timeout=20)
        try:
            sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
            received = b""
            while b"retry:" not in received:
                received += sock.recv(4096)
            plain = self.commit_and_refresh({"nginx.conf": NGINX.replace("v1", "v9"),
                                             "static.txt": "changed\n"}, "two plain files")
            config = self.commit_and_refresh({"other.yml": "unrelated: 9\n"}, "a config file")
            events = []
            while len(events) < 2:
                chunk = sock.recv(4096)
                self.assertTrue(chunk, "stream closed")
                received += chunk
                events = [json.loads(m) for m in
                          re.findall(r"event: refresh\r?\ndata: (\{.*\})", received.decode())]
                events = [e for e in events if e["commit"] in (plain, config)]
        finally:
            sock.close()
        self.assertEqual(events[0], {"commit": plain, "applications": [],
                                     "files": ["nginx.conf", "static.txt"]})
        # Configuration files are named through their applications, as before.
        self.assertEqual(events[1], {"commit": config, "applications": ["other"]})

    def test_watch_errors(self):
        r = self.server.get("/gw/prod/main/missing.conf?watch=abc&timeout=5")
        self.assertEqual(r.status, 404, r)
        r = self.server.get("/gw/prod/main/nginx.conf?watch=abc&timeout=zero")
        self.assertEqual(r.status, 400, r)


if __name__ == "__main__":
    unittest.main()
