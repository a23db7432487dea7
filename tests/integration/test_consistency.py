"""Consistency under change: readers hammering the server while commits land and refreshes swap
snapshots must only ever see a (version, content) pair that belongs together, in every format;
many parked watchers are all woken by one change."""

import http.client
import json
import threading
import unittest

from almanac_harness import ServerTestCase, source

ROUNDS = 8
READERS = 4


def files_for(n):
    return {"application.yml": "generation: %d\nshared: base-%d\n" % (n, n),
            "orders.yml": "generation: %d\nitems: [%s]\n" % (n, ", ".join(["i%d" % n] * (n + 1))),
            "orders-dev.yml": "dev-generation: %d\n" % n}


class ConsistencyTest(ServerTestCase):

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.generations = {cls.repo.commit(files_for(0), "generation 0"): 0}
        cls.server = cls.start_server(cls.repo.uri, refresh_interval=0)

    def connection(self):
        return http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)

    def test_readers_during_refreshes(self):
        stop = threading.Event()
        problems = []
        seen = set()

        def check_env(body):
            env = json.loads(body)
            gen = self.generations.get(env["version"])
            if gen is None:
                return "unknown version %s" % env["version"]
            orders = source(env, "orders.yml")
            if orders.get("generation") != gen or len(orders) != gen + 2:
                return "version %s (generation %d) with orders.yml %r" % (env["version"], gen,
                                                                           orders)
            if source(env, "orders-dev.yml") != {"dev-generation": gen}:
                return "version %s with a foreign orders-dev.yml" % env["version"]
            seen.add(gen)
            return None

        def check_properties(body):
            lines = body.decode().split("\n")
            gens = {line.split(": ")[1] for line in lines if line.startswith(("generation:",
                                                                               "dev-generation:"))}
            items = [line for line in lines if line.startswith("items[")]
            if len(gens) != 1:
                return "mixed generations in one document: %r" % lines
            gen = int(gens.pop())
            if len(items) != gen + 1 or any(not line.endswith(": i%d" % gen) for line in items):
                return "generation %d with items %r" % (gen, items)
            return None

        def reader(kind):
            conn = self.connection()
            path, check = (("/orders/dev", check_env) if kind == 0 else
                           ("/orders-dev.properties", check_properties))
            try:
                while not stop.is_set():
                    conn.request("GET", path)
                    r = conn.getresponse()
                    body = r.read()
                    if r.status != 200:
                        problems.append("%s -> %d %r" % (path, r.status, body[:200]))
                        continue
                    why = check(body)
                    if why:
                        problems.append(why)
            except Exception as e:  # collected and reported by the test thread
                problems.append("%s: %r" % (path, e))
            finally:
                conn.close()

        threads = [threading.Thread(target=reader, args=(i % 2,)) for i in range(READERS)]
        for t in threads:
            t.start()
        try:
            for n in range(1, ROUNDS + 1):
                commit = self.repo.commit(files_for(n), "generation %d" % n)
                type(self).generations[commit] = n
                self.server.refresh()
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        self.assertEqual(problems[:5], [])
        final = self.server.get("/orders/dev").json()
        self.assertEqual(self.generations[final["version"]], ROUNDS)
        # old generations stay readable by commit id
        for commit, n in list(self.generations.items())[:3]:
            env = self.server.get("/orders/dev/" + commit).json()
            self.assertEqual(source(env, "orders.yml")["generation"], n)


class ManyWatchersTest(ServerTestCase):

    WATCHERS = 60

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit({"orders.yml": "color: red\n"}, "first")
        cls.server = cls.start_server(cls.repo.uri, refresh_interval=0)

    def test_one_change_wakes_every_watcher(self):
        etag = self.server.get("/orders/dev").header("etag")
        results = []
        lock = threading.Lock()

        def watch():
            conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=60)
            try:
                conn.request("GET", "/orders/dev?watch=%s&timeout=45" % etag)
                r = conn.getresponse()
                body = r.read()
                with lock:
                    results.append((r.status, json.loads(body)["version"] if body else None))
            except Exception as e:  # collected and reported by the test thread
                with lock:
                    results.append(("error", repr(e)))
            finally:
                conn.close()

        threads = [threading.Thread(target=watch) for _ in range(self.WATCHERS)]
        for t in threads:
            t.start()
        commit = self.repo.commit({"orders.yml": "color: blue\n"}, "change")
        self.server.refresh()
        for t in threads:
            t.join(90)
        self.assertEqual(results, [(200, commit)] * self.WATCHERS)
        self.assertTrue(self.server.alive())


if __name__ == "__main__":
    unittest.main()
