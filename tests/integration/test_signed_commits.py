"""Signed configuration only: --verify-commits with --allowed-signers.

Real keys made by ssh-keygen (Ed25519, ECDSA P-256, RSA), commits signed by git itself
(`git -c gpg.format=ssh -c user.signingkey=KEY commit -S`, which runs `ssh-keygen -Y sign`),
a real server fetching them over file://. The rule tested and documented in docs/security.md:
a commit is served only when its SSH signature verifies with a key of the allowed signers file,
whoever the commit says wrote it (as `git verify-commit` decides); a branch whose new tip is
refused stays on its last verified commit; a tag or commit id that does not verify gets 403.
"""

import os
import re
import shutil
import subprocess
import unittest

from almanac_harness import ServerTestCase, GitRepo, wait_until

BUILD_DIR = os.environ.get("ALMANAC_BUILD_DIR", "")
CLI_BIN = os.path.join(BUILD_DIR, "client", "almanac") if BUILD_DIR else ""


def keygen(directory, name, kind, bits=None):
    path = os.path.join(directory, name)
    args = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", name, "-f", path]
    if bits:
        args[4:4] = ["-b", str(bits)]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with open(path + ".pub") as f:
        kind_name, b64 = f.read().split()[:2]
    return path, kind_name + " " + b64


def fingerprint(pub_path):
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", pub_path], check=True,
                         stdout=subprocess.PIPE).stdout.decode()
    return out.split()[1]


