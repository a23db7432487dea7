"""--tls-cert / --tls-key: the same API over HTTPS, with a throwaway self-signed certificate made
by the openssl CLI; TLS 1.2 and 1.3 only; HTTP Basic over TLS."""

import base64
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import unittest
import warnings

from almanac_harness import Server, ServerTestCase


class TlsTest(ServerTestCase):

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit({"orders.yml": "color: red\n"}, "tls")
        cls.cert = os.path.join(cls.tmp, "cert.pem")
        cls.key = os.path.join(cls.tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", cls.key, "-out", cls.cert],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.chmod(cls.key, 0o600)
        cls.server = cls.start_server(cls.repo.uri,
                                      extra_args=["--tls-cert", cls.cert, "--tls-key", cls.key])

    def https(self):
        ctx = ssl.create_default_context(cafile=self.cert)
        return http.client.HTTPSConnection("127.0.0.1", self.server.port, timeout=20,
                                           context=ctx)

    def test_environment_over_https(self):
        conn = self.https()
        try:
            for _ in range(3):  # keep-alive over TLS
                conn.request("GET", "/orders/dev")
                r = conn.getresponse()
                body = r.read()
                self.assertEqual(r.status, 200)
                env = json.loads(body)
                self.assertEqual(env["propertySources"][0]["source"], {"color": "red"})
        finally:
            conn.close()

    def https_request(self, conn, method, path):
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, r.getheader("ETag"), r.read()

    def test_watch_over_https_times_out_and_wakes_on_the_same_connection(self):
        # A TLS session cannot leave libmicrohttpd: the watcher is suspended inside it instead
        # of parked outside (test_parked.py), and must behave the same.
        self.repo.commit({"billing.yml": "plan: basic\n"}, "billing")
        side = self.https()
        conn = self.https()
        try:
            self.assertEqual(self.https_request(side, "POST", "/actuator/refresh")[0], 200)
            status, tag, _ = self.https_request(conn, "GET", "/billing/dev")
            self.assertEqual(status, 200)
            self.assertEqual(self.https_request(conn, "GET", "/billing/dev?watch=%s&timeout=1"
                                                % tag.strip('"')), (304, tag, b""))
            answer = {}
            watcher = threading.Thread(target=lambda: answer.update(result=self.https_request(
                conn, "GET", "/billing/dev?watch=%s&timeout=60" % tag.strip('"'))))
            watcher.start()
            deadline = time.monotonic() + 10
            parked = False
            while not parked and time.monotonic() < deadline:
                metrics = self.https_request(side, "GET", "/metrics")[2].decode()
                parked = re.search(r"^almanac_watchers 1$", metrics, re.M) is not None
                time.sleep(0.05)
            self.assertTrue(parked, "the watcher never parked")
            self.repo.commit({"billing.yml": "plan: premium\n"}, "upgrade")
            self.assertEqual(self.https_request(side, "POST", "/actuator/refresh")[0], 200)
            watcher.join(20)
            status, new_tag, body = answer["result"]
            self.assertEqual(status, 200)
            self.assertNotEqual(new_tag, tag)
            self.assertEqual(json.loads(body)["propertySources"][0]["source"], {"plan": "premium"})
            self.assertEqual(self.https_request(conn, "GET", "/billing/dev")[1], new_tag)
        finally:
            side.close()
            conn.close()

    def test_untrusted_client_refuses(self):
        conn = http.client.HTTPSConnection("127.0.0.1", self.server.port, timeout=20,
                                           context=ssl.create_default_context())
        try:
            with self.assertRaises(ssl.SSLError):
                conn.request("GET", "/orders/dev")
                conn.getresponse()
        finally:
            conn.close()

    def test_plain_http_is_not_served(self):
        answer = self.server.raw(b"GET /orders/dev HTTP/1.1\r\nHost: x\r\n"
                                 b"Connection: close\r\n\r\n", timeout=5)
        self.assertNotIn(b"color", answer)
        https = self.https()
        try:
            https.request("GET", "/actuator/health")
            self.assertEqual(https.getresponse().status, 200)
        finally:
            https.close()


    def handshake(self, version, seclevel0=False):
        """The protocol negotiated when the client offers only `version`."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.cert)
        if seclevel0:  # OpenSSL 3 will not offer TLS 1.1 otherwise: let the server refuse it
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ctx.maximum_version = version
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=20) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                return tls.version()

    def test_modern_versions_only(self):
        self.assertEqual(self.handshake(ssl.TLSVersion.TLSv1_3), "TLSv1.3")
        self.assertEqual(self.handshake(ssl.TLSVersion.TLSv1_2), "TLSv1.2")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            old_versions = (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1)
        for old in old_versions:
            with self.subTest(version=old), warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                with self.assertRaises(ssl.SSLError) as caught:
                    self.handshake(old, seclevel0=True)
                # Refused by the server, not by our own client's policy.
                self.assertNotIn("NO_PROTOCOLS_AVAILABLE", str(caught.exception))
        self.assertTrue(self.server.alive())

    def test_garbage_handshake_leaves_server_up(self):
        answer = self.server.raw(b"\x16\x03\x01\x00\x05hello" + os.urandom(64), timeout=3)
        self.assertNotIn(b"color", answer)
        conn = self.https()
        try:
            conn.request("GET", "/orders/dev")
            self.assertEqual(conn.getresponse().status, 200)
        finally:
            conn.close()


class TlsWithAuthTest(ServerTestCase):
    """Basic credentials travel inside TLS; the checks are the same as over plain HTTP."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit({"orders.yml": "color: red\n", "payments.yml": "p: 1\n"}, "tls")
        cls.cert = os.path.join(cls.tmp, "cert.pem")
        cls.key = os.path.join(cls.tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", cls.key, "-out", cls.cert],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        hashed = subprocess.run(["openssl", "passwd", "-6", "-salt", "tlssalt", "tls-pw"],
                                check=True, stdout=subprocess.PIPE).stdout.decode().strip()
        auth = os.path.join(cls.tmp, "auth.yml")
        with open(auth, "w") as f:
            f.write("users:\n  svc:\n    password: \"%s\"\n    applications: [orders]\n"
                    "tokens:\n  - sha256: %s\n    admin: true\n"
                    % (hashed, hashlib.sha256(b"tls-admin-token").hexdigest()))
        os.chmod(auth, 0o600)
        cls.server = cls.start_server(cls.repo.uri, extra_args=[
            "--tls-cert", cls.cert, "--tls-key", cls.key, "--auth-file", auth])

    def status(self, path, headers):
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.server.port, timeout=20,
            context=ssl.create_default_context(cafile=self.cert))
        try:
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            r.read()
            return r.status
        finally:
            conn.close()

    def test_auth_over_https(self):
        good = {"Authorization": "Basic " + base64.b64encode(b"svc:tls-pw").decode()}
        bad = {"Authorization": "Basic " + base64.b64encode(b"svc:nope").decode()}
        self.assertEqual(self.status("/orders/dev", good), 200)
        self.assertEqual(self.status("/payments/dev", good), 403)
        self.assertEqual(self.status("/orders/dev", bad), 401)
        self.assertEqual(self.status("/orders/dev", {}), 401)
        self.assertEqual(self.status("/metrics", {"Authorization": "Bearer tls-admin-token"}),
                         200)
        self.assertEqual(self.status("/actuator/health", {}), 200)


