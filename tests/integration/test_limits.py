"""Limits on what one client may take: request body (413), request head (431), connections per
address, parked watchers per address (429), idle and slow connections closed after
--idle-timeout — and hundreds of idle or half-sent sockets never starve a real request.

A second client address is 127.0.0.2: on Linux the whole 127/8 reaches the loopback listener.
"""

import re
import resource
import shutil
import socket
import subprocess
import time
import unittest

from almanac_harness import ServerTestCase

FILES = {"orders.yml": "color: red\n", "billing.yml": "color: blue\n"}
DEADLINE = 20.0


def connect(port, source="127.0.0.1"):
    return socket.create_connection(("127.0.0.1", port), timeout=DEADLINE,
                                    source_address=(source, 0))


def read_response(sock):
    """Reads one Connection: close answer; b"" when the server closed or reset instead."""
    chunks = []
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except (ConnectionResetError, socket.timeout):
        pass
    return b"".join(chunks)


def read_status_line(sock):
    """The first line of a keep-alive answer; b"" when the server closed or reset instead."""
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    return data


def get(port, path, source="127.0.0.1"):
    s = connect(port, source)
    try:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
        return read_response(s)
    finally:
        s.close()


def status_of(answer):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    return int(m.group(1)) if m else None


class BodyAndHeaderLimitTest(ServerTestCase):

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit(FILES, "limits")
        cls.server = cls.start_server(cls.repo.uri, extra_args=[
            "--max-body-bytes", "1k", "--max-header-bytes", "8k"])

    def test_body_over_the_cap_is_413(self):
        for path in ("/encrypt", "/decrypt", "/monitor", "/actuator/refresh"):
            with self.subTest(path=path):
                r = self.server.post(path, b"x" * 1025, {"Content-Type": "text/plain"})
                self.assertErrorBody(r, 413)
        self.assertNotEqual(self.server.post("/encrypt", b"x" * 1024,
                                             {"Content-Type": "text/plain"}).status, 413)

    def test_chunked_body_over_the_cap_is_413(self):
        chunks = b"".join(b"200\r\n" + b"y" * 0x200 + b"\r\n" for _ in range(4)) + b"0\r\n\r\n"
        answer = self.server.raw(b"POST /encrypt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                                 b"chunked\r\nConnection: close\r\n\r\n" + chunks)
        self.assertEqual(status_of(answer), 413, answer[:200])

    def test_head_over_the_cap_is_431(self):
        big = b"X-Filler: " + b"v" * 9000 + b"\r\n"
        answer = self.server.raw(b"GET /orders/dev HTTP/1.1\r\nHost: x\r\n" + big +
                                 b"Connection: close\r\n\r\n")
        self.assertEqual(status_of(answer), 431, answer[:200])
        many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(100))
        answer = self.server.raw(b"GET /orders/dev HTTP/1.1\r\nHost: x\r\n" + many +
                                 b"Connection: close\r\n\r\n")
        self.assertEqual(status_of(answer), 431, answer[:200])
        # Under the cap is fine, and the server is still there.
        self.assertEqual(self.server.get("/orders/dev", {"X-Filler": "v" * 4000}).status, 200)


