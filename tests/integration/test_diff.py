"""GET /diff: the effective change a commit makes, per Environment and across the repository,
against real commits of the bundled sample repository."""

import hashlib
import os
import shutil
import unittest

from almanac_harness import SOURCE_DIR, ServerTestCase

SAMPLE = os.path.join(SOURCE_DIR, "config-repo-sample")
KEY = os.path.join(SOURCE_DIR, "demo-keys", "demo.key")
ADMIN_TOKEN = "diff-admin-token"
ORDERS_TOKEN = "diff-orders-token"


def sample_files():
    files = {}
    for root, _, names in os.walk(SAMPLE):
        for name in names:
            path = os.path.join(root, name)
            with open(path, encoding="utf-8") as f:
                files[os.path.relpath(path, SAMPLE)] = f.read()
    return files


def keys(entries):
    return [e["key"] for e in entries]


class DiffTest(ServerTestCase):

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        files = sample_files()
        cls.repo.commit(files, "sample")
        cls.base = cls.repo.head()
        # 1: a shared key changes for everyone
        app = files["application.yml"] + "\ndiff:\n  shared-marker: one\n"
        cls.repo.commit({"application.yml": app}, "shared key")
        cls.shared = cls.repo.head()
        # 2: only orders-prod changes
        prod = files["orders-prod.yml"].replace("\n", "\n# a comment only\n", 1)
        prod += "\n---\norders:\n  diff-prod-only: 60\n"
        cls.repo.commit({"orders-prod.yml": prod}, "orders prod only")
        cls.prod_only = cls.repo.head()
        # 3: a comment and a reordering: no effective key changes
        cls.repo.commit({"orders.yml": "# reviewed\n" + files["orders.yml"]}, "comment only")
        cls.comment = cls.repo.head()
        cls.orders_yml = files["orders.yml"]
        auth = os.path.join(cls.tmp, "auth.yml")
        with open(auth, "w") as f:
            f.write("tokens:\n"
                    "  - sha256: \"%s\"\n    name: ops\n    admin: true\n"
                    "  - sha256: \"%s\"\n    applications: [orders]\n"
                    % (hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest(),
                       hashlib.sha256(ORDERS_TOKEN.encode()).hexdigest()))
        os.chmod(auth, 0o600)
        cls.server = cls.start_server(cls.repo.uri, extra_args=[
            "--auth-file", auth, "--encrypt-key-file", KEY])

    def diff(self, path, token=ADMIN_TOKEN, status=200):
        r = self.server.get(path, headers={"Authorization": "Bearer " + token})
        self.assertEqual(r.status, status, r)
        return r.json()

    def test_shared_change_shows_in_every_application(self):
        body = self.diff("/diff?from=%s&to=%s" % (self.base, self.shared))
        pairs = {(c["application"], c["profile"]) for c in body["changed"]}
        for app in ("orders", "payments", "gateway"):
            for profile in ("default", "dev", "stage", "prod"):
                self.assertIn((app, profile), pairs)
        self.assertTrue(all(c["counts"] == {"added": 1, "removed": 0, "changed": 0}
                            for c in body["changed"]), body)
        one = self.diff("/diff/payments/dev?from=%s&to=%s" % (self.base, self.shared))
        self.assertEqual(keys(one["added"]), ["diff.shared-marker"])
        self.assertEqual(one["added"][0]["to"]["value"], "one")
        self.assertTrue(one["added"][0]["to"]["source"].endswith("/application.yml"), one)
        self.assertEqual(one["fromVersion"], self.base)
        self.assertEqual(one["toVersion"], self.shared)

    def test_profile_file_change_only_in_that_environment(self):
        body = self.diff("/diff?from=%s&to=%s" % (self.shared, self.prod_only))
        self.assertEqual([(c["application"], c["profile"]) for c in body["changed"]],
                         [("orders", "prod")])
        one = self.diff("/diff/orders/prod?from=%s&to=%s" % (self.shared, self.prod_only))
        self.assertEqual(keys(one["added"]), ["orders.diff-prod-only"])
        self.assertEqual(one["added"][0]["to"]["value"], 60)
        self.assertRegex(one["added"][0]["to"]["origin"], r"^\d+:\d+$")
        none = self.diff("/diff/orders/dev?from=%s&to=%s" % (self.shared, self.prod_only))
        self.assertEqual(none["counts"], {"added": 0, "removed": 0, "changed": 0})

    def test_comment_only_commit_changes_nothing(self):
        body = self.diff("/diff?from=%s&to=%s" % (self.prod_only, self.comment))
        self.assertEqual(body["changed"], [])

    def test_removed_and_changed_keys(self):
        back = self.diff("/diff/orders/prod?from=%s&to=%s" % (self.prod_only, self.base))
        self.assertEqual(keys(back["removed"]), ["diff.shared-marker", "orders.diff-prod-only"])
        self.assertEqual(back["removed"][1]["from"]["value"], 60)
        self.assertNotIn("to", back["removed"][1])

    def rotate_secret(self):
        """A commit that encrypts a new database password (through the server's /encrypt)."""
        if getattr(type(self), "secret", None):
            return type(self).secret
        r = self.server.post("/encrypt", b"rotated-password",
                             headers={"Authorization": "Bearer " + ADMIN_TOKEN,
                                      "Content-Type": "text/plain"})
        self.assertEqual(r.status, 200, r)
        lines = [("orders.datasource.password: '{cipher}%s'" % r.text
                  if line.startswith("orders.datasource.password:") else line)
                 for line in self.orders_yml.split("\n")]
        self.repo.commit({"orders.yml": "\n".join(lines)}, "secret rotated")
        r = self.server.post("/actuator/refresh", b"",
                             headers={"Authorization": "Bearer " + ADMIN_TOKEN})
        self.assertEqual(r.status, 200, r)
        type(self).secret = self.repo.head()
        return type(self).secret

    def test_secret_masked_for_non_admin(self):
        path = "/diff/orders/dev?from=%s&to=%s" % (self.comment, self.rotate_secret())
        masked = self.diff(path, token=ORDERS_TOKEN)
        self.assertEqual(keys(masked["changed"]), ["orders.datasource.password"])
        entry = masked["changed"][0]
        self.assertTrue(entry["secret"])
        self.assertEqual(entry["from"]["value"], "******")
        self.assertEqual(entry["to"]["value"], "******")
        self.assertNotIn("{cipher}", str(masked))
        admin = self.diff(path)
        entry = admin["changed"][0]
        self.assertEqual(entry["to"]["value"], "rotated-password")
        self.assertNotIn("{cipher}", str(entry["from"]["value"]))
        self.assertNotEqual(entry["from"]["value"], "******")

    def test_authorisation(self):
        self.diff("/diff/payments/dev?from=%s&to=%s" % (self.base, self.shared),
                  token=ORDERS_TOKEN, status=403)
        body = self.diff("/diff?from=%s&to=%s" % (self.base, self.shared), token=ORDERS_TOKEN)
        self.assertEqual({c["application"] for c in body["changed"]}, {"orders"})
        r = self.server.get("/diff?from=%s&to=%s" % (self.base, self.shared))
        self.assertEqual(r.status, 401, r)

    def test_bad_requests(self):
        self.diff("/diff/orders/dev?from=%s" % self.base, status=400)
        self.diff("/diff/orders/dev?from=..&to=%s" % self.base, status=400)
        self.diff("/diff/orders/dev?from=nosuchlabel&to=%s" % self.base, status=404)
        self.diff("/diff?from=%s&to=nosuchlabel" % self.base, status=404)


