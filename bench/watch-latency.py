#!/usr/bin/env python3
"""Push -> watcher-woken latency: almanac-server long-polls against etcd watches.

For each watcher count (default 1, 100, 1000), alternating between the two servers round by
round:
  - almanac-server: N long-poll watchers parked on GET /orders/dev?watch=<etag> (the parking and
    wake-up code of watchers.py); then a commit, and the clock starts when POST
    /actuator/refresh is sent. Each watcher's time is when its 200 answer's header arrived. The
    refresh fetches over file:// first, so the figure includes the fetch (shown on its own);
  - etcd 3.4: N watch streams through the v3 JSON gateway (POST /v3/watch, one HTTP connection
    each, each acknowledged as created); the clock starts when POST /v3/kv/put is sent, and
    each watcher's time is when its event arrived.
One asyncio client process drives both, so both carry the same client cost. Percentiles are
over all watchers of all rounds of one (server, N).

More almanac rows, each on its own servers:
  - "signed POST /monitor": the push is a GitHub-signed webhook (X-Hub-Signature-256), as
    GitHub sends it; the clock starts when it is sent, the fetch runs after its answer;
  - "replica B, peers": watchers parked on replica B, the signed webhook sent to replica A;
    B hears of it through --peers (A's notice) and fetches itself;
  - "replica B, bus" (with --bus-url): the same through RabbitMQ instead of --peers.
Requested fetches are at least 1 s apart (ten webhooks in a second cost at most two fetches), so
every almanac round, the POST /actuator/refresh rows too, starts at least 1.1 s after the
previous push to its server, as real pushes do.
"""

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402
import watchers as w  # noqa: E402

KEY = b"/config/orders/dev"


async def almanac_round(port, repo, count, round_no, last_push):
    conns = await w.park_on_current(port, count)
    # A refresh within PUSH_GAP of the last one joins a fetch at the end of that second (see
    # the refresher): the round would time the gap, not the push.
    wait = last_push + PUSH_GAP - time.monotonic()
    if wait > 0:
        await asyncio.sleep(wait)
    bl.commit(repo, {"orders.yml": "orders:\n  round: %d\n" % (round_no + 1)}, "round")
    waits = [asyncio.ensure_future(w.wait_answer(r)) for r, _ in conns]
    pushed = time.monotonic()
    await w.request(port, "/actuator/refresh", "POST")
    answered = time.monotonic()
    answers = await asyncio.gather(*waits)
    for _, writer in conns:
        writer.close()
    if {status for _, status in answers} != {b"200"}:
        raise SystemExit("unexpected almanac answers")
    return [(t - pushed) * 1000 for t, _ in answers], (answered - pushed) * 1000, pushed


WEBHOOK_SECRET = b"bench-webhook-secret"
PUSH_GAP = 1.1  # seconds between requested fetches on one server (see the refresher)


def github_push_body():
    return json.dumps({"ref": "refs/heads/main", "commits": [
        {"id": "1" * 40, "added": [], "modified": ["orders.yml"], "removed": []}]}).encode()


async def signed_monitor(port):
    body = github_push_body()
    sig = hmac.new(WEBHOOK_SECRET, body, hashlib.sha256).hexdigest()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /monitor HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                 b"X-GitHub-Event: push\r\nX-Hub-Signature-256: sha256=%s\r\n"
                 b"Content-Length: %d\r\n\r\n" % (sig.encode(), len(body)) + body)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise SystemExit("webhook refused: %r" % head)
    writer.close()


