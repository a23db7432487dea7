"""Path traversal, in every decoding layer Spring's CVEs went through (CVE-2019-3799,
CVE-2020-5405, CVE-2020-5410, CVE-2026-22739): percent-encoding once and twice, (_), backslashes,
NUL bytes and dot segments, in the application name, the profile, the label and the plain-file
path, against a Git repository and a plain directory (dir:).

Files holding a marker are put next to the repository (and next to the cache): no response may
ever contain it. Each traversal attempt must be refused with 400 or 404; only shapes that are
harmless after one decoding (a literal "%2e" is just a strange name) may answer 200, and then
only with files from inside the repository.
"""

import os
import unittest

from almanac_harness import ServerTestCase

MARKER = "OUTSIDE-MARKER-5f1c9e"
OUTSIDE_FILES = {
    "secret.txt": MARKER + " secret\n",
    "application.yml": "leak: %s-application\n" % MARKER,
    "application-dev.yml": "leak: %s-application-dev\n" % MARKER,
    "outside.yml": "leak: %s-outside\n" % MARKER,
    "outside-dev.yml": "leak: %s-outside-dev\n" % MARKER,
    "outside.properties": "leak=%s-outside-props\n" % MARKER,
}
INSIDE_FILES = {
    "application.yml": "inside: true\n",
    "app.yml": "app: inside\n",
    "notes.txt": "in-repo notes ${app}\n",
    "sub/inner.txt": "inner file\n",
    "app/app-dev.yml": "app: in-app-dir\n",
}

# (shape, may answer 200 with in-repo content). "{T}" is the target: a file name outside.
SHAPES = [
    ("..", False),
    ("%2e%2e", False),
    ("%2E%2E", False),
    (".%2e", False),
    ("..%2F{T}", False),
    ("..%2f..%2f{T}", False),
    ("%2e%2e%2f{T}", False),
    ("%2e%2e%2F%2e%2e%2F{T}", False),
    ("..%5C{T}", False),
    ("..%5c..%5c{T}", False),
    ("%2e%2e%5c{T}", False),
    ("..\\{T}", False),
    ("..(_){T}", False),
    ("..(_)..(_){T}", False),
    ("(_)..(_){T}", False),
    ("(_){T}", False),
    ("x(_)..(_)..(_){T}", False),
    ("..%00", False),
    ("{T}%00", False),
    ("{T}%00.yml", False),
    ("..%2F{T}%23", False),
    ("%23..%2F{T}", False),
    ("..%2F..%2F..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd", False),
    # double encoding: after the one decoding the server does, these are odd but inert names
    ("%252e%252e", True),
    ("%252e%252e%252f{T}", True),
    ("..%252F{T}", False),          # still contains ".." after one decoding
    ("..%252f..%252f{T}", False),
    ("%252e%252e%255c{T}", True),
    ("..%255c{T}", False),
    ("%25252e%25252e%25252f{T}", True),
    # overlong UTF-8 for "/" and "."
    ("..%c0%af{T}", False),
    ("%c0%ae%c0%ae%c0%af{T}", True),
]

# Raw dot segments, sent as they are (a server that normalises them lands inside the repo).
# (raw path, may answer 200): sent as they are. A server that removes dot segments lands
# inside the repository, which is harmless, so literal "/../" may answer 200 (inside content).
RAW_PATHS = [
    ("/app/dev/main/../../secret.txt", True),
    ("/app/dev/main/../../../secret.txt", True),
    ("/app/dev/main/sub/../../secret.txt", True),
    ("/app/dev/main/./../secret.txt", True),
    ("/../secret.txt", True),
    ("/../../outside/dev", True),
    ("/app/../../outside/dev", True),
    ("/app/dev/../../../outside-dev.yml", True),
    ("/app/dev/main/sub/..%2F..%2F..%2Fsecret.txt", False),
    ("/app/dev/main/sub(_)..(_)..(_)secret.txt", False),
    ("/app/dev/main/..%252F..%252Fsecret.txt", False),
    ("/app/dev/..%252F..%252Fsecret.txt?useDefaultLabel", False),
    ("/app/dev/..(_)secret.txt?useDefaultLabel", False),
    ("/app/dev/main/%2e%2e/secret.txt", False),
    ("/app/dev/main/%2e%2e%2fsecret.txt", False),
    ("/app/dev/main/%5c..%5csecret.txt", False),
    ("/app/dev/main/secret.txt%00.txt", False),
]


def requests_for(shape):
    """Every place a traversal could hide, for one shape."""
    name = shape.replace("{T}", "outside")
    path = shape.replace("{T}", "secret.txt")
    return [
        ("name", "/%s/dev" % name),
        ("name", "/%s/dev/main" % name),
        ("name", "/%s-dev.yml" % name),
        ("name", "/main/%s-dev.properties" % name),
        ("name", "/%s/dev/main/notes.txt" % name),
        ("profile", "/app/%s" % name),
        ("profile", "/app/dev,%s" % name),
        ("profile", "/app-%s.yml" % name),
        ("profile", "/app/%s/main/notes.txt" % name),
        ("label", "/app/dev/%s" % name),
        ("label", "/%s/app-dev.json" % name),
        ("label", "/app/dev/%s/notes.txt" % name),
        ("path", "/app/dev/main/%s" % path),
        ("path", "/app/dev/%s?useDefaultLabel" % path),
    ]


