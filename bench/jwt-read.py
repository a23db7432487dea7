#!/usr/bin/env python3
"""Cached read with a JWT caller against a Basic caller: GET /orders/dev on one almanac-server
with an --auth-file holding a user (SHA-512 crypt password) and an issuer (RS256 keys from a
jwks-file), the same response-cache hit for both.

The JWT is shaped like a Kubernetes projected ServiceAccount token (tests/integration/
jwt_tools.py, keys and signature made with the openssl CLI). After a warm-up request, each
further request costs a SHA-256 of the token and a lookup in the verified-token cache; a Basic
request costs a base64 decode, an HMAC of the password and a lookup in the password cache.
Runs alternate (Basic, JWT, no credentials on an open server, ...) and the table shows medians.
"""

import argparse
import base64
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))
import benchlib as bl  # noqa: E402
from jwt_tools import ISSUER, Key, jwks, k8s_claims, mint  # noqa: E402


def header_script(workdir, name, value):
    lua = os.path.join(workdir, name + ".lua")
    with open(lua, "w") as f:
        f.write('wrk.headers["Authorization"] = "%s"\n' % value)
    return lua


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", help="almanac-server binary (or ALMANAC_SERVER_BIN)")
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--wrk-threads", type=int, default=2)
    p.add_argument("--server-threads", type=int, default=os.cpu_count())
    p.add_argument("--keys", type=int, default=60, help="settings in the served file")
    p.add_argument("--smoke", action="store_true", help="tiny run that only checks the table")
    args = p.parse_args()
    if args.smoke:
        args.duration, args.rounds, args.connections, args.wrk_threads, args.keys = 1, 1, 4, 1, 5
    binary = bl.server_binary(args.server)

    work = bl.workdir()
    procs = []
    try:
        repo = os.path.join(work, "remote")
        bl.make_repo(repo, {"application.yml": "logging:\n  level: INFO\n",
                            "orders.yml": bl.sample_yaml("orders", args.keys)})
        key = Key(work, "RSA", "bench-key")
        keys = os.path.join(work, "jwks.json")
        with open(keys, "w") as f:
            f.write(jwks(key))
        hashed = subprocess.run(["openssl", "passwd", "-6", "-salt", "benchsalt", "bench-pw"],
                                check=True, capture_output=True, text=True).stdout.strip()
        auth = os.path.join(work, "auth.yml")
        with open(auth, "w") as f:
            f.write("users:\n  orders-svc:\n    password: \"%s\"\n    applications: [orders]\n"
                    "issuers:\n  - name: cluster\n    issuer: %s\n    audiences: [almanac]\n"
                    "    jwks-file: %s\n    subjects:\n"
                    "      - match: \"system:serviceaccount:shop:orders\"\n"
                    "        applications: [orders]\n" % (hashed, ISSUER, keys))
        os.chmod(auth, 0o600)
        token = mint(key, k8s_claims("shop", "orders", lifetime=86400))
        basic = "Basic " + base64.b64encode(b"orders-svc:bench-pw").decode()
        bearer = "Bearer " + token

        alm = bl.Almanac(binary, "file://" + repo, work, threads=args.server_threads,
                         extra=["--auth-file", auth, "--auth-failures-per-minute", "0"])
        procs.append(alm)
        open_alm = bl.Almanac(binary, "file://" + repo, work, "open",
                              threads=args.server_threads)
        procs.append(open_alm)
        bodies = set()
        for value in (basic, bearer):
            status, _, body = bl.http(alm.port, "/orders/dev", headers={"Authorization": value})
            if status != 200:
                raise SystemExit("almanac answered %d to %s" % (status, value.split()[0]))
            bodies.add(body)
        bodies.add(bl.http(open_alm.port, "/orders/dev")[2])
        if len(bodies) != 1:
            raise SystemExit("the three targets do not serve the same bytes")
        body = bodies.pop()
        url = "http://127.0.0.1:%d/orders/dev" % alm.port
        targets = [("Basic caller", url, header_script(work, "basic", basic)),
                   ("JWT caller (ServiceAccount token)", url,
                    header_script(work, "bearer", bearer)),
                   ("no --auth-file", "http://127.0.0.1:%d/orders/dev" % open_alm.port, None)]

        loads = [os.getloadavg()[0]]
        runs = {name: [] for name, _, _ in targets}
        for _ in range(args.rounds):
            for name, target, lua in targets:
                runs[name].append(bl.wrk(target, args.wrk_threads, args.connections,
                                         args.duration, lua))
            loads.append(os.getloadavg()[0])
    finally:
        for proc in procs:
            proc.stop()
        bl.cleanup(work)

    base = bl.median_of(runs["Basic caller"], "rps")
    rows = []
    for name, _, _ in targets:
        r = runs[name]
        rps = bl.median_of(r, "rps")
        rows.append((name, "%.0f" % rps, "%.0f-%.0f" % (min(x["rps"] for x in r),
                                                       max(x["rps"] for x in r)),
                     bl.fmt_ms(bl.median_of(r, "p50")),
                     bl.fmt_ms(bl.median_of(r, "p99")), sum(x["errors"] for x in r),
                     "%.3f" % (rps / base)))
    print("### Cached read by caller: GET /orders/dev, %d-byte Environment JSON, %d-byte JWT"
          % (len(body), len(token)))
    print()
    print("wrk -t%d -c%d -d%ds --latency, %d alternating round(s), medians; server threads: %d; %s"
          % (args.wrk_threads, args.connections, args.duration, args.rounds,
             args.server_threads, bl.machine_line()))
    print("1-minute load average during the runs: %s" % " ".join("%.2f" % x for x in loads))
    print()
    print(bl.table(["caller", "requests/s", "range", "p50", "p99", "errors",
                    "this/Basic (req/s)"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