def make_certificate(cert, key, common_name, curve="prime256v1"):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:" + curve, "-nodes", "-days", "2",
                    "-subj", "/CN=" + common_name, "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class TlsReloadTest(ServerTestCase):
    """SIGHUP swaps the certificate for new handshakes, all or nothing."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit({"orders.yml": "color: red\n"}, "tls")
        cls.cert = os.path.join(cls.tmp, "live-cert.pem")
        cls.key = os.path.join(cls.tmp, "live-key.pem")
        make_certificate(cls.cert, cls.key, "first")
        cls.server = cls.start_server(cls.repo.uri,
                                      extra_args=["--tls-cert", cls.cert, "--tls-key", cls.key])

    def served_certificate(self):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=20) as raw:
            with ctx.wrap_socket(raw) as tls:
                return tls.getpeercert(binary_form=True)

    def reload_and_wait(self, message):
        before = self.server.log().count(message)
        self.server.proc.send_signal(signal.SIGHUP)
        self.assertTrue(self.server.wait_for_log("(?s)" + ("%s.*" % re.escape(message)) * (before + 1)),
                        self.server.log_tail())

    def pem_to_der(self, path):
        with open(path) as f:
            return ssl.PEM_cert_to_DER_cert(f.read())

    def test_sighup_swaps_the_certificate_and_keeps_it_on_a_bad_pair(self):
        self.assertEqual(self.served_certificate(), self.pem_to_der(self.cert))
        first = self.pem_to_der(self.cert)

        # A key that does not belong to the certificate: refused, the old pair stays.
        other_cert = os.path.join(self.tmp, "other-cert.pem")
        other_key = os.path.join(self.tmp, "other-key.pem")
        make_certificate(other_cert, other_key, "other")
        with open(other_key) as src, open(self.key, "w") as dst:
            dst.write(src.read())
        self.reload_and_wait("TLS certificate not reloaded")
        self.assertIn("does not belong", self.server.log())
        self.assertEqual(self.served_certificate(), first)

        # A matching pair: new handshakes get it.
        make_certificate(self.cert, self.key, "second", curve="secp384r1")
        self.reload_and_wait("TLS certificate reloaded")
        second = self.served_certificate()
        self.assertEqual(second, self.pem_to_der(self.cert))
        self.assertNotEqual(second, first)

        # Garbage in the certificate file: refused, the second pair stays.
        with open(self.cert, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        self.reload_and_wait("TLS certificate not reloaded")
        self.assertEqual(self.served_certificate(), second)


class TlsConfigErrorTest(ServerTestCase):

    def test_cert_without_key_fails_to_start(self):
        repo = self.make_repo()
        repo.commit({"orders.yml": "color: red\n"}, "tls")
        s = Server(repo.uri, self.tmp,
                   extra_args=["--tls-cert", os.path.join(self.tmp, "x.pem")])
        type(self).servers.append(s)
        s.launch()
        self.assertNotEqual(s.wait_exit(), 0)
        self.assertIn("tls", s.log().lower())


if __name__ == "__main__":
    unittest.main()