async def monitor_round(push_port, watch_port, repo, count, round_no, last_push):
    """Watchers on watch_port, signed webhook to push_port (the same server or replica A)."""
    conns = await w.park_on_current(watch_port, count)
    # Before the commit: a fetch still due from the last push must not find it first.
    wait = last_push + PUSH_GAP - time.monotonic()
    if wait > 0:
        await asyncio.sleep(wait)
    bl.commit(repo, {"orders.yml": "orders:\n  round: %d\n" % (round_no + 1)}, "round")
    waits = [asyncio.ensure_future(w.wait_answer(r)) for r, _ in conns]
    pushed = time.monotonic()
    await signed_monitor(push_port)
    answered = time.monotonic()
    answers = await asyncio.gather(*waits)
    for _, writer in conns:
        writer.close()
    if {status for _, status in answers} != {b"200"}:
        raise SystemExit("unexpected almanac answers: %r" % {s for _, s in answers})
    return [(t - pushed) * 1000 for t, _ in answers], (answered - pushed) * 1000, pushed


async def etcd_watch(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = json.dumps({"create_request": {"key": bl.b64(KEY)}}).encode()
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
    return time.monotonic()


async def etcd_round(port, count, round_no):
    conns = []
    for i in range(0, count, 200):
        conns += await asyncio.gather(*[etcd_watch(port) for _ in range(min(200, count - i))])
    waits = [asyncio.ensure_future(etcd_event(r)) for r, _ in conns]
    body = json.dumps({"key": bl.b64(KEY), "value": bl.b64(b"round: %d" % round_no)}).encode()
    pushed = time.monotonic()
    await post(port, "/v3/kv/put", body)
    answered = time.monotonic()
    arrivals = await asyncio.gather(*waits)
    for _, writer in conns:
        writer.close()
    return [(t - pushed) * 1000 for t in arrivals], (answered - pushed) * 1000


async def post(port, path, body):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % (path.encode(), len(body)) + body)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise SystemExit("etcd put failed: %r" % head)
    writer.close()
    return head, b""


async def run(args, almanac_port, repo, etcd_port, extra=()):
    """extra: (row name, push port, watch port, repo) for the webhook rows."""
    await w.request(almanac_port, "/orders/dev")
    results = {}
    round_no = 0
    last_push = {}
    for _ in range(args.rounds):
        for count in args.watchers:
            lat, push, at = await almanac_round(almanac_port, repo, count, round_no,
                                                last_push.get(almanac_port, 0))
            last_push[almanac_port] = at
            round_no += 1
            results.setdefault(("almanac-server", count), ([], []))
            results[("almanac-server", count)][0].extend(lat)
            results[("almanac-server", count)][1].append(push)
            for name, push_port, watch_port, xrepo in extra:
                lat, push, at = await monitor_round(push_port, watch_port, xrepo, count, round_no,
                                                    last_push.get(push_port, 0))
                last_push[push_port] = at
                round_no += 1
                results.setdefault((name, count), ([], []))
                results[(name, count)][0].extend(lat)
                results[(name, count)][1].append(push)
            if etcd_port:
                lat, push = await etcd_round(etcd_port, count, round_no)
                results.setdefault(("etcd 3.4 gateway", count), ([], []))
                results[("etcd 3.4 gateway", count)][0].extend(lat)
                results[("etcd 3.4 gateway", count)][1].append(push)
    return results


