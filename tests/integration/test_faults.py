"""Faults an operator meets, each reproduced for real before it was fixed: the default branch
deleted or renamed on the remote, a second process on the port, signals during start-up,
leftovers of killed clones, a damaged mirror (packs truncated or flipped, an index gone, a
garbage ref), and odd bytes in a request path. What each test shows is summed up
in docs/operations.md ("What Almanac does when…").
"""

import concurrent.futures
import http.client
import json
import os
import signal
import socket
import subprocess
import time
import unittest

import almanac_harness as h


def health(server):
    status, _, body = server.get_json("/actuator/health")
    assert status == 200, (status, body)
    return body


class DefaultBranchGoneTest(h.ServerTestCase):
    """`git push origin :main` (or a rename) must not turn every booting service away."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.c1 = cls.repo.commit({"application.yml": "a: 1\n", "orders.yml": "b: 1\n"}, "one")
        cls.repo.branch("keep")
        cls.server = cls.start_server(cls.repo.uri)

    def tearDown(self):
        # every test starts with main back at c1 and the server knowing it
        self.repo.git("checkout", "-q", "--detach")
        self.repo.git("branch", "-f", "main", self.c1)
        self.repo.checkout("main")
        self.server.refresh()

    def version(self, path="/orders/default"):
        status, _, body = self.server.get_json(path)
        self.assertEqual(status, 200, body)
        return body["version"]

    def test_refresh_without_change_names_the_commit(self):
        r = self.server.refresh().json()
        self.assertEqual(r, {"changed": False, "version": self.c1})

    def test_deleted_default_branch_keeps_serving_its_last_commit(self):
        self.assertEqual(self.version(), self.c1)
        self.assertEqual(health(self.server)["components"]["repository"]["status"], "UP")
        self.repo.git("checkout", "-q", "--detach")
        self.repo.git("branch", "-D", "main")

        r = self.server.refresh().json()
        self.assertEqual(r, {"changed": True, "version": self.c1})
        self.assertEqual(self.version(), self.c1)
        self.assertEqual(self.server.get("/orders-default.yml").status, 200)
        # naming the branch that is gone is a question about that branch: 404 as before
        self.assertErrorBody(self.server.get("/orders/default/main"), 404)
        repo = health(self.server)["components"]["repository"]
        self.assertEqual(repo["status"], "DEGRADED", repo)
        self.assertIn("main is gone", repo["details"]["defaultLabelGone"])
        self.assertIn(self.c1, repo["details"]["defaultLabelGone"])
        self.assertTrue(self.server.wait_for_log(r"default branch main is gone"))

        # the branch comes back with a new commit: served, health is UP again
        self.repo.git("branch", "main", self.c1)
        self.repo.checkout("main")
        c2 = self.repo.commit({"orders.yml": "b: 2\n"}, "two")
        self.assertEqual(self.server.refresh().json(), {"changed": True, "version": c2})
        self.assertEqual(self.version(), c2)
        repo = health(self.server)["components"]["repository"]
        self.assertEqual(repo["status"], "UP", repo)
        self.assertNotIn("defaultLabelGone", repo["details"])

    def test_renamed_default_branch_survives_a_restart(self):
        self.repo.git("branch", "-m", "main", "old-main")
        self.server.refresh()
        self.assertEqual(self.version(), self.c1)
        # a new server on the same mirror (the pod restarted) still has something to serve
        again = self.start_server(self.repo.uri, cache_dir=self.server.cache_dir)
        try:
            status, _, body = again.get_json("/orders/default")
            self.assertEqual((status, body["version"]), (200, self.c1))
            repo = health(again)["components"]["repository"]
            self.assertEqual(repo["status"], "DEGRADED", repo)
        finally:
            again.stop()
        self.repo.git("branch", "-m", "old-main", "main")

    def test_force_push_elsewhere_is_served(self):
        # a force-push is how a configuration is rolled back: it is served, not resisted
        c2 = self.repo.commit({"orders.yml": "b: 2\n"}, "two")
        self.server.refresh()
        self.assertEqual(self.version(), c2)
        self.repo.git("reset", "-q", "--hard", self.c1)
        self.assertEqual(self.server.refresh().json()["version"], self.c1)
        self.assertEqual(self.version(), self.c1)
        self.assertEqual(health(self.server)["components"]["repository"]["status"], "UP")


class PortInUseTest(h.ServerTestCase):
    """A second server started on a port another process holds must not share it."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit({"application.yml": "a: 1\n"}, "one")
        cls.first = cls.start_server(cls.repo.uri)

    def test_second_server_on_the_same_port_exits_1(self):
        second = h.Server(self.repo.uri, self.tmp, cache_dir=self.first.cache_dir)
        second.args[second.args.index("--port") + 1] = str(self.first.port)
        self.servers.append(second)
        second.launch()
        self.assertEqual(second.wait_exit(), 1, second.log_tail())
        self.assertIn("port %d: Address already in use" % self.first.port, second.log())
        # the first one still answers every request
        for _ in range(10):
            self.assertEqual(self.first.get("/application/default").status, 200)


