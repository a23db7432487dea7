"""--tls-cert / --tls-key: the same API over HTTPS, with a throwaway self-signed certificate."""

import http.client
import json
import os
import ssl
import subprocess
import unittest

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
