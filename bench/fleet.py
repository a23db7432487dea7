#!/usr/bin/env python3
"""Fleet scale: one commit to application.yml changes every Environment while every instance watches.

The repository: --apps applications, each with appNNNN.yml and appNNNN-{dev,test,prod}.yml, and
one shared application.yml (3,000 applications make 9,000 Environments and 12,001 files).

almanac-server rows, per round (rounds alternate between the pushes, and with --compare between
the two binaries):
  1. --watchers long-polls (GET /appNNNN/PROFILE?watch=<etag>&timeout=300) spread round-robin over
     the Environments, opened by --client-procs client processes (asyncio, raw sockets), each
     connection bound to one of --addresses loopback source addresses 127.0.0.2, 127.0.0.3...
     so that no address reaches the server's per-address caps nor runs out of ephemeral ports.
     The server's VmRSS is read once every client knows its Environments' ETags (so every
     Environment is rendered and cached) and again once the almanac_watchers gauge says all are
     parked: bytes per parked watcher = growth / watchers.
  2. a commit to application.yml, then the push: POST /actuator/refresh, or POST /monitor signed
     as GitHub signs it (X-Hub-Signature-256). The clock starts when the push is sent; each
     watcher's time is when the status line of its answer arrived (CLOCK_MONOTONIC, one clock for
     every process). First, p50, p99 and last woken; the server's CPU time (utime + stime from
     /proc/PID/stat) and VmRSS from the push until every answer was in.
  3. meanwhile one more client reads GET /app0000/dev/pinned (a tag: its cached answer survives
     the commit) in a loop on a keep-alive connection: p99 of reads during the wake-up.

First requests after a global commit: no watchers; a commit to application.yml and POST
/actuator/refresh, then every Environment asked once (all miss the response cache), then all of
them again (all hit), by the same client processes with --read-conns keep-alive connections
each. Requests/s of both and their ratio. The client is Python: the cached rate is bounded by
it (bench/cached-read.sh measures the server's cached rate with wrk), so the ratio is an upper
bound of the server's own.

etcd 3.4 rows: --apps keys /fleet/appNNNN, --watchers watch streams through etcd's HTTP/JSON
gateway (POST /v3/watch, one HTTP connection each, created:true awaited), spread over the keys
and the same source addresses; one transaction (POST /v3/kv/txn, --max-txn-ops raised) putting
every key; each watcher's time is when its event arrived.

--perf: perf record (bench/profile.py's control FIFO) of almanac-server switched on only from the
push to the last answer, and (a second recording) during the uncached pass of the first
requests; prints where each spends its time.
"""

import argparse
import asyncio
import hashlib
import hmac
import json
import math
import multiprocessing
import os
import re
import resource
import socket
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

PROFILES = ("dev", "test", "prod")
WEBHOOK_SECRET = b"bench-webhook-secret"
PUSH_GAP = 1.1  # seconds between requested fetches on one server (see the refresher)
WATCH_TIMEOUT = 300
PARK_BATCH = 200  # connections opened at once by one client process (a fleet reconnecting)


# ---------------------------------------------------------------------------------------------
# Client processes: each runs its own asyncio loop and obeys commands from the main process.

async def open_from(port, addr):
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(addr, 0))


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    body = await reader.readexactly(int(m.group(1))) if m else b""
    return head, body


async def keepalive_gets(port, addr, paths, results):
    """GETs each path in turn on one keep-alive connection; results[path] = (status, head)."""
    reader, writer = await open_from(port, addr)
    try:
        for path in paths:
            writer.write(b"GET %s HTTP/1.1\r\nHost: bench\r\n\r\n" % path.encode())
            head, _ = await read_response(reader)
            results[path] = (head.split(b" ", 2)[1], head)
    finally:
        writer.close()


async def spread_gets(port, addrs, paths, conns):
    results = {}
    shares = [paths[i::conns] for i in range(conns)]
    await asyncio.gather(*[keepalive_gets(port, addrs[i % len(addrs)], share, results)
                           for i, share in enumerate(shares) if share])
    return results


async def almanac_watcher(port, addr, path):
    reader, writer = await open_from(port, addr)
    writer.write(b"GET %s HTTP/1.1\r\nHost: bench\r\n\r\n" % path.encode())
    await writer.drain()
    return reader, writer


async def wait_status(reader):
    line = await reader.readuntil(b"\r\n")
    return time.monotonic(), line.split(b" ", 2)[1]


