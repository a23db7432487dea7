"""The almanac CLI (and through it libalmanac) against a scripted HTTP stub: what it sends
(path encoding, credentials, long-poll query) and how it meets answers a healthy server never
gives (401, 404, 500 then 200, malformed and oversized bodies), plus usage errors and exit codes.
"""

import base64
import json
import os
import signal
import shutil
import stat
import tempfile
import unittest
import urllib.parse

from clitest import (CLI_BIN, Stub, closed_port_url, environment, make_certificate, read_line,
                     reap, require_cli_bin, run_cli, spawn, write_files)

ENV = environment(sources=[
    {"name": "orders-prod.yml", "source": {"db.url": "jdbc:pg://prod", "db.pool": 20,
                                           "ratio": 1000.0, "feature.on": True,
                                           "hosts[0]": "a", "hosts[1]": "b"}},
    {"name": "orders.yml", "source": {"db.pool": 5, "server.port": 8080, "hosts[0]": "z"}},
])


class CliStubTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_cli_bin()

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="almanac-cli-")
        self.stub = Stub().__enter__()

    def tearDown(self):
        self.stub.__exit__(None, None, None)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def get(self, *args, **kwargs):
        return run_cli("get", *args, server=kwargs.pop("server", self.stub.url), **kwargs)

    def assertOneLineError(self, r, code, *needles):
        self.assertEqual(r.code, code, r)
        self.assertEqual(r.out, "", r)
        lines = r.err.strip("\n").split("\n")
        self.assertEqual(len(lines), 1, r)
        self.assertTrue(lines[0].startswith("almanac"), r)
        for n in needles:
            self.assertIn(n, lines[0])

    # -- what goes out ------------------------------------------------------------------------

    def test_path_segments_are_encoded_and_label_slash_becomes_paren(self):
        self.stub.script((200, {}, ENV))
        r = self.get("my app", "dev,mysql", "--label", "feature/x y", "--key", "db.url")
        self.assertEqual(r.code, 0, r)
        path = self.stub.requests[0][0]
        raw_segments = path.split("?")[0].split("/")[1:]
        self.assertEqual([urllib.parse.unquote(s) for s in raw_segments],
                         ["my app", "dev,mysql", "feature(_)x y"])
        self.assertNotIn(" ", path)

    def test_basic_credentials(self):
        self.stub.script((200, {}, ENV))
        r = self.get("orders", "prod", "--user", "svc", "--password", "pa:ss")
        self.assertEqual(r.code, 0, r)
        auth = self.stub.requests[0][1].get("authorization")
        self.assertEqual(auth, "Basic " + base64.b64encode(b"svc:pa:ss").decode())

    def test_bearer_token_from_environment(self):
        self.stub.script((200, {}, ENV))
        r = self.get("orders", "prod", env={"ALMANAC_TOKEN": "tok-123"})
        self.assertEqual(r.code, 0, r)
        self.assertEqual(self.stub.requests[0][1].get("authorization"), "Bearer tok-123")

    def test_user_and_token_together_is_a_usage_error(self):
        r = self.get("orders", "prod", "--user", "u", "--token", "t")
        self.assertOneLineError(r, 2, "not both")
        self.assertEqual(self.stub.requests, [])

    # -- what comes back ----------------------------------------------------------------------

    def test_key_lookup_and_precedence(self):
        self.stub.script((200, {}, ENV))
        self.assertEqual(self.get("orders", "prod", "--key", "db.pool").out, "20\n")
        self.assertEqual(self.get("orders", "prod", "--key", "server.port").out, "8080\n")
        self.assertEqual(self.get("orders", "prod", "--key", "ratio").out, "1000.0\n")
        self.assertEqual(self.get("orders", "prod", "--key", "feature.on").out, "true\n")
        # The list comes whole from the most specific source.
        self.assertEqual(self.get("orders", "prod", "--key", "hosts[1]").out, "b\n")
        r = self.get("orders", "prod", "--key", "no.such.key")
        self.assertOneLineError(r, 3, "no.such.key")

    def test_formats(self):
        self.stub.script((200, {}, ENV))
        r = self.get("orders", "prod", "--format", "json")
        self.assertEqual(r.code, 0, r)
        tree = json.loads(r.out)
        self.assertEqual(tree["db"], {"url": "jdbc:pg://prod", "pool": 20})
        self.assertEqual(tree["hosts"], ["a", "b"])
        self.assertEqual(tree["server"]["port"], 8080)
        self.assertIs(tree["feature"]["on"], True)

        r = self.get("orders", "prod", "--format", "properties")
        self.assertEqual(r.code, 0, r)
        self.assertIn("db.url: jdbc:pg://prod\n", r.out)
        self.assertIn("db.pool: 20\n", r.out)

        r = self.get("orders", "prod", "--format", "env")
        self.assertEqual(r.code, 0, r)
        self.assertIn("DB_URL=jdbc:pg://prod\n", r.out)
        self.assertIn("HOSTS_1=b\n", r.out)

        r = self.get("orders", "prod", "--format", "yaml")
        self.assertEqual(r.code, 0, r)
        self.assertIn("db:\n", r.out)
        self.assertIn("  url: jdbc:pg://prod\n", r.out)

        r = self.get("orders", "prod", "--format", "xml")
        self.assertOneLineError(r, 2, "xml")

    def test_auth_refused(self):
        self.stub.script((401, {"Content-Type": "application/json"},
                          {"status": 401, "error": "Unauthorized", "message": "bad credentials"}))
        r = self.get("orders", "prod")
        self.assertOneLineError(r, 4, "401", "--token", "bad credentials")
        self.assertEqual(len(self.stub.requests), 1)  # never retried
        self.stub.script((403, {}, ""))
        self.assertOneLineError(self.get("orders", "prod"), 4, "403")

    def test_unknown_label(self):
        self.stub.script((404, {}, {"status": 404, "message": "No such label: nope"}))
        r = self.get("orders", "prod", "--label", "nope")
        self.assertOneLineError(r, 3, "404", "No such label")

    def test_server_error_is_retried(self):
        self.stub.script((500, {}, "boom"), (503, {}, ""), (200, {}, ENV))
        r = self.get("orders", "prod", "--retries", "3", "--key", "db.url")
        self.assertEqual(r.code, 0, r)
        self.assertEqual(r.out, "jdbc:pg://prod\n")
        self.assertEqual(len(self.stub.requests), 3)

    def test_server_error_gives_up_after_retries(self):
        self.stub.script((500, {}, ""))
        r = self.get("orders", "prod", "--retries", "2")
        self.assertOneLineError(r, 5, "500")
        self.assertEqual(len(self.stub.requests), 2)

    def test_malformed_answers(self):
        for body in ("not json", "[1,2]", '{"name":"x"}',
                     '{"propertySources":[{"name":"a","source":{"k":{"deep":1}}}]}'):
            self.stub.script((200, {}, body))
            r = self.get("orders", "prod")
            self.assertOneLineError(r, 7)
            self.assertEqual(len(self.stub.requests), 1, body)  # not retried

    def test_oversized_answer(self):
        big = '{"propertySources":[{"name":"a","source":{"k":"' + "x" * (17 << 20) + '"}}]}'
        self.stub.script((200, {}, big))
        r = self.get("orders", "prod")
        self.assertOneLineError(r, 7, "larger than")

    # -- server down and the cache file -------------------------------------------------------

    def test_cache_stands_in_when_the_server_is_down(self):
        cache = os.path.join(self.tmp, "orders.json")
        self.stub.script((200, {"ETag": '"e1"'}, ENV))
        r = self.get("orders", "prod", "--cache-file", cache, "--format", "json")
        self.assertEqual(r.code, 0, r)
        self.assertEqual(r.err, "")
        self.assertEqual(stat.S_IMODE(os.stat(cache).st_mode), 0o600)
        self.assertEqual(sorted(os.listdir(self.tmp)), ["orders.json"])

        down = closed_port_url()
        r2 = self.get("orders", "prod", "--cache-file", cache, "--format", "json",
                      "--retries", "1", server=down)
        self.assertEqual(r2.code, 0, r2)
        self.assertEqual(json.loads(r2.out), json.loads(r.out))
        self.assertIn("warning", r2.err)
        self.assertIn(cache, r2.err)

        r3 = self.get("orders", "prod", "--cache-file", cache, "--fail-fast", "--retries", "1",
                      server=down)
        self.assertOneLineError(r3, 5, "--server")

        # Another application's request may not use this cache.
        r4 = self.get("billing", "prod", "--cache-file", cache, "--retries", "1", server=down)
        self.assertOneLineError(r4, 6, "another application")

        # A damaged cache is refused, with the file named.
        with open(cache, "r+b") as f:
            data = f.read()
            f.seek(0)
            f.write(data.replace(b"jdbc:pg://prod", b"jdbc:pg://evil"))
        r5 = self.get("orders", "prod", "--cache-file", cache, "--retries", "1", server=down)
        self.assertOneLineError(r5, 6, "checksum", cache)

    def test_server_down_without_cache(self):
        r = self.get("orders", "prod", "--retries", "1", server=closed_port_url())
        self.assertOneLineError(r, 5, "--server")

    def test_second_server_used_when_first_is_down(self):
        self.stub.script((200, {}, ENV))
        r = self.get("orders", "prod", "--key", "db.url", "--retries", "1",
                     server=closed_port_url() + "," + self.stub.url)
        self.assertEqual(r.code, 0, r)
        self.assertEqual(r.out, "jdbc:pg://prod\n")

    # -- TLS ----------------------------------------------------------------------------------

    def test_https_with_and_without_the_ca_file(self):
        cert, key = make_certificate(self.tmp)
        with Stub(tls=(cert, key)) as tls_stub:
            tls_stub.script((200, {}, ENV))
            r = self.get("orders", "prod", "--ca-file", cert, "--key", "db.url",
                         server=tls_stub.url)
            self.assertEqual((r.code, r.out), (0, "jdbc:pg://prod\n"), r)
            # Unknown issuer: refused, never silently trusted, and not retried (waiting will
            # not fix it).
            r = self.get("orders", "prod", "--retries", "3", server=tls_stub.url)
            self.assertOneLineError(r, 5, "certificate", "--ca-file")
            r = self.get("orders", "prod", "--retries", "1", "--ca-file",
                         os.path.join(self.tmp, "missing.pem"), server=tls_stub.url)
            self.assertEqual(r.code, 5, r)

    # -- watch --------------------------------------------------------------------------------

    def test_watch_long_polls_with_the_etag(self):
        env2 = json.loads(json.dumps(ENV))
        env2["propertySources"][0]["source"]["db.url"] = "jdbc:pg://new"
        self.stub.script((200, {"ETag": '"e1"'}, ENV), (304, {"ETag": '"e1"'}, ""),
                         (200, {"ETag": '"e2"'}, env2))
        r = run_cli("watch", "orders", "prod", "--count", "2", "--wait", "5",
                    server=self.stub.url)
        self.assertEqual(r.code, 0, r)
        lines = r.out.splitlines()
        self.assertEqual(len(lines), 2, r)
        self.assertEqual(json.loads(lines[0])["db"]["url"], "jdbc:pg://prod")
        self.assertEqual(json.loads(lines[1])["db"]["url"], "jdbc:pg://new")
        paths = [p for p, _ in self.stub.requests]
        # A fourth poll (for e2) may already be on its way when the CLI stops the watch.
        self.assertIn(len(paths), (3, 4))
        self.assertNotIn("?", paths[0])
        for p in paths[1:3]:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(p).query)
            self.assertEqual(query, {"watch": ["e1"], "timeout": ["5"]})

    def test_watch_diff(self):
        env2 = json.loads(json.dumps(ENV))
        env2["version"] = "v2"
        src = env2["propertySources"]
        src[0]["source"]["db.url"] = "jdbc:pg://new"
        src[0]["source"]["new.key"] = "fresh"
        del src[1]["source"]["server.port"]
        src[1]["source"]["db.pool"] = 6  # hidden by the profile's 20: no change
        self.stub.script((200, {"ETag": '"e1"'}, ENV), (200, {"ETag": '"e2"'}, env2))
        r = run_cli("watch", "orders", "prod", "--count", "2", "--diff", "--wait", "5",
                    server=self.stub.url)
        self.assertEqual(r.code, 0, r)
        lines = r.out.splitlines()
        self.assertEqual(len(lines), 2, r)
        self.assertEqual(json.loads(lines[1]), {"version": "v2", "added": {"new.key": "fresh"},
                                                "changed": {"db.url": "jdbc:pg://new"},
                                                "removed": ["server.port"]})

    def test_watch_without_etag_polls_plainly(self):
        env2 = json.loads(json.dumps(ENV))
        env2["propertySources"][0]["source"]["db.url"] = "jdbc:pg://new"
        self.stub.script((200, {}, ENV), (200, {}, env2))
        r = run_cli("watch", "orders", "prod", "--count", "2", "--wait", "1",
                    server=self.stub.url)
        self.assertEqual(r.code, 0, r)
        self.assertEqual(len(r.out.splitlines()), 2, r)
        self.assertTrue(all("?" not in p for p, _ in self.stub.requests))

    def test_watch_rides_out_an_outage(self):
        env2 = json.loads(json.dumps(ENV))
        env2["propertySources"][0]["source"]["db.url"] = "jdbc:pg://new"
        self.stub.script((200, {"ETag": '"e1"'}, ENV), (503, {}, ""), (500, {}, ""),
                         (200, {"ETag": '"e2"'}, env2))
        r = run_cli("watch", "orders", "prod", "--count", "2", "--wait", "5",
                    server=self.stub.url)
        self.assertEqual(r.code, 0, r)
        self.assertEqual(json.loads(r.out.splitlines()[1])["db"]["url"], "jdbc:pg://new")
        # The 503 on the held poll is a server leaving (asked again at once, logged at info);
        # the 500 after it begins an outage: one warning for it, not one per attempt.
        self.assertEqual(len([line for line in r.err.splitlines() if "warn" in line]), 1, r)
        self.assertIn("answered 500", r.err)
        self.assertIn(len(self.stub.requests), (4, 5))  # a next poll may be under way

    # -- render -------------------------------------------------------------------------------

    def test_render_once(self):
        self.stub.script((200, {}, ENV))
        out = os.path.join(self.tmp, "out")
        r = run_cli("render", "orders", "prod", "--out-dir", out, "--format", "env,properties",
                    "--mode", "0644", server=self.stub.url)
        self.assertEqual(r.code, 0, r)
        self.assertEqual(sorted(n for n in os.listdir(out) if not n.startswith("..")),
                         ["orders.env", "orders.properties"])
        with open(os.path.join(out, "orders.env")) as f:
            self.assertIn("DB_URL=jdbc:pg://prod\n", f.read())
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(out, "orders.env")).st_mode), 0o644)
        # A second run swaps in a new version folder and removes the old one.
        first = os.readlink(os.path.join(out, "..data"))
        self.assertEqual(run_cli("render", "orders", "prod", "--out-dir", out, "--format",
                                 "env,properties", server=self.stub.url).code, 0)
        second = os.readlink(os.path.join(out, "..data"))
        self.assertNotEqual(first, second)
        self.assertFalse(os.path.exists(os.path.join(out, first)))
        # A regular file in the way is not overwritten.
        with open(os.path.join(out, "orders.yml"), "w") as f:
            f.write("mine")
        r = run_cli("render", "orders", "prod", "--out-dir", out, server=self.stub.url)
        self.assertOneLineError(r, 1, "not a link")
        with open(os.path.join(out, "orders.yml")) as f:
            self.assertEqual(f.read(), "mine")
        self.assertEqual(os.readlink(os.path.join(out, "..data")), second)  # nothing swapped

    def test_render_file_paths(self):
        out = os.path.join(self.tmp, "out")
        self.stub.script((200, {}, ENV), (200, {}, "file body\n"))
        r = run_cli("render", "orders", "prod", "--out-dir", out, "--file", "dir/my file.txt",
                    server=self.stub.url)
        self.assertEqual(r.code, 0, r)
        # Files are read at the commit the Environment came from (its version, "v1"), so one
        # set never mixes two commits; without a version, at the label asked for.
        self.assertEqual(self.stub.requests[1][0], "/orders/prod/v1/dir%28_%29my%20file.txt")
        with open(os.path.join(out, "my file.txt")) as f:
            self.assertEqual(f.read(), "file body\n")
        self.stub.script((200, {}, environment(version=None)), (200, {}, "x"))
        r = run_cli("render", "orders", "prod", "--out-dir", out, "--file", "dir/my file.txt",
                    server=self.stub.url)
        self.assertEqual(r.code, 0, r)
        self.assertEqual(self.stub.requests[1][0],
                         "/orders/prod/dir%28_%29my%20file.txt?useDefaultLabel")
        self.stub.script((200, {}, ENV), (200, {}, "x"))
        r = run_cli("render", "orders", "prod", "--out-dir", out, "--file", "a/b.txt",
                    "--label", "rel/1", server=self.stub.url)
        self.assertEqual(r.code, 0, r)
        self.assertEqual(self.stub.requests[1][0], "/orders/prod/v1/a%28_%29b.txt")
        for bad in ("../etc/passwd", "a/./b", "/abs", "dir/"):
            r = run_cli("render", "orders", "prod", "--out-dir", out, "--file", bad,
                        server=self.stub.url)
            self.assertIn(r.code, (2,), (bad, r))
        r = run_cli("render", "orders", "prod", "--out-dir", out, "--file", "x/orders.yml",
                    server=self.stub.url)
        self.assertOneLineError(r, 2, "both be named")

    # -- exec ---------------------------------------------------------------------------------

    def test_exec_runs_the_command_with_the_environment(self):
        self.stub.script((200, {}, ENV))
        r = self.get_exec("orders", "prod", "--", "sh", "-c",
                          'echo "$DB_URL|$HOSTS_1|$SERVER_PORT|$FEATURE_ON|$KEEP"; exit 3',
                          env={"DB_URL": "inherited", "KEEP": "kept"})
        self.assertEqual((r.code, r.out), (3, "jdbc:pg://prod|b|8080|true|kept\n"), r)
        r = self.get_exec("orders", "prod", "--", "/no/such/program")
        self.assertEqual(r.code, 127, r)
        r = run_cli("exec", "orders", "prod")
        self.assertEqual(r.code, 2, r)
        r = run_cli("exec", "orders", "prod", "--restart", "--signal", "HUP", "--", "true")
        self.assertEqual(r.code, 2, r)

    def get_exec(self, *args, env=None):
        return run_cli("exec", *args, server=self.stub.url, env=env)

    def start_exec(self, *args):
        proc = spawn(CLI_BIN, "exec", *args, server=self.stub.url)
        self.addCleanup(reap, proc)
        return proc

    def changed_env(self):
        env2 = json.loads(json.dumps(ENV))
        env2["propertySources"][0]["source"]["db.url"] = "jdbc:pg://new"
        return env2

    def test_exec_restarts_on_change_and_forwards_signals(self):
        self.stub.script((200, {"ETag": '"e1"'}, ENV), (304, {"ETag": '"e1"'}, ""))
        proc = self.start_exec("orders", "prod", "--restart", "--wait", "1", "--", "sh", "-c",
                               'echo "$DB_URL"; exec sleep 600')
        self.assertEqual(read_line(proc), "jdbc:pg://prod\n")
        self.stub.script((200, {"ETag": '"e2"'}, self.changed_env()),
                         (304, {"ETag": '"e2"'}, ""))
        self.assertEqual(read_line(proc), "jdbc:pg://new\n")
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=30), 128 + signal.SIGTERM)

    def test_exec_kills_a_child_that_ignores_sigterm_after_the_grace(self):
        self.stub.script((200, {"ETag": '"e1"'}, ENV), (304, {"ETag": '"e1"'}, ""))
        proc = self.start_exec("orders", "prod", "--restart", "--grace", "1", "--wait", "1",
                               "--", "sh", "-c", 'trap "" TERM; echo "$DB_URL"; exec sleep 600')
        self.assertEqual(read_line(proc), "jdbc:pg://prod\n")
        self.stub.script((200, {"ETag": '"e2"'}, self.changed_env()),
                         (304, {"ETag": '"e2"'}, ""))
        self.assertEqual(read_line(proc), "jdbc:pg://new\n")
        proc.send_signal(signal.SIGINT)
        self.assertEqual(proc.wait(timeout=30), 128 + signal.SIGINT)
        self.assertIn("did not exit within 1 s", proc.stderr.read().decode())

    def test_exec_signals_on_change_and_exits_with_the_child(self):
        self.stub.script((200, {"ETag": '"e1"'}, ENV), (304, {"ETag": '"e1"'}, ""))
        proc = self.start_exec("orders", "prod", "--signal", "HUP", "--wait", "1", "--", "sh",
                               "-c", 'trap "echo hup; exit 7" HUP; echo start; '
                               'while :; do sleep 1; done')
        self.assertEqual(read_line(proc), "start\n")
        self.stub.script((200, {"ETag": '"e2"'}, self.changed_env()),
                         (304, {"ETag": '"e2"'}, ""))
        self.assertEqual(read_line(proc), "hup\n")
        self.assertEqual(proc.wait(timeout=30), 7)

    # -- lint ---------------------------------------------------------------------------------

    def test_lint(self):
        repo = os.path.join(self.tmp, "repo")
        files = {
            "application.yml": "server:\n  port: 80\n",
            "orders-dev.properties": "ok={cipher}abcdef\n",
            "bad.yml": "a: 1\nb: [1, 2\n",
            "sub/unquoted.yml": "db:\n  password: {cipher}abc123\n",
            "sub/bare.yml": "db:\n  password: {cipher}\n",
            "quoted.properties": "db.password=\"{cipher}abc\"\n",
            "dup.yml": "x: 1\nx: 2\n",
            "orders-.yml": "a: b\n",
            "notes.txt": "not: [checked\n",
            ".git/config.yml": "not: [checked\n",
        }
        write_files(repo, files)
        r = run_cli("lint", repo)
        self.assertEqual(r.code, 1, r)
        lines = r.out.splitlines()
        expect = [("bad.yml:3:", "flow sequence"), ("dup.yml:2:1:", "duplicate key"),
                  ("orders-.yml:1:1:", "no request can select"),
                  ("quoted.properties:1:", "quotes around a {cipher}"),
                  ("sub/bare.yml:2:", "unquoted {cipher}"),
                  ("sub/unquoted.yml:2:", "must be quoted in YAML")]
        self.assertEqual(len(lines), len(expect), r)
        for line, (where, what) in zip(lines, expect):
            self.assertTrue(line.startswith(os.path.join(repo, where)), (line, where))
            self.assertIn(what, line)
        self.assertIn("8 file(s) checked, 6 problem(s)", r.err)

        clean = os.path.join(self.tmp, "clean")
        os.makedirs(clean)
        with open(os.path.join(clean, "orders.yml"), "w") as f:
            f.write("secret: '{cipher}abc'\nlist:\n  - a\n")
        r = run_cli("lint", clean)
        self.assertEqual((r.code, r.out), (0, ""), r)
        self.assertEqual(run_cli("lint", os.path.join(self.tmp, "missing")).code, 2)

    def test_lint_repos_section(self):
        config = os.path.join(self.tmp, "server.yml")
        with open(config, "w") as f:
            f.write("repo: https://git.example.com/platform/config.git\n"
                    "repos:\n"
                    "  payments:\n"
                    "    pattern: [payments*, billing-*/dev*]\n"
                    "    uri: https://git.example.com/payments/config.git\n"
                    "  team-a:\n"
                    "    pattern: team-a-*\n"
                    "    uri: https://git.example.com/configs/{application}-{profile}.git\n")
        r = run_cli("lint", "--config", config, "--which", "payments-api/prod",
                    "--which", "billing-x/dev,eu", "--which", "billing-x/eu,dev",
                    "--which", "team-a-web/dev,prod", "--which", "orders")
        self.assertEqual(r.code, 0, r)
        self.assertEqual(r.out.splitlines(), [
            "payments-api/prod: payments https://git.example.com/payments/config.git",
            "billing-x/dev,eu: payments https://git.example.com/payments/config.git",
            "billing-x/eu,dev: default https://git.example.com/platform/config.git",
            "team-a-web/dev,prod: team-a https://git.example.com/configs/team-a-web-prod.git",
            "orders/default: default https://git.example.com/platform/config.git",
        ])

        with open(config, "w") as f:
            f.write("repos:\n  team-a:\n    pattern: team-a-*\n    uris: x\n")
        r = run_cli("lint", "--config", config, "--which", "team-a-x")
        self.assertEqual(r.code, 1, r)
        self.assertTrue(r.out.startswith(config + ":4:"), r)
        self.assertIn("repos.team-a.uris: unknown field", r.out)
        self.assertEqual(run_cli("lint", "--which", "x").code, 2)

    def test_lint_profile_expressions(self):
        repo = os.path.join(self.tmp, "profiles")
        files = {
            # Spring forbids mixing & and | without parentheses; the server fails the file.
            "mixed.yml": "a: 1\n---\nspring:\n  config:\n    activate:\n"
                         "      on-profile: dev & prod | test\nb: 2\n",
            "legacy-list.yml": "spring:\n  profiles:\n    - dev\n    - '()'\n",
            "bang.properties": "a=1\n#---\nspring.config.activate.on-profile=dev & !\nb=2\n",
            "good.yml": "a: 1\n---\nspring.config.activate.on-profile: dev & (prod | test)\n"
                        "b: 2\n---\nspring:\n  profiles: '!dev, prod'\nc: 3\n",
            "good.properties": "a=1\n#---\nspring.profiles=dev | prod\nb=2\n",
        }
        write_files(repo, files)
        r = run_cli("lint", repo)
        self.assertEqual(r.code, 1, r)
        lines = r.out.splitlines()
        # The legacy key also gets Spring Boot's own refusal (InvalidConfigDataPropertyException).
        legacy = "Property 'spring.profiles"
        expect = [("bang.properties:3:", "spring.config.activate.on-profile: malformed"),
                  ("good.properties:3:", legacy),
                  ("good.yml:7:", legacy),
                  ("legacy-list.yml:3:", "spring.profiles: malformed profile expression"),
                  ("legacy-list.yml:3:", legacy),
                  ("mixed.yml:6:19:", "spring.config.activate.on-profile: malformed profile "
                                      "expression [dev & prod | test]")]
        self.assertEqual(len(lines), len(expect), r)
        for line, (where, what) in zip(lines, expect):
            self.assertTrue(line.startswith(os.path.join(repo, where)), (line, where))
            self.assertIn(what, line)
        self.assertIn("5 file(s) checked, 6 problem(s)", r.err)

        for name in ("mixed.yml", "legacy-list.yml", "bang.properties"):
            os.unlink(os.path.join(repo, name))
        with open(os.path.join(repo, "good.yml"), "w") as f:
            f.write("a: 1\n---\nspring.config.activate.on-profile: '!dev, prod'\nc: 3\n")
        with open(os.path.join(repo, "good.properties"), "w") as f:
            f.write("a=1\n#---\nspring.config.activate.on-profile=dev | prod\nb=2\n")
        r = run_cli("lint", repo)
        self.assertEqual((r.code, r.out), (0, ""), r)

    def test_lint_config_data(self):
        """What Spring Boot refuses with a 500 and Almanac serves, and imports Almanac never
        reads (issue: config-data inside the repository)."""
        repo = os.path.join(self.tmp, "configdata")
        files = {
            "orders.yml": "a: 1\n",
            # a profile variant of orders.yml: include is refused there
            "orders-dev.yml": "spring.profiles.include: x\n",
            "application-prod.properties": "spring.profiles.active=x\n",
            # no my.yml beside it: the plain file of application my-app, include allowed
            "my-app.yml": "spring.profiles.include: y\n",
            "multi.yml": "a: 1\n---\nspring.config.activate.on-profile: dev\n"
                         "spring.profiles.include: [q]\n---\nspring.profiles: dev\nb: 1\n---\n"
                         "spring.config.activate.on-cloud-platform: k8s\nc: 1\n---\n"
                         "spring.config.activate.on-cloud-platform: Kubernetes\nd: 1\n",
            "sub/imp.yml": "spring.config.import:\n  - /etc/passwd\n  - ../x.yml\n"
                           "  - optional:file:./y.yml\n  - ok.yml\n  - ../shared/c.yml\n",
            "shared/c.properties": "spring.config.import=classpath:a.yml, ../../b.yml\n",
        }
        write_files(repo, files)
        r = run_cli("lint", repo)
        self.assertEqual(r.code, 1, r)
        lines = r.out.splitlines()
        expect = [("application-prod.properties:1:",
                   "Property 'spring.profiles.active' is invalid in a profile specific resource"),
                  ("multi.yml:4:", "cannot contain property 'spring.profiles.include[0]'"),
                  ("multi.yml:6:", "Property 'spring.profiles' is invalid and should be replaced "
                                   "with 'spring.config.activate.on-profile'"),
                  ("multi.yml:9:", "not a cloud platform"),
                  ("orders-dev.yml:1:",
                   "Property 'spring.profiles.include' is invalid in a profile specific resource"),
                  ("shared/c.properties:1:", "'classpath:a.yml': Almanac never reads it"),
                  ("shared/c.properties:1:", "'../../b.yml': Almanac never reads it: '..' leads "
                                             "out of the repository"),
                  ("sub/imp.yml:2:", "'/etc/passwd': Almanac never reads it: an absolute path"),
                  ("sub/imp.yml:4:", "'file:./y.yml': Almanac never reads it")]
        self.assertEqual(len(lines), len(expect), r)
        for line, (where, what) in zip(lines, expect):
            self.assertTrue(line.startswith(os.path.join(repo, where)), (line, where))
            self.assertIn(what, line)
        self.assertIn("7 file(s) checked, 9 problem(s)", r.err)

    # -- command line -------------------------------------------------------------------------

    def test_usage(self):
        for args in ([], ["frobnicate"], ["get"], ["get", "a"], ["get", "a", "b", "c"],
                     ["get", "a", "b", "--bogus"], ["get", "a", "b", "--format"],
                     ["get", "a", "b", "--retries", "0"], ["watch", "a", "b", "--wait", "-1"],
                     ["render", "a", "b"], ["render", "a", "b", "--out-dir", self.tmp,
                                            "--format", "yaml,yaml"],
                     ["render", "../a", "b", "--out-dir", self.tmp],
                     ["render", "a", "b", "--out-dir", self.tmp, "--mode", "0200"]):
            r = run_cli(*args)
            self.assertEqual(r.code, 2, (args, r))
            self.assertEqual(len(r.err.strip().split("\n")), 1, (args, r))
        for args in (["--help"], ["get", "--help"], ["watch", "--help"], ["exec", "--help"],
                     ["render", "--help"], ["lint", "--help"], ["encrypt", "--help"],
                     ["decrypt", "--help"]):
            r = run_cli(*args)
            self.assertEqual(r.code, 0, r)
            self.assertIn("usage: almanac", r.out)
        r = run_cli("--version")
        self.assertEqual(r.code, 0, r)
        self.assertRegex(r.out, r"^almanac \d+\.\d+\.\d+")


if __name__ == "__main__":
    unittest.main()
