"""Shared helpers for the integration tests: real Git repositories built with the git CLI, a
real almanac-server process, and HTTP over a keep-alive connection.

Standard library only. The server binary comes from $ALMANAC_SERVER_BIN (set by ctest); the
source tree from $ALMANAC_SOURCE_DIR (defaults to two levels above this file). Run everything with
`ctest --test-dir BUILD -L integration --output-on-failure`, or one file by hand:

    cd tests/integration && ALMANAC_SERVER_BIN=BUILD/server/almanac-server \
        python3 -m unittest -v test_environment

Each test class starts its own servers (port 0, its own cache directory) in a temporary
directory that is removed afterwards; a failing test prints the tail of every server log, and a
sanitizer report in a server log fails the class.
"""

import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("ALMANAC_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE)))
SERVER_BIN = os.environ.get("ALMANAC_SERVER_BIN", "")

START_DEADLINE = 30.0       # seconds for the server to print its "listening on" line
EXIT_DEADLINE = 15.0        # seconds for the server to exit after SIGTERM
HTTP_TIMEOUT = 20.0
V2_MEDIA_TYPE = "application/vnd.spring-cloud.config-server.v2+json"
ERROR_KEYS = ["timestamp", "status", "error", "message", "path"]

_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


def require_server_bin():
    if not SERVER_BIN or not os.access(SERVER_BIN, os.X_OK):
        raise unittest.SkipTest("ALMANAC_SERVER_BIN is not set to an executable almanac-server")


def wait_until(predicate, deadline=10.0, interval=0.02):
    """Polls predicate until it returns something true (returned) or the deadline passes (the
    last value is returned, so an assertion on it fails with what was seen)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


class GitRepo:
    """A non-bare Git repository in a temporary directory, used as a remote through file://."""

    def __init__(self, parent, name="remote", branch="main"):
        self.path = os.path.join(parent, name)
        os.makedirs(self.path)
        self.git("init", "-q", "-b", branch)
        self.git("config", "user.name", "Almanac Tests")
        self.git("config", "user.email", "tests@almanac.invalid")
        self.git("config", "commit.gpgsign", "false")
        self.git("config", "tag.gpgsign", "false")

    @property
    def uri(self):
        return "file://" + self.path

    def git(self, *args):
        env = dict(os.environ)
        for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
            env.pop(var, None)
        env["GIT_CONFIG_NOSYSTEM"] = "1"
        env["HOME"] = self.path  # no user-level git config leaks in
        out = subprocess.run(["git", *args], cwd=self.path, env=env, check=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return out.stdout.decode().strip()

    def write(self, files):
        """files: {relative path: str or bytes}; a value None deletes the file."""
        for rel, content in files.items():
            full = os.path.join(self.path, rel)
            if content is None:
                if os.path.exists(full):
                    os.remove(full)
                continue
            os.makedirs(os.path.dirname(full), exist_ok=True)
            mode = "wb" if isinstance(content, bytes) else "w"
            with open(full, mode) as f:
                f.write(content)

    def commit(self, files=None, message="update"):
        """Writes files (if any), commits everything, returns the new commit id."""
        if files:
            self.write(files)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def head(self, rev="HEAD"):
        return self.git("rev-parse", rev)

    def tag(self, name, rev="HEAD", annotated=False):
        if annotated:
            self.git("tag", "-a", name, "-m", "tag " + name, rev)
        else:
            self.git("tag", name, rev)

    def branch(self, name, rev="HEAD"):
        self.git("branch", name, rev)

    def checkout(self, name):
        self.git("checkout", "-q", name)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers          # {lower-case name: value}
        self.body = body                # bytes

    @property
    def text(self):
        return self.body.decode("utf-8")

    def json(self, **kwargs):
        return json.loads(self.body.decode("utf-8"), **kwargs)

    def header(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        return "Response(%d, %r)" % (self.status, self.body[:300])


class Server:
    """One almanac-server process. Use start(), then get()/request(), then stop()."""

    def __init__(self, repo, workdir, search_paths=None, refresh_interval=0, extra_args=(),
                 cache_dir=None, env=None):
        self.repo = repo
        self.workdir = workdir
        self.cache_dir = cache_dir or tempfile.mkdtemp(prefix="cache-", dir=workdir)
        self.args = [SERVER_BIN, "--repo", repo, "--listen", "127.0.0.1", "--port", "0",
                     "--cache-dir", self.cache_dir]
        if search_paths:
            self.args += ["--search-paths", search_paths]
        if refresh_interval is not None:
            self.args += ["--refresh-interval", str(refresh_interval)]
        self.args += list(extra_args)
        self.env = env
        fd, self.log_path = tempfile.mkstemp(prefix="server-", suffix=".log", dir=workdir)
        os.close(fd)
        self.proc = None
        self.port = None
        self.conn = None

    # -- process ------------------------------------------------------------------------------

    def launch(self):
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("ALMANAC_") and k not in ("ALMANAC_SERVER_BIN", "ALMANAC_SOURCE_DIR",
                                                      "ALMANAC_BUILD_DIR"):
                del env[k]
        for k, v in (self.env or {}).items():
            if v is None:
                env.pop(k, None)  # None: the variable is removed
            else:
                env[k] = v
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, env=env)
        finally:
            log.close()

    def start(self):
        self.launch()
        deadline = time.monotonic() + START_DEADLINE
        while True:
            m = _LISTENING.search(self.log())
            if m:
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                raise AssertionError("almanac-server exited with %s before listening:\n%s"
                                     % (self.proc.returncode, self.log_tail()))
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError("almanac-server did not log 'listening on' within %ss:\n%s"
                                     % (START_DEADLINE, self.log_tail()))
            time.sleep(0.02)

    def wait_exit(self, timeout=START_DEADLINE):
        """For servers expected to fail: returns the exit code."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("almanac-server kept running:\n" + self.log_tail())

    def stop(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=EXIT_DEADLINE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("almanac-server ignored SIGTERM:\n" + self.log_tail())

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_tail(self, lines=40):
        return "\n".join(self.log().splitlines()[-lines:])

    def wait_for_log(self, pattern, deadline=10.0):
        """Polls the log until the regular expression matches; returns the match or None."""
        rx = re.compile(pattern)
        end = time.monotonic() + deadline
        while True:
            m = rx.search(self.log())
            if m or time.monotonic() > end:
                return m
            time.sleep(0.02)

    # -- HTTP ---------------------------------------------------------------------------------

    def connection(self):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT)
        return self.conn

    def request(self, method, path, headers=None, body=None):
        """One request on the keep-alive connection (reconnecting once if the server closed
        it). Returns a Response."""
        hdrs = dict(headers or {})
        if body is not None and isinstance(body, str):
            body = body.encode("utf-8")
        for attempt in (0, 1):
            conn = self.connection()
            try:
                conn.request(method, path, body=body, headers=hdrs)
                r = conn.getresponse()
                data = r.read()
                result = Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
                if r.will_close:
                    conn.close()
                    self.conn = None
                return result
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.CannotSendRequest, http.client.ResponseNotReady):
                conn.close()
                self.conn = None
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def get(self, path, headers=None):
        return self.request("GET", path, headers)

    def head(self, path, headers=None):
        return self.request("HEAD", path, headers)

    def post(self, path, body=b"", headers=None):
        return self.request("POST", path, headers, body)

    def get_json(self, path, headers=None):
        r = self.get(path, headers)
        return r.status, r.headers, (r.json() if r.body else None)

    def raw(self, data, read_limit=1 << 20, timeout=HTTP_TIMEOUT):
        """Sends raw bytes on a fresh socket while reading what comes back (a server may answer
        and close before it has read everything); returns the bytes received (may be b"")."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=HTTP_TIMEOUT)
        s.setblocking(False)
        chunks = []
        total = 0
        sent = 0
        end = time.monotonic() + timeout
        try:
            while time.monotonic() < end and total < read_limit:
                want_write = [s] if sent < len(data) else []
                readable, writable, _ = select.select([s], want_write, [], 1.0)
                if writable:
                    try:
                        sent += s.send(data[sent:sent + 65536])
                    except (BrokenPipeError, ConnectionResetError):
                        sent = len(data)
                    except BlockingIOError:
                        pass
                if readable:
                    try:
                        chunk = s.recv(65536)
                    except ConnectionResetError:
                        break
                    except BlockingIOError:
                        continue
                    if not chunk:
                        break
                    chunks.append(chunk)
                    total += len(chunk)
        finally:
            s.close()
        return b"".join(chunks)

    def refresh(self):
        r = self.post("/actuator/refresh", b"", {"Content-Type": "application/json"})
        if r.status != 200:
            raise AssertionError("POST /actuator/refresh -> %d %r" % (r.status, r.body))
        return r


class ServerTestCase(unittest.TestCase):
    """Base class: a temporary directory per class, servers stopped at the end, the server
    log tail printed when a test fails."""

    servers = ()
    tmp = None

    @classmethod
    def setUpClass(cls):
        require_server_bin()
        cls.tmp = tempfile.mkdtemp(prefix="almanac-itest-")
        cls.servers = []
        try:
            cls.setUpServers()
        except BaseException:
            cls._cleanup()
            raise

    @classmethod
    def setUpServers(cls):
        pass

    @classmethod
    def _cleanup(cls):
        problems = []
        for s in cls.servers:
            try:
                s.stop()
            except AssertionError as e:
                problems.append(str(e))
            report = sanitizer_report(s.log())
            if report:
                problems.append("sanitizer report from almanac-server (%s):\n%s" % (s.repo, report))
        cls.servers = []
        if cls.tmp:
            shutil.rmtree(cls.tmp, ignore_errors=True)
            cls.tmp = None
        if problems:
            raise AssertionError("\n".join(problems))

    @classmethod
    def tearDownClass(cls):
        cls._cleanup()

    @classmethod
    def make_repo(cls, name="remote", branch="main"):
        return GitRepo(cls.tmp, name, branch)

    @classmethod
    def start_server(cls, repo_uri, **kwargs):
        s = Server(repo_uri, cls.tmp, **kwargs)
        cls.servers.append(s)
        return s.start()

    def run(self, result=None):
        # Print the tail of every server's log when this test fails or errors.
        before = (len(result.failures), len(result.errors)) if result is not None else None
        outcome = super().run(result)
        if result is not None and (len(result.failures), len(result.errors)) != before:
            for s in type(self).servers:
                print("\n----- almanac-server log tail (%s) -----\n%s\n-----"
                      % (s.repo, s.log_tail()))
        return outcome

    # -- assertions shared by the test files --------------------------------------------------

    def assertErrorBody(self, r, status, path=None):
        self.assertEqual(r.status, status, r)
        body = r.json()
        self.assertIsInstance(body, dict)
        for key in ERROR_KEYS:
            self.assertIn(key, body, r)
        self.assertEqual(body["status"], status)
        if path is not None:
            self.assertEqual(body["path"], path)
        return body

    def assertStatusIn(self, r, statuses, msg=None):
        self.assertIn(r.status, statuses, msg or r)


_SANITIZER = re.compile(r"((ERROR|WARNING): (Address|Leak|Thread|Memory)Sanitizer|runtime error: |"
                        r"SUMMARY: UndefinedBehaviorSanitizer)")


def sanitizer_report(log):
    """The part of a server log from the first sanitizer report on, or "" (builds with
    -DALMANAC_SANITIZE=... report memory errors, leaks and undefined behaviour there)."""
    m = _SANITIZER.search(log)
    if not m:
        return ""
    start = log.rfind("\n", 0, m.start()) + 1
    return log[start:start + 6000]


def source_names(env):
    return [ps["name"] for ps in env["propertySources"]]


def relative_names(env, prefix):
    """Source names with prefix (the repo URI followed by "/") removed; fails loudly if a name
    does not start with it."""
    out = []
    for name in source_names(env):
        if not name.startswith(prefix):
            raise AssertionError("source %r does not start with %r" % (name, prefix))
        out.append(name[len(prefix):])
    return out


def dir_relative_names(env, directory):
    """For dir: mode, where the URI form is the server's choice: the part after the directory."""
    directory = directory.rstrip("/") + "/"
    out = []
    for name in source_names(env):
        i = name.find(directory)
        if i < 0:
            raise AssertionError("source %r does not name a file under %r" % (name, directory))
        out.append(name[i + len(directory):])
    return out


def source(env, rel_suffix, prefix=None):
    """The source dict of the property source named prefix + rel_suffix, or, without a prefix,
    of the first one whose name ends with "/" + rel_suffix."""
    for ps in env["propertySources"]:
        if prefix is not None and ps["name"] == prefix + rel_suffix:
            return ps["source"]
        if prefix is None and ps["name"].endswith("/" + rel_suffix):
            return ps["source"]
    raise KeyError(rel_suffix)


def items(obj):
    """A dict's (key, value) pairs in order, so comparisons check key order too."""
    return list(obj.items())