class ConnectionsPerAddressTest(ServerTestCase):

    LIMIT = 20

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit(FILES, "limits")
        cls.server = cls.start_server(cls.repo.uri, extra_args=[
            "--max-connections-per-ip", str(cls.LIMIT)])

    # Each test uses its own addresses: a socket another test closed may not be reaped yet.

    def test_one_address_gets_its_share_and_no_more(self):
        socks = [connect(self.server.port, "127.0.0.3") for _ in range(2 * self.LIMIT)]
        try:
            # The first LIMIT are served and kept alive (so they keep counting); the others
            # are closed when accepted, whenever that is.
            answered = 0
            for s in socks:
                try:
                    s.sendall(b"GET /orders/dev HTTP/1.1\r\nHost: x\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    continue
                if status_of(read_status_line(s)) == 200:
                    answered += 1
            self.assertEqual(answered, self.LIMIT)
        finally:
            for s in socks:
                s.close()

    def test_another_address_is_not_starved(self):
        socks = [connect(self.server.port, "127.0.0.4") for _ in range(self.LIMIT + 5)]
        try:
            self.assertEqual(status_of(get(self.server.port, "/orders/dev", "127.0.0.5")), 200)
        finally:
            for s in socks:
                s.close()


class IdleSocketsTest(ServerTestCase):
    """300 idle sockets and 300 half-sent requests hold no worker: a real request is answered
    while they are all open — from another address when they exceed the per-address share,
    and from the same one when they do not."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit(FILES, "limits")
        cls.default = cls.start_server(cls.repo.uri, extra_args=["--threads", "1"])
        cls.generous = cls.start_server(cls.repo.uri, extra_args=[
            "--threads", "1", "--max-connections-per-ip", "1000"])

    def hold(self, port, count, partial):
        socks = []
        for _ in range(count):
            s = connect(port)
            if partial:  # a slowloris client: a request line, one header, then nothing
                s.sendall(b"GET /orders/dev HTTP/1.1\r\nHost: x\r\n")
            socks.append(s)
        return socks

    def test_idle_and_slow_sockets_do_not_starve(self):
        for partial in (False, True):
            for server, source in ((self.default, "127.0.0.2"), (self.generous, "127.0.0.1")):
                with self.subTest(partial=partial, source=source):
                    socks = self.hold(server.port, 300, partial)
                    try:
                        for path in ("/orders/dev", "/billing/dev", "/actuator/health"):
                            self.assertEqual(status_of(get(server.port, path, source)), 200)
                    finally:
                        for s in socks:
                            s.close()
        self.assertTrue(self.default.alive() and self.generous.alive())


class IdleTimeoutTest(ServerTestCase):

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit(FILES, "limits")
        cls.server = cls.start_server(cls.repo.uri, extra_args=["--idle-timeout", "1"])

    def test_silent_and_slow_connections_are_closed(self):
        for opening in (b"", b"GET /orders/dev HTTP/1.1\r\nHost: x\r\n"):
            with self.subTest(opening=opening):
                s = connect(self.server.port)
                try:
                    if opening:
                        s.sendall(opening)
                    # The server closes it, well before our own deadline.
                    s.settimeout(DEADLINE)
                    try:
                        while s.recv(65536):
                            pass
                    except ConnectionResetError:
                        pass
                    except socket.timeout:
                        self.fail("the server kept a silent connection open")
                finally:
                    s.close()
        self.assertEqual(self.server.get("/orders/dev").status, 200)


class WatchersPerAddressTest(ServerTestCase):

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit(FILES, "limits")
        cls.server = cls.start_server(cls.repo.uri, extra_args=["--max-watchers-per-ip", "2"])

    def watchers(self):
        text = self.server.get("/metrics").text
        return int(re.search(r"^almanac_watchers (\d+)", text, re.M).group(1))

    def wait_watchers(self, n):
        end = time.monotonic() + DEADLINE
        while self.watchers() != n:
            self.assertLess(time.monotonic(), end, "never saw %d parked watchers" % n)
            time.sleep(0.02)

    def park(self, tag, source="127.0.0.1"):
        s = connect(self.server.port, source)
        s.sendall(b"GET /orders/dev?watch=%s&timeout=120 HTTP/1.1\r\nHost: x\r\n"
                  b"Connection: close\r\n\r\n" % tag.encode())
        return s

    def test_third_watcher_from_one_address_is_429(self):
        tag = self.server.get("/orders/dev").header("etag").strip('"')
        socks = []
        try:
            socks.append(self.park(tag))
            socks.append(self.park(tag))
            self.wait_watchers(2)
            self.assertEqual(status_of(get(self.server.port, "/orders/dev?watch=%s&timeout=120"
                                           % tag)), 429)
            # the refusal names the setting an operator raises, once
            self.server.wait_for_log(r"watch refused with 429: .* reached --max-watchers-per-ip")
            self.assertEqual(status_of(get(self.server.port, "/orders/dev?watch=%s&timeout=120"
                                           % tag)), 429)
            socks.append(self.park(tag, "127.0.0.2"))  # another address has its own share
            self.wait_watchers(3)
            self.assertEqual(len(re.findall(r"watch refused with 429", self.server.log())), 1)
            details = self.server.get("/actuator/health").json()["components"]["watchers"]["details"]
            self.assertEqual((details["parked"], details["maxPerAddress"]), (3, 2))
            self.assertEqual(details["max"], 16384)  # --max-connections' default
            self.assertGreaterEqual(details["openFilesLimit"], 1024)
            self.assertRegex(self.server.get("/metrics").text, r"(?m)^almanac_watchers_max 16384$")
            self.server.wait_for_log(r"open files: \d+ \(soft limit raised from \d+")
        finally:
            for s in socks:
                s.close()


class OpenFilesShortOfConnectionsTest(ServerTestCase):
    """--max-connections beyond what the hard open-file limit can hold is said at start."""

    @classmethod
    def setUpServers(cls):
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        # each connection, and as many parked watchers, hold a descriptor
        cls.max_connections = min(1000000, hard)
        if hard == resource.RLIM_INFINITY or 2 * cls.max_connections + 64 <= hard:
            raise unittest.SkipTest("the hard open-file limit (%s) holds any --max-connections"
                                    % hard)
        cls.repo = cls.make_repo()
        cls.repo.commit(FILES, "limits")
        cls.server = cls.start_server(cls.repo.uri, extra_args=[
            "--max-connections", str(cls.max_connections)])

    def test_the_start_names_the_setting_and_the_limit(self):
        self.server.wait_for_log(r"open files: \d+ is below the \d+ that --max-connections %d "
                                 r"may need .* raise the hard limit" % self.max_connections)
        self.assertEqual(self.server.get("/orders/dev").status, 200)


class ListenBacklogTest(ServerTestCase):
    """The listening socket asks for a backlog the kernel cuts to net.core.somaxconn, so that
    raising that sysctl is all a fleet reconnecting at once needs."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit(FILES, "limits")
        cls.server = cls.start_server(cls.repo.uri)

    def test_backlog_is_somaxconn(self):
        if shutil.which("ss") is None:
            self.skipTest("ss (iproute2) is not installed")
        with open("/proc/sys/net/core/somaxconn") as f:
            somaxconn = int(f.read())
        out = subprocess.run(["ss", "-Hltn", "sport = :%d" % self.server.port],
                             capture_output=True, text=True, check=True).stdout
        # State Recv-Q Send-Q Local Peer: for a listening socket Send-Q is its backlog
        backlogs = {int(line.split()[2]) for line in out.splitlines() if line.strip()}
        self.assertEqual(backlogs, {min(somaxconn, 65535)}, out)


if __name__ == "__main__":
    unittest.main()
