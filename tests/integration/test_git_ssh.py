"""SSH host keys on the Git channel: Almanac's own known_hosts check against a real sshd.

The test starts OpenSSH's sshd on a spare loopback port with its own configuration, host key and
authorized_keys, serving a bare repository through git-upload-pack. Almanac fetches it over
ssh:// with --git-ssh-key-file and checks the host key against --git-known-hosts (or
~/.ssh/known_hosts): the right key (plain or hashed entry) works; an unknown or a changed key is
refused with the key's SHA256 fingerprint in the log and in /actuator/health.
"""

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import unittest

from almanac_harness import ServerTestCase, GitRepo, wait_until

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen")
SSH = shutil.which("ssh")


def spare_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path, kind="ed25519"):
    subprocess.run([SSH_KEYGEN, "-q", "-t", kind, "-N", "", "-C", "almanac-test", "-f", path],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(path + ".pub") as f:
        kind_name, blob = f.read().split()[:2]
    return kind_name, blob


def fingerprint(pub_path):
    out = subprocess.run([SSH_KEYGEN, "-l", "-E", "sha256", "-f", pub_path], check=True,
                         stdout=subprocess.PIPE).stdout.decode()
    return out.split()[1]  # "256 SHA256:... comment (ED25519)"


class Sshd:
    """sshd -D on a spare loopback port; stopped by its PID."""

    def __init__(self, workdir, host_key, authorized_keys):
        self.workdir = workdir
        self.port = spare_port()
        self.log_path = os.path.join(workdir, "sshd.log")
        config = os.path.join(workdir, "sshd_config")
        with open(config, "w") as f:
            f.write("\n".join([
                "Port %d" % self.port,
                "ListenAddress 127.0.0.1",
                "HostKey " + host_key,
                "PidFile " + os.path.join(workdir, "sshd.pid"),
                "AuthorizedKeysFile " + authorized_keys,
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "PermitRootLogin prohibit-password",
                "AllowTcpForwarding no",
                "X11Forwarding no",
                "PrintMotd no",
                "LogLevel VERBOSE",
                "",
            ]))
        self.args = [SSHD, "-D", "-e", "-f", config]
        self.proc = None

    def start(self):
        if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
            # sshd's privilege separation directory, which the package's service would create
            try:
                os.makedirs("/run/sshd", mode=0o755)
            except OSError as e:
                raise unittest.SkipTest("sshd needs /run/sshd and it cannot be created: %s" % e)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log)
        ok = wait_until(lambda: self.proc.poll() is not None or self.listening(), deadline=10)
        if not ok or self.proc.poll() is not None:
            reason = self.log_tail()
            self.stop()
            raise unittest.SkipTest("sshd cannot start here: " + reason)

    def listening(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                return s.recv(4).startswith(b"SSH-")
        except OSError:
            return False

    def log_tail(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-2000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@unittest.skipUnless(SSH_KEYGEN and SSH and os.access(SSHD, os.X_OK),
                     "OpenSSH (sshd, ssh, ssh-keygen) is not installed")
class GitSshHostKeyTest(ServerTestCase):
    @classmethod
    def setUpServers(cls):
        cls.keys = os.path.join(cls.tmp, "keys")
        os.makedirs(cls.keys, mode=0o700)
        cls.host_key = os.path.join(cls.keys, "host_ed25519")
        cls.host_type, cls.host_blob = keygen(cls.host_key)
        cls.host_fp = fingerprint(cls.host_key + ".pub")
        # another key of the same type: what a man in the middle would show
        cls.other_type, cls.other_blob = keygen(os.path.join(cls.keys, "other_ed25519"))
        cls.client_key = os.path.join(cls.keys, "client_ed25519")
        _, client_blob = keygen(cls.client_key)
        authorized = os.path.join(cls.keys, "authorized_keys")
        with open(authorized, "w") as f:
            f.write("ssh-ed25519 %s almanac-test\n" % client_blob)

        cls.sshd = Sshd(cls.tmp, cls.host_key, authorized)
        cls.sshd.start()
        cls.name = "[127.0.0.1]:%d" % cls.sshd.port

        work = GitRepo(cls.tmp, "work")
        cls.first = work.commit({"application.yml": "greeting: over ssh\n"}, "first")
        cls.bare = os.path.join(cls.tmp, "remote.git")
        subprocess.run(["git", "clone", "-q", "--bare", work.path, cls.bare], check=True)
        cls.work = work
        cls.uri = "ssh://%s@127.0.0.1:%d%s" % (getpass.getuser(), cls.sshd.port, cls.bare)

        # The peer must really let this key in; if the account cannot log in here, say why.
        probe_known = cls.known_hosts("probe", [(cls.name, cls.host_type, cls.host_blob)])
        probe = subprocess.run(
            [SSH, "-i", cls.client_key, "-p", str(cls.sshd.port), "-o", "BatchMode=yes",
             "-o", "IdentitiesOnly=yes", "-o", "UserKnownHostsFile=" + probe_known,
             "-o", "StrictHostKeyChecking=yes", "%s@127.0.0.1" % getpass.getuser(),
             "git-upload-pack --help >/dev/null 2>&1; echo reachable"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        if b"reachable" not in probe.stdout:
            cls.sshd.stop()
            raise unittest.SkipTest("cannot log in to the test sshd as %s: %s %s"
                                    % (getpass.getuser(), probe.stderr.decode()[-500:],
                                       cls.sshd.log_tail()[-500:]))

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.sshd.stop()

    @classmethod
    def known_hosts(cls, name, entries, hashed=False):
        path = os.path.join(cls.tmp, "known_hosts-" + name)
        with open(path, "w") as f:
            f.write("# known hosts for %s\n" % name)
            for host, kind, blob in entries:
                f.write("%s %s %s\n" % (host, kind, blob))
        if hashed:
            subprocess.run([SSH_KEYGEN, "-H", "-f", path], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            os.unlink(path + ".old")
        return path

    def start(self, known_hosts=None, env=None):
        args = ["--git-ssh-key-file", self.client_key]
        if known_hosts:
            args += ["--git-known-hosts", known_hosts]
        # HOME with no .ssh of its own: the verdict is Almanac's, not libgit2's
        home = os.path.join(self.tmp, "empty-home")
        os.makedirs(home, exist_ok=True)
        full_env = {"HOME": home}
        full_env.update(env or {})
        return type(self).start_server(self.uri, extra_args=args, env=full_env)

    def remote_head(self):
        """What the remote's main is now (another test may have pushed) and its greeting."""
        head = subprocess.run(["git", "-C", self.bare, "rev-parse", "main"], check=True,
                              stdout=subprocess.PIPE).stdout.decode().strip()
        text = subprocess.run(["git", "-C", self.bare, "show", "main:application.yml"],
                              check=True, stdout=subprocess.PIPE).stdout.decode()
        return head, text.split(":", 1)[1].strip()

    def assert_serves_remote(self, server):
        self.assert_serves(server, *self.remote_head())

    def assert_serves(self, server, commit, greeting):
        status, _, body = server.get_json("/app/default")
        self.assertEqual(status, 200)
        self.assertEqual(body["version"], commit)
        self.assertEqual(body["propertySources"][0]["source"]["greeting"], greeting)

    def health(self, server):
        r = server.get("/actuator/health")
        return json.loads(r.body)["components"]["repository"]

    def test_right_key_is_accepted(self):
        path = self.known_hosts("right", [
            ("other.example.com", self.other_type, self.other_blob),
            (self.name, self.host_type, self.host_blob)])
        s = self.start(path)
        self.assert_serves_remote(s)
        self.assertEqual(self.health(s)["status"], "UP")

    def test_hashed_entry_is_accepted(self):
        path = self.known_hosts("hashed", [(self.name, self.host_type, self.host_blob)],
                                hashed=True)
        with open(path) as f:
            text = f.read()
        self.assertIn("|1|", text)
        self.assertNotIn("127.0.0.1", text)
        s = self.start(path)
        self.assert_serves_remote(s)

    def test_default_is_known_hosts_in_home(self):
        home = os.path.join(self.tmp, "home-with-ssh")
        os.makedirs(os.path.join(home, ".ssh"), exist_ok=True)
        shutil.copy(self.known_hosts("home", [(self.name, self.host_type, self.host_blob)]),
                    os.path.join(home, ".ssh", "known_hosts"))
        s = self.start(None, env={"HOME": home})
        self.assert_serves_remote(s)

    def test_unknown_host_key_is_refused(self):
        path = self.known_hosts("unknown", [
            ("127.0.0.1", self.host_type, self.host_blob),  # port 22 only: not this server
            ("git.example.com", self.host_type, self.host_blob)])
        s = self.start_server_expecting_failure(path)
        log = s.log()
        self.assertIn("unknown SSH host key of %s: ssh-ed25519 %s is not in %s"
                      % (self.name, self.host_fp, path), log)

    def test_changed_host_key_is_refused_and_health_says_so(self):
        path = self.known_hosts("changing", [(self.name, self.host_type, self.host_blob)])
        s = self.start(path)
        first, greeting = self.remote_head()
        self.assert_serves(s, first, greeting)

        # The file now lists another key for the host, as after a man in the middle took over
        # (here the file changes, not the server; what is compared is the same).
        self.known_hosts("changing", [(self.name, self.other_type, self.other_blob)])
        second = self.work.commit({"application.yml": "greeting: second\n"}, "second")
        self.assertNotEqual(second, first)
        subprocess.run(["git", "-C", self.work.path, "push", "-q", self.bare, "main"], check=True)
        s.post("/actuator/refresh", b"", {"Content-Type": "application/json"})
        component = wait_until(lambda: (lambda c: c if c["status"] != "UP" else None)(
            self.health(s)), deadline=20)
        self.assertTrue(component, "health never left UP:\n" + s.log_tail())
        self.assertEqual(component["status"], "DEGRADED")
        expected = "CHANGED SSH host key of %s (possible man-in-the-middle): offered ssh-ed25519 %s" \
                   % (self.name, self.host_fp)
        self.assertIn(expected, component["details"]["lastError"])
        self.assertIn(expected, s.log())
        # nothing fetched through the refused channel: the first commit is still served
        self.assert_serves(s, first, greeting)

        # the right key again: the next refresh fetches the new commit
        self.known_hosts("changing", [(self.name, self.host_type, self.host_blob)])
        s.refresh()
        self.assert_serves(s, second, "second")
        self.assertEqual(self.health(s)["status"], "UP")

    def start_server_expecting_failure(self, known_hosts):
        from almanac_harness import Server
        home = os.path.join(self.tmp, "empty-home")
        os.makedirs(home, exist_ok=True)
        s = Server(self.uri, self.tmp, extra_args=["--git-ssh-key-file", self.client_key,
                                                   "--git-known-hosts", known_hosts],
                   env={"HOME": home})
        type(self).servers.append(s)
        s.launch()
        self.assertEqual(s.wait_exit(), 1, s.log_tail())
        return s


if __name__ == "__main__":
    unittest.main()