class SignalsDuringStartupTest(h.ServerTestCase):
    """Signals that arrive while the first clone runs (a large repository makes it last)."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        files = {"application.yml": "a: 1\n"}
        for i in range(4):  # incompressible, so that cloning takes a while
            files["blobs/%d.bin" % i] = os.urandom(3 << 20)
        cls.repo.commit(files, "big")

    def launch_until_cloning(self):
        """A server started on an empty cache dir, returned once its temporary clone exists."""
        server = h.Server(self.repo.uri, self.tmp)
        self.servers.append(server)
        server.launch()
        seen = h.wait_until(lambda: [n for n in os.listdir(server.cache_dir) if ".tmp-" in n]
                            or not server.alive(), deadline=30, interval=0.002)
        self.assertTrue(server.alive(), server.log_tail())
        self.assertTrue(seen, "no temporary clone appeared")
        self.assertNotIn("listening on", server.log())
        return server

    def test_sighup_during_clone_is_deferred(self):
        server = self.launch_until_cloning()
        server.proc.send_signal(signal.SIGHUP)
        self.assertTrue(server.wait_for_log(r"SIGHUP received", deadline=60), server.log_tail())
        log = server.log()
        self.assertTrue(server.alive(), log)
        self.assertLess(log.index("listening on"), log.index("SIGHUP received"))
        self.assertEqual(server.stop(), 0)

    def test_sigterm_during_clone_exits_cleanly_without_leftovers(self):
        server = self.launch_until_cloning()
        server.proc.send_signal(signal.SIGTERM)
        self.assertEqual(server.wait_exit(), 0, server.log_tail())
        self.assertIn("stopped during start-up", server.log())
        self.assertEqual(os.listdir(server.cache_dir), [])

    def test_leftovers_of_killed_runs_are_removed_at_start(self):
        server = self.start_server(self.repo.uri)
        server.stop()
        (mirror,) = os.listdir(server.cache_dir)
        stale = os.path.join(server.cache_dir, mirror + ".tmp-Ab12Cd")
        os.makedirs(os.path.join(stale, "objects"))
        with open(os.path.join(stale, "objects", "junk"), "wb") as f:
            f.write(b"x" * 1000)
        empty_pack = os.path.join(server.cache_dir, mirror, "objects", "pack", "pack_git2_x1Yz")
        open(empty_pack, "wb").close()
        again = self.start_server(self.repo.uri, cache_dir=server.cache_dir)
        self.assertEqual(os.listdir(server.cache_dir), [mirror])
        self.assertFalse(os.path.exists(empty_pack))
        self.assertIn("left by an interrupted clone", again.log())
        self.assertEqual(again.get("/application/default").status, 200)


class BrokenFileTest(h.ServerTestCase):
    """A push with invalid YAML in orders-prod.yml must not crash-loop the orders pods."""

    GOOD = {"application.yml": "shared: 1\n", "orders.yml": "pool: 5\n",
            "orders-prod.yml": "db:\n  url: jdbc:pg://prod\n"}

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.good = cls.repo.commit(cls.GOOD, "good")
        cls.server = cls.start_server(cls.repo.uri)
        cls.strict = cls.start_server(cls.repo.uri, extra_args=["--broken-file", "error"])

    def metric(self, name):
        status, _, _ = self.server.get_json("/actuator/health")  # keeps the gauge current
        text = self.server.get("/metrics").text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        self.fail("no %s in /metrics" % name)

    def test_broken_file_serves_last_good_commit_then_heals(self):
        bad = self.repo.commit({"orders-prod.yml": "db:\n  url: [unclosed\n"}, "broken")
        # a later commit that leaves the file broken and changes another one
        worse = self.repo.commit({"orders.yml": "pool: 6\n"}, "unrelated")
        for s in (self.server, self.strict):
            s.refresh()

        r = self.server.get("/orders/prod")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["version"], self.good)
        names = [ps["name"] for ps in r.json()["propertySources"]]
        self.assertIn(self.repo.uri + "/orders-prod.yml", names)
        stale = r.header("X-Almanac-Stale")
        self.assertIsNotNone(stale, r.headers)
        self.assertIn("orders-prod.yml:3", stale)
        self.assertIn(worse, stale)
        self.assertIn("serving " + self.good, stale)
        # the same again comes from the response cache, header and all
        self.assertEqual(self.server.get("/orders/prod").header("X-Almanac-Stale"), stale)
        doc = self.server.get("/orders-prod.yml")
        self.assertEqual(doc.status, 200, doc)
        self.assertIn("jdbc:pg://prod", doc.text)
        self.assertIsNotNone(doc.header("X-Almanac-Stale"))
        # what does not need the broken file is current
        r = self.server.get("/orders/dev")
        self.assertEqual((r.status, r.json()["version"]), (200, worse))
        self.assertIsNone(r.header("X-Almanac-Stale"))
        # naming the broken commit asks about it: the error, naming file and line
        body = self.assertErrorBody(self.server.get("/orders/prod/" + bad), 500)
        self.assertIn("orders-prod.yml:3", body["message"])
        # --broken-file error: today's 500
        self.assertErrorBody(self.strict.get("/orders/prod"), 500)

        repo = health(self.server)["components"]["repository"]
        self.assertEqual(repo["status"], "DEGRADED", repo)
        self.assertEqual(len(repo["details"]["brokenFiles"]), 1, repo)
        self.assertTrue(repo["details"]["brokenFiles"][0].startswith("orders-prod.yml:3:"), repo)
        self.assertEqual(self.metric("almanac_broken_files"), 1)
        self.assertGreaterEqual(self.metric("almanac_stale_answers_total"), 1)

        fixed = self.repo.commit({"orders-prod.yml": "db:\n  url: jdbc:pg://fixed\n"}, "fix")
        self.server.refresh()
        r = self.server.get("/orders/prod")
        self.assertEqual((r.status, r.json()["version"]), (200, fixed))
        self.assertIsNone(r.header("X-Almanac-Stale"))
        self.assertEqual(health(self.server)["components"]["repository"]["status"], "UP")
        self.assertEqual(self.metric("almanac_broken_files"), 0)

    def test_broken_since_the_first_commit_is_an_error(self):
        repo = self.make_repo("born-broken")
        repo.commit({"svc.yml": "a: [\n"}, "broken from the start")
        server = self.start_server(repo.uri)
        self.assertErrorBody(server.get("/svc/default"), 500)


class ShutdownAnswersWatchersTest(h.ServerTestCase):
    """At SIGTERM a parked watcher hears "ask again elsewhere", not "unchanged"."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit({"svc.yml": "a: 1\n"}, "one")

    def test_parked_watcher_gets_503_retry_after_0(self):
        server = self.start_server(self.repo.uri)
        etag = server.get("/svc/default").header("ETag")
        conn = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        conn.sendall(("GET /svc/default?watch=%s&timeout=300 HTTP/1.1\r\nHost: x\r\n\r\n"
                      % etag.strip('"')).encode())
        self.assertTrue(h.wait_until(lambda: "almanac_watchers 1" in server.get("/metrics").text))
        server.proc.send_signal(signal.SIGTERM)
        data = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        conn.close()
        head = data.split(b"\r\n\r\n")[0].decode().lower()
        self.assertTrue(head.startswith("http/1.1 503"), data)
        self.assertIn("retry-after: 0", head)
        self.assertEqual(server.proc.wait(timeout=15), 0)


