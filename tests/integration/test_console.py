"""The console at /ui/, in a real browser: Debian's Chromium driven from Node with puppeteer-core
(tests/console/, pinned in package.json). Pages load with no console error under the server's
Content-Security-Policy, the diff of a real commit shows the right keys, a user without rights
to an application does not see it, secrets are masked, and the live feed updates after a push.
Screenshots go to $ALMANAC_CONSOLE_SHOTS (docs/images/ when refreshing the docs)."""

import json
import os
import shutil
import subprocess
import tempfile
import unittest

from almanac_harness import SOURCE_DIR, ServerTestCase
from test_auth import crypt_sha512

CONSOLE_DIR = os.path.join(SOURCE_DIR, "tests", "console")
SAMPLE = os.path.join(SOURCE_DIR, "config-repo-sample")
KEY = os.path.join(SOURCE_DIR, "demo-keys", "demo.key")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def driver_dir():
    """puppeteer-core installed from package.json into the build tree (once)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise unittest.SkipTest("node and npm are needed (scripts/install-deps installs them)")
    if not os.access(CHROMIUM, os.X_OK):
        raise unittest.SkipTest("Chromium is not installed (scripts/install-deps --test installs "
                                "Debian's chromium)")
    build = os.environ.get("ALMANAC_BUILD_DIR") or tempfile.gettempdir()
    target = os.path.join(build, "console-driver")
    os.makedirs(target, exist_ok=True)
    for name in ("package.json", "package-lock.json", "drive.js"):
        if os.path.exists(os.path.join(CONSOLE_DIR, name)):
            shutil.copy(os.path.join(CONSOLE_DIR, name), target)
    if not os.path.isdir(os.path.join(target, "node_modules", "puppeteer-core")):
        lock = os.path.exists(os.path.join(target, "package-lock.json"))
        done = subprocess.run(["npm", "ci" if lock else "install", "--no-audit", "--no-fund",
                               "--loglevel=error"], cwd=target, capture_output=True, text=True,
                              timeout=300)
        if done.returncode != 0:
            raise unittest.SkipTest("cannot install puppeteer-core from the npm registry: "
                                    + done.stderr.strip()[-300:])
    probe = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                            "--dump-dom", "about:blank"], capture_output=True, text=True,
                           timeout=60)
    if probe.returncode != 0:
        raise unittest.SkipTest("Chromium cannot start here: " + probe.stderr.strip()[-300:])
    return target


def sample_files():
    files = {}
    for root, _, names in os.walk(SAMPLE):
        for name in names:
            path = os.path.join(root, name)
            with open(path, encoding="utf-8") as f:
                files[os.path.relpath(path, SAMPLE)] = f.read()
    return files


class ConsoleTest(ServerTestCase):

    @classmethod
    def setUpServers(cls):
        cls.driver = driver_dir()
        cls.shots = os.environ.get("ALMANAC_CONSOLE_SHOTS") or os.path.join(cls.tmp, "shots")
        os.makedirs(cls.shots, exist_ok=True)
        cls.repo = cls.make_repo()
        files = sample_files()
        cls.repo.commit(files, "Import the sample configuration")
        cls.before = cls.repo.head()
        cls.repo.commit({
            "orders-prod.yml": files["orders-prod.yml"] + "\n---\norders:\n  datasource:\n"
                               "    pool:\n      max-size: 80\n",
            "application.yml": files["application.yml"] + "\nconsole:\n  banner: two\n",
        }, "Raise the orders pool in prod; a banner for everyone")
        cls.after = cls.repo.head()
        auth = os.path.join(cls.tmp, "auth.yml")
        with open(auth, "w") as f:
            f.write("users:\n"
                    "  ops:\n    password: \"%s\"\n    admin: true\n"
                    "  orders-svc:\n    password: \"%s\"\n    applications: [orders]\n"
                    % (crypt_sha512("ops-pw", "opssalt1"), crypt_sha512("orders-pw", "ordsalt1")))
        os.chmod(auth, 0o600)
        cls.server = cls.start_server(cls.repo.uri, extra_args=[
            "--auth-file", auth, "--encrypt-key-file", KEY, "--auth-failures-per-minute", "0"])
        # a commit the server has not fetched yet: the live view's refresh brings it in
        cls.repo.commit({"payments-dev.yml": files["payments-dev.yml"] + "\nlive:\n  marker: 1\n"},
                        "Mark payments in dev")

    def drive(self, scenario, user, password):
        p = subprocess.run(["node", "drive.js", scenario, "http://127.0.0.1:%d" % self.server.port,
                            user, password, self.shots if scenario == "admin" else "",
                            self.before, self.after],
                           cwd=self.driver, capture_output=True, text=True, timeout=180,
                           env=dict(os.environ, CHROMIUM=CHROMIUM))
        self.assertEqual(p.returncode, 0, p.stderr[-2000:])
        return json.loads(p.stdout)

    def test_admin_sees_everything(self):
        seen = self.drive("admin", "ops", "ops-pw")
        self.assertEqual(seen["consoleErrors"], [], seen["badResponses"])
        self.assertEqual(seen["failedRequests"], [])
        self.assertEqual(seen["badResponses"], [])
        self.assertIn("default-src 'none'", seen["csp"])
        self.assertEqual(seen["overviewApps"], ["gateway", "orders", "payments"])
        self.assertIn("prod", seen["overviewHeaders"])
        self.assertEqual(seen["health"], "healthy")
        self.assertTrue(seen["keyboardOpened"].startswith("#/env/gateway/"), seen)
        # secrets masked, provenance per key, overridden layers listed
        rows = {r["key"]: r for r in seen["envRows"]}
        self.assertEqual(rows["orders.datasource.password"]["value"], "secret******")
        self.assertNotIn("{cipher}", seen["envPageText"])
        self.assertRegex(rows["server.port"]["source"], r"^orders\.yml:\d+:\d+$")
        self.assertTrue(any(o.startswith("application.yml:") and o.endswith("= 8080")
                            for o in rows["server.port"]["overridden"]), rows["server.port"])
        # the diff of a real commit: a key added for everyone, orders/prod also its pool
        self.assertIn("orders / prod", seen["diffPairs"])
        self.assertIn("payments / dev", seen["diffPairs"])
        changes = {c["key"]: c for c in seen["diffChanges"]}
        self.assertEqual(changes["orders.datasource.pool.max-size"]["kind"], "chg")
        self.assertEqual(changes["orders.datasource.pool.max-size"]["symbol"], "~")
        self.assertIn("60 → 80", changes["orders.datasource.pool.max-size"]["text"])
        self.assertEqual(changes["console.banner"]["kind"], "add")
        self.assertEqual(changes["console.banner"]["symbol"], "+")
        # the live feed after a refresh that brought in a payments commit
        self.assertEqual(seen["refreshStatus"], 200)
        self.assertTrue(any("payments" in item for item in seen["liveFeed"]), seen["liveFeed"])
        self.assertLessEqual(seen["phoneOverflow"], 0)
        for name in ("console-overview.png", "console-environment.png", "console-diff.png",
                     "console-live.png", "console-phone.png"):
            self.assertGreater(os.path.getsize(os.path.join(self.shots, name)), 10000, name)

    def test_reader_sees_only_its_application(self):
        seen = self.drive("reader", "orders-svc", "orders-pw")
        # the one refused request is the Environment of another application
        self.assertEqual([r.split("/ui/")[-1] for r in seen["badResponses"]],
                         ["api/environment/payments/dev"])
        self.assertEqual(seen["overviewApps"], ["orders"])
        self.assertEqual(seen["diffPairs"], [p for p in seen["diffPairs"] if p.startswith("orders")])
        self.assertIn("orders / prod", seen["diffPairs"])
        self.assertIn("403", seen["forbiddenError"])
        self.assertNotIn("{cipher}", seen["envPageText"])


if __name__ == "__main__":
    unittest.main()


class ConsoleServingTest(ServerTestCase):
    """What needs no browser: the headers, authentication, and --no-ui."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit(sample_files(), "sample")
        auth = os.path.join(cls.tmp, "auth.yml")
        with open(auth, "w") as f:
            f.write("users:\n  ops:\n    password: \"%s\"\n    admin: true\n"
                    % crypt_sha512("ops-pw", "opssalt1"))
        os.chmod(auth, 0o600)
        cls.secured = cls.start_server(cls.repo.uri, extra_args=["--auth-file", auth])
        cls.off = cls.start_server(cls.repo.uri, extra_args=["--no-ui"])

    def test_files_need_credentials_and_carry_a_strict_policy(self):
        self.assertEqual(self.secured.get("/ui/").status, 401)
        self.assertEqual(self.secured.get("/ui/api/overview").status, 401)
        import base64
        auth = {"Authorization": "Basic " + base64.b64encode(b"ops:ops-pw").decode()}
        r = self.secured.get("/ui/", headers=auth)
        self.assertEqual(r.status, 200, r)
        self.assertIn("script-src 'self'", r.header("Content-Security-Policy"))
        self.assertEqual(r.header("X-Content-Type-Options"), "nosniff")
        self.assertNotIn(b"<script>", r.body)  # no inline script: the policy would block it
        self.assertEqual(self.secured.get("/ui", headers=auth).header("Location"), "/ui/")
        js = self.secured.get("/ui/console.js", headers=auth)
        self.assertEqual(js.header("Content-Type"), "text/javascript; charset=utf-8")
        self.assertNotIn(b"innerHTML", js.body)  # values reach the page as text only
        self.assertEqual(self.secured.get("/ui/nosuch.js", headers=auth).status, 404)

    def test_no_ui(self):
        self.assertEqual(self.off.get("/ui/").status, 404)
        self.assertEqual(self.off.get("/ui/api/overview").status, 404)
        # the name is an application's again
        self.assertEqual(self.off.get("/ui/dev").json()["name"], "ui")