if __name__ == "__main__":
    unittest.main()


BUILD_DIR = os.environ.get("ALMANAC_BUILD_DIR", "")
CLI = os.path.join(BUILD_DIR, "client", "almanac") if BUILD_DIR else ""


class DiffCliTest(ServerTestCase):
    """almanac diff: against the server, and offline on a clone with the same composition."""

    @classmethod
    def setUpServers(cls):
        if not CLI or not os.access(CLI, os.X_OK):
            raise unittest.SkipTest("ALMANAC_BUILD_DIR has no client/almanac")
        cls.repo = cls.make_repo()
        files = sample_files()
        cls.repo.commit(files, "sample")
        cls.base = cls.repo.head()
        layered = files["application.yml"] + "\nlayers:\n  pool: 10\n"
        cls.repo.commit({
            "application.yml": layered,
            "orders.yml": files["orders.yml"] + "\nlayers:\n  pool: 20\n",
            "orders-prod.yml": files["orders-prod.yml"] + "\n---\nlayers:\n  pool: 60\n",
            "payments.properties": files["payments.properties"].replace("8082", "8092"),
        }, "layers")
        cls.head = cls.repo.head()
        cls.server = cls.start_server(cls.repo.uri)

    def cli(self, *args):
        import subprocess
        p = subprocess.run([CLI] + list(args), capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, ALMANAC_SERVER="http://127.0.0.1:%d" % self.server.port))
        return p.returncode, p.stdout, p.stderr

    def test_offline_equals_server(self):
        import json as _json
        for app, profile in (("orders", "prod"), ("payments", "dev"), ("gateway", "default")):
            rc, out, err = self.cli("diff", app, profile, "--from", self.base, "--to", self.head,
                                    "--format", "json")
            self.assertEqual(rc, 1, err)
            online = _json.loads(out)
            rc, out, err = self.cli("diff", app, profile, "--repo-dir", self.repo.path,
                                    "--from", "HEAD~1", "--to", "HEAD", "--format", "json")
            self.assertEqual(rc, 1, err)
            offline = _json.loads(out)
            self.assertEqual(offline["toVersion"], online["toVersion"])
            strip = lambda s: s.rsplit("/", 1)[-1]
            for a, b in zip(online["environments"], offline["environments"]):
                for kind in ("added", "removed", "changed"):
                    self.assertEqual([(e["key"], e.get("to", {}).get("value"),
                                       strip(e.get("to", e.get("from"))["source"]),
                                       e.get("to", e.get("from")).get("origin"))
                                      for e in a[kind]],
                                     [(e["key"], e.get("to", {}).get("value"),
                                       strip(e.get("to", e.get("from"))["source"]),
                                       e.get("to", e.get("from")).get("origin"))
                                      for e in b[kind]])

    def test_text_names_the_winning_layer(self):
        rc, out, err = self.cli("diff", "orders", "prod", "--from", self.base, "--to", self.head)
        self.assertEqual(rc, 1, err)
        self.assertRegex(out, r"\+ layers\.pool = 60 +\(orders-prod\.yml \(document #\d\):\d+:\d+\)")

    def test_whole_repository_offline(self):
        rc, out, err = self.cli("diff", "--repo-dir", self.repo.path, "--from", self.base,
                                "--to", self.head, "--format", "markdown")
        self.assertEqual(rc, 1, err)
        self.assertIn("#### payments / dev", out)
        self.assertIn("| ~ | `server.port` | `8082` | `8092` | payments.properties:", out)
        self.assertIn("#### gateway / prod", out)

    def test_no_change_exit_zero(self):
        rc, out, err = self.cli("diff", "--repo-dir", self.repo.path, "--from", "HEAD",
                                "--to", "HEAD")
        self.assertEqual((rc, out), (0, "no effective change\n"), err)
        rc, out, err = self.cli("diff", "orders", "dev", "--from", self.head, "--to", self.head)
        self.assertEqual((rc, out), (0, "no effective change\n"), err)

    def test_errors_are_not_exit_one(self):
        rc, _, err = self.cli("diff", "orders", "dev", "--from", "nosuch", "--to", self.head)
        self.assertEqual(rc, 3, err)
        rc, _, err = self.cli("diff", "--repo-dir", self.repo.path, "--from", "nosuch",
                              "--to", "HEAD")
        self.assertEqual(rc, 3, err)
        rc, _, err = self.cli("diff", "orders", "dev", "--from", "HEAD")
        self.assertEqual(rc, 2, err)


