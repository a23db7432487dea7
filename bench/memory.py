#!/usr/bin/env python3
"""Memory: per idle long-poll watcher, and for a repository of many applications.

Two tables.
1. Idle watchers: a fresh almanac-server per round; after one warm-up request its VmRSS is read,
   N long-poll watchers are parked on one Environment (watchers.py's code, asyncio, one
   connection each) until the almanac_watchers gauge says all are parked, and VmRSS is read
   again. Per watcher = growth / N. User-space memory only: the kernel's socket buffers are not
   in VmRSS.
2. A generated repository of --apps applications x 3 profiles (appNNNN.yml plus
   appNNNN-{dev,test,prod}.yml): VmRSS after start (clone done, nothing asked), after asking
   every application x profile once over one keep-alive connection (each request a miss, so
   every Environment is rendered and cached), and the size of the bare mirror on disk. The
   same 3,000 Environment documents are then put into etcd as values and its VmRSS is read
   before and after, for comparison.
"""

import argparse
import asyncio
import http.client
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402
import watchers as w  # noqa: E402

PROFILES = ("dev", "test", "prod")


async def park(port, repo, count):
    await w.request(port, "/orders/dev")
    before = bl.rss_kib(park.pid)
    conns = await w.park_on_current(port, count)
    after = bl.rss_kib(park.pid)
    for _, writer in conns:
        writer.close()
    return before, after


def watcher_rows(binary, counts, rounds):
    rows = []
    for count in counts:
        growth = []
        for _ in range(rounds):
            work = bl.workdir()
            try:
                repo = os.path.join(work, "remote")
                bl.make_repo(repo, {"orders.yml": "orders:\n  round: 0\n"})
                server = w.ServerProcess(binary, repo, work, count)
                try:
                    park.pid = server.proc.pid
                    before, after = asyncio.run(park(server.port, repo, count))
                finally:
                    server.stop()
            finally:
                bl.cleanup(work)
            growth.append((before, after))
        per = sorted((a - b) * 1024.0 / count for b, a in growth)
        mid = len(growth) // 2
        rows.append((count, "%d KiB" % sorted(b for b, _ in growth)[mid],
                     "%d KiB" % sorted(a for _, a in growth)[mid],
                     "%.0f B" % per[len(per) // 2], "%.0f-%.0f B" % (per[0], per[-1])))
    return rows


def repo_rows(binary, apps, keys, with_etcd):
    work = bl.workdir()
    procs = []
    rows = []
    try:
        repo = os.path.join(work, "remote")
        files = {"application.yml": "logging:\n  level: INFO\n"}
        for i in range(apps):
            app = "app%04d" % i
            files[app + ".yml"] = bl.sample_yaml(app, keys)
            for prof in PROFILES:
                files["%s-%s.yml" % (app, prof)] = (
                    "%s:\n  datasource:\n    url: jdbc:postgresql://db-%s.%s.svc/%s\n"
                    "  settings:\n    key000: %s override\n" % (app, prof, app, app, prof))
        bl.make_repo(repo, files)
        server = bl.Almanac(binary, "file://" + repo, work)
        procs.append(server)
        pid = server.proc.pid
        started = bl.rss_kib(pid)
        docs = {}
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        t0 = time.perf_counter()
        for i in range(apps):
            for prof in PROFILES:
                path = "/app%04d/%s" % (i, prof)
                conn.request("GET", path)
                resp = conn.getresponse()
                body = resp.read()
                if resp.status != 200:
                    raise SystemExit("GET %s answered %d" % (path, resp.status))
                docs[path] = body
        elapsed = time.perf_counter() - t0
        conn.close()
        asked = bl.rss_kib(pid)
        mirror = subprocess.run(["du", "-sk", server.cache], capture_output=True, text=True,
                                check=True).stdout.split()[0]
        total = sum(len(b) for b in docs.values())
        n = apps * len(PROFILES)
        rows.append(("almanac-server", "%d KiB" % started, "%d KiB" % asked,
                     "%d KiB" % (asked - started),
                     "%d Environments, %d KiB of JSON, first requests %.0f/s; mirror %s KiB"
                     % (n, total // 1024, n / elapsed, mirror)))
        if with_etcd:
            etcd = bl.Etcd(work)
            procs.append(etcd)
            before = bl.rss_kib(etcd.proc.pid)
            for path, body in docs.items():
                etcd.put(("/config" + path).encode(), body)
            after = bl.rss_kib(etcd.proc.pid)
            rows.append(("etcd 3.4, same documents as values", "%d KiB" % before,
                         "%d KiB" % after, "%d KiB" % (after - before),
                         "%d puts through the JSON gateway" % n))
    finally:
        for proc in procs:
            proc.stop()
        bl.cleanup(work)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", help="almanac-server binary (or ALMANAC_SERVER_BIN)")
    p.add_argument("--watchers", default="1000,10000", help="comma-separated watcher counts")
    p.add_argument("--rounds", type=int, default=3, help="fresh servers per watcher count")
    p.add_argument("--apps", type=int, default=1000)
    p.add_argument("--keys", type=int, default=20, help="settings per application file")
    p.add_argument("--no-etcd", action="store_true")
    p.add_argument("--smoke", action="store_true", help="tiny run that only checks the tables")
    args = p.parse_args()
    if args.smoke:
        args.watchers, args.rounds, args.apps, args.keys = "20", 1, 5, 3
    counts = [int(x) for x in args.watchers.split(",")]
    binary = bl.server_binary(args.server)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = max(counts) * 2 + 300
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, need), hard))

    load_before = os.getloadavg()[0]
    wrows = watcher_rows(binary, counts, args.rounds)
    rrows = repo_rows(binary, args.apps, args.keys, not args.no_etcd)
    print("### Memory per idle watcher (%d fresh server(s) per count, medians)" % args.rounds)
    print()
    print("%s; 1-minute load average before %.2f, after %.2f"
          % (bl.machine_line(), load_before, os.getloadavg()[0]))
    print()
    print(bl.table(["watchers", "RSS before", "RSS parked", "per watcher", "range"], wrows))
    print()
    print("### Resident memory, %d applications x %d profiles" % (args.apps, len(PROFILES)))
    print()
    print(bl.table(["server", "RSS at start", "RSS after all asked", "growth", "notes"], rrows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