def start_webhook_rows(args, binary, work, procs):
    """Servers for the webhook rows, each set on a repository of its own."""
    count = max(args.watchers)
    secret = os.path.join(work, "webhook-secret")
    with open(secret, "wb") as f:
        f.write(WEBHOOK_SECRET)
    with open(os.path.join(work, "peer-secret"), "wb") as f:
        f.write(b"bench-peer-secret")
    rows = []

    def repo_for(name):
        path = os.path.join(work, name)
        bl.make_repo(path, {"orders.yml": "orders:\n  round: 0\n", "application.yml": "a: 1\n"})
        return path

    def server(name, repo, flags):
        d = os.path.join(work, name)
        os.makedirs(d)
        s = w.ServerProcess(binary, repo, d, count, ["--webhook-secret", secret, *flags])
        procs.append(s)
        return s

    repo = repo_for("remote-monitor")
    single = server("monitor", repo, [])
    rows.append(("almanac, signed POST /monitor", single.port, single.port, repo))

    repo = repo_for("remote-peers")
    ports = [bl.free_port(), bl.free_port()]
    peers = ",".join("127.0.0.1:%d" % p for p in ports)
    flags = ["--peers", peers, "--peer-secret", os.path.join(work, "peer-secret")]
    a = server("peers-a", repo, ["--port", str(ports[0]), *flags])
    b = server("peers-b", repo, ["--port", str(ports[1]), *flags])
    rows.append(("almanac replica B, peers", a.port, b.port, repo))

    if args.bus_url:
        repo = repo_for("remote-bus")
        os.environ["ALMANAC_BUS_AMQP_URL"] = args.bus_url
        try:
            a = server("bus-a", repo, ["--bus-destination", "benchBus"])
            b = server("bus-b", repo, ["--bus-destination", "benchBus"])
        finally:
            del os.environ["ALMANAC_BUS_AMQP_URL"]
        # Both must be subscribed before the first push.
        for s in (a, b):
            deadline = time.monotonic() + 30
            while True:
                _, _, body = bl.http(s.port, "/actuator/health")
                if json.loads(body)["components"]["bus"]["status"] == "UP":
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("bench: the bus did not connect: %s" % body)
                time.sleep(0.1)
        rows.append(("almanac replica B, bus", a.port, b.port, repo))
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", help="almanac-server binary (or ALMANAC_SERVER_BIN)")
    p.add_argument("--watchers", default="1,100,1000", help="comma-separated watcher counts")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--no-etcd", action="store_true")
    p.add_argument("--no-replicas", action="store_true",
                   help="skip the signed /monitor and replica rows")
    p.add_argument("--bus-url", help="a RabbitMQ amqp:// URL: adds the 'replica B, bus' row "
                   "(passed to the servers through ALMANAC_BUS_AMQP_URL)")
    p.add_argument("--smoke", action="store_true", help="tiny run that only checks the table")
    args = p.parse_args()
    if args.smoke:
        args.watchers, args.rounds = "1,5", 1
    args.watchers = [int(x) for x in args.watchers.split(",")]
    binary = bl.server_binary(args.server)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = max(args.watchers) * 3 + 300
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, need), hard))

    work = bl.workdir()
    procs = []
    try:
        repo = os.path.join(work, "remote")
        bl.make_repo(repo, {"orders.yml": "orders:\n  round: 0\n", "application.yml": "a: 1\n"})
        server = w.ServerProcess(binary, repo, work, max(args.watchers))
        procs.append(server)
        etcd = None
        if not args.no_etcd:
            etcd = bl.Etcd(work)
            procs.append(etcd)
            etcd.put(KEY, b"round: start")
        extra = []
        if not args.no_replicas:
            extra = start_webhook_rows(args, binary, work, procs)
        load_before = os.getloadavg()[0]
        results = asyncio.run(run(args, server.port, repo, etcd.port if etcd else None, extra))
    finally:
        for proc in procs:
            proc.stop()
        bl.cleanup(work)

    rows = []
    names = ["almanac-server", "etcd 3.4 gateway", "almanac, signed POST /monitor",
             "almanac replica B, peers", "almanac replica B, bus"]
    for count in args.watchers:
        for name in names:
            if (name, count) not in results:
                continue
            lat, push = results[(name, count)]
            rows.append((name, count, "%.1f ms" % bl.percentile(push, 50),
                         bl.fmt_ms(bl.percentile(lat, 50)), bl.fmt_ms(bl.percentile(lat, 99)),
                         bl.fmt_ms(max(lat))))
    print("### Push -> watcher woken, %d round(s) per row, alternating" % args.rounds)
    print()
    print("%s; 1-minute load average before %.2f, after %.2f"
          % (bl.machine_line(), load_before, os.getloadavg()[0]))
    print()
    print(bl.table(["server", "watchers", "push answered (p50)", "woken p50", "woken p99",
                    "woken max"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