class ExplainTest(DiffCliTest):
    """almanac get --explain: the winning layer and every layer it overrode, with file, line,
    column and commit (a key set in three layers)."""

    def line_of(self, path, needle):
        with open(os.path.join(self.repo.path, path), encoding="utf-8") as f:
            lines = f.read().split("\n")
        # the last "layers:" block of the file sets the key, on the line after it
        return max(i for i, line in enumerate(lines) if line.strip() == needle) + 1

    def test_three_layers(self):
        rc, out, err = self.cli("get", "orders", "prod", "--explain", "layers.pool")
        self.assertEqual(rc, 0, err)
        lines = out.split("\n")
        self.assertEqual(lines[0], "layers.pool = 60", out)
        self.assertRegex(lines[1], r"set by +\S+/orders-prod\.yml \(document #\d\), line %d, "
                         r"column \d+$" % self.line_of("orders-prod.yml", "pool: 60"))
        self.assertEqual(lines[2].split(), ["commit", self.head])
        self.assertEqual(lines[3].split(None, 1), ["layer", "profile prod, on-profile document"])
        self.assertEqual(lines[4].strip(), "overrides")
        self.assertRegex(lines[5], r"/orders\.yml, line %d, column \d+ \(base \(no profile\)\): 20$"
                         % self.line_of("orders.yml", "pool: 20"))
        self.assertRegex(lines[6], r"/application\.yml, line %d, column \d+ .*: 10$"
                         % self.line_of("application.yml", "pool: 10"))
        self.assertEqual(lines[7:], [""])

    def test_unknown_key(self):
        rc, out, err = self.cli("get", "orders", "prod", "--explain", "no.such.key")
        self.assertEqual(rc, 3, (out, err))

    # the inherited DiffCliTest cases run once, in DiffCliTest
    test_offline_equals_server = test_text_names_the_winning_layer = None
    test_whole_repository_offline = test_no_change_exit_zero = test_errors_are_not_exit_one = None