async def etcd_watcher(port, addr, key):
    reader, writer = await open_from(port, addr)
    body = json.dumps({"create_request": {"key": bl.b64(key.encode())}}).encode()
    writer.write(b"POST /v3/watch HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
    await writer.drain()
    buf = b""
    while b'"created":true' not in buf:
        chunk = await reader.read(4096)
        if not chunk:
            raise SystemExit("etcd closed a watch stream: %r" % buf)
        buf += chunk
    return reader, writer


async def etcd_event(reader):
    buf = b""
    while b'"events"' not in buf:
        chunk = await reader.read(65536)
        if not chunk:
            raise SystemExit("etcd closed a watch stream before the event")
        buf += chunk
    return time.monotonic(), b"200"


async def park_all(opener, items):
    conns = []
    for i in range(0, len(items), PARK_BATCH):
        conns += await asyncio.gather(*[opener(*item) for item in items[i:i + PARK_BATCH]])
    return conns


async def client_loop(pipe):
    loop = asyncio.get_running_loop()
    while True:
        cmd = await loop.run_in_executor(None, pipe.recv)
        kind = cmd[0]
        if kind == "stop":
            return
        if kind == "almanac":
            # Learn the current ETag of each Environment, then park one long-poll per watcher.
            _, port, addrs, watches = cmd
            envs = sorted({path for path, _ in watches})
            tags = await spread_gets(port, addrs, envs, min(8, len(envs)))
            items = []
            for path, addr in watches:
                status, head = tags[path]
                m = re.search(rb'(?i)\r\netag: *"([^"]+)"', head)
                if status != b"200" or not m:
                    raise SystemExit("GET %s answered %r" % (path, head[:200]))
                items.append((port, addr, "%s?watch=%s&timeout=%d"
                              % (path, m.group(1).decode(), WATCH_TIMEOUT)))
            # Asking for the tags rendered and cached every Environment: the main process reads
            # the server's RSS now, so that the growth it measures is the watchers' alone.
            pipe.send(("tagged",))
            await loop.run_in_executor(None, pipe.recv)
            conns = await park_all(almanac_watcher, items)
            waits = [asyncio.ensure_future(wait_status(r)) for r, _ in conns]
        elif kind == "etcd":
            _, port, watches = cmd
            conns = await park_all(etcd_watcher, [(port, addr, key) for key, addr in watches])
            waits = [asyncio.ensure_future(etcd_event(r)) for r, _ in conns]
        elif kind == "gets":
            # Connect first, then wait for "go": every process starts the burst together.
            _, port, addrs, paths, nconns = cmd
            shares = [paths[i::nconns] for i in range(nconns)]
            conns = [await open_from(port, addrs[i % len(addrs)]) for i in range(nconns)]
            pipe.send(("ready",))
            await loop.run_in_executor(None, pipe.recv)
            bad = []

            async def run(share, reader, writer):
                for path in share:
                    writer.write(b"GET %s HTTP/1.1\r\nHost: bench\r\n\r\n" % path.encode())
                    head, _ = await read_response(reader)
                    if b" 200 " not in head.split(b"\r\n", 1)[0]:
                        bad.append(path)
                writer.close()
            started = time.monotonic()
            await asyncio.gather(*[run(s, r, w) for s, (r, w) in zip(shares, conns)])
            pipe.send(("done", started, time.monotonic(), len(paths), len(bad)))
            continue
        else:
            raise SystemExit("unknown command %r" % (kind,))
        pipe.send(("parked", len(conns)))
        answers = await asyncio.gather(*waits)
        for _, writer in conns:
            writer.close()
        pipe.send(("times", [t for t, _ in answers], sorted({s.decode() for _, s in answers})))


def client_main(pipe):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        asyncio.run(client_loop(pipe))
    except BaseException as e:  # the main process must hear of it, not wait forever
        pipe.send(("error", repr(e)))
        raise


class Clients:
    """--client-procs processes; each gets a share of the watchers or of the paths."""

    def __init__(self, count):
        ctx = multiprocessing.get_context("fork")
        self.pipes, self.procs = [], []
        for _ in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=client_main, args=(child,), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def expect(self, pipe, kind, timeout=600):
        if not pipe.poll(timeout):
            raise SystemExit("a client process did not answer %s in %d s" % (kind, timeout))
        msg = pipe.recv()
        if msg[0] == "error":
            raise SystemExit("a client process failed: " + msg[1])
        if msg[0] != kind:
            raise SystemExit("expected %s from a client process, got %r" % (kind, msg[:1]))
        return msg

    def check(self):
        """Fails at once if a client process reported an error (e.g. a watcher answered early)."""
        for pipe in self.pipes:
            if pipe.poll():
                msg = pipe.recv()
                raise SystemExit("a client process failed: %r" % (msg,))

    def park(self, commands, before_parking=None):
        """Sends each process its watchers; an almanac command stops once the ETags are known
        (before_parking runs then) and parks on "go"."""
        for pipe, cmd in zip(self.pipes, commands):
            pipe.send(cmd)
        if commands[0][0] == "almanac":
            for pipe in self.pipes:
                self.expect(pipe, "tagged")
            if before_parking:
                before_parking()
            for pipe in self.pipes:
                pipe.send(("go",))
        return sum(self.expect(pipe, "parked")[1] for pipe in self.pipes)

    def times(self):
        arrivals, statuses = [], set()
        for pipe in self.pipes:
            _, t, s = self.expect(pipe, "times")
            arrivals += t
            statuses |= set(s)
        return arrivals, statuses

    def burst(self, port, addrs, paths, conns):
        n = len(self.pipes)
        for i, pipe in enumerate(self.pipes):
            pipe.send(("gets", port, addrs[i::n] or addrs, paths[i::n], conns))
        for pipe in self.pipes:
            self.expect(pipe, "ready")
        for pipe in self.pipes:
            pipe.send(("go",))
        done = [self.expect(pipe, "done") for pipe in self.pipes]
        if sum(d[4] for d in done):
            raise SystemExit("%d GETs did not answer 200" % sum(d[4] for d in done))
        elapsed = max(d[2] for d in done) - min(d[1] for d in done)
        return sum(d[3] for d in done) / elapsed

    def stop(self):
        for pipe, proc in zip(self.pipes, self.procs):
            try:
                pipe.send(("stop",))
            except OSError:
                pass
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()


# ---------------------------------------------------------------------------------------------
# The main process

def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metric(port, name):
    _, _, body = bl.http(port, "/metrics")
    m = re.search(rb"^" + name.encode() + rb" (\d+)", body, re.M)
    return int(m.group(1)) if m else -1


def open_sockets(pid):
    count = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            count += os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:")
        except OSError:
            pass
    return count


def settle(pid, sockets):
    """Waits until the server has closed the previous round's sockets."""
    deadline = time.monotonic() + 30
    while open_sockets(pid) > sockets and time.monotonic() < deadline:
        time.sleep(0.05)


def check_addresses(addrs):
    """127.0.0.0/8 is all loopback on Linux; a machine that says otherwise gets a clear error."""
    for addr in addrs:
        try:
            with socket.socket() as s:
                s.bind((addr, 0))
        except OSError as e:
            raise SystemExit("cannot bind source address %s (%s); use --addresses 1" % (addr, e))


def env_paths(apps):
    return ["/app%04d/%s" % (i, p) for i in range(apps) for p in PROFILES]


def make_fleet_repo(path, apps):
    files = {"application.yml": "fleet:\n  generation: 0\nlogging:\n  level: INFO\n"}
    for i in range(apps):
        app = "app%04d" % i
        files[app + ".yml"] = bl.sample_yaml(app, 10)
        for prof in PROFILES:
            files["%s-%s.yml" % (app, prof)] = (
                "%s:\n  datasource:\n    url: jdbc:postgresql://db-%s.%s.svc/%s\n"
                "  settings:\n    key000: %s override\n" % (app, prof, app, app, prof))
    bl.make_repo(path, files)
    bl.git(path, "tag", "pinned")


def global_commit(repo, generation):
    bl.commit(repo, {"application.yml": "fleet:\n  generation: %d\nlogging:\n  level: INFO\n"
                     % generation}, "application.yml: generation %d" % generation)


def signed_monitor(port):
    body = json.dumps({"ref": "refs/heads/main", "commits": [
        {"id": "1" * 40, "added": [], "modified": ["application.yml"], "removed": []}]}).encode()
    sig = hmac.new(WEBHOOK_SECRET, body, hashlib.sha256).hexdigest()
    status, _, answer = bl.http(port, "/monitor", "POST", body, {
        "Content-Type": "application/json", "X-GitHub-Event": "push",
        "X-Hub-Signature-256": "sha256=" + sig})
    if status != 200:
        raise SystemExit("webhook refused: %d %r" % (status, answer))


def refresh(port):
    status, _, answer = bl.http(port, "/actuator/refresh", "POST")
    if status not in (200, 202):
        raise SystemExit("refresh failed: %d %r" % (status, answer))


class Reader(threading.Thread):
    """GETs one cached path in a loop on a keep-alive connection until stopped."""

    def __init__(self, port, path):
        super().__init__(daemon=True)
        self.port, self.path = port, path
        self.latencies = []
        self.halt = threading.Event()

    def run(self):
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        while not self.halt.is_set():
            t = time.monotonic()
            conn.request("GET", self.path)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise SystemExit("reader: GET %s answered %d" % (self.path, resp.status))
            self.latencies.append((time.monotonic() - t) * 1000)
            time.sleep(0.002)
        conn.close()


class Fleet:
    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.addrs = ["127.0.0.%d" % (2 + i) for i in range(args.addresses)]
        check_addresses(self.addrs)
        self.paths = env_paths(args.apps)
        self.generation = 0
        self.last_push = {}

    def watch_commands(self, port, nclients):
        """Watcher i watches Environment i mod E from address i mod A; Environments are dealt
        to the client processes so that each learns the ETags of its own only."""
        per_client = [[] for _ in range(nclients)]
        for i in range(self.args.watchers):
            env = i % len(self.paths)
            per_client[env % nclients].append((self.paths[env], self.addrs[i % len(self.addrs)]))
        return [("almanac", port, self.addrs, w) for w in per_client]

    def almanac_round(self, clients, server, push, perf=None):
        pid, port = server.proc.pid, server.port
        settle(pid, self.idle_sockets[port])
        rss = {}
        parked = clients.park(self.watch_commands(port, len(clients.pipes)),
                              lambda: rss.setdefault("before", bl.rss_kib(pid)))
        rss_before = rss["before"]
        deadline = time.monotonic() + 120
        while metric(port, "almanac_watchers") < parked:
            clients.check()
            if time.monotonic() > deadline:
                raise SystemExit("only %d of %d watchers parked"
                                 % (metric(port, "almanac_watchers"), parked))
            time.sleep(0.05)
        rss_parked = bl.rss_kib(pid)
        wait = self.last_push.get(port, 0) + PUSH_GAP - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self.generation += 1
        global_commit(server.repo, self.generation)
        reader = Reader(port, "/app0000/dev/pinned")
        reader.start()
        time.sleep(0.05)
        if perf:
            perf.command("enable")
        cpu_before = cpu_seconds(pid)
        pushed = time.monotonic()
        (refresh if push == "refresh" else signed_monitor)(port)
        answered = time.monotonic()
        arrivals, statuses = clients.times()
        if perf:
            perf.command("disable")
        cpu = cpu_seconds(pid) - cpu_before
        reader.halt.set()
        reader.join()
        self.last_push[port] = pushed
        if statuses != {"200"}:
            raise SystemExit("unexpected answers to the watchers: %r" % statuses)
        lat = sorted((t - pushed) * 1000 for t in arrivals)
        return {"lat": lat, "push": (answered - pushed) * 1000, "cpu": cpu,
                "rss_parked": rss_parked, "rss_after": bl.rss_kib(pid),
                "per_watcher": (rss_parked - rss_before) * 1024.0 / parked,
                "reads": reader.latencies, "watchers": parked}

    def first_requests(self, clients, server, perf=None):
        """Uncached then cached requests/s over every Environment, after a global commit."""
        port = server.port
        settle(server.proc.pid, self.idle_sockets[port])
        wait = self.last_push.get(port, 0) + PUSH_GAP - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self.generation += 1
        global_commit(server.repo, self.generation)
        self.last_push[port] = time.monotonic()
        refresh(port)
        if perf:
            perf.command("enable")
        uncached = clients.burst(port, self.addrs, self.paths, self.args.read_conns)
        if perf:
            perf.command("disable")
        cached = clients.burst(port, self.addrs, self.paths, self.args.read_conns)
        return uncached, cached

    def etcd_round(self, clients, etcd, generation):
        keys = ["/fleet/app%04d" % i for i in range(self.args.apps)]
        n = len(clients.pipes)
        per_client = [[] for _ in range(n)]
        for i in range(self.args.watchers):
            per_client[i % n].append((keys[i % len(keys)], self.addrs[i % len(self.addrs)]))
        rss_before = bl.rss_kib(etcd.proc.pid)
        parked = clients.park([("etcd", etcd.port, w) for w in per_client])
        rss_parked = bl.rss_kib(etcd.proc.pid)
        body = json.dumps({"success": [
            {"request_put": {"key": bl.b64(k.encode()),
                             "value": bl.b64(b"generation: %d" % generation)}} for k in keys]})
        cpu_before = cpu_seconds(etcd.proc.pid)
        pushed = time.monotonic()
        status, _, answer = bl.http(etcd.port, "/v3/kv/txn", "POST", body.encode(),
                                    {"Content-Type": "application/json"})
        answered = time.monotonic()
        if status != 200:
            raise SystemExit("etcd txn failed: %d %r" % (status, answer[:300]))
        arrivals, _ = clients.times()
        cpu = cpu_seconds(etcd.proc.pid) - cpu_before
        lat = sorted((t - pushed) * 1000 for t in arrivals)
        return {"lat": lat, "push": (answered - pushed) * 1000, "cpu": cpu,
                "rss_parked": rss_parked, "rss_after": bl.rss_kib(etcd.proc.pid),
                "per_watcher": (rss_parked - rss_before) * 1024.0 / parked, "reads": [],
                "watchers": parked}


class FleetServer(bl.Almanac):
    def __init__(self, binary, repo, work, name, args):
        secret = os.path.join(work, "webhook-secret")
        if not os.path.exists(secret):
            with open(secret, "wb") as f:
                f.write(WEBHOOK_SECRET)
        extra = ["--webhook-secret", secret, "--max-connections", str(args.watchers + 1000)]
        extra += args.server_flags.split()
        super().__init__(binary, "file://" + repo, work, name=name, extra=extra)
        self.repo = repo
        self.binary = binary


def start_etcd(work, apps):
    etcd = bl.Etcd(work, extra=["--max-txn-ops", str(max(128, apps)),
                                "--max-request-bytes", str(16 * 1024 * 1024)])
    keys = ["/fleet/app%04d" % i for i in range(apps)]
    for i in range(0, len(keys), 128):
        body = json.dumps({"success": [
            {"request_put": {"key": bl.b64(k.encode()), "value": bl.b64(b"generation: 0")}}
            for k in keys[i:i + 128]]}).encode()
        status, _, answer = bl.http(etcd.port, "/v3/kv/txn", "POST", body,
                                    {"Content-Type": "application/json"})
        if status != 200:
            raise SystemExit("etcd txn failed: %d %r" % (status, answer[:300]))
    return etcd


def summarise(name, runs):
    lat = sorted(x for r in runs for x in r["lat"])
    firsts = [r["lat"][0] for r in runs]
    lasts = [r["lat"][-1] for r in runs]
    reads = [x for r in runs for x in r["reads"]]
    return {
        "name": name, "watchers": runs[0]["watchers"], "rounds": len(runs),
        "push": statistics.median(r["push"] for r in runs),
        "first": statistics.median(firsts), "p50": bl.percentile(lat, 50),
        "p99": bl.percentile(lat, 99), "last": statistics.median(lasts),
        "last_range": (min(lasts), max(lasts)),
        "cpu": statistics.median(r["cpu"] for r in runs),
        "rss_parked": statistics.median(r["rss_parked"] for r in runs),
        "rss_after": statistics.median(r["rss_after"] for r in runs),
        "per_watcher": statistics.median(r["per_watcher"] for r in runs),
        "reads_p99": "%.2f ms (%d)" % (bl.percentile(reads, 99), len(reads)) if reads else "-",
    }


def fmt_s(ms):
    return "%.0f ms" % ms if ms >= 10 else "%.1f ms" % ms


def main():
    p = argparse.ArgumentParser(
        description=__doc__,
        epilog="Sizes: the default is the issue's fleet (3,000 applications, 15,000 watchers, a "
        "few minutes); --small is 100 applications and 300 watchers (under a minute); --smoke "
        "is --small with one round. Output: Markdown tables, to paste into docs/performance.md "
        "under a line saying when and on what machine they were measured (printed with them).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", help="almanac-server binary (or ALMANAC_SERVER_BIN)")
    p.add_argument("--compare", metavar="BINARY",
                   help="a second almanac-server binary (B), run on its own server with the same "
                   "repository, rounds alternating A, B; adds the ratio of medians B/A")
    p.add_argument("--apps", type=int, default=3000, help="applications (x3 profiles)")
    p.add_argument("--watchers", type=int, default=15000)
    p.add_argument("--rounds", type=int, default=3, help="rounds per push kind and server")
    p.add_argument("--push", default="refresh,monitor",
                   help="which pushes: refresh (POST /actuator/refresh), monitor (signed "
                   "POST /monitor), comma-separated")
    p.add_argument("--client-procs", type=int, default=4,
                   help="client processes sharing the watchers (each holds watchers/N sockets)")
    p.add_argument("--addresses", type=int, default=0,
                   help="loopback source addresses 127.0.0.2... (default: one per 800 watchers, "
                   "under the default --max-watchers-per-ip 1024, and at least two per client "
                   "process, under the default --max-connections-per-ip 256 while parking)")
    p.add_argument("--read-conns", type=int, default=16,
                   help="keep-alive connections per client process for the first-requests rate")
    p.add_argument("--no-etcd", action="store_true")
    p.add_argument("--no-first-requests", action="store_true")
    p.add_argument("--server-flags", default="", help="more almanac-server flags")
    p.add_argument("--perf", action="store_true",
                   help="perf record the server from each push to its last answer; print tables")
    p.add_argument("--small", action="store_true", help="100 applications, 300 watchers")
    p.add_argument("--smoke", action="store_true", help="--small, one round")
    args = p.parse_args()
    if args.small or args.smoke:
        args.apps, args.watchers = 100, 300
        args.client_procs = min(args.client_procs, 2)
    if args.smoke:
        args.rounds = 1
    if not args.addresses:
        # Each process opens PARK_BATCH connections at once: spread them so that no address
        # has more than the default --max-connections-per-ip (256) in libmicrohttpd at a time.
        args.addresses = max(2 * args.client_procs, math.ceil(args.watchers / 800))
    args.addresses = min(args.addresses, 250)
    pushes = [x for x in args.push.split(",") if x]
    if not pushes or set(pushes) - {"refresh", "monitor"}:
        raise SystemExit("--push takes refresh and/or monitor")
    binaries = [("A", bl.server_binary(args.server))]
    if args.compare:
        binaries.append(("B", bl.server_binary(args.compare)))

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    per_client = math.ceil(args.watchers / args.client_procs) + 200
    if per_client > hard:
        raise SystemExit("each client process would hold %d sockets, over the open-file limit "
                         "%d: raise --client-procs" % (per_client, hard))

    work = bl.workdir()
    procs = []
    clients = None
    perf = perf_first = None
    try:
        repo = os.path.join(work, "remote")
        t = time.monotonic()
        make_fleet_repo(repo, args.apps)
        made = time.monotonic() - t
        clients = Clients(args.client_procs)
        fleet = Fleet(args, work)
        servers = []
        fleet.idle_sockets = {}
        for name, binary in binaries:
            s = FleetServer(binary, repo, work, "almanac-" + name, args)
            procs.append(s)
            servers.append((name, s))
            fleet.idle_sockets[s.port] = open_sockets(s.proc.pid)
        if args.perf:
            prof = load_profile_module()
            perf = prof.PerfControl(work, servers[0][1].proc.pid, os.path.join(work, "perf.data"))
            if not args.no_first_requests:
                os.makedirs(os.path.join(work, "perf-first"))
                perf_first = prof.PerfControl(os.path.join(work, "perf-first"),
                                              servers[0][1].proc.pid,
                                              os.path.join(work, "perf-first.data"))
        load_before = os.getloadavg()
        results = {}
        first = {}
        for _ in range(args.rounds):
            for push in pushes:
                for name, s in servers:
                    r = fleet.almanac_round(clients, s, push, perf if name == "A" else None)
                    results.setdefault((name, push), []).append(r)
            if not args.no_first_requests:
                for name, s in servers:
                    first.setdefault(name, []).append(fleet.first_requests(
                        clients, s, perf_first if name == "A" else None))
        if perf:
            perf.stop()
            perf_out = prof.perf_tables(os.path.join(work, "perf.data"), 25, binaries[0][1])
            perf = None
        if perf_first:
            perf_first.stop()
            perf_first_out = prof.perf_tables(os.path.join(work, "perf-first.data"), 25,
                                              binaries[0][1])
            perf_first = None
        etcd_runs = []
        if not args.no_etcd:
            etcd = start_etcd(work, args.apps)
            procs.append(etcd)
            for r in range(args.rounds):
                etcd_runs.append(fleet.etcd_round(clients, etcd, r + 1))
        load_after = os.getloadavg()
    finally:
        for control in (perf, perf_first):
            if control:
                control.stop()
        if clients:
            clients.stop()
        for proc in procs:
            proc.stop()
        bl.cleanup(work)

    rows = []
    label = {"refresh": "POST /actuator/refresh", "monitor": "signed POST /monitor"}
    for push in pushes:
        for name, binary in binaries:
            rows.append(summarise("almanac-server%s, %s" % (
                " " + name if args.compare else "", label[push]), results[(name, push)]))
    if etcd_runs:
        rows.append(summarise("etcd 3.4 gateway, one txn", etcd_runs))

    print("### Fleet: %d applications x %d profiles, %d watchers, one commit to application.yml"
          % (args.apps, len(PROFILES), args.watchers))
    print()
    print("Measured %s with `bench/fleet.sh %s`; %s; load average before %.2f %.2f %.2f, after "
          "%.2f %.2f %.2f; %d client processes, %d source addresses; repository made in %.1f s."
          % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), " ".join(sys.argv[1:]),
             bl.machine_line(), *load_before, *load_after, args.client_procs, args.addresses,
             made))
    print()
    print(bl.table(
        ["server, push", "watchers", "rounds", "push answered", "first woken", "woken p50",
         "woken p99", "last woken (median, range)", "CPU push to last", "reads p99 (count)"],
        [(r["name"], r["watchers"], r["rounds"], fmt_s(r["push"]), fmt_s(r["first"]),
          fmt_s(r["p50"]), fmt_s(r["p99"]),
          "%s (%s-%s)" % (fmt_s(r["last"]), fmt_s(r["last_range"][0]), fmt_s(r["last_range"][1])),
          "%.2f s" % r["cpu"], r["reads_p99"]) for r in rows]))
    print()
    print(bl.table(["server, push", "watchers", "RSS parked", "bytes per parked watcher",
                    "RSS after the wake-up"],
                   [(r["name"], r["watchers"], "%d KiB" % r["rss_parked"],
                     "%.0f B" % r["per_watcher"], "%d KiB" % r["rss_after"]) for r in rows]))
    if args.compare:
        print()
        ratio_rows = []
        for push in pushes:
            a = summarise("A", results[("A", push)])
            b = summarise("B", results[("B", push)])
            ratio_rows.append((label[push], "%.2f" % (b["last"] / a["last"]),
                               "%.2f" % (b["p50"] / a["p50"]), "%.2f" % (b["cpu"] / a["cpu"])))
        print("B = %s, A = %s" % (binaries[1][1], binaries[0][1]))
        print()
        print(bl.table(["push", "last woken B/A", "woken p50 B/A", "CPU B/A"], ratio_rows))
    if first:
        print()
        first_rows = []
        for name, _ in binaries:
            un = statistics.median(u for u, _ in first[name])
            ca = statistics.median(c for _, c in first[name])
            first_rows.append(("almanac-server" + (" " + name if args.compare else ""),
                               len(fleet.paths), "%.0f" % un, "%.0f" % ca, "%.2f" % (un / ca)))
        print("First requests after a commit to application.yml: every Environment once "
              "(uncached), then once more (cached); %d client processes x %d keep-alive "
              "connections; medians of %d rounds." % (args.client_procs, args.read_conns,
                                                      args.rounds))
        print()
        print(bl.table(["server", "Environments", "uncached req/s", "cached req/s",
                        "uncached / cached"], first_rows))
    if args.perf:
        print()
        print("Where the wake-up spends its time (server A, perf from each push to the last "
              "answer):")
        print()
        print(perf_out)
        if not args.no_first_requests:
            print()
            print("Where the first (uncached) requests after the commit spend their time (server "
                  "A, perf during the uncached pass only):")
            print()
            print(perf_first_out)
    return 0


def load_profile_module():
    """bench/profile.py by its path: the standard library has a module named profile too."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "bench_profile", os.path.join(os.path.dirname(os.path.abspath(__file__)), "profile.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    sys.exit(main())
