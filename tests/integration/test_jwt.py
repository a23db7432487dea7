"""JWT bearer tokens from issuers in the --auth-file: Kubernetes ServiceAccount tokens checked
against a JWKS file and an HTTPS JWKS endpoint (a test CA), subjects mapped to applications,
every way a token can be wrong, key rotation, and the issuer going away."""

import hashlib
import json
import os
import re
import signal
import time

from almanac_harness import ServerTestCase, wait_until
from jwt_tools import (ISSUER, JwksEndpoint, Key, TestCA, b64url, jwks, k8s_claims, mint,
                       mint_hs256, unsigned)

FILES = {
    "application.yml": "shared: 1\n",
    "orders.yml": "color: red\n",
    "orders-eu.yml": "region: eu\n",
    "payments.yml": "pay: 1\n",
    "team-a-web.yml": "web: 1\n",
}


ADMIN_TOKEN = "jwt-itest-admin-6a1f"


def bearer(token):
    return {"Authorization": "Bearer " + token}


def subjects_yaml():
    return ("    subjects:\n"
            "      - match: \"system:serviceaccount:shop:orders\"\n"
            "        applications: [orders, \"orders-*\"]\n"
            "      - match: \"system:serviceaccount:team-a:*\"\n"
            "        applications: [\"team-a-*\"]\n"
            "      - namespace: payments\n"
            "        serviceaccount: \"api-*\"\n"
            "        applications: [payments]\n")


