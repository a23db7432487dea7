"""Many repositories in one server: the repos: section of --config (patterns as Spring's
MultipleJGitEnvironmentRepository matches them), an {application} template, and everything
per repository (webhooks, watch wake-ups, events, health, metrics).

Three real remotes (file://) beside the default one, and one template whose remotes are made
per application. No sleeps: waits are on log lines, watches and metrics.
"""
import http.client
import json
import os
import shutil
import threading
import unittest

from almanac_harness import GitRepo, Server, ServerTestCase, wait_until


def github_push(clone_url, paths):
    return json.dumps({"ref": "refs/heads/main", "before": "0" * 40, "after": "1" * 40,
                       "repository": {"full_name": "example/config", "clone_url": clone_url},
                       "commits": [{"id": "1" * 40, "added": [], "modified": list(paths),
                                    "removed": []}]}).encode()


def metric(server, name, **labels):
    r = server.get("/metrics")
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    for line in r.text.splitlines():
        if line.startswith(name + "{"):
            series, value = line.rsplit(" ", 1)
            inner = series[len(name) + 1:-1]
            if ",".join(sorted(inner.split(","))) == want:
                return int(float(value))
    return 0


def origin_of(env):
    """The repository each property source came from (its folder name)."""
    return [s["name"].split("file://", 1)[-1] for s in env["propertySources"]]


