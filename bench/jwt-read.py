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
    bl.add_load_options(p)
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

        runs, loads = bl.wrk_rounds(targets, args)
    finally:
        for proc in procs:
            proc.stop()
        bl.cleanup(work)

    base = bl.median_of(runs["Basic caller"], "rps")
    rows = [bl.rps_row(name, runs[name], lambda rps: "%.3f" % (rps / base))
            for name, _, _ in targets]
    print("### Cached read by caller: GET /orders/dev, %d-byte Environment JSON, %d-byte JWT"
          % (len(body), len(token)))
    print()
    print(bl.load_header(args, loads))
    print()
    print(bl.table(["caller", "requests/s", "range", "p50", "p99", "errors",
                    "this/Basic (req/s)"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
