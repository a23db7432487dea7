#!/usr/bin/env python3
"""Cold start: process start to first answered request, with a warm cache directory.

Each timed run is bench/first-answer.sh: it starts the server in the background and polls it
with curl, with no pause between tries, until a request succeeds; the time is taken by
hyperfine (or, without it, by this script around the same command). What is timed therefore
includes one bash start and up to one curl run of polling granularity; the last row (curl
against a server already running) shows that floor. Stopping the server is outside the
timed part (hyperfine's --prepare waits for the previous one to be gone).

  - almanac-server: its --cache-dir holds the bare mirror from an earlier run (warm), so start is
    open mirror + fetch over file:// + listen; the first request (GET /orders/dev) is a
    response-cache miss, composed and rendered;
  - nginx: a static file, for the floor of "a process that serves a file";
  - etcd 3.4 with an existing data directory, first answer = a range through the JSON gateway.
Commands alternate round by round; the table shows the median and spread over all runs.
"""

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

PROBE = os.path.join(bl.HERE, "first-answer.sh")


def time_runs(command, prepare, runs, workdir):
    """Wall times in ms of `runs` executions of command (shell strings)."""
    if shutil.which("hyperfine"):
        out = os.path.join(workdir, "hyperfine.json")
        done = subprocess.run(["hyperfine", "-N", "--runs", str(runs), "--prepare", prepare,
                               "--export-json", out, "--style", "none", command],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise SystemExit("hyperfine failed on %s:\n%s" % (command, done.stderr[-3000:]))
        with open(out) as f:
            return [t * 1000 for t in json.load(f)["results"][0]["times"]]
    times = []
    for _ in range(runs):
        subprocess.run(prepare, shell=True, check=True)
        t0 = time.perf_counter()
        subprocess.run(command, shell=True, check=True)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def wait_gone(pidfile):
    """A command that waits until the process named in pidfile has exited."""
    return "%s --wait-gone %s" % (shlex.quote(PROBE), shlex.quote(pidfile))


def probe(pidfile, url, data, argv):
    return " ".join(shlex.quote(x) for x in [PROBE, pidfile, url, data, "--", *argv])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", help="almanac-server binary (or ALMANAC_SERVER_BIN)")
    p.add_argument("--runs", type=int, default=10, help="runs per command per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--apps", type=int, default=100, help="other applications in the repository")
    p.add_argument("--no-etcd", action="store_true")
    p.add_argument("--smoke", action="store_true", help="tiny run that only checks the table")
    args = p.parse_args()
    if args.smoke:
        args.runs, args.rounds, args.apps, args.no_etcd = 2, 1, 3, True
    binary = bl.server_binary(args.server)

    work = bl.workdir()
    procs = []
    try:
        repo = os.path.join(work, "remote")
        files = {"application.yml": "logging:\n  level: INFO\n",
                 "orders.yml": bl.sample_yaml("orders", 60)}
        for i in range(args.apps):
            files["app%04d.yml" % i] = bl.sample_yaml("app%04d" % i, 20)
        bl.make_repo(repo, files)
        # One run to fill the cache directory, then stop: later runs start warm.
        warm = bl.Almanac(binary, "file://" + repo, work, "almanac")
        status, hdrs, body = bl.http(warm.port, "/orders/dev")
        warm.stop()
        ngx = bl.Nginx(work, {"/orders/dev": (hdrs["content-type"], body)}, 1)
        ngx_conf = os.path.join(ngx.dir, "nginx.conf")
        ngx.stop()

        commands = []
        port = bl.free_port()
        pidfile = os.path.join(work, "almanac.pid")
        commands.append(("almanac-server, warm cache dir", probe(
            pidfile, "http://127.0.0.1:%d/orders/dev" % port, "-",
            [binary, "--repo", "file://" + repo, "--listen", "127.0.0.1", "--port", str(port),
             "--cache-dir", warm.cache, "--refresh-interval", "0", "--log-level", "warn"]),
            wait_gone(pidfile)))
        pidfile = os.path.join(work, "nginx.pid.probe")
        commands.append(("nginx, static file", probe(
            pidfile, "http://127.0.0.1:%d/orders/dev" % ngx.port, "-",
            ["nginx", "-c", ngx_conf, "-p", ngx.dir, "-e", os.path.join(ngx.dir, "error.log")]),
            wait_gone(pidfile)))
        if not args.no_etcd:
            etcd = bl.Etcd(work)
            etcd.put(b"/config/orders/dev", body)
            etcd_argv = etcd.argv
            etcd.stop()
            pidfile = os.path.join(work, "etcd.pid")
            commands.append(("etcd 3.4, existing data dir", probe(
                pidfile, "http://127.0.0.1:%d/v3/kv/range" % etcd.port,
                json.dumps({"key": bl.b64(b"/config/orders/dev")}), etcd_argv),
                wait_gone(pidfile)))
        # The floor: the same probe's curl against a server that is already up.
        floor = bl.Nginx(os.path.join(work, "floor"), {"/orders/dev": (hdrs["content-type"], body)},
                         1)
        procs.append(floor)
        commands.append(("curl against a running nginx (floor)",
                         "curl -sf -o /dev/null http://127.0.0.1:%d/orders/dev" % floor.port,
                         "true"))

        times = {name: [] for name, _, _ in commands}
        loads = [os.getloadavg()[0]]
        for _ in range(args.rounds):
            for name, command, prepare in commands:
                times[name] += time_runs(command, prepare, args.runs, work)
                subprocess.run(prepare, shell=True, check=True)
            loads.append(os.getloadavg()[0])
    finally:
        for proc in procs:
            proc.stop()
        bl.cleanup(work)

    rows = []
    for name, _, _ in commands:
        t = times[name]
        rows.append((name, len(t), bl.fmt_ms(statistics.median(t)), bl.fmt_ms(min(t)),
                     bl.fmt_ms(bl.percentile(t, 90)), bl.fmt_ms(max(t))))
    print("### Cold start: process start to first answered request")
    print()
    print("%s, %d alternating round(s) of %d runs each; timed by %s; repository: orders + %d "
          "applications; %s" % ("first-answer.sh", args.rounds, args.runs,
                                "hyperfine" if shutil.which("hyperfine") else "a loop",
                                args.apps, bl.machine_line()))
    print("1-minute load average during the runs: %s" % " ".join("%.2f" % x for x in loads))
    print()
    print(bl.table(["server", "runs", "median", "min", "p90", "max"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
