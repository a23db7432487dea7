"""Secrets end to end: {cipher} values in a real repository decrypted while composing an
Environment (or marked invalid.<key> = <n/a>), the /encrypt, /decrypt, /encrypt/status and /key
endpoints with Spring's bodies, and the offline `almanac-server encrypt|decrypt` helper.

The ciphertexts come from tests/resources/cipher/vectors, made with the openssl CLI."""

import os
import subprocess
import unittest

from almanac_harness import SERVER_BIN, SOURCE_DIR, ServerTestCase, require_server_bin

RES = os.path.join(SOURCE_DIR, "tests", "resources", "cipher")
KEYS = os.path.join(RES, "keys")
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
TEXT = {"Content-Type": "text/plain"}
NO_KEY = {"description": "No key was installed for encryption service", "status": "NO_KEY"}
INVALID = {"description": "Text not encrypted with this key", "status": "INVALID"}


def vector(name):
    with open(os.path.join(RES, "vectors", name + ".cipher")) as f:
        return f.read()


def repo_files():
    return {
        "application.yml": (
            "plain: visible\n"
            "sym: '%s'\n"
            "rsa:\n"
            "  oaep: '%s'\n"
            "  pkcs1: '%s'\n"
            "alm: '%s'\n"
            "broken: '%s'\n"
            "after: last\n" % (vector("spring-sym-word"), vector("spring-rsa-oaep-gcm-unicode"),
                               vector("spring-rsa-pkcs1-cbc-word"), vector("almanac-multiline"),
                               vector("bad-sym-wrong-key"))),
        "props.properties": "a=1\nsecret=%s\nz=2\n" % vector("almanac-word"),
    }


def source(env, suffix):
    for ps in env["propertySources"]:
        if ps["name"].endswith(suffix):
            return ps["source"]
    raise AssertionError("no property source ending with %s in %r" % (suffix, env))


class KeyedServerTest(ServerTestCase):
    """A symmetric and an RSA key installed."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit(repo_files(), "secrets")
        cls.server = cls.start_server(cls.repo.uri, extra_args=[
            "--encrypt-key-file", os.path.join(KEYS, "symmetric.key"),
            "--encrypt-rsa-key-file", os.path.join(KEYS, "rsa.pem")])

    def test_environment_decrypts_every_format(self):
        r = self.server.get("/application/default")
        self.assertEqual(r.status, 200, r)
        src = source(r.json(), "application.yml")
        # Spring moves decrypted values to the end of their source and marks failures.
        self.assertEqual(list(src), ["plain", "after", "sym", "rsa.oaep", "rsa.pkcs1", "alm",
                                     "invalid.broken"])
        self.assertEqual(src["sym"], "s3cr3t")
        self.assertEqual(src["rsa.oaep"], "pässwörd ☃ 密码")
        self.assertEqual(src["rsa.pkcs1"], "s3cr3t")
        self.assertEqual(src["alm"], "line one\nline two\n")
        self.assertEqual(src["invalid.broken"], "<n/a>")
        self.assertNotIn(vector("bad-sym-wrong-key")[8:], r.text)
        r = self.server.get("/props/default")
        self.assertEqual(source(r.json(), "props.properties"),
                         {"a": "1", "z": "2", "secret": "s3cr3t"})

    def test_failure_is_logged_without_the_value(self):
        self.server.get("/application/default")
        log = self.server.wait_for_log(r"broken")
        self.assertNotIn(vector("bad-sym-wrong-key")[8:], self.server.log())
        self.assertNotIn("s3cr3t", self.server.log())
        self.assertTrue(log)

    def test_status(self):
        r = self.server.get("/encrypt/status")
        self.assertEqual((r.status, r.json()), (200, {"status": "OK"}))

    def test_encrypt_decrypt_text_plain(self):
        r = self.server.post("/encrypt", "my secret", TEXT)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("content-type").startswith("text/plain"))
        self.assertTrue(r.text.startswith("alm1:"), r.text)
        self.assertFalse(r.text.startswith("{cipher}"))
        d = self.server.post("/decrypt", r.body, TEXT)
        self.assertEqual((d.status, d.text), (200, "my secret"))

    def test_curl_form_body(self):
        # curl -d secret sends "secret=" as a form.
        r = self.server.post("/encrypt", "my+form%21=", FORM)
        self.assertEqual(r.status, 200, r)
        d = self.server.post("/decrypt", r.body, FORM)
        self.assertEqual((d.status, d.text), (200, "my form!"))
        # A hex ciphertext posted as a form gains a '=' that must go again.
        d = self.server.post("/decrypt", vector("spring-sym-word")[8:] + "=", FORM)
        self.assertEqual((d.status, d.text), (200, "s3cr3t"))

    def test_decrypt_spring_rsa(self):
        for name in ("spring-rsa-pkcs1-cbc-word", "spring-rsa-pkcs1-gcm-word",
                     "spring-rsa-oaep-cbc-word", "spring-rsa-oaep-gcm-word"):
            d = self.server.post("/decrypt", vector(name)[8:], TEXT)
            self.assertEqual((d.status, d.text), (200, "s3cr3t"), name)

    def test_decrypt_invalid(self):
        for body in ("nonsense", vector("bad-sym-padding-05")[8:], vector("bad-rsa-wrong-key")[8:],
                     vector("bad-almanac-flip-13")[8:]):
            d = self.server.post("/decrypt", body, TEXT)
            self.assertEqual((d.status, d.json()), (400, INVALID), body)

    def test_name_profiles_forms(self):
        r = self.server.post("/encrypt/app/dev,prod", "x", TEXT)
        self.assertEqual(r.status, 200, r)
        d = self.server.post("/decrypt/app/dev", r.body, TEXT)
        self.assertEqual((d.status, d.text), (200, "x"))

    def test_unknown_named_key(self):
        r = self.server.post("/encrypt", "{key:nope}x", TEXT)
        self.assertEqual((r.status, r.json()), (404, NO_KEY))

    def test_public_key(self):
        r = self.server.get("/key")
        self.assertEqual(r.status, 200, r)
        with open(os.path.join(KEYS, "rsa.ssh.pub")) as f:
            blob = f.read().split()[1]
        self.assertEqual(r.text, "ssh-rsa %s application" % blob)


class NoKeyServerTest(ServerTestCase):
    """No key at all: Spring's NO_KEY answers, and every {cipher} value marked invalid."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit(repo_files(), "secrets")
        cls.server = cls.start_server(cls.repo.uri)

    def test_endpoints(self):
        for method, path in (("GET", "/encrypt/status"), ("POST", "/encrypt"),
                             ("POST", "/decrypt"), ("GET", "/key")):
            r = self.server.request(method, path, TEXT, "abc" if method == "POST" else None)
            self.assertEqual((r.status, r.json()), (404, NO_KEY), path)

    def test_values_invalid(self):
        r = self.server.get("/props/default")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(source(r.json(), "props.properties"),
                         {"a": "1", "z": "2", "invalid.secret": "<n/a>"})


