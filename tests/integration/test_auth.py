"""--auth-file: HTTP Basic with crypt(3) hashes and bearer tokens stored as SHA-256, per-application
authorisation (globs, several applications need all of them), admin endpoints, the open health
endpoint, and webhooks authenticated by their own signature."""

import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import signal
import subprocess
import unittest

from almanac_harness import Server, ServerTestCase

TOKEN = "itest-token-payments-3b9d"
TOKEN_ADMINLESS = "itest-token-nothing-77aa"
WEBHOOK_SECRET = "itest-auth-webhook-5e1d"
TOKEN_ADMIN = "itest-token-admin-c0ffee"


def crypt_sha512(password, salt):
    out = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, password], check=True,
                         stdout=subprocess.PIPE)
    return out.stdout.decode().strip()


def crypt_sha256(password, salt):
    out = subprocess.run(["openssl", "passwd", "-5", "-salt", salt, password], check=True,
                         stdout=subprocess.PIPE)
    return out.stdout.decode().strip()


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(
        ("%s:%s" % (user, password)).encode()).decode()}


def bearer(token):
    return {"Authorization": "Bearer " + token}


FILES = {
    "application.yml": "shared: 1\n",
    "orders.yml": "color: red\n",
    "orders-eu.yml": "region: eu\n",
    "payments.yml": "pay: 1\n",
    "nginx.conf": "color ${color:none}\n",
    "payments-prod.properties": "pay.secret=1\n",
    "shared/readme.txt": "hello\n",
}


