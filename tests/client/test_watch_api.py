"""alm_watch through its public API (tests/client/probe/watch_probe.c) against the scripted
stub: the callback's diff and old/new versions, alm_watch_current from inside the callback, the
heartbeat turning the watch stale during an outage and fresh again after it, one poll per
window against a server that does not hold requests (counted, not timed), and a prompt stop.
WatchApiLoopTest runs the same scenarios through the event-loop interface (alm_watch_new, a poll
loop on a thread of the probe's) and checks every callback ran on that loop's thread.
"""

import json
import os
import select
import shutil
import subprocess
import tempfile
import unittest

from clitest import Stub, environment

PROBE_BIN = os.environ.get("ALMANAC_WATCH_PROBE_BIN", "")

V1 = environment(version="v1", sources=[
    {"name": "orders-prod.yml", "source": {"a": "1", "b": 2, "list[0]": "x", "list[1]": "y"}},
    {"name": "orders.yml", "source": {"c": True}}])
V2 = environment(version="v2", sources=[
    {"name": "orders-prod.yml", "source": {"a": "1", "b": "2", "list[0]": "x", "d": "new"}},
    {"name": "orders.yml", "source": {}}])


class Probe:
    loop = False  # WatchApiLoopTest: the same scenarios through alm_watch_new and a loop thread

    def __init__(self, url, heartbeat_ms=300, poll_s=1, cache=None, manual=False,
                 watch_defaults=False):
        args = [PROBE_BIN, url, "orders", "prod", str(heartbeat_ms), str(poll_s)]
        if cache:
            args.append(cache)
        env = dict(os.environ)
        env.pop("ALMANAC_PROBE_MANUAL", None)
        if manual:
            env["ALMANAC_PROBE_MANUAL"] = "1"
        env.pop("ALMANAC_PROBE_LOOP", None)
        if Probe.loop:
            env["ALMANAC_PROBE_LOOP"] = "1"
        env.pop("ALMANAC_PROBE_WATCH_DEFAULTS", None)
        if watch_defaults:
            env["ALMANAC_PROBE_WATCH_DEFAULTS"] = "1"
        self.stopped = False
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def line(self, timeout=30):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise AssertionError("watch_probe said nothing within %ss" % timeout)
        return self.proc.stdout.readline().decode().rstrip("\n")

    def ask(self, command):
        if command == "stop" and Probe.loop and not self.stopped:
            # Before the loop ends: every callback so far ran on the loop's thread.
            threads = self.ask("threads")
            if threads != "threads ok":
                raise AssertionError(threads)
        self.stopped = self.stopped or command == "stop"
        self.proc.stdin.write((command + "\n").encode())
        self.proc.stdin.flush()
        return self.line()

    def log(self):
        """The log lines written so far; only once the probe has exited."""
        return self.proc.stderr.read().decode()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            f.close()


class WatchApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not PROBE_BIN or not os.access(PROBE_BIN, os.X_OK):
            raise unittest.SkipTest("ALMANAC_WATCH_PROBE_BIN is not set")

    def setUp(self):
        self.stub = Stub().__enter__()
        self.probe = None

    def tearDown(self):
        if self.probe is not None:
            self.probe.close()
        self.stub.__exit__(None, None, None)

    def test_change_outage_and_stop(self):
        self.stub.script((200, {"ETag": '"e1"'}, V1), (304, {"ETag": '"e1"'}, ""))
        self.probe = Probe(self.stub.url)
        self.assertEqual(self.probe.line(), "ready")
        self.assertEqual(self.probe.ask("fresh"), "fresh")
        self.assertEqual(self.probe.ask("current"), "current v1")

        # An outage: no answer within the 300 ms heartbeat makes the watch stale...
        self.stub.script((503, {}, ""))
        self.assertEqual(self.probe.ask("stale"), "stale")
        # ...and the first answer afterwards makes it fresh again.
        self.stub.script((304, {"ETag": '"e1"'}, ""))
        self.assertEqual(self.probe.ask("fresh"), "fresh")

        self.stub.script((200, {"ETag": '"e2"'}, V2), (304, {"ETag": '"e2"'}, ""))
        kind, _, payload = self.probe.ask("change").partition(" ")
        self.assertEqual(kind, "change")
        self.assertEqual(json.loads(payload), {"added": ["d"], "changed": ["b"],
                                               "removed": ["list[1]", "c"], "old": "v1",
                                               "new": "v2"})
        self.assertEqual(self.probe.ask("current"), "current v2")
        self.assertEqual(self.probe.ask("stop"), "stopped")
        self.assertEqual(self.probe.proc.wait(timeout=10), 0)
        # Every poll carried the ETag the watch held at the time.
        for path, _ in self.stub.requests[1:]:
            self.assertRegex(path, r"\?watch=e[12]&timeout=1$")

    def test_one_poll_per_window_from_a_server_that_does_not_hold_requests(self):
        # The stub answers every poll at once with 304, as a server that ignores ?watch= does.
        # With an hour's window the watch must then wait, not poll again: after the boot fetch
        # and one poll, the stub sees nothing more until the watch is stopped. Counting
        # requests around known events (no clock): a watch that looped would have polled
        # again during the round trip to the probe below, having nothing else to do.
        self.stub.script((200, {"ETag": '"e1"'}, V1), (304, {"ETag": '"e1"'}, ""))
        self.probe = Probe(self.stub.url, heartbeat_ms=3600000, poll_s=3600)
        self.assertEqual(self.probe.line(), "ready")
        self.stub.wait_for_requests(2)
        self.assertEqual(self.probe.ask("current"), "current v1")
        self.assertEqual(self.probe.ask("fresh"), "fresh")
        self.assertEqual(self.probe.ask("stop"), "stopped")
        self.assertEqual(self.probe.proc.wait(timeout=10), 0)
        self.assertEqual([path for path, _ in self.stub.requests],
                         ["/orders/prod", "/orders/prod?watch=e1&timeout=3600"])

    def test_manual_dispatch_runs_the_callback_on_the_caller_thread(self):
        self.stub.script((200, {"ETag": '"e1"'}, V1), (200, {"ETag": '"e2"'}, V2),
                         (304, {"ETag": '"e2"'}, ""))
        self.probe = Probe(self.stub.url, manual=True)
        self.assertEqual(self.probe.line(), "ready")
        kind, _, payload = self.probe.ask("change").partition(" ")
        self.assertEqual(kind, "change")
        self.assertEqual(json.loads(payload)["new"], "v2")  # fails on "(wrong thread)"
        self.assertEqual(self.probe.ask("current"), "current v2")
        self.assertEqual(self.probe.ask("stop"), "stopped")
        self.assertEqual(self.probe.proc.wait(timeout=10), 0)

    def test_booted_from_cache_is_stale_until_a_server_answers(self):
        tmp = tempfile.mkdtemp(prefix="almanac-watch-")
        self.addCleanup(shutil.rmtree, tmp, True)
        cache = os.path.join(tmp, "cache.json")
        self.stub.script((200, {"ETag": '"e1"'}, V1), (304, {"ETag": '"e1"'}, ""))
        self.probe = Probe(self.stub.url, heartbeat_ms=60000, cache=cache)
        self.assertEqual(self.probe.line(), "ready")
        self.assertEqual(self.probe.ask("stalecfg"), "stalecfg 0")
        self.assertEqual(self.probe.ask("stop"), "stopped")
        self.probe.close()

        # The server in trouble at boot: the cache stands in, and the watch says stale even
        # though the heartbeat deadline (a minute) is far away...
        self.stub.script((503, {}, ""))
        self.probe = Probe(self.stub.url, heartbeat_ms=60000, cache=cache)
        self.assertEqual(self.probe.line(), "ready")
        self.assertEqual(self.probe.ask("stalecfg"), "stalecfg 1")
        self.assertEqual(self.probe.ask("stale"), "stale")
        self.assertEqual(self.probe.ask("current"), "current v1")
        # ...until a server answers.
        self.stub.script((304, {"ETag": '"e1"'}, ""))
        self.assertEqual(self.probe.ask("fresh"), "fresh")
        self.assertEqual(self.probe.ask("stop"), "stopped")

    def test_manual_dispatch_keeps_current_and_every_callback_for_the_dispatch(self):
        # A change has arrived (the descriptor is readable) but is not dispatched yet: the
        # current snapshot must still be the one on_change last told the program about.
        self.stub.script((200, {"ETag": '"e1"'}, V1), (200, {"ETag": '"e2"'}, V2),
                         (304, {"ETag": '"e2"'}, ""))
        self.probe = Probe(self.stub.url, heartbeat_ms=60000, manual=True)
        self.assertEqual(self.probe.line(), "ready")
        self.assertEqual(self.probe.ask("pending"), "pending v1")
        kind, _, payload = self.probe.ask("change").partition(" ")
        self.assertEqual(kind, "change")
        self.assertEqual(json.loads(payload)["new"], "v2")
        self.assertEqual(self.probe.ask("current"), "current v2")
        # An outage and its end: status calls and the watch's debug log lines all arrive
        # through the dispatch, on the main thread.
        self.stub.script((503, {}, ""))
        self.assertEqual(self.probe.ask("stale"), "stale")
        self.stub.script((304, {"ETag": '"e2"'}, ""))
        self.assertEqual(self.probe.ask("waitfresh"), "waitfresh 0")
        self.assertEqual(self.probe.ask("statuses 2"), "statuses unreachable,fresh")
        self.assertEqual(self.probe.ask("threads"), "threads ok")
        self.assertEqual(self.probe.ask("stop"), "stopped")

    def test_status_events_around_an_outage_and_a_refusal(self):
        self.stub.script((200, {"ETag": '"e1"'}, V1), (304, {"ETag": '"e1"'}, ""))
        self.probe = Probe(self.stub.url, heartbeat_ms=60000)
        self.assertEqual(self.probe.line(), "ready")
        self.assertEqual(self.probe.ask("waitfresh"), "waitfresh 0")
        self.stub.script((503, {}, ""))
        self.assertEqual(self.probe.ask("stale"), "stale")
        # Fresh again on the first answer, not a poll timeout later: the request after a
        # failure asks at once (no ?watch=).
        self.stub.script((304, {"ETag": '"e1"'}, ""))
        self.assertEqual(self.probe.ask("waitfresh"), "waitfresh 0")
        self.assertNotIn("watch=", self.stub.requests[0][0])
        self.stub.script((401, {}, ""))
        self.assertEqual(self.probe.ask("stale"), "stale")
        self.stub.script((304, {"ETag": '"e1"'}, ""))
        self.assertEqual(self.probe.ask("waitfresh"), "waitfresh 0")
        self.assertEqual(self.probe.ask("statuses 4"),
                         "statuses unreachable,fresh,auth_refused,fresh")
        self.assertEqual(self.probe.ask("stop"), "stopped")

    def test_retry_after_is_honoured_by_the_watch(self):
        self.stub.script((200, {"ETag": '"e1"'}, V1), (304, {"ETag": '"e1"'}, ""))
        self.probe = Probe(self.stub.url, heartbeat_ms=60000)
        self.assertEqual(self.probe.line(), "ready")
        self.assertEqual(self.probe.ask("waitfresh"), "waitfresh 0")
        self.stub.script((503, {"Retry-After": "1"}, ""))
        self.assertEqual(self.probe.ask("stale"), "stale")
        self.stub.script((304, {"ETag": '"e1"'}, ""))
        self.assertEqual(self.probe.ask("waitfresh"), "waitfresh 0")
        self.assertEqual(self.probe.ask("stop"), "stopped")
        self.probe.proc.wait(timeout=30)
        log = self.probe.log()
        self.assertRegex(log, r"watch: server unreachable: .*503.*; retrying with backoff up to "
                              r"0 s \(the server's Retry-After honoured\)")

    def test_the_watch_has_its_own_retry_policy(self):
        # The boot retries within 200 ms; the watch, left to its defaults, backs off up to five
        # minutes (and says so when the outage begins), not at the boot's pace.
        self.stub.script((200, {"ETag": '"e1"'}, V1), (304, {"ETag": '"e1"'}, ""))
        self.probe = Probe(self.stub.url, heartbeat_ms=60000, watch_defaults=True)
        self.assertEqual(self.probe.line(), "ready")
        self.assertEqual(self.probe.ask("waitfresh"), "waitfresh 0")
        self.stub.script((503, {}, ""))
        self.assertEqual(self.probe.ask("stale"), "stale")
        self.assertEqual(self.probe.ask("stop"), "stopped")
        self.probe.proc.wait(timeout=30)
        self.assertRegex(self.probe.log(), r"watch: server unreachable: .*503.*; retrying with "
                                           r"backoff up to 300 s\n")


