"""The bundled config-repo-sample, served with dir:, answers what its README promises (and the
README's and the API reference's example requests keep working)."""

import os
import re
import unittest

from almanac_harness import SOURCE_DIR, ServerTestCase, dir_relative_names, source

SAMPLE = os.path.join(SOURCE_DIR, "config-repo-sample")


class SampleRepoTest(ServerTestCase):

    @classmethod
    def setUpServers(cls):
        cls.server = cls.start_server("dir:" + SAMPLE)

    def env(self, path):
        r = self.server.get(path)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def names(self, path):
        return dir_relative_names(self.env(path), SAMPLE)

    def test_orders(self):
        self.assertEqual(self.names("/orders/dev"),
                         ["orders-dev.yml", "application-dev.yml", "orders.yml", "application.yml"])
        self.assertEqual(self.names("/orders/stage"),
                         ["orders-stage.yml", "application-stage.yml", "orders.yml",
                          "application.yml"])

    def test_orders_prod_documents(self):
        self.assertEqual(self.names("/orders/prod,us"),
                         ["orders-prod.yml (document #1)", "orders-prod.yml (document #0)",
                          "application-prod.yml", "orders.yml", "application.yml"])
        self.assertEqual(self.names("/orders/prod"),
                         ["orders-prod.yml (document #2)", "orders-prod.yml (document #0)",
                          "application-prod.yml", "orders.yml", "application.yml"])

    def test_orders_values(self):
        env = self.env("/orders/dev")
        orders = source(env, "orders.yml")
        self.assertEqual(orders["server.port"], 8081)
        self.assertIs(orders["orders.allow-backorder"], False)
        self.assertEqual(orders["orders.tax-rate"], 0.21)
        self.assertEqual(orders["orders.warehouses[1].city"], "Berlin")
        self.assertEqual(orders["orders.notifications.channels[0]"], "email")
        self.assertIs(source(env, "orders-dev.yml")["orders.allow-backorder"], True)
        # the Environment keeps placeholders for the client to resolve
        self.assertEqual(orders["orders.datasource.url"],
                         "jdbc:postgresql://${database.host}:${database.port}/orders")

    def test_payments_properties_strings(self):
        self.assertEqual(self.names("/payments/stage"),
                         ["payments-stage.yml", "application-stage.yml", "payments.properties",
                          "application.yml"])
        props = source(self.env("/payments/stage"), "payments.properties")
        self.assertEqual(props["server.port"], "8082")
        self.assertEqual(props["payments.fraud.enabled"], "true")
        self.assertEqual(props["payments.currencies[2]"], "GBP")

    def test_gateway(self):
        self.assertEqual(self.names("/gateway/stage"),
                         ["gateway-stage.properties", "application-stage.yml", "gateway.yml",
                          "application.yml"])
        self.assertEqual(self.names("/gateway/default"),
                         ["application-default.yml", "gateway.yml", "application.yml"])
        gw = source(self.env("/gateway/dev"), "gateway.yml")
        self.assertEqual(gw["gateway.routes[0].predicates[0]"], "Path=/api/orders/**")

    def test_unknown_app(self):
        self.assertEqual(self.names("/inventory/prod"), ["application-prod.yml", "application.yml"])

    def test_documents(self):
        r = self.server.get("/orders-dev.properties")
        self.assertEqual(r.status, 200, r)
        lines = r.text.split("\n")
        self.assertIn("orders.datasource.url: jdbc:postgresql://postgres.dev.svc:5432/orders",
                      lines)
        self.assertIn("orders.payments-url: http://payments:8082/api/v1", lines)
        self.assertIn("orders.notifications.sender: orders@Example Retail", lines)
        self.assertIn("orders.datasource.pool.max-size: 4", lines)
        self.assertIn("orders.notifications.channels[0]: email", lines)
        self.assertNotIn("orders.notifications.channels[1]: sms", lines)
        r = self.server.get("/gateway-prod.properties")
        self.assertIn("gateway.rate-limit.requests-per-second: 2000", r.text.split("\n"))
        r = self.server.get("/orders-prod,us.yml")
        self.assertEqual(r.status, 200, r)
        self.assertIn("  currency: USD\n", r.text)
        self.assertIn("city: New York", r.text)
        self.assertNotIn("Madrid", r.text)

    def test_plain_files(self):
        r = self.server.get("/gateway/prod/main/gateway/nginx.conf")
        self.assertEqual(r.status, 200, r)
        self.assertIn("server_name shop.example.com;", r.text)
        self.assertIn("rate=2000r/s;", r.text)
        self.assertIn("server orders:8081;", r.text)
        self.assertIn("server payments:8082;", r.text)
        self.assertIn("client_max_body_size 1m;", r.text)
        self.assertIn("$binary_remote_addr", r.text)
        same = self.server.get("/gateway/prod/main/gateway(_)nginx.conf")
        self.assertEqual(same.body, r.body)
        banner = self.server.get("/orders/dev/main/templates/banner.txt")
        self.assertEqual(banner.text, "Example Retail - service (eu-west-1)\n")

    def test_readme_and_api_examples(self):
        # Every GET example (curl ... localhost:8888/PATH without -X/-d) answers 200.
        paths = set()
        for doc in (os.path.join(SAMPLE, "README.md"),
                    os.path.join(SOURCE_DIR, "README.md"),
                    os.path.join(SOURCE_DIR, "docs", "api.md")):
            if not os.path.exists(doc):
                continue
            with open(doc) as f:
                for line in f:
                    if "curl" not in line or re.search(r"\s-(X|d|u|H)\b|--data|-I\b", line):
                        continue
                    if "<" in line or "$" in line:
                        continue
                    for m in re.finditer(r"localhost:8888(/[^\s'\"|]*)", line):
                        paths.add(m.group(1))
        self.assertTrue(paths)
        for path in sorted(paths):
            if path.startswith(("/encrypt", "/decrypt", "/key", "/monitor", "/events")) \
                    or "watch=" in path:
                continue
            with self.subTest(path=path):
                self.assertEqual(self.server.get(path).status, 200)


class SampleRepoGitTest(ServerTestCase):
    """The same directory committed to Git, as the README's second recipe does."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo("config")
        for root, _dirs, files in os.walk(SAMPLE):
            for name in files:
                full = os.path.join(root, name)
                with open(full, "rb") as f:
                    cls.repo.write({os.path.relpath(full, SAMPLE): f.read()})
        cls.commit = cls.repo.commit(None, "initial configuration")
        cls.server = cls.start_server(cls.repo.uri)

    def test_same_answers_as_dir_mode(self):
        r = self.server.get("/orders/prod,us")
        self.assertEqual(r.status, 200, r)
        env = r.json()
        self.assertEqual(env["version"], self.commit)
        self.assertEqual([ps["name"] for ps in env["propertySources"]],
                         [self.repo.uri + "/" + n for n in
                          ("orders-prod.yml (document #1)", "orders-prod.yml (document #0)",
                           "application-prod.yml", "orders.yml", "application.yml")])
        plain = self.server.get("/gateway/prod/main/gateway/nginx.conf")
        self.assertIn("server_name shop.example.com;", plain.text)


if __name__ == "__main__":
    unittest.main()
