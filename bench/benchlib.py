"""Shared pieces of the bench/ scripts: temporary Git repositories, the servers under test
(almanac-server, nginx, etcd) started on loopback in their own temporary directories, wrk runs
and their parsing, percentiles and Markdown tables.

Nothing here is a system service: every process is a child of the script, listens on 127.0.0.1
on a port picked free at start, and is stopped when the script ends.
"""

import base64
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# Exit code the smoke tests treat as "skipped" (a tool could not be installed).
SKIP = 77


def skip(reason):
    print("SKIP: " + reason)
    sys.exit(SKIP)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine_line():
    """One line saying what ran the numbers and how busy the machine was while it did."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()
    mem = 0
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024
    return ("machine: %s, %d CPUs, %d MiB RAM, kernel %s; load average %.2f %.2f %.2f"
            % (model, os.cpu_count(), mem, os.uname().release, *load))


def load_line():
    return "load average now: %.2f %.2f %.2f" % os.getloadavg()


def server_binary(arg):
    for candidate in (arg, os.environ.get("ALMANAC_SERVER_BIN"),
                      os.path.join(HERE, "..", "build", "server", "almanac-server")):
        if candidate and os.access(candidate, os.X_OK):
            return os.path.abspath(candidate)
    raise SystemExit("almanac-server not found: pass --server PATH or set ALMANAC_SERVER_BIN")


# ---------------------------------------------------------------------------------------------
# Git repositories

def git(repo, *args):
    subprocess.run(["git", "-C", repo, *args], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL,
                   env=dict(os.environ, GIT_CONFIG_NOSYSTEM="1", HOME=repo))


def make_repo(path, files):
    os.makedirs(path)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "bench@almanac.invalid")
    git(path, "config", "user.name", "bench")
    commit(path, files, "start")


def commit(repo, files, message):
    for name, text in files.items():
        full = os.path.join(repo, name)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def orders_files(keys):
    """The read benches' repository: orders.yml with `keys` settings, and an application.yml."""
    return {"application.yml": "logging:\n  level: INFO\n",
            "orders.yml": sample_yaml("orders", keys)}


def sample_yaml(app, keys):
    """A configuration file of a realistic shape: nested maps, lists, strings and numbers."""
    lines = ["%s:" % app, "  datasource:",
             "    url: jdbc:postgresql://db.%s.svc:5432/%s" % (app, app),
             "    pool: {min: 2, max: 32}", "  endpoints:"]
    for i in range(3):
        lines.append("    - https://peer-%d.%s.svc:8443/api/v1" % (i, app))
    lines.append("  settings:")
    for i in range(keys):
        lines.append("    key%03d: value number %d of %s" % (i, i, app))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Processes

def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_http(port, path="/", deadline_s=30, proc=None, log=None):
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            status, _, _ = http(port, path)
            if status < 500:
                return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise SystemExit("process exited early:\n" + (open(log).read() if log else ""))
        if time.monotonic() > deadline:
            raise SystemExit("nothing answered on port %d:\n%s"
                             % (port, open(log).read() if log else ""))
        time.sleep(0.02)


