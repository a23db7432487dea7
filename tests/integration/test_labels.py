"""Labels: the default label (main, falling back to master), branches, branches with a slash
written with (_), tags, full and abbreviated commit ids, unknown labels, and old commits."""

import http.client
import json
import threading
import unittest

from almanac_harness import ServerTestCase, relative_names, source


class LabelTest(ServerTestCase):

    @classmethod
    def setUpServers(cls):
        repo = cls.repo = cls.make_repo()
        cls.c1 = repo.commit({"application.yml": "shared: v1\n",
                              "orders.yml": "color: red\nsize: 1\n"}, "first")
        repo.tag("v1")
        repo.tag("v1-annotated", annotated=True)
        repo.branch("release")
        cls.c2 = repo.commit({"orders.yml": "color: blue\nsize: 2\n",
                              "orders-dev.yml": "dev: true\n"}, "second")
        repo.git("checkout", "-q", "-b", "feature/x")
        cls.c3 = repo.commit({"orders.yml": "color: green\nsize: 3\n"}, "feature work")
        repo.checkout("main")
        cls.server = cls.start_server(repo.uri)
        cls.prefix = repo.uri + "/"

    def env(self, path):
        r = self.server.get(path)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def assertOrders(self, env, commit, color):
        self.assertEqual(env["version"], commit)
        self.assertEqual(source(env, "orders.yml")["color"], color)

    def test_default_label_is_main(self):
        env = self.env("/orders/dev")
        self.assertIsNone(env["label"])
        self.assertOrders(env, self.c2, "blue")
        self.assertEqual(relative_names(env, self.prefix),
                         ["orders-dev.yml", "orders.yml", "application.yml"])

    def test_main_explicit(self):
        env = self.env("/orders/dev/main")
        self.assertEqual(env["label"], "main")
        self.assertOrders(env, self.c2, "blue")

    def test_branch(self):
        env = self.env("/orders/dev/release")
        self.assertEqual(env["label"], "release")
        self.assertOrders(env, self.c1, "red")
        self.assertEqual(relative_names(env, self.prefix), ["orders.yml", "application.yml"])

    def test_branch_with_slash(self):
        env = self.env("/orders/dev/feature(_)x")
        self.assertIn(env["label"], ("feature(_)x", "feature/x"))
        self.assertOrders(env, self.c3, "green")

    def test_lightweight_tag(self):
        env = self.env("/orders/dev/v1")
        self.assertEqual(env["label"], "v1")
        self.assertOrders(env, self.c1, "red")

    def test_annotated_tag_peeled(self):
        self.assertOrders(self.env("/orders/dev/v1-annotated"), self.c1, "red")

    def test_full_commit_id(self):
        env = self.env("/orders/dev/" + self.c1)
        self.assertEqual(env["label"], self.c1)
        self.assertOrders(env, self.c1, "red")

    def test_short_commit_id(self):
        env = self.env("/orders/dev/" + self.c1[:7])
        self.assertEqual(env["label"], self.c1[:7])
        self.assertOrders(env, self.c1, "red")

    def test_unknown_label_404(self):
        r = self.server.get("/orders/dev/no-such-branch")
        body = self.assertErrorBody(r, 404, "/orders/dev/no-such-branch")
        self.assertEqual(body["error"], "Not Found")
        self.assertIsInstance(body["timestamp"], (str, int))
        self.assertIsInstance(body["message"], str)
        self.assertTrue(r.header("content-type").startswith("application/json"), r.headers)

    def test_unknown_commit_id_404(self):
        self.assertErrorBody(self.server.get("/orders/dev/" + "0" * 40), 404)

    def test_old_and_new_side_by_side(self):
        # Interleaved, on one connection: labelled requests never disturb the default.
        for _ in range(3):
            self.assertOrders(self.env("/orders/dev/" + self.c1), self.c1, "red")
            self.assertOrders(self.env("/orders/dev"), self.c2, "blue")
            self.assertOrders(self.env("/orders/dev/feature(_)x"), self.c3, "green")

    def test_labelled_documents(self):
        r = self.server.get("/v1/orders-dev.properties")
        self.assertEqual(r.status, 200, r)
        self.assertIn("color: red", r.text.split("\n"))
        r = self.server.get("/orders-dev.properties")
        self.assertIn("color: blue", r.text.split("\n"))
        r = self.server.get("/feature(_)x/orders-dev.yml")
        self.assertEqual(r.status, 200, r)
        self.assertIn("color: green", r.text.split("\n"))
        self.assertErrorBody(self.server.get("/no-such-branch/orders-dev.yml"), 404)


    def test_concurrent_labels(self):
        # Many connections at once, each asking for a different label: no answer may mix them.
        expected = {"": (self.c2, "blue"), "/main": (self.c2, "blue"),
                    "/release": (self.c1, "red"), "/v1": (self.c1, "red"),
                    "/feature(_)x": (self.c3, "green"), "/" + self.c1[:10]: (self.c1, "red")}
        failures = []

        def worker(label):
            conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=20)
            try:
                for _ in range(25):
                    conn.request("GET", "/orders/dev" + label)
                    r = conn.getresponse()
                    env = json.loads(r.read())
                    got = (env["version"], source(env, "orders.yml")["color"])
                    if r.status != 200 or got != expected[label]:
                        failures.append((label, r.status, got))
            except Exception as e:  # collected and reported below
                failures.append((label, repr(e)))
            finally:
                conn.close()

        threads = [threading.Thread(target=worker, args=(label,))
                   for label in list(expected) * 2]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(failures, [])


