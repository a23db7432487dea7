"""Keys, key sets and tokens for the JWT tests, made with the openssl CLI (no Python crypto
package): an RSA and a P-256 key, their JWKS, tokens shaped like those a Kubernetes API server
issues, and an HTTPS endpoint serving a JWKS under a test CA.

The claims follow the Kubernetes documentation's example of a projected ServiceAccount token
(`kubectl create token` / a serviceAccountToken volume): iss, sub, aud (a list), exp, iat, nbf,
jti and the kubernetes.io object with namespace, pod, node and serviceaccount."""

import base64
import http.server
import json
import os
import ssl
import subprocess
import threading
import time
import uuid

ISSUER = "https://kubernetes.default.svc.cluster.local"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def run(*args, data=None):
    return subprocess.run(list(args), input=data, check=True, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE).stdout


class Key:
    """A private key in a PEM file and its public JWK."""

    def __init__(self, directory, kind, kid):
        self.kind = kind  # "RSA" or "EC"
        self.kid = kid
        self.path = os.path.join(directory, "%s-%s.pem" % (kid, uuid.uuid4().hex[:8]))
        if kind == "RSA":
            run("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                "-out", self.path)
        else:
            run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-out", self.path)
        self.public_pem = run("openssl", "pkey", "-in", self.path, "-pubout")
        self.jwk = self._jwk()

    def _jwk(self):
        text = run("openssl", "pkey", "-in", self.path, "-noout", "-text").decode()
        if self.kind == "RSA":
            n = int(run("openssl", "rsa", "-in", self.path, "-noout", "-modulus")
                    .decode().strip().split("=", 1)[1], 16)
            return {"use": "sig", "kty": "RSA", "kid": self.kid, "alg": "RS256",
                    "n": b64url(n.to_bytes((n.bit_length() + 7) // 8, "big")), "e": "AQAB"}
        # "pub:" is followed by hex bytes 04 || x || y over several lines.
        lines = text.split("pub:")[1].split("ASN1 OID")[0]
        raw = bytes.fromhex("".join(lines.split()).replace(":", ""))
        assert raw[0] == 4 and len(raw) == 65, raw
        return {"use": "sig", "kty": "EC", "crv": "P-256", "kid": self.kid, "alg": "ES256",
                "x": b64url(raw[1:33]), "y": b64url(raw[33:])}

    @property
    def alg(self):
        return "RS256" if self.kind == "RSA" else "ES256"

    def sign(self, data):
        sig = run("openssl", "dgst", "-sha256", "-sign", self.path, data=data)
        return sig if self.kind == "RSA" else der_to_raw(sig)


def der_to_raw(der):
    """ECDSA-Sig-Value (DER) -> r || s, 32 bytes each (RFC 7518 3.4)."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 3
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        out += der[i + 2:i + 2 + n].lstrip(b"\0").rjust(32, b"\0")
        i += 2 + n
    return out


def jwks(*keys):
    return json.dumps({"keys": [k.jwk for k in keys]})


def k8s_claims(namespace, serviceaccount, audience="almanac", lifetime=3600, now=None,
               issuer=ISSUER):
    """The payload of a projected ServiceAccount token, as the API server writes it."""
    now = int(time.time()) if now is None else now
    return {
        "aud": [audience],
        "exp": now + lifetime,
        "iat": now,
        "iss": issuer,
        "jti": str(uuid.uuid4()),
        "kubernetes.io": {
            "namespace": namespace,
            "node": {"name": "node-1", "uid": str(uuid.uuid4())},
            "pod": {"name": "%s-7d9f8b6c5-x2x7q" % serviceaccount, "uid": str(uuid.uuid4())},
            "serviceaccount": {"name": serviceaccount, "uid": str(uuid.uuid4())},
            "warnafter": now + lifetime - 600,
        },
        "nbf": now,
        "sub": "system:serviceaccount:%s:%s" % (namespace, serviceaccount),
    }


def mint(key, claims, header=None):
    """A compact JWS: header.payload.signature. The API server's header is {alg, kid}."""
    h = header if header is not None else {"alg": key.alg, "kid": key.kid}
    signing_input = (b64url(json.dumps(h, separators=(",", ":")).encode()) + "." +
                     b64url(json.dumps(claims, separators=(",", ":")).encode()))
    return signing_input + "." + b64url(key.sign(signing_input.encode()))


def mint_hs256(secret, claims, kid):
    """The classic confusion attack: HS256 keyed with the issuer's public key."""
    import hashlib
    import hmac
    h = {"alg": "HS256", "kid": kid}
    signing_input = (b64url(json.dumps(h).encode()) + "." + b64url(json.dumps(claims).encode()))
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(mac)


def unsigned(claims, kid):
    h = {"alg": "none", "kid": kid}
    return b64url(json.dumps(h).encode()) + "." + b64url(json.dumps(claims).encode()) + "."


class TestCA:
    """A CA and a certificate for 127.0.0.1 it signed."""

    def __init__(self, directory):
        self.ca_key = os.path.join(directory, "ca.key")
        self.ca_cert = os.path.join(directory, "ca.pem")
        self.key = os.path.join(directory, "jwks-server.key")
        self.cert = os.path.join(directory, "jwks-server.pem")
        csr = os.path.join(directory, "jwks-server.csr")
        ext = os.path.join(directory, "jwks-server.ext")
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", self.ca_key, "-out", self.ca_cert, "-days", "2",
            "-subj", "/CN=almanac test CA")
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", self.key, "-out", csr, "-subj", "/CN=127.0.0.1")
        with open(ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
        run("openssl", "x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
            "-CAcreateserial", "-out", self.cert, "-days", "2", "-extfile", ext)


class JwksEndpoint:
    """An HTTPS server on 127.0.0.1 answering GET /openid/v1/jwks with whatever document is
    set, counting requests and the bearer tokens it was sent. stop() closes the port; start()
    opens it again on the same port."""

    def __init__(self, ca):
        self.ca = ca
        self.document = jwks()
        self.requests = 0
        self.authorizations = []
        self.port = 0
        self.httpd = None
        self.thread = None
        self.lock = threading.Lock()

    @property
    def url(self):
        return "https://127.0.0.1:%d/openid/v1/jwks" % self.port

    def start(self):
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                with endpoint.lock:
                    endpoint.requests += 1
                    endpoint.authorizations.append(self.headers.get("Authorization"))
                    body = endpoint.document.encode()
                if self.path != "/openid/v1/jwks":
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/jwk-set+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.httpd.server_address[1]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca.cert, self.ca.key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join()
            self.httpd = None

    def set(self, document):
        with self.lock:
            self.document = document

    def count(self):
        with self.lock:
            return self.requests
