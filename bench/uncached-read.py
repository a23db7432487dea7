#!/usr/bin/env python3
"""Uncached reads and the .yml/.properties forms, against nginx serving the same bytes.

Two tables.

1. Throughput (wrk, same load as cached-read.py) of the three forms of one Environment,
   GET /orders/dev, /orders-dev.yml and /orders-dev.properties:
   - "cached": almanac-server with its response cache, warmed by one request; every measured
     request is a hit;
   - "rendered": a second almanac-server started with --response-cache-bytes 0, so every
     request composes and renders the answer from the parsed snapshot (property sources
     merged, JSON/YAML/properties written, ETag digested). Before each of its runs a new commit
     is made and POST /actuator/refresh called (the refresh parses the new commit into a
     snapshot, to name the applications it changed), so each run renders a commit not served
     before;
   - nginx serving the byte-identical documents as static files with the same Content-Type.
2. Miss latency after a commit, measured one request at a time on a fresh connection by a
   Python client: commit, POST /actuator/refresh (timed: fetch over file:// and parsing the new
   commit into a snapshot), then the first GET (a response-cache miss: composed and rendered
   from that snapshot), then the same GET again (a hit). The same client's GET to nginx gives
   the floor the client itself adds.
The repository holds --apps other applications besides orders, so a snapshot has real work.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

FORMS = [("json", "/orders/dev"), ("yml", "/orders-dev.yml"),
         ("properties", "/orders-dev.properties")]


def timed_get(port, path):
    t0 = time.perf_counter()
    status, _, _ = bl.http(port, path)
    elapsed = (time.perf_counter() - t0) * 1000
    if status != 200:
        raise SystemExit("GET %s answered %d" % (path, status))
    return elapsed


def new_commit(repo, serial, keys):
    bl.commit(repo, {"orders.yml": bl.sample_yaml("orders", keys) + "serial: %d\n" % serial},
              "change %d" % serial)


def refresh(port):
    t0 = time.perf_counter()
    status, _, body = bl.http(port, "/actuator/refresh", "POST")
    elapsed = (time.perf_counter() - t0) * 1000
    if status != 200 or b'"changed":true' not in body.replace(b" ", b""):
        raise SystemExit("refresh did not move: %d %r" % (status, body))
    return elapsed


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", help="almanac-server binary (or ALMANAC_SERVER_BIN)")
    bl.add_load_options(p, keys_help="settings in orders.yml")
    p.add_argument("--apps", type=int, default=100, help="other applications in the repository")
    p.add_argument("--samples", type=int, default=30, help="commits for the miss latency table")
    p.add_argument("--smoke", action="store_true", help="tiny run that only checks the tables")
    args = p.parse_args()
    if args.smoke:
        bl.shrink_for_smoke(args)
        args.apps, args.samples = 3, 3
    binary = bl.server_binary(args.server)

    work = bl.workdir()
    procs = []
    serial = 0
    try:
        repo = os.path.join(work, "remote")
        files = {"application.yml": "logging:\n  level: INFO\nshared:\n  timeout: 30s\n",
                 "orders.yml": bl.sample_yaml("orders", args.keys),
                 "orders-dev.yml": "orders:\n  settings:\n    key000: overridden in dev\n"}
        for i in range(args.apps):
            files["app%04d.yml" % i] = bl.sample_yaml("app%04d" % i, 20)
        bl.make_repo(repo, files)
        cached = bl.Almanac(binary, "file://" + repo, work, "cached", threads=args.server_threads)
        procs.append(cached)
        rendered = bl.Almanac(binary, "file://" + repo, work, "rendered",
                              threads=args.server_threads, extra=["--response-cache-bytes", "0"])
        procs.append(rendered)
        docs = {}
        for form, path in FORMS:
            status, hdrs, body = bl.http(cached.port, path)
            if status != 200:
                raise SystemExit("GET %s answered %d" % (path, status))
            docs[path] = (hdrs["content-type"], body)
        ngx = bl.Nginx(work, docs, args.server_threads)
        procs.append(ngx)

        targets = []
        for form, path in (FORMS[:1] if args.smoke else FORMS):
            targets += [(form, "almanac cached", cached.port, path),
                        (form, "almanac rendered", rendered.port, path),
                        (form, "nginx", ngx.port, path)]

        def run(target):
            nonlocal serial
            _, name, port, path = target
            if name == "almanac rendered":
                serial += 1
                new_commit(repo, serial, args.keys)
                refresh(rendered.port)
            return bl.wrk("http://127.0.0.1:%d%s" % (port, path), args.wrk_threads,
                          args.connections, args.duration)

        runs, loads = bl.alternate(targets, args.rounds, run, key=lambda t: (t[0], t[1]))

        # The cached server catches up with the commits made above before the latency samples.
        refresh_ms, first_ms, second_ms, floor_ms = [], [], [], []
        for _ in range(args.samples):
            serial += 1
            new_commit(repo, serial, args.keys)
            refresh_ms.append(refresh(cached.port))
            first_ms.append(timed_get(cached.port, "/orders/dev"))
            second_ms.append(timed_get(cached.port, "/orders/dev"))
            floor_ms.append(timed_get(ngx.port, "/orders/dev"))
    finally:
        for proc in procs:
            proc.stop()
        bl.cleanup(work)

    rows = []
    for form, path in (FORMS[:1] if args.smoke else FORMS):
        nginx_rps = bl.median_of(runs[(form, "nginx")], "rps")
        for name in ("almanac cached", "almanac rendered", "nginx"):
            r = runs[(form, name)]
            rps = bl.median_of(r, "rps")
            rows.append(("`%s`" % path, name, len(docs[path][1]), "%.0f" % rps,
                         bl.fmt_ms(bl.median_of(r, "p50")), bl.fmt_ms(bl.median_of(r, "p99")),
                         sum(x["errors"] for x in r), "%.2f" % (rps / nginx_rps)))
    print("### Read forms, cached and rendered on every request, against nginx")
    print()
    print(bl.load_header(args, loads, "server threads / nginx workers",
                         "repository: orders + %d applications; " % args.apps))
    print()
    print(bl.table(["path", "server", "body bytes", "requests/s", "p50", "p99", "errors",
                    "this/nginx (req/s)"], rows))
    print()
    print("### Miss after a new commit, one request at a time (%d commits)" % args.samples)
    print()
    rows = []
    for name, values in (("POST /actuator/refresh (fetch over file://)", refresh_ms),
                         ("first GET /orders/dev after it (miss)", first_ms),
                         ("second GET /orders/dev (hit)", second_ms),
                         ("GET /orders/dev from nginx (client floor)", floor_ms)):
        rows.append((name, bl.fmt_ms(bl.percentile(values, 50)),
                     bl.fmt_ms(bl.percentile(values, 99)), bl.fmt_ms(max(values))))
    print(bl.table(["step", "p50", "p99", "max"], rows))
    print()
    print(bl.load_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
