"""Parked watchers outside libmicrohttpd: a long poll's socket leaves the HTTP library while it
waits, and the parking thread writes its answer and closes the connection. These tests hold
the connection level to account: the answer is complete and well-formed and the connection
ends cleanly after it (for HTTP/1.1 and 1.0 alike), HEAD gets no body, an answer larger than
the socket buffers arrives whole, a client that hangs up gives its socket back at once, and a
parked socket survives libmicrohttpd closing its own descriptor of it."""

import os
import re
import shutil
import socket
import tempfile
import time
import unittest

from almanac_harness import GitRepo, Server, require_server_bin, wait_until


class RawConnection:
    """One client socket, requests written by hand, responses read by Content-Length."""

    def __init__(self, port, timeout=30):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.pending = b""

    def send(self, method, path, version="HTTP/1.1", headers=()):
        lines = ["%s %s %s" % (method, path, version), "Host: test"] + list(headers)
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("the server closed the connection")
        self.pending += chunk

    def response(self, head_only=False):
        """(status, headers with lower-case names, body)."""
        while b"\r\n\r\n" not in self.pending:
            self._fill()
        head, self.pending = self.pending.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if head_only or status in (204, 304) else int(headers.get("content-length", 0))
        while len(self.pending) < length:
            self._fill()
        body, self.pending = self.pending[:length], self.pending[length:]
        return status, headers, body

    def closed_by_server(self, wait=10):
        """True when the server ends the stream (no byte may arrive before the end)."""
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


