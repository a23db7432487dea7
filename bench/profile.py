#!/usr/bin/env python3
"""Where a cached read spends its time: almanac-server under wrk, sampled by perf (or callgrind).

Starts almanac-server on a small repository, warms GET /orders/dev, runs wrk against it and,
while wrk runs, samples the server with `perf record -F 499 --call-graph dwarf` for --duration
seconds (all of its threads, user and kernel). Prints three tables from `perf report`: time by
shared object (the server, libmicrohttpd, libc, the kernel...), the top symbols by self time,
and the server's own functions with their callees.

--callgrind: the server runs under `valgrind --tool=callgrind` instead, with a light wrk load
and instrumentation switched on after the warm-up request; tables from callgrind_annotate
(user-space instructions per request, top functions, callers of the first).
--syscalls: system calls per request, counted by `strace -f -c` while wrk runs.
--wake N: not a read but the wake-up of N parked long-poll watchers (watchers.py's code): perf
is switched on (through its control FIFO) only from the refresh request to the last answer,
over --rounds rounds, so parking the watchers is not in the profile.
"""

import argparse
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402


def perf_tables(data, top, binary):
    def report(sort, *extra):
        out = subprocess.run(["perf", "report", "-i", data, "--stdio", "--sort", sort,
                              "--percent-limit", "0.5", "-g", "none", *extra],
                             capture_output=True, text=True, check=True).stdout
        rows = []
        for line in out.splitlines():
            if line.startswith("#"):
                continue
            line = re.sub(r"\s+-\s+-\s*$", "", line)
            cols = re.findall(r"([\d.]+)%", line)
            m = re.match(r"\s+(?:[\d.]+%\s+)+(.*)$", line)
            if cols and m:
                rows.append((cols, [c.strip() for c in re.split(r"\s{2,}", m.group(1).strip())]))
        return rows

    def sym(parts):
        return "`%s`" % " ".join(parts).replace("[.] ", "").replace("[k] ", "(kernel) ")
    by_dso = report("dso", "--no-children")
    by_sym = report("dso,symbol", "--no-children")[:top]
    # Time including callees of the server's own functions (DWARF call graphs): the symbols of
    # the binary, looked up in a report over every object.
    nm = subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True).stdout
    own = {line.split()[-1] for line in nm.splitlines() if line.split()[-2:-1] in (["T"], ["t"])}
    inclusive = [(c, p) for c, p in report("symbol", "--children")
                 if p and p[0].replace("[.] ", "") in own][:top]
    # a short run may have too few samples for a row: say so in the table
    return (bl.table(["samples", "shared object"],
                     [(c[0] + " %", p[0]) for c, p in by_dso] or [("0 %", "no samples")])
            + "\n\n" +
            bl.table(["self samples", "shared object", "symbol"],
                     [(c[0] + " %", p[0], sym(p[1:])) for c, p in by_sym]
                     or [("0 %", "no samples", "-")]) + "\n\n" +
            bl.table(["with callees", "self", "almanac-server function"],
                     [(c[0] + " %", c[-1] + " %", sym(p)) for c, p in inclusive]
                     or [("0 %", "0 %", "no samples")]))


def callgrind_table(out_file, top, requests):
    out = subprocess.run(["callgrind_annotate", "--inclusive=no", out_file],
                         capture_output=True, text=True, check=True).stdout
    rows = []
    total = None
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+(?:\(\s*([\d.]+)%\))?\s*(?:PROGRAM TOTALS|\S.*)$", line)
        if "PROGRAM TOTALS" in line:
            total = int(line.split()[0].replace(",", ""))
            continue
        if m and total and ":" in line and len(rows) < top:
            count = int(m.group(1).replace(",", ""))
            name = line.split(None, 1)[1]
            name = re.sub(r"^\(\s*[\d.]+%\)\s*", "", name).strip()
            m = re.match(r"(?:.*?):(\S+)(?:\s+\[(.*)\])?$", name)
            if m:
                name = "%s (%s)" % (m.group(1), os.path.basename(m.group(2) or "?"))
            rows.append(("%.1f %%" % (100.0 * count / total), "`%s`" % name))
    table = ("%s user-space instructions counted, %.0f per request\n\n"
             % ("{:,}".format(total or 0), (total or 0) / max(requests, 1)) +
             bl.table(["instructions (self)", "function (object)"], rows))
    if not rows:
        return table
    # who calls the first row's function, and how often
    tree = subprocess.run(["callgrind_annotate", "--tree=caller", "--inclusive=yes", out_file],
                          capture_output=True, text=True, check=True).stdout.splitlines()
    first = rows[0][1].strip("`").split(" (")[0]
    callers = []
    for i, line in enumerate(tree):
        if re.search(r"\*\s+\S*:" + re.escape(first) + r"\b", line):
            j = i - 1
            while j >= 0 and "<" in tree[j]:
                m = re.match(r"\s*([\d,]+)\s+\(\s*([\d.]+)%\)\s+<\s+(\S+)\s+\((\d[\d,]*)x\)"
                             r"(?:\s+\[(.*)\])?", tree[j])
                if m:
                    callers.append(("%s %%" % m.group(2), "`%s (%s)`" % (
                        m.group(3).split(":", 1)[-1], os.path.basename(m.group(5) or "?")),
                        m.group(4)))
                j -= 1
            break
    callers.sort(key=lambda r: -float(r[0].split()[0]))
    return table + "\n\nCallers of `%s`:\n\n" % first + bl.table(
        ["instructions", "caller (object)", "calls"], callers[:6] or [("0 %", "none", "0")])


