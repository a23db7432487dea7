"""Every fetch is bounded, and no request waits on Git.

The remote is a real `git daemon` (in inetd mode, one per connection) behind a small TCP proxy
written here, which the tests switch between passing bytes through, accepting and then saying
nothing, and stopping in the middle of a pack. While a fetch is stuck, reads, health and metrics
must answer (and do so while the proxy still holds the stuck connection: an ordering, not a
stopwatch); after --git-timeout the repository shows DEGRADED "fetch timed out after N s" and
metrics count result="timeout"; the mirror keeps no lock or temporary file; the next refresh,
once the remote answers again, fetches; SIGTERM ends the server even with a fetch stuck.

Fetches run in a long-lived worker process (`almanac-server git-fetch --serve`) that the server
reuses: one worker serves fetch after fetch; one killed while idle is replaced without a failed
fetch; one killed in the middle of a fetch costs that fetch only; one stuck past the deadline is
killed and a new worker serves the next fetch.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import unittest

from almanac_harness import ServerTestCase, GitRepo, Server, wait_until

GIT_TIMEOUT = 15  # longer than the 10 s POST /actuator/refresh waits, so that it answers 202


class StallingProxy:
    """TCP proxy in front of `git daemon --inetd`. mode (read when a connection is accepted):
    "pass" forwards everything; "silent" accepts and never answers; "midpack" forwards the
    daemon's answer until a little after the start of the pack, then holds the connection."""

    def __init__(self, base_path):
        if shutil.which("git") is None:
            raise unittest.SkipTest("git is not installed")
        self.base_path = base_path
        self.mode = "pass"
        self.lock = threading.Lock()
        self.conns = []          # [(socket, closed Event)], every connection accepted
        self.daemons = []
        self.stalls = 0          # connections that were held, in either stalling mode
        self.pack_bytes_sent = 0  # bytes of pack forwarded before a mid-pack stall
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.closing = False
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def url(self, name):
        return "git://127.0.0.1:%d/%s" % (self.port, name)

    def holding(self):
        """True while a stalled connection is still open at the client's end."""
        with self.lock:
            return any(held and not closed.is_set() for _, closed, held in self.conns)

    def stall_count(self):
        with self.lock:
            return self.stalls

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.closing:
                conn.close()
                return
            threading.Thread(target=self._serve, args=(conn, self.mode), daemon=True).start()

    def _drain(self, conn, closed, sink=None):
        """Reads what the client sends (to sink, if any) until it closes its end."""
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                if sink is not None:
                    sink.write(data)
                    sink.flush()
        except (OSError, ValueError):
            pass
        closed.set()
        if sink is not None:
            try:
                sink.close()
            except OSError:
                pass

    def _serve(self, conn, mode):
        closed = threading.Event()
        entry = [conn, closed, False]
        with self.lock:
            self.conns.append(entry)
        if mode == "silent":
            with self.lock:
                entry[2] = True
                self.stalls += 1
            self._drain(conn, closed)
            return
        daemon = subprocess.Popen(
            ["git", "daemon", "--inetd", "--export-all", "--base-path=" + self.base_path,
             self.base_path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        with self.lock:
            self.daemons.append(daemon)
        threading.Thread(target=self._drain, args=(conn, closed, daemon.stdin),
                         daemon=True).start()
        stream = b""
        sent = 0
        try:
            while True:
                data = os.read(daemon.stdout.fileno(), 65536)
                if not data:
                    break
                if mode != "midpack":
                    conn.sendall(data)
                    continue
                stream += data
                start = stream.find(b"PACK")
                if start >= 0 and len(stream) > start + 4096:
                    conn.sendall(stream[sent:start + 4096])
                    with self.lock:
                        entry[2] = True
                        self.stalls += 1
                        self.pack_bytes_sent = 4096
                    return  # hold: the rest of the pack never comes
                conn.sendall(stream[sent:])
                sent = len(stream)
        except OSError:
            pass
        try:
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        # Closing the listening socket alone would leave this thread blocked in accept(), and its
        # descriptor number free for the next proxy's socket: this thread would then take that
        # proxy's connections and serve them from a base path that is gone. shutdown() wakes it.
        self.closing = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.acceptor.join(timeout=10)
        self.sock.close()
        with self.lock:
            for conn, _, _ in self.conns:
                try:
                    conn.close()
                except OSError:
                    pass
            for d in self.daemons:
                if d.poll() is None:
                    d.kill()
                d.wait()


def quick_get(port, path):
    """One request on its own connection: (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def fetch_workers(server_pid):
    """Pids of the server's live fetch workers (children running `git-fetch`, zombies left out)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")"
        state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
        if int(ppid) == server_pid and state != "Z" and b"git-fetch" in argv[1:2]:
            found.append(int(entry))
    return found


def gone(pid):
    """True once pid has exited (a zombie counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def quick_post(port, path):
    """A POST on its own connection (long enough for a parked refresh): (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=GIT_TIMEOUT * 2)
    try:
        conn.request("POST", path, body=b"")
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def leftovers(cache_dir):
    """Lock files and temporary pack files anywhere under the cache directory."""
    found = []
    for root, _, files in os.walk(cache_dir):
        for name in files:
            in_pack = root.endswith(os.path.join("objects", "pack"))
            if name.endswith(".lock") or (in_pack and not name.startswith("pack-")):
                found.append(os.path.join(root, name))
    return found


class StalledRemoteTest(ServerTestCase):
    @classmethod
    def setUpServers(cls):
        cls.work = GitRepo(cls.tmp, "work")
        cls.work.commit({"application.yml": "greeting: first\n"}, "first")
        cls.base = os.path.join(cls.tmp, "served")
        os.makedirs(cls.base)
        cls.origin = os.path.join(cls.base, "origin.git")
        subprocess.run(["git", "clone", "-q", "--bare", cls.work.path, cls.origin], check=True)
        cls.proxy = StallingProxy(cls.base)
        cls.server = cls.start_server(cls.proxy.url("origin.git"),
                                      extra_args=["--git-timeout", str(GIT_TIMEOUT)])

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.proxy.close()

    def push(self, files, message):
        commit = self.work.commit(files, message)
        self.work.git("push", "-q", self.origin, "main")
        return commit

    def health(self):
        status, body = quick_get(self.server.port, "/actuator/health")
        self.assertEqual(status, 200)
        return json.loads(body)["components"]["repository"]

    def metric(self, text, name):
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def fetch_metric(self, result):
        _, body = quick_get(self.server.port, "/metrics")
        return self.metric(body.decode(), 'almanac_git_fetch_total{result="%s"}' % result)

    def wait_timed_out(self, count):
        """Waits for the count-th timed-out fetch; returns the repository health component."""
        self.assertTrue(wait_until(lambda: (self.fetch_metric("timeout") or 0) >= count,
                                   deadline=GIT_TIMEOUT * 4),
                        "no fetch timed out:\n" + self.server.log_tail())
        return self.health()

    def recover(self, expected_commit, expected_greeting):
        """The remote answers again: the next refresh fetches what the stalls held back."""
        self.proxy.mode = "pass"
        # A fetch the refresher started as the stalled one was abandoned (a request that came
        # in meanwhile asks for one more) may have connected before the remote recovered: a
        # refresh then answers 202 until that one is abandoned in its turn. The first refresh
        # that completes after the recovery must have fetched.
        def completed_refresh():
            r = self.server.post("/actuator/refresh", b"", {"Content-Type": "application/json"})
            return r if r.status == 200 else None
        r = wait_until(completed_refresh, deadline=GIT_TIMEOUT * 3)
        self.assertTrue(r, "no refresh completed after the remote recovered")
        self.assertEqual(r.json()["version"], expected_commit)
        status, body = quick_get(self.server.port, "/app/default")
        self.assertEqual(status, 200)
        env = json.loads(body)
        self.assertEqual(env["version"], expected_commit)
        self.assertEqual(env["propertySources"][0]["source"]["greeting"], expected_greeting)
        self.assertEqual(self.health()["status"], "UP")

    def workers(self):
        return fetch_workers(self.server.proc.pid)

    def test_1_silent_remote(self):
        before = self.fetch_metric("timeout") or 0
        first = self.work.head()
        stuck = self.workers()
        self.assertEqual(len(stuck), 1, "one worker, left by the first clone")
        self.proxy.mode = "silent"
        second = self.push({"application.yml": "greeting: second\n"}, "second")

        # The refresh is accepted, but the request does not wait for Git.
        r = self.server.post("/actuator/refresh")
        self.assertEqual(r.status, 202, r)
        self.assertTrue(r.json()["pending"])

        # Reads, health and metrics answer while the fetch is stuck...
        self.assertTrue(wait_until(self.proxy.holding, deadline=10), "the fetch never stalled")
        status, body = quick_get(self.server.port, "/app/default")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["version"], first)
        status, _ = quick_get(self.server.port, "/actuator/health")
        self.assertEqual(status, 200)
        status, body = quick_get(self.server.port, "/metrics")
        self.assertEqual(status, 200)
        self.assertIn(b"almanac_git_fetch_total", body)
        # ... that is, before it is abandoned.
        self.assertTrue(self.proxy.holding(), "the fetch ended before the reads were answered")

        repo = self.wait_timed_out(before + 1)
        self.assertEqual(repo["status"], "DEGRADED", repo)
        self.assertIn("fetch timed out after %d s" % GIT_TIMEOUT, repo["details"]["lastError"])
        self.assertIn("lastFetchAgeSeconds", repo["details"])
        # the worker is gone; the proxy's thread sees the end of its connection soon after
        self.assertTrue(wait_until(lambda: not self.proxy.holding(), deadline=10),
                        "the stuck connection was not closed")
        self.assertEqual(leftovers(self.server.cache_dir), [])
        self.assertTrue(wait_until(lambda: "fetch timed out" in self.server.log()))
        # the stuck worker was killed at the deadline, and another one waits for the next fetch
        self.assertTrue(gone(stuck[0]), "the stuck worker is still running")
        self.assertTrue(wait_until(lambda: len(self.workers()) == 1, deadline=10))
        spare = self.workers()
        self.assertNotIn(stuck[0], spare)

        self.recover(second, "second")
        self.assertEqual(self.workers(), spare, "the next fetch did not use the new worker")

    def test_2_stall_in_the_middle_of_a_pack(self):
        before = self.fetch_metric("timeout") or 0
        stalls = self.proxy.stall_count()
        self.proxy.mode = "midpack"
        # incompressible, so the pack is far larger than what the proxy lets through
        third = self.push({"application.yml": "greeting: third\n", "blob.bin": os.urandom(1 << 21)},
                          "third")
        r = self.server.post("/actuator/refresh")
        self.assertEqual(r.status, 202, r)
        self.assertTrue(wait_until(lambda: self.proxy.stall_count() > stalls, deadline=10),
                        "the fetch never reached the pack")
        self.assertGreater(self.proxy.pack_bytes_sent, 0)
        repo = self.wait_timed_out(before + 1)
        self.assertEqual(repo["status"], "DEGRADED", repo)
        self.assertIn("fetch timed out", repo["details"]["lastError"])
        self.assertEqual(leftovers(self.server.cache_dir), [])

        self.recover(third, "third")

    def test_3_sigterm_with_a_fetch_stuck(self):
        cache = os.path.join(self.tmp, "cache-sigterm")
        server = Server(self.proxy.url("origin.git"), self.tmp, cache_dir=cache,
                        extra_args=["--git-timeout", "600"])
        type(self).servers.append(server)
        self.proxy.mode = "pass"
        server.start()
        self.proxy.mode = "silent"
        stalls = self.proxy.stall_count()
        self.push({"application.yml": "greeting: fourth\n"}, "fourth")
        r = server.post("/actuator/refresh")
        self.assertEqual(r.status, 202, r)
        self.assertTrue(wait_until(lambda: self.proxy.stall_count() > stalls, deadline=10))
        self.assertTrue(self.proxy.holding())
        server.proc.send_signal(signal.SIGTERM)
        try:
            code = server.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.fail("SIGTERM did not end the server within 5 s:\n" + server.log_tail())
        self.assertEqual(code, 0, server.log_tail())
        self.assertTrue(wait_until(lambda: not self.proxy.holding(), deadline=10),
                        "the stuck fetch outlived the server")


class FetchWorkerTest(ServerTestCase):
    """The worker process is reused, and replaced whenever it is lost."""

    @classmethod
    def setUpServers(cls):
        cls.work = GitRepo(cls.tmp, "work")
        cls.work.commit({"application.yml": "greeting: first\n"}, "first")
        cls.base = os.path.join(cls.tmp, "served")
        os.makedirs(cls.base)
        cls.origin = os.path.join(cls.base, "origin.git")
        subprocess.run(["git", "clone", "-q", "--bare", cls.work.path, cls.origin], check=True)
        cls.proxy = StallingProxy(cls.base)
        cls.server = cls.start_server(cls.proxy.url("origin.git"),
                                      extra_args=["--git-timeout", str(GIT_TIMEOUT)])

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.proxy.close()

    def setUp(self):
        self.proxy.mode = "pass"

    def workers(self):
        return fetch_workers(self.server.proc.pid)

    def push(self, greeting):
        commit = self.work.commit({"application.yml": "greeting: %s\n" % greeting}, greeting)
        self.work.git("push", "-q", self.origin, "main")
        return commit

    def assert_serves(self, commit, greeting):
        status, body = quick_get(self.server.port, "/app/default")
        self.assertEqual(status, 200)
        env = json.loads(body)
        self.assertEqual(env["version"], commit)
        self.assertEqual(env["propertySources"][0]["source"]["greeting"], greeting)

    def failed_fetches(self):
        _, body = quick_get(self.server.port, "/metrics")
        for line in body.decode().splitlines():
            if line.startswith('almanac_git_fetch_total{result="failed"} '):
                return float(line.split()[1])
        self.fail("no failed-fetch counter in /metrics")

    def test_one_worker_serves_fetch_after_fetch(self):
        self.assertTrue(wait_until(lambda: len(self.workers()) == 1, deadline=10))
        worker = self.workers()
        for greeting in ("again-1", "again-2", "again-3"):
            commit = self.push(greeting)
            r = self.server.refresh()
            self.assertEqual(r.json()["version"], commit)
            self.assert_serves(commit, greeting)
        self.assertEqual(self.workers(), worker, "a fetch started a new worker")

    def test_worker_killed_while_idle_is_replaced_without_a_failed_fetch(self):
        self.assertTrue(wait_until(lambda: len(self.workers()) == 1, deadline=10))
        old = self.workers()[0]
        failed = self.failed_fetches()
        os.kill(old, signal.SIGKILL)
        self.assertTrue(wait_until(lambda: gone(old), deadline=10))
        commit = self.push("after-idle-kill")
        r = self.server.refresh()
        self.assertEqual(r.json()["version"], commit)
        self.assert_serves(commit, "after-idle-kill")
        self.assertEqual(self.failed_fetches(), failed)
        new = self.workers()
        self.assertEqual(len(new), 1)
        self.assertNotIn(old, new)
        self.assertTrue(wait_until(lambda: "ended while idle" in self.server.log()))

    def test_worker_killed_in_the_middle_of_a_fetch_costs_that_fetch_only(self):
        self.assertTrue(wait_until(lambda: len(self.workers()) == 1, deadline=10))
        old = self.workers()[0]
        failed = self.failed_fetches()
        status, body = quick_get(self.server.port, "/app/default")
        self.assertEqual(status, 200)
        served = json.loads(body)
        stalls = self.proxy.stall_count()
        self.proxy.mode = "silent"
        commit = self.push("after-busy-kill")
        # the refresh waits for its fetch: send it from a thread, kill the worker meanwhile
        answer = []
        asker = threading.Thread(target=lambda: answer.append(
            quick_post(self.server.port, "/actuator/refresh")))
        asker.start()
        self.assertTrue(wait_until(lambda: self.proxy.stall_count() > stalls, deadline=10),
                        "the fetch never reached the remote")
        self.assertTrue(self.proxy.holding())
        os.kill(old, signal.SIGKILL)
        asker.join(timeout=30)
        self.assertFalse(asker.is_alive(), "the refresh never answered")
        self.assertTrue(wait_until(lambda: self.failed_fetches() > failed, deadline=10))
        status, body = quick_get(self.server.port, "/actuator/health")
        repo = json.loads(body)["components"]["repository"]
        self.assertEqual(repo["status"], "DEGRADED", repo)
        self.assertIn("ended abnormally (signal 9)", repo["details"]["lastError"])
        # the failed fetch lost nothing: the commit served before is still served
        self.assert_serves(served["version"],
                           served["propertySources"][0]["source"]["greeting"])
        self.assertEqual(leftovers(self.server.cache_dir), [])
        self.assertTrue(wait_until(lambda: self.workers() != [] and old not in self.workers(),
                                   deadline=10), "no new worker")

        self.proxy.mode = "pass"
        r = self.server.refresh()
        self.assertEqual(r.json()["version"], commit)
        self.assert_serves(commit, "after-busy-kill")


class FetchWorkerCommandLineTest(ServerTestCase):
    """A worker's command line names no repository and no transport setting: all of an order,
    the proxy URL (which may carry a password) included, travels over the worker's socket."""

    def test_orders_stay_off_the_command_line(self):
        work = GitRepo(self.tmp, "work-cmdline")
        work.commit({"application.yml": "greeting: first\n"}, "first")
        secret = "s3cret-in-the-proxy"
        env = dict(os.environ, ALMANAC_GIT_PROXY="http://user:%s@127.0.0.1:9" % secret)
        server = Server(work.path, self.tmp, cache_dir=os.path.join(self.tmp, "cache-cmdline"),
                        env=env)
        type(self).servers.append(server)
        server.start()
        commit = work.commit({"application.yml": "greeting: second\n"}, "second")
        self.assertEqual(server.refresh().json()["version"], commit)
        workers = fetch_workers(server.proc.pid)
        self.assertEqual(len(workers), 1, workers)
        with open("/proc/%d/cmdline" % workers[0], "rb") as f:
            argv = f.read().rstrip(b"\0").split(b"\0")
        self.assertEqual(argv[1:], [b"git-fetch", b"--serve", b"--parent",
                                    str(server.proc.pid).encode()])
        self.assertNotIn(secret.encode(), b" ".join(argv))


class StalledFirstCloneTest(ServerTestCase):
    """No mirror yet and a remote that never answers: the start fails, in bounded time."""

    def test_start_times_out(self):
        base = os.path.join(self.tmp, "served")
        os.makedirs(base)
        proxy = StallingProxy(base)
        try:
            proxy.mode = "silent"
            server = Server(proxy.url("origin.git"), self.tmp, extra_args=["--git-timeout", "2"])
            type(self).servers.append(server)
            server.launch()
            code = server.wait_exit(timeout=30)
            self.assertEqual(code, 1)
            self.assertIn("fetch timed out after 2 s", server.log())
            self.assertIn("no cached mirror", server.log())
        finally:
            proxy.close()


if __name__ == "__main__":
    unittest.main()