class AuthTest(ServerTestCase):

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit(FILES, "auth")
        auth = os.path.join(cls.tmp, "auth.yml")
        with open(auth, "w") as f:
            f.write("users:\n"
                    "  orders-svc:\n"
                    "    password: \"%s\"\n"
                    "    applications: [orders, \"orders-*\"]\n"
                    "  ops:\n"
                    "    password: \"%s\"\n"
                    "    admin: true\n"
                    "tokens:\n"
                    "  - sha256: \"%s\"\n"
                    "    applications: [payments]\n"
                    "  - sha256: \"%s\"\n"
                    "    applications: []\n"
                    "  - sha256: \"%s\"\n"
                    "    name: deploy-bot\n"
                    "    admin: true\n"
                    % (crypt_sha512("orders-pw", "saltsalt"), crypt_sha256("ops-pw", "opssalt1"),
                       hashlib.sha256(TOKEN.encode()).hexdigest(),
                       hashlib.sha256(TOKEN_ADMINLESS.encode()).hexdigest(),
                       hashlib.sha256(TOKEN_ADMIN.encode()).hexdigest()))
        os.chmod(auth, 0o600)
        # Many wrong attempts below come from one address: no throttling here (see
        # ThrottleTest).
        cls.server = cls.start_server(cls.repo.uri, refresh_interval=0, extra_args=[
            "--auth-file", auth, "--auth-failures-per-minute", "0"])

    def status(self, path, headers=None, method="GET"):
        return self.server.request(method, path, headers).status

    def test_health_is_open(self):
        r = self.server.get("/actuator/health")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["status"], "UP")

    def test_no_credentials_401(self):
        for path in ("/orders/dev", "/orders-dev.yml", "/orders/dev/main/nginx.conf",
                     "/metrics", "/nosuchapp/dev"):
            with self.subTest(path=path):
                r = self.server.get(path)
                self.assertErrorBody(r, 401)
                self.assertTrue(r.header("www-authenticate"), r.headers)

    def test_empty_basic_credentials_401(self):
        self.assertErrorBody(self.server.get("/orders/dev", {"Authorization": "Basic Og=="}), 401)

    def test_wrong_credentials_401(self):
        for headers in (basic("orders-svc", "wrong"), basic("nobody", "orders-pw"),
                        basic("orders-svc", ""), bearer("not-a-token"),
                        {"Authorization": "Basic !!!notbase64"},
                        {"Authorization": "Digest username=orders-svc"}):
            with self.subTest(headers=headers):
                self.assertErrorBody(self.server.get("/orders/dev", headers), 401)

    def test_user_reads_listed_applications(self):
        h = basic("orders-svc", "orders-pw")
        for path in ("/orders/dev", "/orders-eu/dev", "/orders/dev/main", "/orders-dev.yml",
                     "/main/orders-eu-prod.properties", "/orders/dev/main/nginx.conf",
                     "/orders,orders-eu/dev"):
            with self.subTest(path=path):
                self.assertEqual(self.status(path, h), 200)

    def test_user_forbidden_elsewhere(self):
        h = basic("orders-svc", "orders-pw")
        for path in ("/payments/dev", "/payments-dev.yml", "/payments/dev/main/nginx.conf",
                     "/orders,payments/dev", "/ordersx/dev", "/main/payments-dev.json"):
            with self.subTest(path=path):
                self.assertErrorBody(self.server.get(path, h), 403)

    def test_user_not_admin(self):
        h = basic("orders-svc", "orders-pw")
        self.assertEqual(self.status("/metrics", h), 403)
        self.assertEqual(self.status("/actuator/refresh", h, "POST"), 403)
        self.assertEqual(self.status("/encrypt/status", h), 403)

    def test_token(self):
        self.assertEqual(self.status("/payments/dev", bearer(TOKEN)), 200)
        self.assertEqual(self.status("/payments-dev.properties", bearer(TOKEN)), 200)
        self.assertEqual(self.status("/orders/dev", bearer(TOKEN)), 403)
        self.assertEqual(self.status("/orders/dev", bearer(TOKEN_ADMINLESS)), 403)
        self.assertEqual(self.status("/payments/dev", bearer(TOKEN + "x")), 401)

    def test_admin(self):
        h = basic("ops", "ops-pw")
        for path in ("/orders/dev", "/payments/dev", "/anything/dev", "/orders,payments/dev",
                     "/metrics"):
            with self.subTest(path=path):
                self.assertEqual(self.status(path, h), 200)
        self.assertEqual(self.status("/actuator/refresh", h, "POST"), 200)

    def test_watch_and_events_need_credentials(self):
        self.assertEqual(self.status("/orders/dev?watch=%22x%22&timeout=1"), 401)
        self.assertEqual(self.status("/payments/dev?watch=%22x%22&timeout=1",
                                     basic("orders-svc", "orders-pw")), 403)
        self.assertEqual(self.status("/events"), 401)

    def test_documents_with_several_applications(self):
        h = basic("orders-svc", "orders-pw")
        self.assertEqual(self.status("/orders,orders-eu-dev.yml", h), 200)
        self.assertEqual(self.status("/orders,payments-dev.yml", h), 403)

    def test_credentials_never_in_log(self):
        self.server.get("/orders/dev", basic("orders-svc", "orders-pw"))
        self.server.get("/payments/dev", bearer(TOKEN))
        log = self.server.log()
        self.assertNotIn("orders-pw", log)
        self.assertNotIn(TOKEN, log)
        self.assertNotIn(base64.b64encode(b"orders-svc:orders-pw").decode(), log)

    def test_challenge_names_basic_realm(self):
        for path in ("/orders/dev", "/metrics", "/no/such/route/at/all", "/"):
            with self.subTest(path=path):
                r = self.server.get(path)
                self.assertErrorBody(r, 401)
                self.assertEqual(r.header("www-authenticate"), 'Basic realm="almanac"')

    def test_wrong_method_and_unknown_paths_need_credentials_first(self):
        self.assertErrorBody(self.server.post("/metrics", b""), 401)
        self.assertErrorBody(self.server.get("/actuator/refresh"), 401)
        self.assertErrorBody(self.server.get("/actuator/refresh", basic("ops", "ops-pw")), 405)
        self.assertErrorBody(self.server.get("/", basic("ops", "ops-pw")), 404)

    def test_head_and_v2_are_checked_too(self):
        v2 = {"Accept": "application/vnd.spring-cloud.config-server.v2+json"}
        self.assertEqual(self.status("/orders/dev", None, "HEAD"), 401)
        self.assertEqual(self.status("/payments/dev", basic("orders-svc", "orders-pw"), "HEAD"),
                         403)
        self.assertEqual(self.status("/payments/dev", dict(v2, **basic("orders-svc",
                                                                       "orders-pw"))), 403)
        self.assertEqual(self.status("/orders/dev", dict(v2, **basic("orders-svc",
                                                                     "orders-pw"))), 200)

    def test_watch_is_checked_before_parking(self):
        h = basic("orders-svc", "orders-pw")
        self.assertErrorBody(self.server.get("/payments/dev?watch=%22x%22&timeout=30", h), 403)
        self.assertErrorBody(self.server.get("/orders/dev?watch=%22x%22&timeout=30"), 401)
        # A stale tag answers at once with the current Environment.
        self.assertEqual(self.status("/orders/dev?watch=%22stale%22&timeout=30", h), 200)

    def test_plain_documents_of_other_applications_are_forbidden(self):
        h = basic("orders-svc", "orders-pw")
        for path in ("/orders/dev/main/payments.yml", "/orders/dev/main/payments-prod.properties",
                     "/orders/dev/payments.yml?useDefaultLabel"):
            with self.subTest(path=path):
                self.assertErrorBody(self.server.get(path, h), 403)
        for path in ("/orders/dev/main/orders-eu.yml", "/orders/dev/main/application.yml",
                     "/orders/dev/main/shared/readme.txt", "/orders/dev/main/nginx.conf"):
            with self.subTest(path=path):
                self.assertEqual(self.status(path, h), 200)
        self.assertEqual(self.status("/orders/dev/main/payments.yml", basic("ops", "ops-pw")), 200)

    def test_admin_endpoints_refuse_non_admins(self):
        for creds in (basic("orders-svc", "orders-pw"), bearer(TOKEN)):
            for method, path in (("POST", "/encrypt"), ("POST", "/decrypt"),
                                 ("POST", "/actuator/refresh"), ("GET", "/metrics"),
                                 ("GET", "/actuator/prometheus"), ("GET", "/events"),
                                 ("GET", "/encrypt/status")):
                with self.subTest(creds=creds, path=path):
                    self.assertErrorBody(self.server.request(method, path, creds, b"x"
                                                             if method == "POST" else None), 403)
                    self.assertErrorBody(self.server.request(method, path, None, b"x"
                                                             if method == "POST" else None), 401)

    def test_admin_token(self):
        h = bearer(TOKEN_ADMIN)
        self.assertEqual(self.status("/metrics", h), 200)
        self.assertEqual(self.status("/orders,payments/dev", h), 200)
        # No key is installed: the admin gets past access control to the handler's own answer.
        self.assertNotIn(self.server.post("/encrypt", b"x", h).status, (401, 403))

    def test_open_endpoints(self):
        self.assertNotIn(self.server.get("/key").status, (401, 403))
        r = self.server.post("/monitor", b"{}", {"Content-Type": "application/json"})
        self.assertNotIn(r.status, (401, 403))

    def test_failures_are_not_cached_and_successes_do_not_leak(self):
        right, wrong = basic("orders-svc", "orders-pw"), basic("orders-svc", "orders-pwx")
        for _ in range(3):
            self.assertEqual(self.status("/orders/dev", wrong), 401)
            self.assertEqual(self.status("/orders/dev", right), 200)
        # The cached success of one user says nothing about another with the same password.
        self.assertEqual(self.status("/orders/dev", basic("ops", "orders-pw")), 401)

    def test_refused_attempts_are_logged_without_secrets(self):
        self.server.get("/orders/dev", basic("orders-svc", "guess-1234"))
        self.assertIsNotNone(self.server.wait_for_log(r"authentication failed from 127\.0\.0\.1"))
        self.assertNotIn("guess-1234", self.server.log())