class PerfControl:
    """perf record started disabled, switched on and off through its control FIFOs."""

    def __init__(self, work, pid, data):
        self.ctl, self.ack = os.path.join(work, "perf-ctl"), os.path.join(work, "perf-ack")
        os.mkfifo(self.ctl)
        os.mkfifo(self.ack)
        self.proc = subprocess.Popen(
            ["perf", "record", "-q", "-D", "-1", "--control", "fifo:%s,%s" % (self.ctl, self.ack),
             "-F", "2999", "--call-graph", "dwarf,16384", "-o", data, "-p", str(pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # O_RDWR: neither open blocks waiting for perf's side
        self.ctl_fd = os.open(self.ctl, os.O_RDWR)
        self.ack_fd = os.open(self.ack, os.O_RDWR)

    def command(self, word):
        os.write(self.ctl_fd, word.encode() + b"\n")
        if b"ack" not in os.read(self.ack_fd, 16):
            raise SystemExit("perf did not acknowledge " + word)

    def stop(self):
        self.proc.send_signal(2)
        err = self.proc.communicate(timeout=60)[1]
        os.close(self.ctl_fd)
        os.close(self.ack_fd)
        if self.proc.returncode not in (0, -2):
            bl.skip("perf record cannot sample here: " + err.strip()[-300:])


def wake_profile(binary, args):
    import asyncio
    import resource
    import watchers as w

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.wake * 2 + 200
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, need), hard))
    work = bl.workdir()
    server = None
    woken = []
    try:
        repo = os.path.join(work, "remote")
        bl.make_repo(repo, {"orders.yml": "orders:\n  round: 0\n", "application.yml": "a: 1\n"})
        server = w.ServerProcess(binary, repo, work, args.wake)
        data = os.path.join(work, "perf.data")
        perf = PerfControl(work, server.proc.pid, data)
        load = os.getloadavg()[0]

        async def rounds():
            await w.request(server.port, "/orders/dev")
            idle_sockets = w.open_sockets(server.proc.pid)
            for round_no in range(args.rounds):
                await w.settle(server.proc.pid, idle_sockets)
                conns = await w.park_on_current(server.port, args.wake)
                bl.commit(repo, {"orders.yml": "orders:\n  round: %d\n" % (round_no + 1)}, "r")
                waits = [asyncio.ensure_future(w.wait_answer(r)) for r, _ in conns]
                perf.command("enable")
                pushed = time.monotonic()
                await w.request(server.port, "/actuator/refresh", "POST")
                answers = await asyncio.gather(*waits)
                perf.command("disable")
                woken.append((max(t for t, _ in answers) - pushed) * 1000)
                for _, writer in conns:
                    writer.close()
        asyncio.run(rounds())
        perf.stop()
        print("### perf: waking %d parked watchers, %d round(s), sampled from the refresh request "
              "to the last answer (last answer after %s ms, per round)"
              % (args.wake, args.rounds, ", ".join("%.0f" % x for x in woken)))
        print()
        print("%s; 1-minute load average before %.2f; perf record -F 2999 --call-graph dwarf"
              % (bl.machine_line(), load))
        print()
        print(perf_tables(data, args.top, binary))
        if args.keep:
            subprocess.run(["cp", data, args.keep], check=True)
    finally:
        if server:
            server.stop()
        bl.cleanup(work)
    return 0


def requests_served(port):
    _, _, body = bl.http(port, "/metrics")
    return sum(float(v) for v in re.findall(rb"^almanac_http_requests_total\{[^}]*\} (\S+)",
                                            body, re.M))


