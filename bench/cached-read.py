#!/usr/bin/env python3
"""Cached read: GET /{app}/{profile} from almanac-server against nginx and etcd.

One Environment (a few KB of JSON) is served three ways, side by side, with the same wrk
(threads, connections, duration, --latency):
  - almanac-server, after one warm-up request, so every measured request is a response-cache hit;
  - nginx serving the identical bytes as a static file with the same Content-Type (access log
    off, keep-alive with no request cap);
  - etcd 3.4 holding the bytes as one value, read through its v3 JSON gateway
    (POST /v3/kv/range, key in base64), serializable and linearizable.
Runs alternate (A, B, C, A, B, C ...) and the table shows medians over the rounds.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", help="almanac-server binary (or ALMANAC_SERVER_BIN)")
    bl.add_load_options(p, "almanac --threads and nginx worker_processes")
    p.add_argument("--no-etcd", action="store_true")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS",
                   help="one more almanac-server row started with these extra flags, e.g. "
                        "'8k pool=--max-header-bytes 8k' (repeatable)")
    p.add_argument("--smoke", action="store_true", help="tiny run that only checks the table")
    args = p.parse_args()
    if args.smoke:
        bl.shrink_for_smoke(args)
    binary = bl.server_binary(args.server)

    work = bl.workdir()
    procs = []
    try:
        repo = os.path.join(work, "remote")
        bl.make_repo(repo, bl.orders_files(args.keys))
        alm = bl.Almanac(binary, "file://" + repo, work, threads=args.server_threads)
        procs.append(alm)
        status, hdrs, body = bl.http(alm.port, "/orders/dev")
        if status != 200:
            raise SystemExit("almanac answered %d" % status)
        ngx = bl.Nginx(work, {"/orders/dev": (hdrs["content-type"], body)}, args.server_threads)
        procs.append(ngx)
        targets = [("almanac-server", "http://127.0.0.1:%d/orders/dev" % alm.port, None)]
        for i, variant in enumerate(args.variant):
            label, _, flags = variant.partition("=")
            other = bl.Almanac(binary, "file://" + repo, work, "variant%d" % i,
                               threads=args.server_threads, extra=flags.split())
            procs.append(other)
            if bl.http(other.port, "/orders/dev")[2] != body:
                raise SystemExit("variant %s does not serve the same bytes" % label)
            targets.append(("almanac-server, " + label,
                            "http://127.0.0.1:%d/orders/dev" % other.port, None))
        targets.append(("nginx static file", "http://127.0.0.1:%d/orders/dev" % ngx.port, None))
        if not args.no_etcd:
            etcd = bl.Etcd(work)
            procs.append(etcd)
            etcd.put(b"/config/orders/dev", body)
            url = "http://127.0.0.1:%d/v3/kv/range" % etcd.port
            ser = bl.wrk_post_script("/v3/kv/range", work, json.dumps(
                {"key": bl.b64(b"/config/orders/dev"), "serializable": True}), "ser.lua")
            targets.append(("etcd gateway, serializable", url, ser))
            if not args.smoke:
                lin = bl.wrk_post_script("/v3/kv/range", work, json.dumps(
                    {"key": bl.b64(b"/config/orders/dev")}), "lin.lua")
                targets.append(("etcd gateway, linearizable", url, lin))

        runs, loads = bl.wrk_rounds(targets, args)
    finally:
        for proc in procs:
            proc.stop()
        bl.cleanup(work)

    base = bl.median_of(runs["almanac-server"], "rps")
    rows = [bl.rps_row(name, runs[name], lambda rps: "%.2f" % (base / rps))
            for name, _, _ in targets]
    print("### Cached read: GET /orders/dev, %d-byte Environment JSON" % len(body))
    print()
    print(bl.load_header(args, loads, "server threads / nginx workers"))
    print()
    print(bl.table(["server", "requests/s", "range", "p50", "p99", "errors",
                    "Almanac/this (req/s)"],
                   rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
