#!/usr/bin/env python3
"""Cached read with many repositories: GET /orders/dev on an almanac-server whose --config has
a repos: section of N repositories (orders served by the last one, so every pattern is tried
before it matches) against one serving the same files from its only repository.

Both answers are the same response-cache hit; what the many-repository server adds per request
is the pattern matching of the router (Spring's rules, every entry in file order). Runs
alternate (one, many, one, ...) and the table shows medians.
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib as bl  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", help="almanac-server binary (or ALMANAC_SERVER_BIN)")
    p.add_argument("--repositories", type=int, default=20, help="repositories in repos:")
    bl.add_load_options(p)
    p.add_argument("--smoke", action="store_true", help="tiny run that only checks the table")
    args = p.parse_args()
    if args.smoke:
        bl.shrink_for_smoke(args)
        args.repositories = 3
    binary = bl.server_binary(args.server)

    work = bl.workdir()
    procs = []
    try:
        files = bl.orders_files(args.keys)
        single = os.path.join(work, "single")
        bl.make_repo(single, files)
        platform = os.path.join(work, "platform")
        bl.make_repo(platform, {"application.yml": "platform: true\n"})
        lines = ["repos:"]
        for i in range(args.repositories):
            path = os.path.join(work, "team-%02d" % i)
            last = i == args.repositories - 1
            bl.make_repo(path, files if last else {"application.yml": "team: %d\n" % i})
            lines += ["  team-%02d:" % i,
                      "    pattern: [team-%02d-*, 'svc-%02d/dev*']" % (i, i)
                      if not last else "    pattern: [orders*]",
                      "    uri: file://%s" % path]
        config = os.path.join(work, "repos.yml")
        with open(config, "w") as f:
            f.write("\n".join(lines) + "\n")

        one = bl.Almanac(binary, "file://" + single, work, "one", threads=args.server_threads)
        procs.append(one)
        many = bl.Almanac(binary, "file://" + platform, work, "many",
                          threads=args.server_threads, extra=["--config", config])
        procs.append(many)
        bodies = {}
        for name, alm in (("one", one), ("many", many)):
            status, _, body = bl.http(alm.port, "/orders/dev")
            if status != 200:
                raise SystemExit("almanac (%s) answered %d" % (name, status))
            bodies[name] = body
        if bodies["one"].count(b"orders") != bodies["many"].count(b"orders"):
            raise SystemExit("the two servers do not serve the same properties")
        targets = [("1 repository", "http://127.0.0.1:%d/orders/dev" % one.port, None),
                   ("%d repositories (the last one matches)" % args.repositories,
                    "http://127.0.0.1:%d/orders/dev" % many.port, None)]

        runs, loads = bl.wrk_rounds(targets, args)
    finally:
        for proc in procs:
            proc.stop()
        bl.cleanup(work)

    base = bl.median_of(runs[targets[0][0]], "rps")
    rows = [bl.rps_row(name, runs[name], lambda rps: "%.3f" % (rps / base))
            for name, _, _ in targets]
    print("### Cached read with many repositories: GET /orders/dev, %d-byte Environment JSON"
          % len(bodies["one"]))
    print()
    print(bl.load_header(args, loads))
    print()
    print(bl.table(["server", "requests/s", "range", "p50", "p99", "errors",
                    "this/one (req/s)"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