def syscall_table(alm, url, args, work):
    """System calls per request: strace -f -c on the server while wrk runs; the request count
    comes from the server's own counter (its /metrics reads are subtracted)."""
    out = os.path.join(work, "strace.txt")
    wrk_proc = subprocess.Popen(["wrk", "-t1", "-c%d" % args.connections,
                                 "-d%ds" % (args.duration + 2), url],
                                stdout=subprocess.DEVNULL)
    time.sleep(1)
    before = requests_served(alm.port)
    subprocess.run(["timeout", "-s", "INT", str(args.duration), "strace", "-f", "-c", "-o", out,
                    "-p", str(alm.proc.pid)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    after = requests_served(alm.port) - 1
    wrk_proc.wait(timeout=args.duration + 60)
    served = max(after - before, 1)
    rows = []
    with open(out) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and re.match(r"[\d.]+$", parts[0]) and parts[-1] != "total":
                calls = int(parts[3])
                rows.append((parts[-1], "%.2f" % (calls / served), calls))
    rows.sort(key=lambda r: -r[2])
    return ("### System calls per cached GET /orders/dev (strace -f -c, %d requests)\n\n"
            "%s; wrk -t1 -c%d; strace slows the server, only the counts mean something\n\n"
            % (served, bl.machine_line(), args.connections) +
            bl.table(["system call", "per request", "calls"], rows[:args.top] or
                     [("none", "0", 0)]))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", help="almanac-server binary (or ALMANAC_SERVER_BIN)")
    p.add_argument("--duration", type=int, default=10, help="seconds sampled")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--wrk-threads", type=int, default=2)
    p.add_argument("--server-threads", type=int, default=os.cpu_count())
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--callgrind", action="store_true")
    p.add_argument("--syscalls", action="store_true",
                   help="count system calls per request with strace -c instead")
    p.add_argument("--server-flags", default="", help="extra almanac-server flags, one string")
    p.add_argument("--wake", type=int, default=0, metavar="N",
                   help="profile the wake-up of N parked watchers instead of a read")
    p.add_argument("--rounds", type=int, default=5, help="wake-ups profiled with --wake")
    p.add_argument("--keep", help="copy perf.data / callgrind.out to this path")
    p.add_argument("--smoke", action="store_true", help="tiny run that only checks the tables")
    args = p.parse_args()
    if args.smoke:
        args.duration, args.connections, args.wrk_threads, args.top = 1, 4, 1, 5
    binary = bl.server_binary(args.server)
    if args.wake:
        return wake_profile(binary, args)

    work = bl.workdir()
    procs = []
    try:
        repo = os.path.join(work, "remote")
        bl.make_repo(repo, {"application.yml": "logging:\n  level: INFO\n",
                            "orders.yml": bl.sample_yaml("orders", 60)})
        if args.callgrind:
            out_file = os.path.join(work, "callgrind.out")
            alm = bl.Almanac(binary, "file://" + repo, work, threads=args.server_threads,
                             extra=args.server_flags.split(),
                             prefix=["valgrind", "--tool=callgrind", "--instr-atstart=no",
                                     "--callgrind-out-file=" + out_file])
        else:
            alm = bl.Almanac(binary, "file://" + repo, work, threads=args.server_threads,
                             extra=args.server_flags.split())
        procs.append(alm)
        if bl.http(alm.port, "/orders/dev")[0] != 200:
            raise SystemExit("almanac did not answer 200")
        url = "http://127.0.0.1:%d/orders/dev" % alm.port
        load = os.getloadavg()[0]
        if args.callgrind:
            # count the steady state only, not start-up and the first (missing) request
            subprocess.run(["callgrind_control", "-i", "on", str(alm.proc.pid)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            result = bl.wrk(url, 1, min(args.connections, 4), args.duration)
            alm.stop()
            procs.remove(alm)
            print("### callgrind: cached GET /orders/dev, %d requests under valgrind"
                  % result["requests"])
            print()
            print("%s; wrk -t1 -c%d -d%ds; server flags: %s"
                  % (bl.machine_line(), min(args.connections, 4), args.duration,
                     args.server_flags or "defaults"))
            print()
            print(callgrind_table(out_file, args.top, result["requests"]))
            if args.keep:
                subprocess.run(["cp", out_file, args.keep], check=True)
            return 0
        if args.syscalls:
            print(syscall_table(alm, url, args, work))
            return 0
        data = os.path.join(work, "perf.data")
        wrk_proc = subprocess.Popen(["wrk", "-t%d" % args.wrk_threads,
                                     "-c%d" % args.connections, "-d%ds" % (args.duration + 2),
                                     "--latency", url],
                                    stdout=subprocess.PIPE, text=True)
        time.sleep(1)  # let wrk reach steady state before sampling
        rec = subprocess.run(["perf", "record", "-q", "-F", "499", "--call-graph",
                              "dwarf,16384", "-o", data, "-p", str(alm.proc.pid), "--",
                              "sleep", str(args.duration)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if rec.returncode != 0:
            wrk_proc.kill()
            wrk_proc.wait()
            bl.skip("perf record cannot sample here: " + rec.stderr.strip()[-300:])
        out = wrk_proc.communicate(timeout=args.duration + 60)[0]
        rps = re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)
        print("### perf: cached GET /orders/dev under wrk -t%d -c%d (%s requests/s while "
              "sampled)" % (args.wrk_threads, args.connections, rps))
        print()
        print("%s; 1-minute load average before %.2f; "
              "perf record -F 499 --call-graph dwarf -p <server> for %d s"
              % (bl.machine_line(), load, args.duration))
        print()
        print(perf_tables(data, args.top, binary))
        if args.keep:
            subprocess.run(["cp", data, args.keep], check=True)
    finally:
        for proc in procs:
            proc.stop()
        bl.cleanup(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