def metric(server, name):
    for line in server.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("no %s in /metrics" % name)


def mirror_dir(server):
    (name,) = [n for n in os.listdir(server.cache_dir) if ".tmp-" not in n]
    return os.path.join(server.cache_dir, name)


def packs(mirror, ext):
    d = os.path.join(mirror, "objects", "pack")
    return sorted(os.path.join(d, n) for n in os.listdir(d)
                  if n.startswith("pack-") and n.endswith(ext))


def flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


class MirrorDamageTest(h.ServerTestCase):
    """A damaged mirror (a disk, a crash, a careless hand) is noticed, cloned again and healed,
    at start and while serving; what the remote has is never blamed for it."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.c1 = cls.repo.commit({"application.yml": "a: 1\n", "orders.yml": "b: 1\n",
                                  "blob.bin": os.urandom(200000).hex()}, "one")
        cls.repo.branch("keep")

    def start_with(self, damage):
        """A server on a mirror damaged (by damage(mirror)) while no server ran."""
        first = self.start_server(self.repo.uri)
        self.assertEqual(first.get("/orders/default").status, 200)
        first.stop()
        damage(mirror_dir(first))
        server = self.start_server(self.repo.uri, cache_dir=first.cache_dir)
        return server

    def assertHealed(self, server):
        status, _, body = server.get_json("/orders/default")
        self.assertEqual((status, body.get("version")), (200, self.c1), body)
        self.assertEqual(server.get("/orders/default/keep").status, 200)
        repo = health(server)["components"]["repository"]
        self.assertEqual(repo["status"], "UP", repo)
        self.assertNotIn("mirrorDamaged", repo["details"])
        self.assertEqual(metric(server, 'almanac_mirror_reclones_total{result="ok"}'), 1)
        # the damaged copy is gone: one mirror, no temporary folder
        self.assertEqual(len(os.listdir(server.cache_dir)), 1, os.listdir(server.cache_dir))
        self.assertTrue(server.wait_for_log(r"is damaged \(.*\): cloning .* again"))

    def test_truncated_pack_at_start(self):
        def damage(mirror):
            pack = packs(mirror, ".pack")[0]
            os.truncate(pack, os.path.getsize(pack) // 2)
        server = self.start_with(damage)
        self.assertHealed(server)
        self.assertIn("does not end as its index says", server.log())

    def test_flipped_byte_in_pack_at_start(self):
        def damage(mirror):
            pack = packs(mirror, ".pack")[0]
            flip_byte(pack, os.path.getsize(pack) // 2)
        server = self.start_with(damage)
        self.assertHealed(server)
        self.assertIn("does not match its checksum", server.log())

    def test_missing_index_at_start(self):
        def damage(mirror):
            for idx in packs(mirror, ".idx"):
                os.unlink(idx)
        server = self.start_with(damage)
        self.assertHealed(server)
        self.assertIn("has no index (.idx)", server.log())

    def test_garbage_ref_at_start(self):
        def damage(mirror):
            with open(os.path.join(mirror, "refs", "heads", "keep"), "w") as f:
                f.write("garbage\n")
        server = self.start_with(damage)
        self.assertHealed(server)
        self.assertIn("the ref refs/heads/keep cannot be read", server.log())

    def test_garbage_ref_while_serving_is_not_blamed_on_the_remote(self):
        server = self.start_server(self.repo.uri)
        self.assertEqual(server.get("/orders/default").status, 200)
        with open(os.path.join(mirror_dir(server), "refs", "heads", "keep"), "w") as f:
            f.write("garbage\n")
        # what was served before is served from memory meanwhile
        self.assertEqual(server.get("/orders/default").status, 200)
        r = server.refresh()
        self.assertEqual(r.status, 200)
        self.assertTrue(server.wait_for_log(r"cloned .* again into"), server.log_tail())
        self.assertNotIn("cannot fetch from", server.log())
        self.assertHealed(server)

    def test_read_error_while_serving_starts_a_check_and_a_reclone(self):
        server = self.start_server(self.repo.uri)
        self.assertEqual(server.get("/orders/default").status, 200)
        with open(os.path.join(mirror_dir(server), "refs", "heads", "keep"), "w") as f:
            f.write("garbage\n")
        self.assertErrorBody(server.get("/orders/default/keep"), 500)
        self.assertTrue(server.wait_for_log(r"checking it in the background"), server.log_tail())
        self.assertTrue(server.wait_for_log(r"cloned .* again into", deadline=30),
                        server.log_tail())
        self.assertHealed(server)

    def test_remote_down_while_damaged_says_so_then_heals(self):
        repo = self.make_repo("flaky")
        c1 = repo.commit({"orders.yml": "b: 1\n"}, "one")
        first = self.start_server(repo.uri)
        first.stop()
        for idx in packs(mirror_dir(first), ".idx"):
            os.unlink(idx)
        os.rename(repo.path, repo.path + ".away")
        try:
            server = self.start_server(repo.uri, cache_dir=first.cache_dir)
            details = health(server)["components"]["repository"]
            self.assertEqual(details["status"], "DEGRADED", details)
            self.assertIn("mirror damaged: objects/pack/", details["details"]["mirrorDamaged"])
            self.assertIn("cloning again failed", details["details"]["mirrorDamaged"])
            self.assertEqual(metric(server, 'almanac_mirror_reclones_total{result="failed"}'), 1)
        finally:
            os.rename(repo.path + ".away", repo.path)
        # the remote is back: the next fetch clones again instead of fetching into the damage
        server.refresh()
        status, _, body = server.get_json("/orders/default")
        self.assertEqual((status, body.get("version")), (200, c1), body)
        details = health(server)["components"]["repository"]
        self.assertEqual(details["status"], "UP", details)
        self.assertEqual(metric(server, 'almanac_mirror_reclones_total{result="ok"}'), 1)


def pack_count(server):
    return len(packs(mirror_dir(server), ".pack"))


def deleted_packs_held(pid):
    """Pack files the process still holds open or mapped after they were deleted."""
    held = []
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if "/objects/pack/" in target and target.endswith("(deleted)"):
            held.append(target)
    with open("/proc/%d/maps" % pid) as f:
        held += [line.strip() for line in f if "/objects/pack/" in line and "(deleted)" in line]
    return held


class RepackTest(h.ServerTestCase):
    """Past 20 packs the mirror's packs are merged into one: the old ones let go of at once, and
    a repack that fails (a full disk) neither repeats on every fetch nor hides from health."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit({"application.yml": "a: 1\n"}, "one")
        cls.n = 0

    def add_pack(self, server, read=True):
        """One commit with an incompressible blob, fetched: one more pack in the mirror."""
        type(self).n += 1
        self.repo.commit({"blobs/%d.bin" % self.n: os.urandom(20000),
                          "application.yml": "a: %d\n" % self.n}, "pack %d" % self.n)
        server.refresh()
        if read:
            self.read_all(server)

    def read_all(self, server):
        # reads over several connections after each fetch, so that several request threads
        # hold the packs open (each file is read from the mirror: a response is cached per
        # path)
        def read(k):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            try:
                conn.request("GET", "/app/default/main/blobs/%d.bin?r=%d" % (k, self.n))
                return conn.getresponse().status
            finally:
                conn.close()
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(read, range(1, self.n + 1)))
        self.assertEqual(set(statuses), {200}, statuses)
        self.assertEqual(server.get("/application/default").status, 200)

    def test_old_packs_are_released_after_a_repack(self):
        server = self.start_server(self.repo.uri)
        while pack_count(server) < 20:
            self.add_pack(server)
        self.assertEqual(metric(server, 'almanac_git_repack_total{result="ok"}'), 0)
        # the fetch that repacks; no read after it, so request threads stay idle
        self.add_pack(server, read=False)
        self.assertTrue(server.wait_for_log(r"repacked \d+ packs"), server.log_tail())
        self.assertEqual(pack_count(server), 1)
        h.wait_until(lambda: not deleted_packs_held(server.proc.pid))
        held = deleted_packs_held(server.proc.pid)
        self.assertEqual(held, [], "%d deleted pack files held, first %s" % (len(held), held[:1]))
        self.assertEqual(metric(server, 'almanac_git_repack_total{result="ok"}'), 1)
        self.read_all(server)

    def test_failed_repack_waits_and_says_so(self):
        cache = os.path.join(self.tmp, "small-disk")
        os.makedirs(cache)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", cache],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if mounted.returncode != 0:
            self.skipTest("cannot mount a small tmpfs for a full disk (needs root): %s"
                          % mounted.stdout.decode().strip())
        self.addCleanup(subprocess.run, ["umount", "-l", cache])
        server = self.start_server(self.repo.uri, cache_dir=cache)
        while pack_count(server) < 20:
            self.add_pack(server)
        # the disk fills up, leaving room for a few small fetches but not for a repack
        st = os.statvfs(cache)
        filler = os.path.join(cache, "filler")
        with open(filler, "wb") as f:
            f.write(b"\0" * (st.f_bavail * st.f_frsize - (160 << 10)))
        self.add_pack(server)
        self.assertTrue(server.wait_for_log(r"cannot merge the mirror's 21 packs"),
                        server.log_tail())
        self.assertEqual(metric(server, 'almanac_git_repack_total{result="failed"}'), 1)
        repo = health(server)["components"]["repository"]
        self.assertEqual(repo["status"], "DEGRADED", repo)
        self.assertIn("tried again in", repo["details"]["repackError"])
        # the next fetch serves the new commit and does not try again
        self.add_pack(server)
        self.assertEqual(metric(server, 'almanac_git_repack_total{result="failed"}'), 1)
        status, _, body = server.get_json("/application/default")
        self.assertEqual(body["propertySources"][0]["source"]["a"], self.n)
        # room again, and a restart: the repack is done and health is UP
        os.unlink(filler)
        server.stop()
        again = self.start_server(self.repo.uri, cache_dir=cache)
        self.assertEqual(pack_count(again), 1)
        repo = health(again)["components"]["repository"]
        self.assertEqual(repo["status"], "UP", repo)
        again.stop()