class NewRefsTest(ServerTestCase):
    """Branches and tags created or deleted after the server started appear after a refresh."""

    @classmethod
    def setUpServers(cls):
        repo = cls.repo = cls.make_repo()
        cls.c1 = repo.commit({"orders.yml": "color: red\n"}, "first")
        repo.branch("doomed")
        cls.server = cls.start_server(repo.uri, refresh_interval=0)

    def test_new_branch_and_tag_after_refresh(self):
        self.repo.git("checkout", "-q", "-b", "later")
        c2 = self.repo.commit({"orders.yml": "color: later\n"}, "on a new branch")
        self.repo.tag("v-later")
        self.repo.checkout("main")
        self.repo.git("branch", "-D", "doomed")
        self.assertEqual(self.server.get("/orders/dev/doomed").status, 200)
        self.server.refresh()
        for label in ("later", "v-later", c2):
            with self.subTest(label=label):
                r = self.server.get("/orders/dev/" + label)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json()["version"], c2)
        self.assertEqual(self.server.get("/orders/dev").json()["version"], self.c1)
        self.assertErrorBody(self.server.get("/orders/dev/doomed"), 404)


class RewrittenHistoryTest(ServerTestCase):
    """Force-pushed branches and moved tags: the mirror follows the remote, not fast-forwards."""

    @classmethod
    def setUpServers(cls):
        repo = cls.repo = cls.make_repo()
        cls.c1 = repo.commit({"orders.yml": "color: red\n"}, "first")
        cls.c2 = repo.commit({"orders.yml": "color: blue\n"}, "second")
        repo.tag("moving", cls.c1)
        cls.server = cls.start_server(repo.uri, refresh_interval=0)

    def test_force_push_and_moved_tag(self):
        self.assertEqual(self.server.get("/orders/dev").json()["version"], self.c2)
        self.assertEqual(self.server.get("/orders/dev/moving").json()["version"], self.c1)
        # rewrite main: drop the second commit, make another one in its place
        self.repo.git("reset", "-q", "--hard", self.c1)
        c3 = self.repo.commit({"orders.yml": "color: rewritten\n"}, "rewritten")
        self.repo.git("tag", "-f", "moving", c3)
        self.server.refresh()
        r = self.server.get("/orders/dev")
        self.assertEqual(r.json()["version"], c3)
        self.assertEqual(source(r.json(), "orders.yml"), {"color": "rewritten"})
        self.assertEqual(self.server.get("/orders/dev/moving").json()["version"], c3)
        self.assertEqual(self.server.get("/orders/dev/main").json()["version"], c3)


class PollingTest(ServerTestCase):
    """--refresh-interval: the server notices a new commit by itself."""

    @classmethod
    def setUpServers(cls):
        repo = cls.repo = cls.make_repo()
        repo.commit({"orders.yml": "color: red\n"}, "first")
        cls.server = cls.start_server(repo.uri, refresh_interval=1)

    def test_poll_picks_up_commit(self):
        r = self.server.get("/orders/dev")
        etag = r.header("etag")
        commit = self.repo.commit({"orders.yml": "color: polled\n"}, "polled")
        # A watch returns as soon as the poll has swapped in the commit (no sleeping here).
        w = self.server.get("/orders/dev?watch=%s&timeout=15" % etag)
        self.assertEqual(w.status, 200, w)
        self.assertEqual(w.json()["version"], commit)
        self.assertEqual(source(w.json(), "orders.yml"), {"color": "polled"})


class MasterFallbackTest(ServerTestCase):
    """A repository whose only branch is master: no label means master."""

    @classmethod
    def setUpServers(cls):
        repo = cls.repo = cls.make_repo(branch="master")
        cls.commit = repo.commit({"orders.yml": "color: grey\n"}, "only commit")
        cls.server = cls.start_server(repo.uri)

    def test_no_label_uses_master(self):
        r = self.server.get("/orders/dev")
        self.assertEqual(r.status, 200, r)
        env = r.json()
        self.assertIsNone(env["label"])
        self.assertEqual(env["version"], self.commit)
        self.assertEqual(source(env, "orders.yml"), {"color": "grey"})

    def test_master_explicit(self):
        r = self.server.get("/orders/dev/master")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["version"], self.commit)

    def test_main_is_unknown(self):
        self.assertErrorBody(self.server.get("/orders/dev/main"), 404)


class DefaultLabelFlagTest(ServerTestCase):
    """--default-label chooses what "no label" means."""

    @classmethod
    def setUpServers(cls):
        repo = cls.repo = cls.make_repo()
        cls.c1 = repo.commit({"orders.yml": "color: red\n"}, "first")
        repo.branch("stable")
        cls.c2 = repo.commit({"orders.yml": "color: blue\n"}, "second")
        cls.server = cls.start_server(repo.uri, extra_args=["--default-label", "stable"])

    def test_default_label_flag(self):
        r = self.server.get("/orders/dev")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["version"], self.c1)
        r = self.server.get("/orders/dev/main")
        self.assertEqual(r.json()["version"], self.c2)


if __name__ == "__main__":
    unittest.main()
