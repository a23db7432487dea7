#!/usr/bin/env python3
"""Watchers: memory per idle long-poll watcher, and push -> wake latency.

Starts a real almanac-server on a Git repository made in a temporary directory, parks N
long-poll watchers on one Environment (raw sockets, asyncio), reads the server's resident
memory before and after, then commits, triggers a refresh and measures, for every watcher, the
time from the refresh request to the arrival of its answer.

    bench/watchers.py --server build/server/almanac-server --watchers 1000 [--rounds 3]

Prints one table. Everything runs on loopback and stops by itself.
"""

import argparse
import asyncio
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402


def open_sockets(pid):
    """Sockets the process holds (files come and go with Git's pack files)."""
    count = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            count += os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:")
        except OSError:
            pass
    return count


async def settle(pid, sockets):
    """Waits until the server has closed the sockets of the previous round."""
    deadline = time.monotonic() + 10
    while open_sockets(pid) > sockets and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def request(port, path, method="GET"):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(("%s %s HTTP/1.1\r\nHost: bench\r\nContent-Length: 0\r\n\r\n"
                  % (method, path)).encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
    body = await reader.readexactly(length)
    writer.close()
    return head, body


async def etag_of(port, path):
    head, _ = await request(port, path)
    return re.search(rb'(?i)etag: ("[^"]+")', head).group(1).decode()


async def open_watcher(port, path):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(("GET %s HTTP/1.1\r\nHost: bench\r\n\r\n" % path).encode())
    await writer.drain()
    return reader, writer


async def wait_answer(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    arrived = time.monotonic()
    return arrived, head.split(b" ", 2)[1]


async def metric(port, name):
    _, body = await request(port, "/metrics")
    m = re.search(rb"^" + name.encode() + rb" (\d+)", body, re.M)
    return int(m.group(1)) if m else -1


async def park(port, path, count, parked_before):
    """Opens count watchers, 200 at a time (a fleet reconnecting), and waits until all park."""
    watchers = []
    for i in range(0, count, 200):
        watchers += await asyncio.gather(*[open_watcher(port, path)
                                           for _ in range(min(200, count - i))])
    deadline = time.monotonic() + 60
    while await metric(port, "almanac_watchers") < parked_before + count:
        if time.monotonic() > deadline:
            raise SystemExit("watchers did not all park")
        await asyncio.sleep(0.05)
    return watchers


async def park_on_current(port, count):
    """Parks count watchers on the current version of /orders/dev; returns their connections."""
    tag = await etag_of(port, "/orders/dev")
    return await park(port, "/orders/dev?watch=%s&timeout=120" % tag.strip('"'), count, 0)


async def round_trip(port, pid, count):
    """Parks count watchers in two halves. The first half pays for the server's working memory
    of accepting and parsing 200 requests at once; the second reuses it, so its growth is what
    a watcher itself costs."""
    tag = await etag_of(port, "/orders/dev")
    path = "/orders/dev?watch=%s&timeout=120" % tag.strip('"')
    first = count // 2
    rss_before = bl.rss_kib(pid)
    watchers = await park(port, path, first, 0)
    rss_half = bl.rss_kib(pid)
    watchers += await park(port, path, count - first, first)
    rss_parked = bl.rss_kib(pid)
    return watchers, rss_parked - rss_before, rss_parked - rss_half


async def main_async(args, server, repo):
    port = server.port
    await request(port, "/orders/dev")
    idle_rss = bl.rss_kib(server.proc.pid)
    idle_sockets = open_sockets(server.proc.pid)
    rows = []
    for round_no in range(args.rounds):
        await settle(server.proc.pid, idle_sockets)
        watchers, growth, second_half = await round_trip(port, server.proc.pid, args.watchers)
        bl.commit(repo, {"orders.yml": "orders:\n  round: %d\n" % (round_no + 1)}, "round")
        waits = [asyncio.ensure_future(wait_answer(r)) for r, _ in watchers]
        pushed = time.monotonic()
        await request(port, "/actuator/refresh", "POST")
        answers = await asyncio.gather(*waits)
        for _, w in watchers:
            w.close()
        latencies = sorted((arrived - pushed) * 1000 for arrived, _ in answers)
        statuses = {status for _, status in answers}
        if statuses != {b"200"}:
            raise SystemExit("unexpected answers: %r" % statuses)
        rows.append((round_no + 1, growth, second_half, latencies))
    return idle_rss, rows


class ServerProcess:
    def __init__(self, binary, repo, workdir, watchers, extra_flags=()):
        self.log = os.path.join(workdir, "server.log")
        self.proc = subprocess.Popen(
            [binary, "--repo", "file://" + repo, "--listen", "127.0.0.1", "--port", "0",
             "--cache-dir", os.path.join(workdir, "cache"), "--refresh-interval", "0",
             "--max-connections", str(watchers + 100), *extra_flags,
             # every watcher comes from 127.0.0.1: lift the per-address caps too
             "--max-connections-per-ip", str(watchers + 100),
             "--max-watchers-per-ip", str(watchers + 100), "--log-level",
             os.environ.get("BENCH_LOG_LEVEL", "warn")],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "wb"))
        deadline = time.monotonic() + 30
        self.port = None
        while self.port is None:
            # listening is logged at info; with warn we read the port from /proc instead
            self.port = self.find_port()
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("server did not start:\n" + open(self.log).read())
            time.sleep(0.05)

    def find_port(self):
        inodes = set()
        try:
            for fd in os.listdir("/proc/%d/fd" % self.proc.pid):
                target = os.readlink("/proc/%d/fd/%s" % (self.proc.pid, fd))
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            return None
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and parts[9] in inodes:
                    return int(parts[1].split(":")[1], 16)
        return None

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="build/server/almanac-server")
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server-flags", default="",
                        help="more almanac-server flags, e.g. '--max-header-bytes 32k'")
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.watchers * 2 + 200
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))

    work = tempfile.mkdtemp(prefix="almanac-bench-")
    try:
        repo = os.path.join(work, "remote")
        bl.make_repo(repo, {"orders.yml": "orders:\n  round: 0\n", "application.yml": "a: 1\n"})
        server = ServerProcess(args.server, repo, work, args.watchers, shlex.split(args.server_flags))
        try:
            idle_rss, rows = asyncio.run(main_async(args, server, repo))
        finally:
            server.stop()
    finally:
        if os.environ.get("BENCH_KEEP_LOG"):
            shutil.copy(os.path.join(work, "server.log"), os.environ["BENCH_KEEP_LOG"])
        shutil.rmtree(work, ignore_errors=True)

    print("almanac-server watchers: %d parked long-polls on one Environment, %s"
          % (args.watchers, os.uname().machine))
    print("| round | RSS growth while parked | per watcher | per watcher, second half "
          "| wake p50 | wake p99 | wake max |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    second = args.watchers - args.watchers // 2
    for round_no, growth, second_half, lat in rows:
        print("| %d | %d KiB | %.0f B | %.0f B | %.1f ms | %.1f ms | %.1f ms |"
              % (round_no, growth, growth * 1024.0 / args.watchers,
                 second_half * 1024.0 / second, bl.percentile(lat, 50), bl.percentile(lat, 99),
                 lat[-1]))
    print("server RSS when idle: %d KiB" % idle_rss)
    return 0


if __name__ == "__main__":
    sys.exit(main())