class OddRequestsTest(h.ServerTestCase):
    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit({"application.yml": "a: 1\n", "conf/big.txt": "x" * (5 << 20),
                         "conf/small.txt": "a=${a}\n"}, "one")
        cls.server = cls.start_server(cls.repo.uri)

    def test_raw_non_ascii_bytes_in_the_path_are_a_client_error(self):
        for path in (b"/\xff\xfe/x", b"/app\xff/default", b"/app/default/\xc3"):
            answer = self.server.raw(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n"
                                     b"Connection: close\r\n\r\n")
            head, _, body = answer.partition(b"\r\n\r\n")
            status = int(head.split(b" ")[1])
            self.assertTrue(400 <= status < 500, answer[:300])
            doc = json.loads(body)
            self.assertEqual(doc["status"], status)
            self.assertNotIn("\\u00ff", doc["path"])  # bytes shown as %XX, not as characters

    def test_plain_file_over_the_cap_is_refused_naming_it(self):
        body = self.assertErrorBody(self.server.get("/app/default/main/conf/big.txt"), 500)
        self.assertIn("conf/big.txt is larger than", body["message"])
        r = self.server.get("/app/default/main/conf/small.txt")
        self.assertEqual((r.status, r.text), (200, "a=1\n"))


if __name__ == "__main__":
    unittest.main()