def dir_size(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


class ManyReposTest(ServerTestCase):

    @classmethod
    def setUpServers(cls):
        cls.platform = cls.make_repo("platform")
        cls.platform.commit({"application.yml": "where: platform\n",
                             "orders.yml": "orders: platform\n"}, "first")
        cls.repo_a = cls.make_repo("team-a")
        cls.repo_a.commit({"application.yml": "where: team-a\n",
                           "team-a-api.yml": "api: 1\n"}, "first")
        cls.repo_b = cls.make_repo("payments")
        cls.repo_b.commit({"application.yml": "where: payments\n",
                           "payments.yml": "pay: 1\n", "billing-x.yml": "bill: 1\n"}, "first")
        cls.repo_c = cls.make_repo("team-c")
        cls.repo_c.commit({"application.yml": "where: team-c\n", "c-one.yml": "c: 1\n"},
                          "first")
        # Per-application repositories of the template; app-missing has none.
        cls.apps_dir = os.path.join(cls.tmp, "apps")
        os.makedirs(cls.apps_dir)
        for name in ("app-first", "app-known", "app-other", "app-third"):
            GitRepo(cls.apps_dir, name).commit({"application.yml": "where: %s\n" % name},
                                               "first")
        cls.config = os.path.join(cls.tmp, "almanac.yml")
        with open(cls.config, "w") as f:
            f.write("""repos:
  payments:
    pattern: [payments*, billing-*/dev*]
    uri: %s
  team-a:
    pattern: "team-a-*"
    uri: %s
  team-c:
    pattern: c-*
    uri: %s
  per-app:
    pattern: app-*
    uri: file://%s/{application}
""" % (cls.repo_b.uri, cls.repo_a.uri, cls.repo_c.uri, cls.apps_dir))
        cls.cache = os.path.join(cls.tmp, "cache")
        cls.server = cls.start_server(cls.platform.uri, refresh_interval=0, cache_dir=cls.cache,
                                      extra_args=["--config", cls.config, "--max-mirrors", "2",
                                                  "--mirror-miss-seconds", "3600"])

    def env(self, path):
        r = self.server.get(path)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def where(self, path):
        env = self.env(path)
        for s in env["propertySources"]:
            if "where" in s["source"]:
                return s["source"]["where"]
        return None

    # -- matching -------------------------------------------------------------------------------

    def test_each_application_from_its_repository(self):
        self.assertEqual(self.where("/orders/dev"), "platform")
        self.assertEqual(self.where("/team-a-api/dev"), "team-a")
        self.assertEqual(self.where("/payments/prod"), "payments")
        self.assertEqual(self.where("/c-one/default"), "team-c")
        # The property source names say where the files came from.
        names = origin_of(self.env("/team-a-api/dev"))
        self.assertTrue(all(self.repo_a.path in n for n in names), names)

    def test_profile_patterns(self):
        # billing-*/dev* names profiles: dev and dev-eu match, prod does not.
        self.assertEqual(self.where("/billing-x/dev"), "payments")
        self.assertEqual(self.where("/billing-x/dev-eu"), "payments")
        self.assertEqual(self.where("/billing-x/prod"), "platform")
        # With several profiles, Spring requires one of them to match and the whole list too:
        # "dev*" matches "dev,prod" as a whole, not "prod,dev".
        self.assertEqual(self.where("/billing-x/dev,prod"), "payments")
        self.assertEqual(self.where("/billing-x/prod,dev"), "platform")

    def test_first_match_in_file_order(self):
        # "payments*" comes before "team-a-*": payments-team-a-x is payments'.
        self.assertEqual(self.where("/payments-team-a-x/dev"), "payments")

    def test_diff_and_console_read_the_serving_repository(self):
        first = self.repo_c.head()
        second = self.repo_c.commit({"c-one.yml": "c: 2\n"}, "c two")
        self.server.refresh()  # the default's answer; team-c fetches alongside
        self.assertTrue(wait_until(
            lambda: self.server.get("/c-one/dev/%s" % second).status == 200, 20))
        r = self.server.get("/diff/c-one/dev?from=%s&to=%s" % (first, second))
        self.assertEqual(r.status, 200, r)
        changed = r.json()["changed"]
        self.assertEqual([c["key"] for c in changed], ["c"], r.json())
        # A commit of team-c is no label of the default repository.
        self.assertEqual(self.server.get("/orders/dev/%s" % second).status, 404)
        ui = self.server.get("/ui/api/environment/c-one/dev")
        self.assertEqual(ui.status, 200, ui)
        self.assertIn("team-c", ui.text)

    # -- per repository changes ------------------------------------------------------------------

    def watch_in_thread(self, path):
        result = {}

        def run():
            conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=60)
            try:
                conn.request("GET", path)
                r = conn.getresponse()
                result["status"] = r.status
                result["body"] = r.read()
            except Exception as e:  # reported by the test thread
                result["error"] = e
            finally:
                conn.close()

        t = threading.Thread(target=run)
        t.start()
        return t, result

    def parked(self):
        return metric_plain(self.server, "almanac_watchers")

    def test_webhook_for_one_repository_fetches_only_it_and_wakes_only_its_watchers(self):
        etag_a = self.server.get("/team-a-api/dev").header("etag")
        etag_p = self.server.get("/orders/dev").header("etag")
        before = {n: metric(self.server, "almanac_repository_fetch_total", repository=n,
                            result="ok") for n in ("default", "team-a", "payments", "team-c")}
        parked_before = self.parked()
        ta, ra = self.watch_in_thread("/team-a-api/dev?watch=%s&timeout=30" % etag_a)
        tp, rp = self.watch_in_thread("/orders/dev?watch=%s&timeout=3" % etag_p)
        self.assertTrue(wait_until(lambda: self.parked() >= parked_before + 2, 20))

        self.repo_a.commit({"team-a-api.yml": "api: 2\n"}, "change a")
        r = self.server.post("/monitor", github_push(self.repo_a.uri + ".git",
                                                     ["team-a-api.yml"]),
                             {"Content-Type": "application/json", "X-GitHub-Event": "push"})
        self.assertEqual(r.status, 200, r)
        ta.join(40)
        self.assertEqual(ra.get("status"), 200, ra)
        self.assertIn(b"api", ra["body"])
        # The platform watcher was not woken by team-a's commit: it ends at its deadline.
        tp.join(40)
        self.assertEqual(rp.get("status"), 304, rp)
        after = {n: metric(self.server, "almanac_repository_fetch_total", repository=n,
                           result="ok") for n in before}
        self.assertEqual(after["team-a"], before["team-a"] + 1, after)
        for other in ("default", "payments", "team-c"):
            self.assertEqual(after[other], before[other], (other, after))
        self.server.wait_for_log("push to .*team-a.*refreshing repository team-a")

    def test_events_name_the_repository(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        conn.request("GET", "/events")
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        self.repo_b.commit({"payments.yml": "pay: 2\n"}, "change b")
        r2 = self.server.post("/monitor", github_push(self.repo_b.uri, ["payments.yml"]),
                              {"Content-Type": "application/json", "X-GitHub-Event": "push"})
        self.assertEqual(r2.status, 200)
        # Another test's commit may still be announced first: read up to payments' event.
        data = None
        while data is None:
            line = r.fp.readline().decode()
            self.assertTrue(line, "stream ended")
            if line.startswith("data: ") and "applications" in line:
                event = json.loads(line[6:])
                self.assertIn("repository", event)  # every repository here is a named one
                if event["repository"] == "payments":
                    data = event
        conn.close()
        self.assertEqual(data["applications"], ["payments"])

    def fetches(self):
        return {n: metric(self.server, "almanac_repository_fetch_total", repository=n,
                          result="ok") for n in ("default", "team-a", "payments", "team-c")}

    def test_gitlab_and_bitbucket_payloads_name_their_repository(self):
        hooks = [
            ("team-c", {"X-Gitlab-Event": "Push Hook"},
             {"object_kind": "push", "project": {"git_http_url": self.repo_c.uri + "/",
                                                 "git_ssh_url": "git@example.invalid:c.git"},
              "commits": [{"modified": ["c-one.yml"], "added": [], "removed": []}]}),
            ("payments", {"X-Event-Key": "repo:push"},
             {"repository": {"links": {"clone": [{"href": self.repo_b.uri + ".git",
                                                  "name": "http"}]}}}),
        ]
        for name, headers, body in hooks:
            before = self.fetches()
            headers = dict(headers, **{"Content-Type": "application/json"})
            r = self.server.post("/monitor", json.dumps(body).encode(), headers)
            self.assertEqual(r.status, 200, r)
            self.assertTrue(wait_until(lambda: self.fetches()[name] == before[name] + 1, 20),
                            (name, self.fetches()))
            after = self.fetches()
            for other in before:
                if other != name:
                    self.assertEqual(after[other], before[other], (name, other, after))

    def test_concurrent_requests_for_a_missing_repository_clone_once(self):
        before = self.clones()
        results = []

        def ask():
            conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=60)
            try:
                conn.request("GET", "/app-nowhere/dev")
                r = conn.getresponse()
                results.append((r.status, json.loads(r.read())["propertySources"]))
            finally:
                conn.close()

        threads = [threading.Thread(target=ask) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(results, [(200, [])] * 8)
        self.assertEqual(self.clones(), before + 1)

    # -- templates --------------------------------------------------------------------------------

    def clones(self):
        return metric(self.server, "almanac_repository_clones_total", repository="per-app")

    def test_template_cloned_on_first_use_and_misses_remembered(self):
        before = self.clones()
        self.assertEqual(self.where("/app-first/dev"), "app-first")
        self.assertEqual(self.clones(), before + 1)
        # The second request uses the mirror.
        self.assertEqual(self.where("/app-first/prod"), "app-first")
        self.assertEqual(self.clones(), before + 1)

        # An application without a repository: an Environment without property sources, and
        # the remote is asked once however many requests come.
        for _ in range(5):
            env = self.env("/app-missing/dev")
            self.assertEqual(env["propertySources"], [])
            self.assertEqual(env["name"], "app-missing")
        self.assertEqual(self.clones(), before + 2)

    def test_mirror_limit_evicts_and_frees_disk(self):
        for name in ("app-known", "app-other"):
            self.env("/%s/dev" % name)
        self.assertEqual(metric_plain(self.server, "almanac_repository_mirrors"), 2)
        mirrors_before = {d for d in os.listdir(self.cache) if d.startswith("app-")}
        self.env("/app-third/dev")
        self.assertEqual(metric_plain(self.server, "almanac_repository_mirrors"), 2)
        mirrors_after = {d for d in os.listdir(self.cache) if d.startswith("app-")}
        self.assertEqual(len(mirrors_after), 2, mirrors_after)
        gone = mirrors_before - mirrors_after
        self.assertEqual(len(gone), 1, (mirrors_before, mirrors_after))
        self.server.wait_for_log("removed the mirror")


def metric_plain(server, name):
    r = server.get("/metrics")
    for line in r.text.splitlines():
        if line.startswith(name + " "):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


class UnreachableRepositoryTest(ServerTestCase):
    """A repository whose remote is gone keeps serving its last snapshot; health shows it alone
    degraded."""

    @classmethod
    def setUpServers(cls):
        cls.platform = cls.make_repo("platform")
        cls.platform.commit({"application.yml": "where: platform\n"}, "first")
        cls.repo_a = cls.make_repo("team-a")
        cls.repo_a.commit({"application.yml": "where: team-a\n"}, "first")
        cls.repo_c = cls.make_repo("team-c")
        cls.repo_c.commit({"application.yml": "where: team-c\n", "c-one.yml": "c: 1\n"},
                          "first")
        cls.config = os.path.join(cls.tmp, "almanac.yml")
        with open(cls.config, "w") as f:
            f.write("repos:\n  team-a:\n    pattern: a-*\n    uri: %s\n"
                    "  team-c:\n    pattern: [c-*]\n    uri: %s\n"
                    % (cls.repo_a.uri, cls.repo_c.uri))
        cls.server = cls.start_server(cls.platform.uri, refresh_interval=0,
                                      extra_args=["--config", cls.config])

    def test_deleted_remote_degrades_only_its_repository(self):
        before = self.server.get("/c-one/dev").json()
        shutil.rmtree(self.repo_c.path)
        self.server.refresh()
        self.assertTrue(wait_until(lambda: metric(
            self.server, "almanac_repository_fetch_total", repository="team-c",
            result="failed") >= 1, 20))
        health = self.server.get("/actuator/health").json()
        self.assertEqual(health["status"], "UP")
        self.assertEqual(health["components"]["repository"]["status"], "UP", health)
        repos = health["components"]["repositories"]
        self.assertEqual(repos["status"], "DEGRADED", repos)
        self.assertEqual(repos["components"]["team-c"]["status"], "DEGRADED")
        self.assertIn("lastError", repos["components"]["team-c"]["details"])
        self.assertEqual(repos["components"]["team-a"]["status"], "UP")
        after = self.server.get("/c-one/dev")
        self.assertEqual(after.status, 200)
        self.assertEqual(after.json()["propertySources"], before["propertySources"])
        self.assertEqual(after.json()["version"], before["version"])
        self.assertEqual(metric(self.server, "almanac_repository_up", repository="team-c"), 0)
        self.assertEqual(metric(self.server, "almanac_repository_up", repository="team-a"), 1)


class BadReposSectionTest(ServerTestCase):

    def test_entry_without_uri_is_refused_with_its_place(self):
        repo = self.make_repo("platform")
        repo.commit({"application.yml": "a: 1\n"}, "first")
        config = os.path.join(self.tmp, "bad.yml")
        with open(config, "w") as f:
            f.write("port: 0\nrepos:\n  team-a:\n    pattern: a-*\n")
        s = Server(repo.uri, self.tmp, extra_args=["--config", config])
        s.launch()
        self.assertEqual(s.wait_exit(), 2)
        self.assertIn("repos.team-a: no uri", s.log())

    def test_unknown_field_is_refused(self):
        repo = self.make_repo("platform2")
        repo.commit({"application.yml": "a: 1\n"}, "first")
        config = os.path.join(self.tmp, "bad2.yml")
        with open(config, "w") as f:
            f.write("repos:\n  team-a:\n    pattern: a-*\n    uri: %s\n    urls: x\n"
                    % repo.uri)
        s = Server(repo.uri, self.tmp, extra_args=["--config", config])
        s.launch()
        self.assertEqual(s.wait_exit(), 2)
        self.assertIn("repos.team-a.urls: unknown field", s.log())


class PerRepositoryTransportTest(ServerTestCase):
    """A repos: entry's own git-ssh-key-file and git-known-hosts, against a real sshd, while
    the server's own --git-… settings name none: the entry's are the ones used."""

    @classmethod
    def setUpServers(cls):
        import test_git_ssh as ssh
        if not (ssh.SSH_KEYGEN and ssh.SSH and os.access(ssh.SSHD, os.X_OK)):
            raise unittest.SkipTest("OpenSSH (sshd, ssh, ssh-keygen) is not installed")
        ssh.GitSshHostKeyTest.setUpServers.__func__(cls)
        cls.platform = cls.make_repo("platform")
        cls.platform.commit({"application.yml": "where: platform\n"}, "first")
        cls.home = os.path.join(cls.tmp, "empty-home")
        os.makedirs(cls.home, exist_ok=True)

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.sshd.stop()

    known_hosts = classmethod(
        lambda cls, name, entries: __import__("test_git_ssh").GitSshHostKeyTest.known_hosts
        .__func__(cls, name, entries))

    def config(self, name, known_hosts):
        path = os.path.join(self.tmp, name + ".yml")
        with open(path, "w") as f:
            f.write("repos:\n  over-ssh:\n    pattern: ssh-*\n    uri: %s\n"
                    "    git-ssh-key-file: %s\n    git-known-hosts: %s\n"
                    % (self.uri, self.client_key, known_hosts))
        return path

    def test_entry_transport_settings_are_used(self):
        good = self.known_hosts("entry", [(self.name, self.host_type, self.host_blob)])
        server = self.start_server(self.platform.uri, refresh_interval=0,
                                   extra_args=["--config", self.config("good", good)],
                                   env={"HOME": self.home})
        env = server.get("/ssh-app/dev").json()
        self.assertEqual(env["propertySources"][0]["source"], {"greeting": "over ssh"})
        self.assertEqual(server.get("/other/dev").json()["propertySources"][0]["source"],
                         {"where": "platform"})

    def test_entry_with_the_wrong_host_key_is_refused(self):
        bad = self.known_hosts("entry-bad", [(self.name, self.other_type, self.other_blob)])
        server = Server(self.platform.uri, self.tmp,
                        extra_args=["--config", self.config("bad", bad)],
                        env={"HOME": self.home})
        server.launch()
        self.assertEqual(server.wait_exit(), 1)
        self.assertIn(self.host_fp, server.log())
        self.assertIn("repos.over-ssh", server.log())


class PeersManyReposTest(ServerTestCase):
    """Two replicas with the same repos:; a push to team-a's repository reaches the other
    replica through a peer notice (nobody polls)."""

    @classmethod
    def setUpServers(cls):
        from test_peers import PEER_SECRET, Replica, free_ports
        cls.platform = cls.make_repo("platform")
        cls.platform.commit({"application.yml": "where: platform\n"}, "first")
        cls.repo_a = cls.make_repo("team-a")
        cls.repo_a.commit({"team-a-api.yml": "api: 1\n"}, "first")
        config = os.path.join(cls.tmp, "almanac.yml")
        with open(config, "w") as f:
            f.write("repos:\n  team-a:\n    pattern: team-a-*\n    uri: %s\n" % cls.repo_a.uri)
        secret = os.path.join(cls.tmp, "peer-secret")
        with open(secret, "w") as f:
            f.write(PEER_SECRET + "\n")
        os.chmod(secret, 0o600)
        ports = free_ports(2)
        peers = ",".join("127.0.0.1:%d" % p for p in ports)
        cls.replicas = []
        for port in ports:
            s = Replica(cls.platform.uri, cls.tmp, port,
                        ["--peers", peers, "--peer-secret", secret, "--config", config])
            cls.servers.append(s)
            cls.replicas.append(s.start())

    def test_push_to_a_team_repository_reaches_the_other_replica(self):
        a, b = self.replicas
        tag = b.get("/team-a-api/dev").header("etag")
        commit = self.repo_a.commit({"team-a-api.yml": "api: 2\n"}, "change a")
        r = a.post("/monitor", github_push(self.repo_a.uri, ["team-a-api.yml"]),
                   {"Content-Type": "application/json", "X-GitHub-Event": "push"})
        self.assertEqual(r.status, 200, r)
        w = b.get("/team-a-api/dev?watch=%s&timeout=20" % tag)
        self.assertEqual(w.status, 200, w)
        self.assertEqual(w.json()["version"], commit)


if __name__ == "__main__":
    unittest.main()