class ParkedWatcherTest(unittest.TestCase):
    def setUp(self):
        require_server_bin()
        self.tmp = tempfile.mkdtemp(prefix="almanac-parked-")
        self.repo = GitRepo(self.tmp)
        self.repo.commit({"orders.yml": "orders:\n  limit: 1\n"}, "first")
        self.server = Server(self.repo.uri, self.tmp).start()

    def tearDown(self):
        try:
            if self.server.alive():
                self.assertEqual(self.server.stop(), 0, self.server.log_tail())
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def etag(self, path="/orders/dev"):
        r = self.server.get(path)
        self.assertEqual(r.status, 200, r)
        return r.header("ETag")

    def watchers(self):
        m = re.search(r"^almanac_watchers (\d+)", self.server.get("/metrics").text, re.M)
        return int(m.group(1))

    def descriptors(self):
        return len(os.listdir("/proc/%d/fd" % self.server.proc.pid))

    def change(self, limit):
        commit = self.repo.commit({"orders.yml": "orders:\n  limit: %d\n" % limit}, "change")
        self.assertEqual(self.server.refresh().status, 200)
        return commit

    def test_a_wake_and_a_timeout_answer_then_close_the_connection(self):
        tag = self.etag()
        conn = RawConnection(self.server.port)
        try:
            # An ordinary request first: the connection is kept alive until the watch parks.
            conn.send("GET", "/orders/prod")
            self.assertEqual(conn.response()[0], 200)
            conn.send("GET", "/orders/dev?watch=%s&timeout=60" % tag.strip('"'))
            self.assertTrue(wait_until(lambda: self.watchers() == 1))
            commit = self.change(2)
            status, headers, body = conn.response()
            self.assertEqual(status, 200)
            self.assertIn('"version":"%s"' % commit, body.decode())
            self.assertEqual(headers["connection"], "close")
            self.assertEqual(headers["content-type"], "application/json")
            self.assertRegex(headers["date"], r"^\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT$")
            self.assertTrue(conn.closed_by_server())
            new_tag = headers["etag"]
            self.assertNotEqual(new_tag, tag)
        finally:
            conn.close()
        conn = RawConnection(self.server.port)
        try:
            conn.send("GET", "/orders/dev?watch=%s&timeout=1" % new_tag.strip('"'))
            status, headers, body = conn.response()
            self.assertEqual((status, headers["etag"], body), (304, new_tag, b""))
            self.assertNotIn("content-length", headers)
            self.assertTrue(conn.closed_by_server())
        finally:
            conn.close()
        self.assertEqual(self.server.get("/orders/dev").header("ETag"), new_tag)

    def test_http10_and_connection_close_clients_get_the_same_ending(self):
        tag = self.etag()
        for version, headers in (("HTTP/1.0", ()), ("HTTP/1.1", ("Connection: close",))):
            conn = RawConnection(self.server.port)
            try:
                conn.send("GET", "/orders/dev?watch=%s&timeout=1" % tag, version, headers)
                status, answer_headers, _ = conn.response()
                self.assertEqual(status, 304, version)
                self.assertEqual(answer_headers.get("connection"), "close")
                self.assertTrue(conn.closed_by_server(), version)
            finally:
                conn.close()

    def test_head_watch_is_answered_without_a_body(self):
        tag = self.etag()
        conn = RawConnection(self.server.port)
        try:
            conn.send("HEAD", "/orders/dev?watch=%s&timeout=60" % tag)
            self.assertTrue(wait_until(lambda: self.watchers() == 1))
            self.change(3)
            status, headers, _ = conn.response(head_only=True)
            self.assertEqual(status, 200)
            self.assertGreater(int(headers["content-length"]), 0)
            # Not one byte of body before the end of the stream.
            self.assertEqual(conn.pending, b"")
            self.assertTrue(conn.closed_by_server())
        finally:
            conn.close()

    def test_clients_that_hang_up_give_their_sockets_back_at_once(self):
        tag = self.etag()
        before = self.descriptors()
        clients = [RawConnection(self.server.port) for _ in range(20)]
        for c in clients:
            c.send("GET", "/orders/dev?watch=%s&timeout=300" % tag)
        self.assertTrue(wait_until(lambda: self.watchers() == 20))
        self.assertGreaterEqual(self.descriptors(), before + 20)
        for c in clients:
            c.close()
        # Long before the 300 s deadline, every parked socket is closed.
        self.assertTrue(wait_until(lambda: self.descriptors() <= before),
                        "%d descriptors, %d before" % (self.descriptors(), before))
        # Their records are answered (to nobody) when the change comes, and the server goes on.
        self.change(4)
        self.assertTrue(wait_until(lambda: self.watchers() == 0))
        self.assertEqual(self.server.get("/orders/dev").status, 200)
        self.assertIn("(client gone)", self.server.log())

    def test_an_answer_larger_than_the_socket_buffers_arrives_whole(self):
        # A slow reader with a small receive buffer and an answer (about 6 MB) larger than the
        # server's send buffer can grow (4 MB here): it cannot go out in one write, so the
        # parking thread has to wait for the socket to drain, several times.
        def big(marker, prefix):
            return "".join("%s%05d: %s-%s\n" % (prefix, i, marker, "v" * 90)
                           for i in range(30000))
        self.repo.commit({"large.yml": big("a", "base"), "large-dev.yml": big("a", "key")},
                         "large")
        self.assertEqual(self.server.refresh().status, 200)
        tag = self.etag("/large/dev")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", self.server.port))
        conn = RawConnection.__new__(RawConnection)
        conn.sock, conn.pending = sock, b""
        try:
            conn.send("GET", "/large/dev?watch=%s&timeout=60" % tag)
            self.assertTrue(wait_until(lambda: self.watchers() == 1))
            self.repo.commit({"large-dev.yml": big("b", "key")}, "larger")
            self.assertEqual(self.server.refresh().status, 200)
            time.sleep(0.5)  # let the server fill every buffer before anything is read
            status, headers, body = conn.response()
            self.assertEqual(status, 200)
            self.assertGreater(len(body), 6000000)
            self.assertEqual(len(body), int(headers["content-length"]))
            self.assertIn(b'"key29999":"b-', body)
            self.assertIn(b'"base29999":"a-', body)
            self.assertTrue(conn.closed_by_server())
        finally:
            conn.close()

    def test_many_parked_watchers_wake_on_their_own_connections(self):
        tag = self.etag()
        clients = [RawConnection(self.server.port) for _ in range(50)]
        try:
            for c in clients:
                c.send("GET", "/orders/dev?watch=%s&timeout=120" % tag)
            self.assertTrue(wait_until(lambda: self.watchers() == 50))
            commit = self.change(5)
            for c in clients:
                status, headers, body = c.response()
                self.assertEqual(status, 200)
                self.assertIn('"version":"%s"' % commit, body.decode())
                self.assertTrue(c.closed_by_server())
        finally:
            for c in clients:
                c.close()


if __name__ == "__main__":
    unittest.main()