def http(port, path, method="GET", body=b"", headers=None):
    """One request on a fresh connection; returns (status, header dict, body bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        head = "%s %s HTTP/1.1\r\nHost: bench\r\nContent-Length: %d\r\nConnection: close\r\n" % (
            method, path, len(body))
        for k, v in (headers or {}).items():
            head += "%s: %s\r\n" % (k, v)
        s.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    raw_head, _, rest = data.partition(b"\r\n\r\n")
    lines = raw_head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    if "content-length" in hdrs:
        rest = rest[:int(hdrs["content-length"])]
    return status, hdrs, rest


class Almanac:
    """almanac-server on a fixed free port with its own cache directory."""

    def __init__(self, binary, repo_uri, workdir, name="almanac", extra=(), threads=None,
                 log_level="warn", cpus=None, prefix=()):
        self.cache = os.path.join(workdir, name + "-cache")
        self.log = os.path.join(workdir, name + ".log")
        self.port = free_port()
        argv = [binary, "--repo", repo_uri, "--listen", "127.0.0.1", "--port", str(self.port),
                "--cache-dir", self.cache, "--refresh-interval", "0", "--log-level", log_level]
        if threads:
            argv += ["--threads", str(threads)]
        argv = list(prefix) + argv + list(extra)
        if cpus:
            argv = ["taskset", "-c", cpus] + argv
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "wb"))
        wait_http(self.port, "/actuator/health", proc=self.proc, log=self.log)

    def stop(self):
        stop_process(self.proc)


class Nginx:
    """nginx serving files from a temporary root, one location per URL, with the exact
    Content-Type given; keep-alive without a request cap so wrk never reconnects."""

    def __init__(self, workdir, documents, workers, cpus=None):
        self.dir = os.path.join(workdir, "nginx")
        os.makedirs(os.path.join(self.dir, "root"))
        os.makedirs(os.path.join(self.dir, "tmp"))
        self.port = free_port()
        locations = []
        for i, (url, (ctype, body)) in enumerate(sorted(documents.items())):
            fname = os.path.join(self.dir, "root", "doc%d" % i)
            with open(fname, "wb") as f:
                f.write(body)
            locations.append("        location = %s { default_type \"%s\"; alias %s; }"
                             % (url, ctype, fname))
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write("""daemon off;
master_process on;
worker_processes %d;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 4096; }
http {
    types { }
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    client_body_temp_path %s/tmp;
    proxy_temp_path %s/tmp;
    fastcgi_temp_path %s/tmp;
    uwsgi_temp_path %s/tmp;
    scgi_temp_path %s/tmp;
    server {
        listen 127.0.0.1:%d;
%s
    }
}
""" % (workers, self.dir, self.dir, *([self.dir] * 5), self.port, "\n".join(locations)))
        argv = ["nginx", "-c", conf, "-p", self.dir, "-e", os.path.join(self.dir, "error.log")]
        if cpus:
            argv = ["taskset", "-c", cpus] + argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, "stderr"), "wb"))
        first = sorted(documents)[0]
        wait_http(self.port, first, proc=self.proc, log=os.path.join(self.dir, "stderr"))
        for url, (ctype, body) in documents.items():
            status, hdrs, got = http(self.port, url)
            if status != 200 or got != body or hdrs.get("content-type") != ctype:
                raise SystemExit("nginx does not serve %s as given: %d %s" % (
                    url, status, hdrs.get("content-type")))

    def stop(self):
        # nginx's master stops its workers on SIGQUIT (graceful) or SIGTERM (fast)
        stop_process(self.proc)


def b64(data):
    return base64.b64encode(data).decode()


class Etcd:
    """A one-member etcd with a temporary data directory, client and peer URLs on loopback."""

    def __init__(self, workdir, cpus=None, extra=()):
        self.dir = os.path.join(workdir, "etcd")
        os.makedirs(self.dir)
        self.port = free_port()
        peer = free_port()
        argv = ["etcd", "--name", "bench", "--data-dir", os.path.join(self.dir, "data"),
                "--listen-client-urls", "http://127.0.0.1:%d" % self.port,
                "--advertise-client-urls", "http://127.0.0.1:%d" % self.port,
                "--listen-peer-urls", "http://127.0.0.1:%d" % peer,
                "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % peer,
                "--initial-cluster", "bench=http://127.0.0.1:%d" % peer,
                "--log-level", "error", "--logger", "zap", *extra]
        if cpus:
            argv = ["taskset", "-c", cpus] + argv
        self.log = os.path.join(self.dir, "etcd.log")
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "wb"))
        deadline = time.monotonic() + 30
        while True:
            try:
                if http(self.port, "/health")[0] == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("etcd did not start:\n" + open(self.log).read())
            time.sleep(0.05)

    def put(self, key, value):
        body = json.dumps({"key": b64(key), "value": b64(value)}).encode()
        status, _, answer = http(self.port, "/v3/kv/put", "POST", body,
                                 {"Content-Type": "application/json"})
        if status != 200:
            raise SystemExit("etcd put failed: %d %r" % (status, answer))
        return answer

    def stop(self):
        stop_process(self.proc)


def stop_process(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------------------------------
# wrk

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(url, threads, connections, duration, lua=None, cpus=None):
    """Runs wrk --latency; returns dict(rps, p50, p99 in ms, errors, requests)."""
    argv = ["wrk", "-t%d" % threads, "-c%d" % connections, "-d%gs" % duration, "--latency"]
    if lua:
        argv += ["-s", lua]
    argv.append(url)
    if cpus:
        argv = ["taskset", "-c", cpus] + argv
    out = subprocess.run(argv, check=True, capture_output=True, text=True,
                         timeout=duration + 60).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
              "requests": int(re.search(r"(\d+) requests in", out).group(1)),
              "errors": 0}
    for pct in ("50", "99"):
        result["p" + pct] = _ms(re.search(r"^\s+%s(?:\.000)?%%\s+(\S+)" % pct, out, re.M).group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        result["errors"] += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        result["errors"] += sum(int(x) for x in m.groups())
    return result


def wrk_post_script(path, workdir, body, name="post.lua"):
    """A wrk Lua script sending the same JSON POST on every request."""
    lua = os.path.join(workdir, name)
    with open(lua, "w") as f:
        f.write('wrk.method = "POST"\n'
                'wrk.path = "%s"\n'
                'wrk.headers["Content-Type"] = "application/json"\n'
                'wrk.body = %s\n' % (path, json.dumps(body)))
    return lua


def median_of(runs, key):
    return statistics.median(r[key] for r in runs)


def add_load_options(parser, server_threads_help=None, keys_help="settings in the served file"):
    """The load options of the wrk benches: seconds per run, rounds, connections, threads, and
    the size of the served file."""
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--server-threads", type=int, default=os.cpu_count(),
                        help=server_threads_help)
    parser.add_argument("--keys", type=int, default=60, help=keys_help)


def shrink_for_smoke(args):
    """--smoke: the smallest load that still fills every table (it checks the script, it
    measures nothing)."""
    args.duration, args.rounds, args.connections, args.wrk_threads, args.keys = 1, 1, 4, 1, 5


def alternate(targets, rounds, run, key=lambda target: target[0]):
    """Runs run(target) for each target in turn, round after round (A, B, C, A, B, C ...), so
    that the machine's load drifting falls on every target alike. Returns the results by
    key(target), and the 1-minute load average before the first round and after each."""
    loads = [os.getloadavg()[0]]
    runs = {key(target): [] for target in targets}
    for _ in range(rounds):
        for target in targets:
            runs[key(target)].append(run(target))
        loads.append(os.getloadavg()[0])
    return runs, loads


def wrk_rounds(targets, args):
    """alternate() over (name, url, lua script or None) targets with the load of `args`."""
    return alternate(targets, args.rounds,
                     lambda t: wrk(t[1], args.wrk_threads, args.connections, args.duration, t[2]))


def rps_row(name, runs, ratio):
    """A throughput table's row: name, median requests/s and their range, median p50 and p99,
    errors in all runs, and ratio(median requests/s) as the last column."""
    rps = median_of(runs, "rps")
    return (name, "%.0f" % rps, "%.0f-%.0f" % (min(x["rps"] for x in runs),
                                               max(x["rps"] for x in runs)),
            fmt_ms(median_of(runs, "p50")), fmt_ms(median_of(runs, "p99")),
            sum(x["errors"] for x in runs), ratio(rps))


def load_header(args, loads, threads="server threads", setup=""):
    """The two lines under a wrk table's title: the load and the machine, then the load average
    while it ran. `setup` says more about what was served, before the machine."""
    return ("wrk -t%d -c%d -d%ds --latency, %d alternating round(s), medians; %s: %d; %s%s\n"
            "1-minute load average during the runs: %s"
            % (args.wrk_threads, args.connections, args.duration, args.rounds, threads,
               args.server_threads, setup, machine_line(), " ".join("%.2f" % x for x in loads)))


# ---------------------------------------------------------------------------------------------
# Tables and statistics

def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def fmt_ms(v):
    return "%.2f ms" % v if v < 10 else "%.1f ms" % v


def workdir():
    path = tempfile.mkdtemp(prefix="almanac-bench-")
    # nginx's workers drop to an unprivileged user and must read the files under it
    os.chmod(path, 0o755)
    return path


def cleanup(path):
    if os.environ.get("BENCH_KEEP"):
        print("kept %s" % path, file=sys.stderr)
        return
    shutil.rmtree(path, ignore_errors=True)
