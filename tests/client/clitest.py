"""Helpers for the almanac CLI tests: running the CLI (to its end, or in the background while a
test reads its lines), watching a server's parked watchers, and a scripted HTTP stub that stands
in for a server when a test needs an answer no real server would give (a 500, a malformed or huge
body) or needs to see exactly what the client sent.

Standard library only. $ALMANAC_CLI_BIN names the CLI (set by ctest).
"""

import http.server
import json
import os
import select
import socket
import ssl
import subprocess
import threading
import time
import unittest

CLI_BIN = os.environ.get("ALMANAC_CLI_BIN", "")
CLI_TIMEOUT = 60


def require_cli_bin():
    if not CLI_BIN or not os.access(CLI_BIN, os.X_OK):
        raise unittest.SkipTest("ALMANAC_CLI_BIN is not set to an executable almanac CLI")


class Result:
    def __init__(self, proc):
        self.code = proc.returncode
        self.out = proc.stdout.decode("utf-8")
        self.err = proc.stderr.decode("utf-8")

    def __repr__(self):
        return "Result(code=%d, out=%r, err=%r)" % (self.code, self.out[:500], self.err[:500])


def cli_env(server=None, env=None):
    """This process's environment without its ALMANAC_* variables (a test says what the client
    gets), then ALMANAC_SERVER=server and `env`."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ALMANAC_")}
    if server is not None:
        full_env["ALMANAC_SERVER"] = server
    full_env.update(env or {})
    return full_env


def run_cli(*args, env=None, server=None, timeout=CLI_TIMEOUT):
    """Runs the CLI with a clean ALMANAC_* environment; returns a Result."""
    proc = subprocess.run([CLI_BIN, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=cli_env(server, env), timeout=timeout)
    return Result(proc)


def spawn(*argv, server=None, env=None):
    """Starts argv (the CLI, CLI_BIN, or a client program) in the background with cli_env(),
    stdout and stderr piped; stop it with reap()."""
    return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=cli_env(server, env))


def reap(proc):
    """Kills a spawn()ed process that is still running, waits for it and closes its pipes."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()


def read_line(proc, timeout=30):
    """The next line the process prints; fails when it prints none in `timeout` seconds (a
    safety net for a client that hangs, not a measurement) or exits first."""
    name = " ".join([os.path.basename(proc.args[0])] + proc.args[1:2])
    end = time.monotonic() + timeout
    buf = b""
    while not buf.endswith(b"\n"):
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError("no line from %s within %ss" % (name, timeout))
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            ch = os.read(proc.stdout.fileno(), 1)
            if not ch:
                raise AssertionError("%s exited: %r" % (name, proc.stderr.read()))
            buf += ch
    return buf.decode()


def watchers(server):
    """How many watchers the server has parked now (its almanac_watchers metric)."""
    for line in server.get("/metrics").text.splitlines():
        if line.startswith("almanac_watchers "):
            return float(line.split()[1])
    return 0


def wait_parked(server, deadline=20.0):
    """True once the server has a parked watcher, False at the deadline: a test changes the
    configuration only after its client is listening."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if watchers(server) >= 1:
            return True
        time.sleep(0.05)
    return False


def write_files(root, files):
    """Writes {relative path: text} below root, making the folders on the way."""
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)


def closed_port_url():
    """A loopback URL where nothing listens (bound, noted, closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return "http://127.0.0.1:%d" % port


def make_certificate(directory):
    """A self-signed certificate for 127.0.0.1 made with the openssl CLI; (cert, key) paths."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return cert, key


def environment(name="orders", profiles="prod", label=None, version="v1", sources=None):
    return {"name": name, "profiles": [profiles], "label": label, "version": version,
            "state": "", "propertySources": sources or []}


class Stub:
    """A one-thread HTTP server answering from a script. Each answer is (status, headers, body);
    the last one repeats. `requests` records (path, headers) of every request received."""

    def __init__(self, tls=None):
        """tls: (certfile, keyfile) to serve https instead of http."""
        self.answers = []
        self.requests = []
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                with stub.lock:
                    stub.requests.append((self.path, {k.lower(): v for k, v in
                                                      self.headers.items()}))
                    stub.arrived.notify_all()
                    answer = stub.answers.pop(0) if len(stub.answers) > 1 else stub.answers[0]
                status, headers, body = answer
                if isinstance(body, (dict, list)):
                    body = json.dumps(body).encode()
                elif isinstance(body, str):
                    body = body.encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body:
                    try:
                        self.wfile.write(body)
                    except (BrokenPipeError, ConnectionResetError):
                        pass  # the client gave up on purpose (size cap)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        scheme = "http"
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = "%s://127.0.0.1:%d" % (scheme, self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def script(self, *answers):
        with self.lock:
            self.answers = list(answers)
            self.requests = []

    def wait_for_requests(self, count, timeout=30):
        """Blocks until `count` requests arrived since the last script(); the timeout is only a
        safety net for a client that never sends them."""
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError("the stub saw %d request(s), expected %d: %r"
                                     % (len(self.requests), count, self.requests))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()