class SignedCommitsTest(ServerTestCase):
    @classmethod
    def setUpServers(cls):
        if shutil.which("ssh-keygen") is None:
            raise unittest.SkipTest("ssh-keygen (openssh-client) is not installed: "
                                    "scripts/install-deps --test installs it")
        keys = os.path.join(cls.tmp, "keys")
        os.makedirs(keys)
        cls.alice, alice_pub = keygen(keys, "alice", "ed25519")
        cls.bob, bob_pub = keygen(keys, "bob", "ecdsa", 256)
        cls.carol, carol_pub = keygen(keys, "carol", "rsa", 3072)
        cls.mallory, _ = keygen(keys, "mallory", "ed25519")
        cls.dave, dave_pub = keygen(keys, "dave", "ed25519")
        cls.erin, erin_pub = keygen(keys, "erin", "ed25519")
        cls.signers = os.path.join(cls.tmp, "allowed_signers")
        with open(cls.signers, "w") as f:
            f.write("# who may sign configuration\n"
                    "alice@example.com %s\n"
                    'bob@example.com namespaces="git" %s\n'
                    "carol@example.com,carol@corp.example %s\n"
                    'dave@example.com namespaces="file" %s\n'
                    'erin@example.com valid-before="20000101Z" %s\n'
                    % (alice_pub, bob_pub, carol_pub, dave_pub, erin_pub))
        cls.count = 0

    # -- helpers ----------------------------------------------------------------------------

    def new_repo(self):
        type(self).count += 1
        return GitRepo(self.tmp, "remote%d" % self.count)

    def signed(self, repo, key, files, message="update", committer=None):
        repo.write(files)
        repo.git("add", "-A")
        args = ["-c", "gpg.format=ssh", "-c", "user.signingkey=" + key]
        if committer:
            args += ["-c", "user.email=" + committer]
        repo.git(*args, "commit", "-q", "-S", "--allow-empty", "-m", message)
        return repo.head()

    def serve(self, repo, extra=()):
        return self.start_server(repo.uri, extra_args=["--verify-commits", "--allowed-signers",
                                                       self.signers, *extra])

    def served(self, server, label=None):
        path = "/app/default" + ("/" + label if label else "")
        r = server.get(path)
        self.assertEqual(r.status, 200, r)
        body = r.json()
        return body["version"], {k: v for s in body["propertySources"]
                                 for k, v in s["source"].items()}

    def repository_health(self, server):
        return server.get("/actuator/health").json()["components"]["repository"]

    def metric(self, server, result):
        text = server.get("/metrics").text
        m = re.search(r'^almanac_commit_verifications_total\{result="%s"\} (\d+)$' % result,
                      text, re.M)
        self.assertIsNotNone(m, "no almanac_commit_verifications_total{result=%s}" % result)
        return int(m.group(1))

    def assertRefusedHead(self, server, commit, reason, serving):
        health = self.repository_health(server)
        self.assertEqual(health["status"], "DEGRADED", health)
        refused = health["details"]["refusedCommits"]
        self.assertEqual(len(refused), 1, refused)
        self.assertEqual(refused[0]["branch"], "main")
        self.assertEqual(refused[0]["commit"], commit)
        self.assertIn(reason, refused[0]["reason"])
        self.assertEqual(refused[0]["serving"], serving)

    # -- the server ---------------------------------------------------------------------------

    def test_each_key_type_is_served(self):
        repo = self.new_repo()
        c1 = self.signed(repo, self.alice, {"app.yml": "who: alice\n"})
        server = self.serve(repo)
        self.assertEqual(self.served(server), (c1, {"who": "alice"}))
        c2 = self.signed(repo, self.bob, {"app.yml": "who: bob\n"})
        server.refresh()
        self.assertEqual(self.served(server), (c2, {"who": "bob"}))
        c3 = self.signed(repo, self.carol, {"app.yml": "who: carol\n"})
        server.refresh()
        self.assertEqual(self.served(server), (c3, {"who": "carol"}))
        health = self.repository_health(server)
        self.assertEqual(health["status"], "UP", health)
        self.assertTrue(health["details"]["verifyCommits"])
        self.assertNotIn("refusedCommits", health["details"])
        self.assertGreaterEqual(self.metric(server, "verified"), 3)
        self.assertEqual(self.metric(server, "refused"), 0)
        server.wait_for_log(r"branch main: commit %s verified, signed by "
                            r"carol@example.com,carol@corp.example" % c3)

    def test_unsigned_head_is_not_served_while_the_signed_one_stays(self):
        repo = self.new_repo()
        c1 = self.signed(repo, self.alice, {"app.yml": "v: 1\n"})
        server = self.serve(repo)
        c2 = repo.commit({"app.yml": "v: 2\n"}, "not signed")
        server.refresh()
        self.assertEqual(self.served(server), (c1, {"v": 1}))
        self.assertEqual(self.served(server, "main"), (c1, {"v": 1}))
        self.assertRefusedHead(server, c2, "not signed", c1)
        self.assertEqual(self.metric(server, "refused"), 1)
        server.wait_for_log(r"branch main: commit %s refused \(not signed\); still serving %s"
                            % (c2, c1))
        # the refused commit named directly
        r = server.get("/app/default/" + c2)
        self.assertErrorBody(r, 403)
        self.assertIn("commit %s is not verified" % c2, r.json()["message"])
        self.assertIn("not signed", r.json()["message"])
        # the next signed commit is served and the refusal is over
        c3 = self.signed(repo, self.alice, {"app.yml": "v: 3\n"})
        server.refresh()
        self.assertEqual(self.served(server), (c3, {"v": 3}))
        health = self.repository_health(server)
        self.assertEqual(health["status"], "UP", health)
        self.assertNotIn("refusedCommits", health["details"])

    def test_key_not_in_the_file_is_refused(self):
        repo = self.new_repo()
        c1 = self.signed(repo, self.alice, {"app.yml": "v: 1\n"})
        server = self.serve(repo)
        c2 = self.signed(repo, self.mallory, {"app.yml": "v: evil\n"})
        server.refresh()
        self.assertEqual(self.served(server), (c1, {"v": 1}))
        self.assertRefusedHead(server, c2, "signed by a key not in the allowed signers file "
                               "(ssh-ed25519 %s)" % fingerprint(self.mallory + ".pub"), c1)
        self.assertErrorBody(server.get("/app/default/" + c2), 403)

    def test_line_options_namespaces_and_validity_are_honoured(self):
        repo = self.new_repo()
        c1 = self.signed(repo, self.alice, {"app.yml": "v: 1\n"})
        server = self.serve(repo)
        c2 = self.signed(repo, self.dave, {"app.yml": "v: dave\n"})
        server.refresh()
        self.assertEqual(self.served(server), (c1, {"v": 1}))
        self.assertRefusedHead(server, c2, 'allowed for namespaces "file" only', c1)
        c3 = self.signed(repo, self.erin, {"app.yml": "v: erin\n"})
        server.refresh()
        self.assertEqual(self.served(server), (c1, {"v": 1}))
        self.assertRefusedHead(server, c3, "valid only before 2000-01-01T00:00:00Z", c1)

    def test_the_committer_named_is_not_what_is_trusted(self):
        # Git's rule: the allowed signers file says which keys may sign; the name a commit
        # gives is not checked against the key's principals (anyone can write any name).
        repo = self.new_repo()
        c1 = self.signed(repo, self.alice, {"app.yml": "v: 1\n"},
                         committer="carol@example.com")
        server = self.serve(repo)
        self.assertEqual(self.served(server), (c1, {"v": 1}))
        server.wait_for_log(r"commit %s verified, signed by alice@example.com" % c1)

    def test_tampered_commit_is_refused(self):
        repo = self.new_repo()
        c1 = self.signed(repo, self.alice, {"app.yml": "v: 1\n"})
        server = self.serve(repo)
        c2 = self.signed(repo, self.alice, {"app.yml": "v: 2\n"}, message="reviewed change")
        raw = repo.git("cat-file", "commit", c2) + "\n"
        forged = raw.replace("reviewed change", "reviewed change, then edited")
        self.assertNotEqual(raw, forged)
        forged_path = os.path.join(self.tmp, "forged-commit")
        with open(forged_path, "w") as f:
            f.write(forged)
        c3 = repo.git("hash-object", "-t", "commit", "-w", forged_path)
        repo.git("update-ref", "refs/heads/main", c3)
        self.assertIn("gpgsig", repo.git("cat-file", "commit", c3))
        server.refresh()
        self.assertEqual(self.served(server), (c1, {"v": 1}))
        self.assertRefusedHead(server, c3, "bad signature", c1)

    def test_tags_and_commit_ids_are_checked_as_they_are(self):
        repo = self.new_repo()
        c1 = self.signed(repo, self.alice, {"app.yml": "v: 1\n"})
        repo.tag("good")
        repo.tag("good-annotated", annotated=True)
        c2 = repo.commit({"app.yml": "v: 2\n"}, "not signed")
        repo.tag("unsigned")
        repo.tag("unsigned-annotated", annotated=True)
        c3 = self.signed(repo, self.carol, {"app.yml": "v: 3\n"})
        server = self.serve(repo)
        self.assertEqual(self.served(server), (c3, {"v": 3}))
        self.assertEqual(self.served(server, "good"), (c1, {"v": 1}))
        self.assertEqual(self.served(server, "good-annotated"), (c1, {"v": 1}))
        self.assertEqual(self.served(server, c1), (c1, {"v": 1}))
        self.assertEqual(self.served(server, c1[:10]), (c1, {"v": 1}))
        for label in ("unsigned", "unsigned-annotated", c2[:10]):
            r = server.get("/app/default/" + label)
            self.assertErrorBody(r, 403)
            self.assertIn("label %s is commit %s, which is not verified" % (label, c2),
                          r.json()["message"])
        # the other endpoints resolve labels the same way
        self.assertEqual(server.get("/unsigned/app-default.yml").status, 403)
        self.assertEqual(server.get("/app/default/unsigned/app.yml").status, 403)

    def test_a_branch_that_never_verified_answers_403(self):
        repo = self.new_repo()
        self.signed(repo, self.alice, {"app.yml": "v: 1\n"})
        repo.git("checkout", "-q", "-b", "feature")
        f1 = repo.commit({"app.yml": "v: feature\n"}, "not signed")
        repo.git("checkout", "-q", "main")
        server = self.serve(repo)
        r = server.get("/app/default/feature")
        self.assertErrorBody(r, 403)
        self.assertIn("branch feature has no verified commit", r.json()["message"])
        self.assertIn("%s: not signed" % f1[:12], r.json()["message"])
        refused = self.repository_health(server)["details"]["refusedCommits"]
        self.assertEqual(refused, [{"branch": "feature", "commit": f1, "reason": "not signed",
                                    "serving": None}])

    def test_an_unsigned_default_branch_at_start_serves_nothing(self):
        repo = self.new_repo()
        c1 = repo.commit({"app.yml": "v: 1\n"}, "not signed")
        server = self.serve(repo)
        r = server.get("/app/default")
        self.assertErrorBody(r, 403)
        self.assertIn("branch main has no verified commit", r.json()["message"])
        self.assertEqual(self.repository_health(server)["details"]["refusedCommits"][0]["commit"],
                         c1)

    def test_refusals_survive_a_restart_on_the_same_mirror(self):
        repo = self.new_repo()
        c1 = self.signed(repo, self.alice, {"app.yml": "v: 1\n"})
        server = self.serve(repo)
        cache = server.cache_dir
        c2 = repo.commit({"app.yml": "v: 2\n"}, "not signed")
        server.refresh()
        self.assertEqual(self.served(server)[0], c1)
        server.stop()
        again = self.start_server(repo.uri, cache_dir=cache, extra_args=[
            "--verify-commits", "--allowed-signers", self.signers])
        self.assertEqual(self.served(again), (c1, {"v": 1}))
        self.assertRefusedHead(again, c2, "not signed", c1)

    def test_a_recloned_mirror_keeps_the_last_verified_commit(self):
        repo = self.new_repo()
        c1 = self.signed(repo, self.alice, {"app.yml": "v: 1\n"})
        repo.branch("keep")
        server = self.serve(repo)
        c2 = repo.commit({"app.yml": "v: 2\n"}, "not signed")
        server.refresh()
        self.assertEqual(self.served(server)[0], c1)
        server.stop()
        mirrors = [d for d in os.listdir(server.cache_dir) if d.endswith(".git")]
        self.assertEqual(len(mirrors), 1, mirrors)
        with open(os.path.join(server.cache_dir, mirrors[0], "refs", "heads", "keep"), "w") as f:
            f.write("garbage\n")
        again = self.start_server(repo.uri, cache_dir=server.cache_dir, extra_args=[
            "--verify-commits", "--allowed-signers", self.signers])
        again.wait_for_log(r"cloned .* again into")
        self.assertEqual(self.served(again), (c1, {"v": 1}))
        self.assertRefusedHead(again, c2, "not signed", c1)

    def test_a_withdrawn_key_is_not_served_after_a_restart(self):
        repo = self.new_repo()
        c1 = self.signed(repo, self.alice, {"app.yml": "v: 1\n"})
        server = self.serve(repo)
        self.assertEqual(self.served(server)[0], c1)
        cache = server.cache_dir
        server.stop()
        without_alice = os.path.join(self.tmp, "without_alice")
        with open(self.signers) as f, open(without_alice, "w") as out:
            out.writelines(line for line in f if not line.startswith("alice@"))
        again = self.start_server(repo.uri, cache_dir=cache, extra_args=[
            "--verify-commits", "--allowed-signers", without_alice])
        again.wait_for_log(r"branch main: its last verified commit no longer verifies "
                           r"\(signed by a key not in the allowed signers file")
        self.assertErrorBody(again.get("/app/default"), 403)
        self.assertRefusedHead(again, c1, "not in the allowed signers file", None)

    def test_every_repository_of_the_repos_section_is_verified(self):
        default = self.new_repo()
        self.signed(default, self.alice, {"application.yml": "where: default\n"})
        team = self.new_repo()
        t1 = self.signed(team, self.alice, {"team-x.yml": "v: 1\n"})
        config = os.path.join(self.tmp, "repos-%d.yml" % self.count)
        with open(config, "w") as f:
            f.write("repos:\n  team:\n    pattern: team-*\n    uri: %s\n"
                    "  per-app:\n    pattern: app-*\n    uri: file://%s/{application}\n"
                    % (team.uri, os.path.join(self.tmp, "no-such-apps")))
        server = self.start_server(default.uri, extra_args=[
            "--config", config, "--verify-commits", "--allowed-signers", self.signers])
        r = server.get("/team-x/default")
        self.assertEqual((r.status, r.json()["version"]), (200, t1), r)
        # an application whose template repository does not exist reads the empty stand-in,
        # a directory with no commit to verify, as it does without --verify-commits
        r = server.get("/app-missing/default")
        self.assertEqual((r.status, r.json()["propertySources"]), (200, []), r)
        t2 = team.commit({"team-x.yml": "v: 2\n"}, "not signed")
        server.refresh()  # the default's answer; team fetches alongside

        def team_health():
            body = server.get("/actuator/health").json()
            return body["components"]["repositories"]["components"]["team"]
        health = wait_until(lambda: "refusedCommits" in team_health()["details"]
                            and team_health(), 20)
        self.assertEqual(health["status"], "DEGRADED", health)
        self.assertEqual(health["details"]["refusedCommits"][0]["commit"], t2)
        self.assertEqual(health["details"]["refusedCommits"][0]["serving"], t1)
        r = server.get("/team-x/default")
        self.assertEqual((r.status, r.json()["version"]), (200, t1), r)
        self.assertErrorBody(server.get("/team-x/default/" + t2), 403)

    # -- start-up -------------------------------------------------------------------------------

    def run_server(self, *args):
        from almanac_harness import SERVER_BIN
        return subprocess.run([SERVER_BIN, "--repo", "file:///nonexistent", "--port", "0",
                               "--cache-dir", os.path.join(self.tmp, "unused"), *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)

    def test_flags_go_together_and_a_bad_file_stops_the_start(self):
        out = self.run_server("--verify-commits")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn(b"--verify-commits needs --allowed-signers", out.stderr)
        out = self.run_server("--allowed-signers", self.signers)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn(b"--allowed-signers has no effect without --verify-commits", out.stderr)
        bad = os.path.join(self.tmp, "bad_signers")
        with open(bad, "w") as f:
            f.write("# fine\nalice@example.com ssh-ed25519 AAAA-not-base64\n")
        repo = self.new_repo()
        self.signed(repo, self.alice, {"app.yml": "v: 1\n"})
        out = subprocess.run(
            [__import__("almanac_harness").SERVER_BIN, "--repo", repo.uri, "--port", "0",
             "--listen", "127.0.0.1", "--cache-dir", os.path.join(self.tmp, "bad-cache"),
             "--verify-commits", "--allowed-signers", bad],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(out.returncode, 1, out.stderr)
        self.assertIn(("%s:2: the ssh-ed25519 key is not base64" % bad).encode(), out.stderr)

    # -- almanac lint -----------------------------------------------------------------------------

    def lint(self, *args):
        if not CLI_BIN or not os.access(CLI_BIN, os.X_OK):
            self.skipTest("ALMANAC_BUILD_DIR has no client/almanac")
        return subprocess.run([CLI_BIN, "lint", *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=60)

    def test_lint_verify_commits(self):
        repo = self.new_repo()
        c1 = self.signed(repo, self.bob, {"app.yml": "v: 1\n"})
        out = self.lint("--verify-commits", "--allowed-signers", self.signers, repo.path)
        self.assertEqual(out.returncode, 0, out)
        self.assertIn(("HEAD (%s) is signed by bob@example.com" % c1).encode(), out.stderr)
        c2 = repo.commit({"app.yml": "v: 2\n"}, "not signed")
        out = self.lint("--verify-commits", "--allowed-signers", self.signers, repo.path)
        self.assertEqual(out.returncode, 1, out)
        self.assertIn(("HEAD: label HEAD is commit %s, which is not verified "
                       "(--verify-commits): not signed" % c2).encode(), out.stdout)
        out = self.lint("--verify-commits", "--allowed-signers", self.signers,
                        "--revision", "HEAD~1", repo.path)
        self.assertEqual(out.returncode, 0, out)
        self.signed(repo, self.mallory, {"app.yml": "v: 3\n"})
        out = self.lint("--verify-commits", "--allowed-signers", self.signers, repo.path)
        self.assertEqual(out.returncode, 1, out)
        self.assertIn(b"signed by a key not in the allowed signers file", out.stdout)
        # without the flags the signature is not looked at
        self.assertEqual(self.lint(repo.path).returncode, 0)
        self.assertEqual(self.lint("--verify-commits", repo.path).returncode, 2)
        self.assertEqual(self.lint("--revision", "HEAD", repo.path).returncode, 2)


if __name__ == "__main__":
    unittest.main()
