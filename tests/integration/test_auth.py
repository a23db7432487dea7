"""--auth-file: HTTP Basic with crypt(3) hashes and bearer tokens stored as SHA-256, per-application
authorisation (globs, several applications need all of them), admin endpoints, the open health
endpoint, and webhooks authenticated by their own signature."""

import base64
import hashlib
import os
import subprocess
import unittest

from almanac_harness import ServerTestCase

TOKEN = "itest-token-payments-3b9d"
TOKEN_ADMINLESS = "itest-token-nothing-77aa"


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
                    % (crypt_sha512("orders-pw", "saltsalt"), crypt_sha256("ops-pw", "opssalt1"),
                       hashlib.sha256(TOKEN.encode()).hexdigest(),
                       hashlib.sha256(TOKEN_ADMINLESS.encode()).hexdigest()))
        os.chmod(auth, 0o600)
        cls.server = cls.start_server(cls.repo.uri, refresh_interval=0,
                                      extra_args=["--auth-file", auth])

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

    def test_credentials_never_in_log(self):
        self.server.get("/orders/dev", basic("orders-svc", "orders-pw"))
        self.server.get("/payments/dev", bearer(TOKEN))
        log = self.server.log()
        self.assertNotIn("orders-pw", log)
        self.assertNotIn(TOKEN, log)
        self.assertNotIn(base64.b64encode(b"orders-svc:orders-pw").decode(), log)


if __name__ == "__main__":
    unittest.main()