class AuthOffTest(ServerTestCase):
    """Without --auth-file everything is open, and credentials sent anyway are ignored (Spring
    clients send `Basic Og==` when no user is configured)."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit(FILES, "open")
        cls.server = cls.start_server(cls.repo.uri, refresh_interval=0)

    def test_any_authorization_is_ignored(self):
        for headers in (None, {"Authorization": "Basic Og=="}, bearer("whatever"),
                        basic("nobody", "nothing"), {"Authorization": "Negotiate xyz"}):
            with self.subTest(headers=headers):
                self.assertEqual(self.server.get("/orders/dev", headers).status, 200)
                self.assertEqual(self.server.get("/metrics", headers).status, 200)
                self.assertEqual(self.server.get("/orders/dev/main/payments.yml",
                                                 headers).status, 200)


def write_auth(path, users):
    with open(path, "w") as f:
        f.write("users:\n")
        for name, (password, apps) in users.items():
            f.write("  %s:\n    password: \"%s\"\n    applications: [%s]\n"
                    % (name, crypt_sha512(password, "reload%02d" % len(name)), ", ".join(apps)))
    os.chmod(path, 0o600)


class AuthReloadTest(ServerTestCase):
    """SIGHUP re-reads --auth-file: a good file replaces the old one whole (and the
    verification cache with it); a broken one is reported with file:line:col and changes
    nothing."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit(FILES, "reload")
        cls.auth = os.path.join(cls.tmp, "auth.yml")
        write_auth(cls.auth, {"alice": ("alice-pw", ["orders"])})
        cls.server = cls.start_server(cls.repo.uri, refresh_interval=0,
                                      extra_args=["--auth-file", cls.auth])

    def hup_and_wait(self, pattern):
        before = len(re.findall(pattern, self.server.log()))
        self.server.proc.send_signal(signal.SIGHUP)
        self.assertIsNotNone(self.server.wait_for_log(
            r"(?s)(%s.*){%d}" % (pattern, before + 1)), self.server.log_tail())

    def test_reload(self):
        s = self.server
        self.assertEqual(s.get("/orders/dev", basic("alice", "alice-pw")).status, 200)
        self.assertEqual(s.get("/payments/dev", basic("alice", "alice-pw")).status, 403)

        # A new password and a new user: the cached old password must stop working.
        write_auth(self.auth, {"alice": ("alice-new", ["orders", "payments"]),
                               "bob": ("bob-pw", ["payments"])})
        self.hup_and_wait(r"auth-file reloaded: 2 users and tokens")
        self.assertEqual(s.get("/orders/dev", basic("alice", "alice-pw")).status, 401)
        self.assertEqual(s.get("/payments/dev", basic("alice", "alice-new")).status, 200)
        self.assertEqual(s.get("/payments/dev", basic("bob", "bob-pw")).status, 200)

        # Broken files: the error names the place, and the previous file stays in force.
        for broken, where in (("users:\n  bob:\n    password: plain\n", r":3:15: "),
                              ("users:\n  bob:\n    pasword: \"x\"\n", r":3:14: "),
                              ("users: [\n", r":\d+:\d+: ")):
            with self.subTest(broken=broken):
                with open(self.auth, "w") as f:
                    f.write(broken)
                self.hup_and_wait(r"not reloaded, the previous one stays in force: "
                                  + re.escape(self.auth) + where)
                self.assertEqual(s.get("/payments/dev", basic("bob", "bob-pw")).status, 200)
                self.assertEqual(s.get("/orders/dev", basic("bob", "bob-pw")).status, 403)

        os.unlink(self.auth)
        self.hup_and_wait(r"not reloaded, the previous one stays in force: .*No such file")
        self.assertEqual(s.get("/payments/dev", basic("bob", "bob-pw")).status, 200)
        self.assertTrue(s.alive())


