"""`almanac render --watch` as the config sidecar of a real nginx (Debian's), the way the gateway
pod of k8s/example runs it: the sample repository's gateway/nginx.conf (a copy in a test Git
repository) is projected with `--check 'nginx -t …'` and `--on-change 'nginx -s reload'`, and nginx
is asked which configuration answered (its X-Config-Version header).

- a commit changing only nginx.conf reaches nginx (the file is watched, not just the Environment);
- a commit with a syntax error is refused by --check: nginx keeps answering with the previous
  header, DIR/..status names the refused commit;
- the next good commit lands, and so does a change of a value nginx.conf only reads through a
  placeholder;
- a version whose reload fails after the swap is swapped back, and reported;
- one --on-change per version served (and one more for the swap back), never for a refused one.

nginx is started by the test with its own prefix, pid file, error log and a free port, and
stopped by PID. Without nginx (scripts/install-deps --test) the test skips and says why.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import almanac_harness as h  # noqa: E402
from clitest import CLI_BIN, cli_env, require_cli_bin  # noqa: E402

SOURCE_DIR = os.environ.get("ALMANAC_SOURCE_DIR",
                            os.path.dirname(os.path.dirname(HERE)))
SAMPLE = os.path.join(SOURCE_DIR, "config-repo-sample")
DEADLINE = 30.0
HEADER_LINE = re.compile(r'add_header X-Config-Version [^;]*;')


def find_nginx():
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class RenderNginxTest(h.ServerTestCase):

    @classmethod
    def setUpServers(cls):
        require_cli_bin()
        cls.nginx = find_nginx()
        if cls.nginx is None:
            raise unittest.SkipTest("nginx is not installed (scripts/install-deps --test)")

    def setUp(self):
        self.port = free_port()
        self.prefix = os.path.join(self.tmp, "nginx-%s" % self._testMethodName)
        os.makedirs(self.prefix)
        self.out = os.path.join(self.tmp, "out-%s" % self._testMethodName)
        self.marker = os.path.join(self.tmp, "on-change-%s" % self._testMethodName)
        self.nginx_proc = None
        self.render_proc = None
        self.render_log = open(os.path.join(self.tmp, "render-%s.log" % self._testMethodName),
                               "w+b")

    def tearDown(self):
        for proc in (self.render_proc, self.nginx_proc):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.render_log.close()

    # -- helpers ------------------------------------------------------------------------------

    def nginx_args(self):
        return [self.nginx, "-p", self.prefix + "/", "-e", os.path.join(self.prefix, "error.log")]

    def sample_files(self):
        files = {}
        for root, _dirs, names in os.walk(SAMPLE):
            for name in names:
                full = os.path.join(root, name)
                with open(full) as f:
                    files[os.path.relpath(full, SAMPLE)] = f.read()
        return files

    def gateway_prod(self, version):
        """gateway-prod.yml of the copy: the sample's, with this test's port, upstreams that
        need no DNS, and the version nginx.conf sends."""
        text = self.sample["gateway-prod.yml"]
        text = re.sub(r"(?m)^  config-version: .*$", "  config-version: %s" % version, text)
        return text.replace("gateway:\n", "gateway:\n  listen-port: %d\n  upstreams:\n"
                            "    orders: 127.0.0.1:9\n    payments: 127.0.0.1:9\n" % self.port, 1)

    def nginx_conf(self, header_value=None, extra=""):
        """The sample's nginx.conf; header_value replaces the placeholder with a literal."""
        text = self.sample["gateway/nginx.conf"]
        if header_value is not None:
            text = HEADER_LINE.sub('add_header X-Config-Version "%s" always;' % header_value, text)
        return text + extra

    def header(self):
        """X-Config-Version of nginx's answer, or None while it does not answer."""
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % self.port,
                                        timeout=5) as r:
                return r.headers.get("X-Config-Version")
        except (urllib.error.URLError, ConnectionError, OSError):
            return None

    def status(self):
        try:
            with open(os.path.join(self.out, "..status")) as f:
                return json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def served(self):
        return ((self.status() or {}).get("served") or {}).get("version")

    def refused(self):
        return (self.status() or {}).get("refused") or {}

    def on_change_runs(self):
        try:
            with open(self.marker) as f:
                return f.read().split()
        except FileNotFoundError:
            return []

    def render_output(self):
        self.render_log.flush()
        self.render_log.seek(0)
        return self.render_log.read().decode(errors="replace")

    def commit(self, files, message):
        commit = self.repo.commit(files, message)
        self.server.refresh()
        return commit

    def start(self):
        self.sample = self.sample_files()
        self.files = dict(self.sample)
        self.repo = h.GitRepo(self.tmp, "config-%s" % self._testMethodName)
        self.files["gateway-prod.yml"] = self.gateway_prod("p1")
        self.first = self.repo.commit(self.files, "the sample repository")
        self.server = self.start_server(self.repo.uri)
        url = "http://127.0.0.1:%d" % self.server.port
        nginx = " ".join(self.nginx_args())
        check = nginx + ' -t -c "$ALMANAC_RENDER_DIR/nginx.conf"'
        # Each run notes the version it reloaded for, then answers with the reload's status.
        on_change = ('%s -c %s/nginx.conf -s reload; rc=$?; echo "$ALMANAC_RENDER_VERSION" >> %s;'
                     ' exit $rc' % (nginx, self.out, self.marker))
        self.render_proc = subprocess.Popen(
            [CLI_BIN, "render", "gateway", "prod", "--server", url, "--out-dir", self.out,
             "--file", "gateway/nginx.conf", "--watch", "--wait", "30", "--check", check,
             "--on-change", on_change], stdin=subprocess.DEVNULL, stdout=self.render_log,
            stderr=subprocess.STDOUT, env=cli_env())
        self.assertEqual(h.wait_until(self.served, DEADLINE), self.first, self.render_output())
        # nginx starts from the projected file, as the gateway container does.
        self.nginx_proc = subprocess.Popen(
            self.nginx_args() + ["-c", os.path.join(self.out, "nginx.conf"),
                                 "-g", "daemon off;"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if h.wait_until(self.header, DEADLINE) is None:
            log = ""
            if os.path.exists(os.path.join(self.prefix, "error.log")):
                with open(os.path.join(self.prefix, "error.log")) as f:
                    log = f.read()[-2000:]
            self.skipTest("nginx did not start: exit %s, %s" % (self.nginx_proc.poll(), log))
        self.assertEqual(self.header(), "p1")

    def wait_header(self, value):
        return h.wait_until(lambda: self.header() == value, DEADLINE)

    # -- the test -----------------------------------------------------------------------------

    def test_projected_nginx_follows_git_checked_and_verified(self):
        self.start()
        data_link = os.path.join(self.out, "..data")

        # A commit that changes only nginx.conf: the Environment stays as it was.
        c2 = self.commit({"gateway/nginx.conf": self.nginx_conf("n2")}, "nginx: n2")
        self.assertTrue(self.wait_header("n2"), (self.header(), self.render_output()))
        self.assertEqual(h.wait_until(lambda: self.served() == c2, DEADLINE), True)
        served_folder = os.readlink(data_link)

        # A syntax error: refused by nginx -t before anyone sees it.
        c3 = self.commit({"gateway/nginx.conf": self.nginx_conf("n3", "this is not nginx\n")},
                         "nginx: broken")
        self.assertEqual(h.wait_until(lambda: self.refused().get("version"), DEADLINE), c3,
                         self.render_output())
        refused = self.refused()
        self.assertEqual(refused["stage"], "--check")
        self.assertNotEqual(refused["exitCode"], 0)
        self.assertIn("unexpected end of file", refused["output"])  # nginx -t says why
        self.assertEqual(self.served(), c2)
        self.assertEqual(self.header(), "n2")
        self.assertEqual(os.readlink(data_link), served_folder)
        with open(os.path.join(self.out, "nginx.conf")) as f:
            self.assertNotIn("this is not nginx", f.read())
        self.assertIn("refused", self.render_output())

        # The next good commit lands (back to the placeholder, with a new value for it).
        self.files["gateway-prod.yml"] = self.gateway_prod("p4")
        c4 = self.commit({"gateway/nginx.conf": self.nginx_conf(),
                          "gateway-prod.yml": self.files["gateway-prod.yml"]}, "p4")
        self.assertTrue(self.wait_header("p4"), (self.header(), self.render_output()))
        self.assertEqual(h.wait_until(lambda: self.served() == c4, DEADLINE), True)
        self.assertEqual(self.refused(), {})

        # Only a value nginx.conf reads through a placeholder changes.
        c5 = self.commit({"gateway-prod.yml": self.gateway_prod("p5")}, "p5")
        self.assertTrue(self.wait_header("p5"), (self.header(), self.render_output()))
        self.assertEqual(h.wait_until(lambda: self.served() == c5, DEADLINE), True)
        served_folder = os.readlink(data_link)

        # nginx -t passes, but the reload cannot: the new pid file does not exist, so
        # `nginx -s reload` fails after the swap. The previous version is swapped back.
        c6 = self.commit({"gateway/nginx.conf": self.nginx_conf().replace(
            "pid nginx.pid;", "pid elsewhere.pid;")}, "a pid file nobody wrote")
        self.assertEqual(h.wait_until(lambda: self.refused().get("version"), DEADLINE), c6,
                         self.render_output())
        refused = self.refused()
        self.assertEqual(refused["stage"], "--on-change")
        self.assertIn("swapped back", refused["outcome"])
        self.assertEqual(self.served(), c5)
        self.assertEqual(os.readlink(data_link), served_folder)
        with open(os.path.join(self.out, "nginx.conf")) as f:
            self.assertIn("pid nginx.pid;", f.read())
        self.assertEqual(self.header(), "p5")
        # One --on-change per version served, one for the failed reload and one after the swap
        # back; none for the version --check refused.
        self.assertEqual(h.wait_until(lambda: len(self.on_change_runs()) == 5, DEADLINE), True)
        self.assertEqual(self.on_change_runs(), [c2, c4, c5, c6, c5])
        # Only the version in use is left on disk.
        folders = [n for n in os.listdir(self.out) if re.match(r"\.\.\d", n)]
        self.assertEqual(folders, [served_folder])



class RenderLayoutAndRevertTest(h.ServerTestCase):
    """The same machinery without nginx: --layout files and --no-revert."""

    @classmethod
    def setUpServers(cls):
        require_cli_bin()
        cls.repo = cls.make_repo()
        cls.repo.commit({"svc.yml": "color: blue\n", "conf/app.conf": "color=${color}\n"},
                        "blue")
        cls.server = cls.start_server(cls.repo.uri)
        cls.url = "http://127.0.0.1:%d" % cls.server.port

    def render(self, out, *args):
        log = open(os.path.join(self.tmp, os.path.basename(out) + ".log"), "w+b")
        self.addCleanup(log.close)
        proc = subprocess.Popen([CLI_BIN, "render", "svc", "default", "--server", self.url,
                                 "--out-dir", out, "--file", "conf/app.conf", "--watch",
                                 "--wait", "30", *args], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, env=cli_env())

        def stop():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                self.assertEqual(proc.wait(timeout=30), 0)
        self.addCleanup(stop)
        return proc

    @staticmethod
    def read(path):
        try:
            with open(path) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def test_layout_files_replaces_real_files(self):
        out = os.path.join(self.tmp, "files-layout")
        self.render(out, "--layout", "files")
        conf = os.path.join(out, "app.conf")
        self.assertEqual(h.wait_until(lambda: self.read(conf), DEADLINE), "color=blue\n")
        self.assertFalse(os.path.islink(conf))
        self.assertFalse(os.path.islink(os.path.join(out, "svc.yml")))
        before = os.stat(conf)
        # The same file as the version folder holds: one inode, two names.
        self.assertEqual(os.stat(os.path.join(out, "..data", "app.conf")).st_ino, before.st_ino)
        self.repo.commit({"svc.yml": "color: green\n"}, "green")
        self.server.refresh()
        self.assertEqual(h.wait_until(lambda: self.read(conf) == "color=green\n", DEADLINE),
                         True)
        self.assertNotEqual(os.stat(conf).st_ino, before.st_ino)  # replaced, not rewritten
        self.assertEqual(self.read(os.path.join(out, "svc.yml")), "color: green\n")

    def test_no_revert_keeps_a_version_whose_on_change_failed(self):
        out = os.path.join(self.tmp, "no-revert")
        self.render(out, "--on-change", "exit 3", "--no-revert")
        conf = os.path.join(out, "app.conf")
        self.assertEqual(h.wait_until(lambda: self.read(conf), DEADLINE) is not None, True)
        commit = self.repo.commit({"conf/app.conf": "kept=${color}\n"}, "kept")
        self.server.refresh()
        self.assertEqual(h.wait_until(lambda: (self.read(conf) or "").startswith("kept="),
                                      DEADLINE), True)

        def status():
            try:
                return json.loads(self.read(os.path.join(out, "..status")) or "null") or {}
            except json.JSONDecodeError:
                return {}
        failure = h.wait_until(lambda: status().get("lastOnChangeFailure"), DEADLINE)
        self.assertEqual((failure["version"], failure["exitCode"]), (commit, 3))
        self.assertEqual(status()["served"]["version"], commit)
        self.assertIsNone(status()["refused"])


if __name__ == "__main__":
    unittest.main()