class WatchApiLoopTest(WatchApiTest):
    """Every scenario above but manual dispatch (which alm_watch_new refuses, having no use for
    it) with the watch driven by the probe's own poll loop: alm_watch_fd, alm_watch_timeout_ms
    and alm_watch_perform on a thread of the probe's, every callback checked to run there."""

    def setUp(self):
        super().setUp()
        Probe.loop = True

    def tearDown(self):
        Probe.loop = False
        if self.probe is not None and not self.probe.stopped:
            self.assertEqual(self.probe.ask("threads"), "threads ok")
        super().tearDown()

    def test_manual_dispatch_runs_the_callback_on_the_caller_thread(self):
        self.skipTest("manual dispatch is for alm_watch_start only")

    def test_manual_dispatch_keeps_current_and_every_callback_for_the_dispatch(self):
        self.skipTest("manual dispatch is for alm_watch_start only")

    def test_change_reaches_the_loop_thread(self):
        self.stub.script((200, {"ETag": '"e1"'}, V1), (200, {"ETag": '"e2"'}, V2),
                         (304, {"ETag": '"e2"'}, ""))
        self.probe = Probe(self.stub.url)
        self.assertEqual(self.probe.line(), "ready")
        kind, _, payload = self.probe.ask("change").partition(" ")
        self.assertEqual(kind, "change")
        self.assertEqual(json.loads(payload)["new"], "v2")  # fails on "(wrong thread)"
        self.assertEqual(self.probe.ask("threads"), "threads ok")
        self.assertEqual(self.probe.ask("stop"), "stopped")
        self.assertEqual(self.probe.proc.wait(timeout=10), 0)


if __name__ == "__main__":
    unittest.main()