class JwtFileTest(ServerTestCase):
    """Keys from a jwks-file holding one RSA and one P-256 key."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit(FILES, "jwt")
        cls.rsa = Key(cls.tmp, "RSA", "rsa-1")
        cls.ec = Key(cls.tmp, "EC", "ec-1")
        cls.stranger = Key(cls.tmp, "RSA", "rsa-1")  # same kid, another key
        keys = os.path.join(cls.tmp, "jwks.json")
        with open(keys, "w") as f:
            f.write(jwks(cls.rsa, cls.ec))
        auth = os.path.join(cls.tmp, "auth.yml")
        with open(auth, "w") as f:
            f.write("tokens:\n"
                    "  - sha256: %s\n"
                    "    admin: true\n"
                    "issuers:\n"
                    "  - name: cluster\n"
                    "    issuer: %s\n"
                    "    audiences: [almanac]\n"
                    "    jwks-file: %s\n" % (hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest(),
                                          ISSUER, keys) + subjects_yaml())
        os.chmod(auth, 0o600)
        cls.server = cls.start_server(cls.repo.uri, refresh_interval=0, extra_args=[
            "--auth-file", auth, "--auth-failures-per-minute", "0"])

    def status(self, path, token):
        return self.server.get(path, bearer(token)).status

    def test_service_account_reads_its_application(self):
        for key in (self.rsa, self.ec):
            with self.subTest(alg=key.alg):
                token = mint(key, k8s_claims("shop", "orders"))
                for path in ("/orders/dev", "/orders-eu/dev", "/orders-dev.yml"):
                    self.assertEqual(self.status(path, token), 200, path)
                # Twice: the second answer comes from the verified-token cache.
                self.assertEqual(self.status("/orders/dev", token), 200)

    def test_other_application_403(self):
        token = mint(self.rsa, k8s_claims("shop", "orders"))
        for path in ("/payments/dev", "/team-a-web/dev", "/orders,payments/dev"):
            with self.subTest(path=path):
                self.assertErrorBody(self.server.get(path, bearer(token)), 403)
        self.assertEqual(self.status("/metrics", token), 403)

    def test_glob_subjects(self):
        for sa in ("web", "worker"):
            token = mint(self.ec, k8s_claims("team-a", sa))
            self.assertEqual(self.status("/team-a-web/dev", token), 200, sa)
            self.assertEqual(self.status("/orders/dev", token), 403, sa)
        # Not covered by any rule: no credentials worth the name.
        self.assertEqual(self.status("/team-a-web/dev", mint(self.ec, k8s_claims("team-b", "web"))),
                         401)
        self.assertEqual(self.status("/orders/dev", mint(self.rsa, k8s_claims("shop", "cart"))),
                         401)

    def test_kubernetes_claims_in_rules(self):
        self.assertEqual(self.status("/payments/dev", mint(self.rsa, k8s_claims("payments",
                                                                                "api-eu"))), 200)
        self.assertEqual(self.status("/payments/dev", mint(self.rsa, k8s_claims("payments",
                                                                                "batch"))), 401)
        # The namespace is read from kubernetes.io, not guessed from sub.
        claims = k8s_claims("payments", "api-eu")
        claims["kubernetes.io"]["namespace"] = "elsewhere"
        self.assertEqual(self.status("/payments/dev", mint(self.rsa, claims)), 401)

    def test_refused_tokens_401(self):
        now = int(time.time())
        good = k8s_claims("shop", "orders")
        oversized = dict(good, padding="x" * 9000)
        expired = k8s_claims("shop", "orders", now=now - 7200)
        not_yet = dict(good, nbf=now + 3600, iat=now + 3600)
        wrong_aud = k8s_claims("shop", "orders", audience="https://kubernetes.default.svc")
        wrong_iss = k8s_claims("shop", "orders", issuer="https://evil.example")
        no_exp = dict(good)
        del no_exp["exp"]
        valid = mint(self.rsa, good)
        head, payload, sig = valid.split(".")
        tampered = dict(good, sub="system:serviceaccount:shop:admin")
        cases = {
            "expired": mint(self.rsa, expired),
            "not yet valid": mint(self.rsa, not_yet),
            "wrong audience": mint(self.rsa, wrong_aud),
            "wrong issuer": mint(self.rsa, wrong_iss),
            "no exp": mint(self.rsa, no_exp),
            "unknown kid": mint(self.rsa, good, {"alg": "RS256", "kid": "nope"}),
            "no kid": mint(self.rsa, good, {"alg": "RS256"}),
            "kid of another type": mint(self.rsa, good, {"alg": "RS256", "kid": "ec-1"}),
            "another key, same kid": mint(self.stranger, good),
            "alg none": unsigned(good, "rsa-1"),
            "alg none with a signature": unsigned(good, "rsa-1") + sig,
            "HS256 keyed with the public key": mint_hs256(self.rsa.public_pem, good, "rsa-1"),
            "truncated": valid[:-10],
            "no signature": head + "." + payload + ".",
            "two parts": head + "." + payload,
            "payload changed": head + "." + b64url(json.dumps(tampered).encode()) + "." + sig,
            "oversized": mint(self.rsa, oversized),
            "not base64": head + ".!!!." + sig,
        }
        for name, token in cases.items():
            with self.subTest(case=name):
                r = self.server.get("/orders/dev", bearer(token))
                self.assertErrorBody(r, 401)
        log = self.server.log()
        for token in cases.values():
            self.assertNotIn(token, log)

    def test_access_log_names_subject_not_token(self):
        token = mint(self.rsa, k8s_claims("shop", "orders"))
        self.assertEqual(self.status("/orders-eu/dev", token), 200)
        self.server.wait_for_log(r"GET /orders-eu/dev 200 .*user=system:serviceaccount:shop:orders")
        self.assertNotIn(token.split(".")[2], self.server.log())

    def test_metrics_name_subject_not_token(self):
        def metric(text, pattern):
            m = re.search(r"^%s (\d+)$" % re.escape(pattern), text, re.M)
            return int(m.group(1)) if m else None

        token = mint(self.ec, k8s_claims("team-a", "metrics"))
        expired = mint(self.ec, k8s_claims("team-a", "metrics", now=int(time.time()) - 7200))
        before = self.server.get("/metrics", bearer(ADMIN_TOKEN))
        self.assertEqual(before.status, 200, before)
        expired_before = metric(before.text,
                                'almanac_auth_jwt_total{issuer="cluster",result="expired"}')
        for _ in range(3):
            self.assertEqual(self.status("/team-a-web/dev", token), 200)
        self.assertEqual(self.status("/team-a-web/dev", expired), 401)
        text = self.server.get("/metrics", bearer(ADMIN_TOKEN)).text
        self.assertEqual(metric(text, 'almanac_auth_subject_requests_total{issuer="cluster",'
                                      'subject="system:serviceaccount:team-a:metrics"}'), 3, text)
        self.assertEqual(metric(text, 'almanac_auth_jwt_total{issuer="cluster",'
                                      'result="expired"}'), expired_before + 1)
        self.assertEqual(metric(text, 'almanac_auth_issuer_keys{issuer="cluster"}'), 2)
        self.assertNotIn(token.split(".")[2], text)
        self.assertNotIn(token.split(".")[1], text)

    def test_health_lists_issuer(self):
        health = self.server.get("/actuator/health").json()
        self.assertEqual(health["status"], "UP")
        issuers = health["components"]["issuers"]
        self.assertEqual(issuers["status"], "UP", issuers)
        self.assertEqual(issuers["details"]["cluster"]["keys"], 2)


class JwtUrlTest(ServerTestCase):
    """Keys from an HTTPS endpoint (the API server's /openid/v1/jwks, played by the test)."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit(FILES, "jwt")
        cls.ca = TestCA(cls.tmp)
        cls.key1 = Key(cls.tmp, "RSA", "2024-key")
        cls.key2 = Key(cls.tmp, "EC", "2025-key")
        cls.endpoint = JwksEndpoint(cls.ca)
        cls.endpoint.set(jwks(cls.key1))
        cls.endpoint.start()
        # What the server sends the API server: its own ServiceAccount token.
        cls.sa_token = os.path.join(cls.tmp, "sa-token")
        with open(cls.sa_token, "w") as f:
            f.write("server-sa-token-0123\n")
        cls.auth = os.path.join(cls.tmp, "auth.yml")
        cls.write_auth(cls.auth, cls.ca.ca_cert)
        cls.server = cls.start_server(cls.repo.uri, refresh_interval=0, extra_args=[
            "--auth-file", cls.auth, "--auth-failures-per-minute", "0"])
        # Without the CA file the endpoint's certificate is not trusted.
        cls.untrusting_auth = os.path.join(cls.tmp, "auth-no-ca.yml")
        cls.write_auth(cls.untrusting_auth, None)
        cls.untrusting = cls.start_server(cls.repo.uri, refresh_interval=0, extra_args=[
            "--auth-file", cls.untrusting_auth, "--auth-failures-per-minute", "0"])

    @classmethod
    def write_auth(cls, path, ca_file):
        with open(path, "w") as f:
            f.write("issuers:\n"
                    "  - name: cluster\n"
                    "    issuer: %s\n"
                    "    audiences: [almanac]\n"
                    "    jwks-url: %s\n"
                    "    jwks-token-file: %s\n"
                    "    jwks-refresh-seconds: 3600\n"
                    "    jwks-min-refresh-seconds: 0\n"
                    % (ISSUER, cls.endpoint.url, cls.sa_token) +
                    ("    jwks-ca-file: %s\n" % ca_file if ca_file else "") + subjects_yaml())
        os.chmod(path, 0o600)

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.endpoint.stop()

    def issuer_health(self, server):
        return server.get("/actuator/health").json()["components"]["issuers"]

    def status(self, token, path="/orders/dev", server=None):
        return (server or self.server).get(path, bearer(token)).status

    def test_rotation_and_outage(self):
        # One test, in order: the steps build on the endpoint's state.
        old = mint(self.key1, k8s_claims("shop", "orders"))
        self.assertEqual(self.status(old), 200)
        self.assertIn("Bearer server-sa-token-0123", self.endpoint.authorizations)

        # A new key appears: the first token naming it makes the server fetch again.
        self.endpoint.set(jwks(self.key1, self.key2))
        new = mint(self.key2, k8s_claims("shop", "orders"))
        self.assertEqual(self.status(new), 200)
        self.assertEqual(self.status(old), 200)

        # The old key is withdrawn; the next refresh (here: an unknown kid) drops it, and the
        # old key's token, though cached as verified, is checked again and refused.
        self.endpoint.set(jwks(self.key2))
        stray = mint(self.key2, k8s_claims("shop", "orders"), {"alg": "ES256", "kid": "other"})
        self.assertEqual(self.status(stray), 401)
        self.assertEqual(self.status(old), 401)
        self.assertEqual(self.status(new), 200)
        self.assertEqual(self.issuer_health(self.server)["status"], "UP")

        # The issuer goes away: the cached keys keep working, health says DEGRADED.
        self.endpoint.stop()
        try:
            self.assertEqual(self.status(stray), 401)  # asks for a refresh, which fails
            health = self.issuer_health(self.server)
            self.assertEqual(health["status"], "DEGRADED", health)
            self.assertTrue(health["details"]["cluster"]["lastError"], health)
            self.assertEqual(health["details"]["cluster"]["keys"], 1, health)
            self.assertEqual(self.server.get("/actuator/health").json()["status"], "UP")
            self.assertEqual(self.status(new), 200)
            fresh = mint(self.key2, k8s_claims("shop", "orders"))  # never seen: verified now
            self.assertEqual(self.status(fresh), 200)
            self.assertEqual(self.status(old), 401)
            # A reload of the auth file while the issuer is down keeps the fetched keys.
            self.server.proc.send_signal(signal.SIGHUP)
            self.server.wait_for_log(r"--auth-file reloaded")
            self.assertEqual(self.status(mint(self.key2, k8s_claims("shop", "orders"))), 200)
            self.assertEqual(self.issuer_health(self.server)["details"]["cluster"]["keys"], 1)
        finally:
            self.endpoint.start()
        # Back: the next refresh succeeds and health recovers.
        self.assertEqual(self.status(stray), 401)
        wait_until(lambda: self.issuer_health(self.server)["status"] == "UP")

    def test_untrusted_certificate(self):
        token = mint(self.key1, k8s_claims("shop", "orders"))
        self.assertEqual(self.status(token, server=self.untrusting), 401)
        health = self.issuer_health(self.untrusting)
        self.assertEqual(health["status"], "DEGRADED", health)
        self.assertEqual(health["details"]["cluster"]["keys"], 0, health)


if __name__ == "__main__":
    import unittest
    unittest.main()