class RotationServerTest(ServerTestCase):
    """Named keys from a directory, Spring's format for what /encrypt writes."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit({"application.yml": "old: '%s'\nnew: '%s'\n" % (
            vector("rotation-old"), vector("rotation-new"))}, "rotation")
        cls.server = cls.start_server(cls.repo.uri, extra_args=[
            "--encrypt-keys-dir", os.path.join(KEYS, "rotation"), "--encrypt-format", "spring"])

    def test_old_and_new_values(self):
        src = source(self.server.get("/application/default").json(), "application.yml")
        self.assertEqual(src, {"old": "old value", "new": "new value"})

    def test_encrypt_with_named_key(self):
        r = self.server.post("/encrypt", "{key:new}fresh", TEXT)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.text.startswith("{key:new}"), r.text)
        int(r.text[len("{key:new}"):], 16)  # Spring's hex format
        d = self.server.post("/decrypt", r.body, TEXT)
        self.assertEqual((d.status, d.text), (200, "fresh"))

    def test_no_default_key(self):
        r = self.server.post("/encrypt", "fresh", TEXT)
        self.assertEqual((r.status, r.json()), (404, NO_KEY))


class EnvironmentKeyServerTest(ServerTestCase):
    """The secret itself in ALMANAC_ENCRYPT_KEY, no key file."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit({"application.yml": "sym: '%s'\n" % vector("spring-sym-unicode")}, "s")
        cls.server = cls.start_server(cls.repo.uri, env={
            "ALMANAC_ENCRYPT_KEY": "test-only symmetric key: correct horse battery staple"})

    def test_value_decrypts(self):
        src = source(self.server.get("/application/default").json(), "application.yml")
        self.assertEqual(src, {"sym": "pässwörd ☃ 密码"})
        self.assertNotIn("horse", self.server.log())


class OfflineHelperTest(unittest.TestCase):
    def setUp(self):
        require_server_bin()

    def run_helper(self, args, stdin, env=None):
        full = dict(os.environ)
        full.pop("ALMANAC_ENCRYPT_KEY", None)
        full.update(env or {})
        return subprocess.run([SERVER_BIN, *args], input=stdin.encode(), env=full,
                              capture_output=True)

    def test_round_trip(self):
        key = ["--key-file", os.path.join(KEYS, "symmetric.key")]
        e = self.run_helper(["encrypt", *key], "offline\n")
        self.assertEqual(e.returncode, 0, e.stderr)
        self.assertTrue(e.stdout.startswith(b"{cipher}alm1:"))
        d = self.run_helper(["decrypt", *key], e.stdout.decode())
        self.assertEqual((d.returncode, d.stdout), (0, b"offline"))

    def test_environment_key_and_spring_format(self):
        env = {"ALMANAC_ENCRYPT_KEY": "from the environment"}
        e = self.run_helper(["encrypt", "--format", "spring"], "v", env)
        self.assertEqual(e.returncode, 0, e.stderr)
        int(e.stdout.decode().strip()[len("{cipher}"):], 16)
        d = self.run_helper(["decrypt"], e.stdout.decode(), env)
        self.assertEqual(d.stdout, b"v")

    def test_wrong_key(self):
        d = self.run_helper(["decrypt", "--key-file", os.path.join(KEYS, "other.key")],
                            vector("spring-sym-word"))
        self.assertEqual(d.returncode, 1)
        self.assertEqual(d.stdout, b"")
        self.assertIn(b"Text not encrypted with this key", d.stderr)


if __name__ == "__main__":
    unittest.main()
