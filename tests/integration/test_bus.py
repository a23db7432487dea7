"""Spring Cloud Bus over a real RabbitMQ: rabbitmq-server (Debian's) started by this test as its
own process (its own node name, ports, data, log and Erlang cookie; its own epmd on a free
port), stopped by PID. A raw AMQP consumer (pika, Debian's python3-pika) bound to the exchange
checks what Almanac publishes byte for byte, and publishes events as other participants do.

Skipped, with the reason, where RabbitMQ or pika is missing or the broker cannot start.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

from almanac_harness import ServerTestCase, wait_until

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
START_DEADLINE = 120.0  # a loaded machine boots Erlang slowly

try:
    import pika
except ImportError:  # Debian's package lives outside a non-Debian interpreter's path
    sys.path.append("/usr/lib/python3/dist-packages")
    try:
        import pika
    except ImportError:
        pika = None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Broker:
    """One RabbitMQ node with everything of its own under workdir."""

    def __init__(self, workdir):
        self.dir = tempfile.mkdtemp(prefix="rabbitmq-", dir=workdir)
        self.port = free_port()
        self.epmd_port = free_port()
        home = os.path.join(self.dir, "home")
        for sub in ("home", "mnesia", "log"):
            os.makedirs(os.path.join(self.dir, sub))
        open(os.path.join(self.dir, "enabled_plugins"), "w").close()
        open(os.path.join(self.dir, "rabbitmq.conf"), "w").close()
        self.env = dict(os.environ)
        self.env.update({
            "HOME": home,  # the Erlang cookie is created here, fresh
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_NODENAME": "almanac-itest-%s@localhost" % uuid.uuid4().hex[:8],
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": os.path.join(self.dir, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(self.dir, "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(self.dir, "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": os.path.join(self.dir, "rabbitmq"),
            "RABBITMQ_CONF_ENV_FILE": os.path.join(self.dir, "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": os.path.join(self.dir, "pid"),
        })
        self.epmd = None
        self.proc = None
        self.log_path = os.path.join(self.dir, "stdout.log")

    def start(self):
        # Our own epmd, in the foreground, so that it is ours to stop.
        self.epmd = subprocess.Popen(["epmd", "-port", str(self.epmd_port)], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.launch()

    def launch(self):
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen([RABBITMQ_SERVER], env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, start_new_session=True)
        finally:
            log.close()
        end = time.monotonic() + START_DEADLINE
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise unittest.SkipTest("rabbitmq-server exited with %s: %s"
                                        % (self.proc.returncode, self.log_tail()))
            try:
                pika.BlockingConnection(self.params()).close()
                return
            except Exception:
                time.sleep(0.2)
        self.stop_node()
        raise unittest.SkipTest("rabbitmq-server did not accept AMQP within %ss" % START_DEADLINE)

    def params(self):
        return pika.ConnectionParameters("127.0.0.1", self.port, connection_attempts=1,
                                         socket_timeout=5)

    @property
    def url(self):
        return "amqp://guest:guest@127.0.0.1:%d/" % self.port

    def log_tail(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-2000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop_node(self):
        """Stops the node (the Erlang VM and the helpers of its process group) by its PID."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        self.stop_node()
        if self.epmd is not None and self.epmd.poll() is None:
            self.epmd.terminate()
            self.epmd.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


class Consumer:
    """A raw AMQP consumer on its own exclusive queue bound to the exchange with '#'."""

    def __init__(self, broker, exchange="springCloudBus"):
        self.conn = pika.BlockingConnection(broker.params())
        self.ch = self.conn.channel()
        # Declared with Spring's flags: any other would be refused (406) once Almanac declared it.
        self.ch.exchange_declare(exchange, "topic", durable=True, auto_delete=False)
        self.queue = self.ch.queue_declare("", exclusive=True, auto_delete=True).method.queue
        self.ch.queue_bind(self.queue, exchange, "#")
        self.exchange = exchange

    def messages(self, until, deadline=20.0):
        """Collects (method, properties, body) until until(list) is true or the deadline."""
        got = []
        end = time.monotonic() + deadline
        while time.monotonic() < end and not until(got):
            m, props, body = self.ch.basic_get(self.queue, auto_ack=True)
            if m is None:
                self.conn.sleep(0.05)
            else:
                got.append((m, props, body))
        return got

    def publish(self, event, content_type="application/json"):
        self.ch.basic_publish(self.exchange, self.exchange, json.dumps(event).encode(),
                              pika.BasicProperties(content_type=content_type, delivery_mode=2))

    def close(self):
        try:
            self.conn.close()
        except Exception:
            pass


def refresh_event(origin, destination="**", type_="RefreshRemoteApplicationEvent"):
    return {"type": type_, "timestamp": int(time.time() * 1000), "originService": origin,
            "destinationService": destination, "id": str(uuid.uuid4())}