class TraversalChecks:
    """Mixed into the test classes below, which set up cls.server."""

    def check(self, position, url, may_200):
        r = self.server.get(url)
        text = r.body.decode("utf-8", "replace")
        self.assertNotIn(MARKER, text, "content from outside the repository served")
        self.assertNotIn("root:x:0:0", text, "/etc/passwd served")
        self.assertLess(r.status, 500, r)
        if r.status == 200:
            self.assertTrue(may_200, "expected 400 or 404, got 200: %r" % (r,))
            if r.body.startswith(b'{"name"'):
                for ps in r.json()["propertySources"]:
                    self.assertNotIn("/../", ps["name"])
                    self.assertNotIn(MARKER, str(ps["source"]))
        else:
            self.assertIn(r.status, (400, 404), r)

    def test_controls_inside_repo(self):
        # The routes the attacks aim at do work for legitimate requests.
        r = self.server.get("/app/dev")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.server.get("/app/dev/main/notes.txt").text,
                         "in-repo notes in-app-dir\n")
        self.assertEqual(self.server.get("/app/dev/main/sub(_)inner.txt").text, "inner file\n")
        self.assertEqual(self.server.get("/app/dev/notes.txt?useDefaultLabel").status, 200)

    def test_shapes(self):
        for shape, may_200 in SHAPES:
            for position, url in requests_for(shape):
                with self.subTest(position=position, url=url):
                    self.check(position, url, may_200 and position in ("name", "label"))
        self.assertTrue(self.server.alive())

    def test_raw_paths(self):
        for url, may_200 in RAW_PATHS:
            with self.subTest(url=url):
                self.check("raw", url, may_200)
        self.assertTrue(self.server.alive())

    def test_raw_request_lines(self):
        # Request targets http.client would not send: absolute-form and backslashes.
        for target in (b"/app/dev/main/..\\..\\secret.txt", b"/app\\..\\..\\outside/dev",
                       b"http://127.0.0.1/../secret.txt", b"/app/dev/main/..%2F..%2Fsecret.txt#x"):
            with self.subTest(target=target):
                answer = self.server.raw(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n"
                                         b"Connection: close\r\n\r\n")
                self.assertNotIn(MARKER.encode(), answer)
                self.assertRegex(answer[:12], rb"^HTTP/1\.[01] (400|404)")


def write_files(base, files):
    for rel, content in files.items():
        full = os.path.join(base, rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(content)


class GitTraversalTest(TraversalChecks, ServerTestCase):

    @classmethod
    def setUpServers(cls):
        write_files(cls.tmp, OUTSIDE_FILES)
        repo = cls.make_repo()
        repo.write(INSIDE_FILES)
        for rel, target in {"link.txt": "../secret.txt", "evil.yml": "../outside.yml",
                            "up": "..", "abs.txt": os.path.join(cls.tmp, "secret.txt")}.items():
            os.symlink(target, os.path.join(repo.path, rel))
        repo.commit(None, "inside, with symbolic links pointing out")
        cache = os.path.join(cls.tmp, "cache")
        os.makedirs(cache)
        write_files(cache, {"secret.txt": MARKER + "\n", "outside.yml": "leak: %s\n" % MARKER})
        cls.server = cls.start_server(repo.uri, cache_dir=cache,
                                      search_paths="{application},{profile}")


    def test_symlink_blobs_not_followed(self):
        for url in ("/app/dev/main/link.txt", "/app/dev/main/up(_)secret.txt",
                    "/app/dev/main/up/secret.txt", "/evil/dev", "/evil-dev.yml",
                    "/up(_)outside/dev", "/app/dev/main/abs.txt"):
            with self.subTest(url=url):
                self.check("symlink", url, True)


class DirTraversalTest(TraversalChecks, ServerTestCase):

    @classmethod
    def setUpServers(cls):
        write_files(cls.tmp, OUTSIDE_FILES)
        repo_dir = os.path.join(cls.tmp, "config")
        write_files(repo_dir, INSIDE_FILES)
        # a sibling directory whose name starts like the repository's
        write_files(os.path.join(cls.tmp, "config-private"), OUTSIDE_FILES)
        links = {"link.txt": "../secret.txt", "evil.yml": "../outside.yml", "up": "..",
                 "sub/deeplink.txt": "../../secret.txt",
                 "abs.txt": os.path.join(cls.tmp, "secret.txt")}
        for rel, target in links.items():
            os.symlink(target, os.path.join(repo_dir, rel))
        write_files(repo_dir, {".env": "TOKEN=%s\n" % MARKER,
                               ".git/config": "[remote]\n  url = %s\n" % MARKER})
        cls.server = cls.start_server("dir:" + repo_dir,
                                      search_paths="{application},{profile}")

    def test_symlinks_out_of_the_tree_not_followed(self):
        for url in ("/app/dev/main/link.txt", "/app/dev/main/up(_)secret.txt",
                    "/app/dev/main/up/secret.txt", "/evil/dev", "/evil-dev.yml",
                    "/up(_)outside/dev", "/app/dev/main/sub(_)deeplink.txt",
                    "/app/dev/main/abs.txt"):
            with self.subTest(url=url):
                self.check("symlink", url, True)

    def test_dotfiles_not_served(self):
        for url in ("/app/dev/main/.env", "/app/dev/main/.git(_)config",
                    "/app/dev/main/.git/config", "/.env/dev"):
            with self.subTest(url=url):
                self.check("dotfile", url, url == "/.env/dev")

    def test_sibling_prefix_directory(self):
        for url in ("/..%2Fconfig-private%2Foutside/dev",
                    "/app/dev/main/..(_)config-private(_)secret.txt",
                    "/app/dev/main/..%2Fconfig-private%2Fsecret.txt",
                    "/..(_)config-private(_)outside/dev"):
            with self.subTest(url=url):
                self.check("sibling", url, False)


if __name__ == "__main__":
    unittest.main()