class ThrottleTest(ServerTestCase):
    """--auth-failures-per-minute: an address that keeps guessing is refused (429) without its
    attempts being checked, right ones included; other addresses are not affected."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit(FILES, "throttle")
        auth = os.path.join(cls.tmp, "auth.yml")
        write_auth(auth, {"carol": ("carol-pw", ["orders"])})
        cls.server = cls.start_server(cls.repo.uri, refresh_interval=0, extra_args=[
            "--auth-file", auth, "--auth-failures-per-minute", "3"])

    def get_from(self, source, path, headers):
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=20,
                                          source_address=(source, 0))
        try:
            conn.request("GET", path, headers=headers or {})
            r = conn.getresponse()
            r.read()
            return r.status, r.getheader("Retry-After")
        finally:
            conn.close()

    def test_guessing_address_is_refused(self):
        right, wrong = basic("carol", "carol-pw"), basic("carol", "guess")
        # Asking without credentials is not a failed attempt.
        for _ in range(5):
            self.assertEqual(self.get_from("127.0.0.3", "/orders/dev", None)[0], 401)
        self.assertEqual(self.get_from("127.0.0.3", "/orders/dev", right)[0], 200)
        for _ in range(3):
            self.assertEqual(self.get_from("127.0.0.3", "/orders/dev", wrong)[0], 401)
        self.assertEqual(self.get_from("127.0.0.3", "/orders/dev", wrong), (429, "60"))
        self.assertEqual(self.get_from("127.0.0.3", "/orders/dev", right), (429, "60"))
        self.assertEqual(self.get_from("127.0.0.3", "/orders/dev", bearer("x"))[0], 429)
        # Open endpoints stay open; other addresses are unaffected.
        self.assertEqual(self.get_from("127.0.0.3", "/actuator/health", right)[0], 200)
        self.assertEqual(self.get_from("127.0.0.4", "/orders/dev", right)[0], 200)


class AuthStartupErrorTest(ServerTestCase):

    def start_failing(self, content):
        name = self.id().rsplit(".", 1)[-1]
        repo = self.make_repo(name)
        repo.commit(FILES, "x")
        path = os.path.join(self.tmp, name, "bad-auth.yml")
        if content is not None:
            with open(path, "w") as f:
                f.write(content)
        s = Server(repo.uri, self.tmp, extra_args=["--auth-file", path])
        type(self).servers.append(s)
        s.launch()
        self.assertNotEqual(s.wait_exit(), 0)
        return s.log()

    def test_broken_file_refuses_to_start(self):
        log = self.start_failing("users:\n  a:\n    password: \"$6$x$y\"\n    roles: [x]\n")
        self.assertRegex(log, r"bad-auth\.yml:\d+:\d+: ")
        self.assertNotIn("listening on", log)

    def test_missing_file_refuses_to_start(self):
        log = self.start_failing(None)
        self.assertIn("bad-auth.yml", log)
        self.assertNotIn("listening on", log)


class AuthWebhookTest(ServerTestCase):
    """With --auth-file and --webhook-secret, /monitor is judged by the webhook's signature."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit(FILES, "auth")
        auth = os.path.join(cls.tmp, "auth.yml")
        with open(auth, "w") as f:
            f.write("users:\n  ops:\n    password: \"%s\"\n    admin: true\n"
                    % crypt_sha512("ops-pw", "opssalt1"))
        secret = os.path.join(cls.tmp, "webhook-secret")
        with open(secret, "w") as f:
            f.write(WEBHOOK_SECRET + "\n")
        for path in (auth, secret):
            os.chmod(path, 0o600)
        cls.server = cls.start_server(cls.repo.uri, refresh_interval=0,
                                      extra_args=["--auth-file", auth, "--webhook-secret", secret])

    def test_monitor_authenticated_by_signature(self):
        body = json.dumps({"ref": "refs/heads/main",
                           "commits": [{"added": [], "modified": ["orders.yml"], "removed": []}]})
        sig = hmac.new(WEBHOOK_SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-GitHub-Event": "push",
                   "X-Hub-Signature-256": "sha256=" + sig}
        r = self.server.post("/monitor", body.encode(), headers)
        self.assertEqual(r.status, 200, r)
        self.assertIn("orders", r.json())
        headers["X-Hub-Signature-256"] = "sha256=" + "0" * 64
        r = self.server.post("/monitor", body.encode(), dict(headers, **basic("ops", "ops-pw")))
        self.assertIn(r.status, (401, 403), r)


if __name__ == "__main__":
    unittest.main()