def metric(server, result):
    r = server.get("/metrics")
    for line in r.text.splitlines():
        if line.startswith('almanac_bus_events_total{result="%s"}' % result):
            return int(line.rsplit(" ", 1)[1])
    return None


class BusTest(ServerTestCase):

    @classmethod
    def setUpServers(cls):
        if pika is None:
            raise unittest.SkipTest("no AMQP client for the test: install python3-pika")
        if not os.access(RABBITMQ_SERVER, os.X_OK) or shutil.which("epmd") is None:
            raise unittest.SkipTest("rabbitmq-server is not installed (scripts/install-deps --test)")
        cls.broker = Broker(cls.tmp)
        try:
            cls.broker.start()
        except BaseException:
            cls.broker.stop()
            raise
        cls.repo = cls.make_repo()
        cls.repo.commit({"application.yml": "shared: 1\n", "orders.yml": "color: red\n",
                         "orders-dev.yml": "dev: 1\n", "payments.yml": "pay: 1\n"}, "first")
        env = {"ALMANAC_BUS_AMQP_URL": cls.broker.url}
        cls.a = cls.start_server(cls.repo.uri, refresh_interval=0, env=env,
                                 extra_args=["--bus-id", "almanac:a:1"])
        cls.b = cls.start_server(cls.repo.uri, refresh_interval=0, env=env,
                                 extra_args=["--bus-id", "almanac:b:2"])
        # C alone on an exchange of its own: only this test's events reach it.
        cls.c = cls.start_server(cls.repo.uri, refresh_interval=0, env=env,
                                 extra_args=["--bus-id", "almanac:c:3",
                                             "--bus-destination", "itestAlone"])
        for s in (cls.a, cls.b, cls.c):
            if not s.wait_for_log(r"\[bus\] connected to", 30):
                raise AssertionError("no bus connection:\n" + s.log_tail())
        cls.lock = threading.Lock()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            if getattr(cls, "broker", None) is not None:
                cls.broker.stop()

    def setUp(self):
        self.consumer = Consumer(self.broker)

    def tearDown(self):
        self.consumer.close()

    @staticmethod
    def from_a(messages):
        events = [json.loads(b) for _, _, b in messages]
        return [e for e in events if e["originService"] == "almanac:a:1"]

    def etag(self, server, path="/orders/dev"):
        r = server.get(path)
        self.assertEqual(r.status, 200, r)
        return r.header("etag")

    def test_a_push_to_a_wakes_watchers_on_b(self):
        with self.lock:
            tag = self.etag(self.b)
            commit = self.repo.commit({"orders.yml": "color: bus\n"}, "bus")
            self.a.refresh()  # A fetches; B hears of it only through the broker (no polling)
            w = self.b.get("/orders/dev?watch=%s&timeout=20" % tag)
            self.assertEqual(w.status, 200, w)
            self.assertEqual(w.json()["version"], commit)

    def test_a_replica_that_fetched_for_an_event_does_not_announce_it_again(self):
        with self.lock:
            tag = self.etag(self.b)
            published_by_b = metric(self.b, "published")
            received_by_b = metric(self.b, "received")
            commit = self.repo.commit({"orders.yml": "color: echo\n"}, "echo")
            self.a.refresh()
            w = self.b.get("/orders/dev?watch=%s&timeout=20" % tag)
            self.assertEqual(w.status, 200, w)
            self.assertEqual(w.json()["version"], commit)
            # A marker event after B's fetch: once B has taken it, anything B had to publish
            # for that fetch has been published (the bus thread publishes before it reads).
            self.consumer.publish(refresh_event("spring:1:marker", "**"))
            self.assertTrue(wait_until(lambda: metric(self.b, "received") >= received_by_b + 2,
                                       20), "B never took the marker")
            # Every node on the exchange had A's event: B announcing its own fetch again made
            # A fetch once more and pushed A's next push into the refresher's one-second gap.
            self.assertEqual(metric(self.b, "published"), published_by_b)

    def test_events_are_springs_exactly(self):
        with self.lock:
            self.repo.commit({"orders-dev.yml": "dev: 2\n"}, "orders-dev")
            self.a.refresh()
            want = {"orders-dev:**", "orders:**"}
            got = self.consumer.messages(
                lambda ms: want <= {json.loads(b)["destinationService"] for _, _, b in ms
                                    if json.loads(b)["originService"] == "almanac:a:1"})
            from_a = [(m, p, json.loads(b)) for m, p, b in got
                      if json.loads(b)["originService"] == "almanac:a:1"]
            self.assertEqual({e["destinationService"] for _, _, e in from_a}, want, got)
            for m, props, event in from_a:
                self.assertEqual(m.exchange, "springCloudBus")
                self.assertEqual(m.routing_key, "springCloudBus")
                self.assertEqual(props.content_type, "application/json")
                self.assertEqual(props.delivery_mode, 2)
                self.assertEqual(sorted(event), sorted(["type", "timestamp", "originService",
                                                        "destinationService", "id"]))
                self.assertEqual(event["type"], "RefreshRemoteApplicationEvent")
                self.assertIsInstance(event["timestamp"], int)
                self.assertEqual(str(uuid.UUID(event["id"])), event["id"])
            self.assertGreaterEqual(metric(self.a, "published"), 2)

    def test_application_yml_goes_to_everyone(self):
        with self.lock:
            self.repo.commit({"application.yml": "shared: 2\n"}, "shared")
            self.a.refresh()
            got = self.consumer.messages(
                lambda ms: any(json.loads(b)["destinationService"] == "*:**" for _, _, b in ms))
            self.assertIn("*:**", [json.loads(b)["destinationService"] for _, _, b in got])

    def test_foreign_event_fetches_own_and_acks_do_not(self):
        with self.lock:
            c = self.c
            consumer = Consumer(self.broker, "itestAlone")
            try:
                tag = self.etag(c, "/payments/default")
                received = metric(c, "received")
                commit = self.repo.commit({"payments.yml": "pay: 2\n"}, "payments")
                # Its own event, an ack, an unknown type and a wrong content type: none of them
                # may fetch...
                consumer.publish(refresh_event("almanac:c:3"))
                consumer.publish(refresh_event("spring:1:x", type_="AckRemoteApplicationEvent"))
                consumer.publish(refresh_event("spring:1:x", type_="SomethingElse"))
                consumer.publish(refresh_event("spring:1:x"), content_type="text/plain")
                w = c.get("/payments/default?watch=%s&timeout=2" % tag)
                self.assertEqual(w.status, 304, w)
                self.assertEqual(metric(c, "received"), received)
                # ...then a refresh event from someone else (a Spring application) does.
                consumer.publish(refresh_event("orders:8080:3f9a", "**"))
                w = c.get("/payments/default?watch=%s&timeout=20" % tag)
                self.assertEqual(w.status, 200, w)
                self.assertEqual(w.json()["version"], commit)
                self.assertEqual(metric(c, "received"), received + 1)
            finally:
                consumer.close()

    def test_busrefresh_endpoint_publishes(self):
        with self.lock:
            r = self.a.post("/actuator/busrefresh/orders", b"")
            self.assertEqual(r.status, 204, r)
            r = self.a.post("/actuator/busrefresh", b"")
            self.assertEqual(r.status, 204, r)
            got = self.from_a(self.consumer.messages(lambda ms: len(self.from_a(ms)) >= 2))
            self.assertEqual([e["destinationService"] for e in got], ["orders:**", "**"], got)

    def test_health_shows_the_bus(self):
        h = self.a.get("/actuator/health").json()
        self.assertEqual(h["status"], "UP")
        self.assertEqual(h["components"]["bus"]["status"], "UP", h)
        self.assertEqual(h["components"]["bus"]["details"]["destination"], "springCloudBus")

    def test_z_broker_stopped_mid_run(self):
        # Runs last (z): it takes the broker down and brings it back.
        with self.lock:
            self.consumer.close()
            self.broker.stop_node()
            try:
                h = wait_until(lambda: self.a.get("/actuator/health").json()["components"]["bus"]
                               ["status"] == "DOWN" and self.a.get("/actuator/health").json(), 30)
                self.assertTrue(h, "health never showed the bus DOWN")
                self.assertEqual(h["status"], "UP")
                self.assertTrue(h["components"]["bus"]["details"].get("lastError"), h)
                # Reads and refreshes go on; events for the outage count as failed.
                failed = metric(self.a, "failed")
                self.assertEqual(self.a.get("/orders/dev").status, 200)
                commit = self.repo.commit({"orders.yml": "color: outage\n"}, "outage")
                self.assertEqual(self.a.refresh().json()["version"], commit)
                self.assertTrue(wait_until(lambda: metric(self.a, "failed") > failed, 10))
            finally:
                self.broker.launch()
            self.assertTrue(wait_until(
                lambda: self.a.get("/actuator/health").json()["components"]["bus"]["status"]
                == "UP", 60), self.a.log_tail())
            self.consumer = Consumer(self.broker)
            self.a.post("/actuator/busrefresh/payments", b"")
            got = self.from_a(self.consumer.messages(lambda ms: len(self.from_a(ms)) >= 1))
            self.assertEqual([e["destinationService"] for e in got], ["payments:**"])


if __name__ == "__main__":
    unittest.main()
