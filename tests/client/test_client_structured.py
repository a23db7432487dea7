"""Structured access (lists, subtrees, relaxed names) through libalmanac against a real
almanac-server serving a Git repository: a YAML list in flow and block style, a properties
file's indexed list, a list of maps, a comma-separated value, a nested map, and keys written in
camel case and kebab case, read back by tests/client/probe/structured_probe.c.
"""

import os
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import almanac_harness as h  # noqa: E402

PROBE_BIN = os.environ.get("ALMANAC_STRUCTURED_PROBE_BIN", "")

FILES = {
    "orders.yml": (
        "hosts: [a, b]\n"
        "ports:\n  - 80\n  - 443\n"
        "flags: [true, 'off']\n"
        "ratios: [0.5, 2]\n"
        "servers:\n  - name: s0\n    port: 1\n  - name: s1\n    port: 2\n"
        "orders:\n  pool:\n    size: 8\n    max-idle: 2\n  poolSize: 99\n"
        "retry:\n  maxAttempts: 4\n"
        "tags: red, green ,blue\n"
        "zones: []\n"
        "many: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]\n"),
    "orders-eu.properties": (
        "hosts[0]=eu1\nhosts[1]=eu2\nhosts[2]=eu3\n"
        "orders.pool-size=30\n"),
}


class StructuredAccessTest(h.ServerTestCase):
    @classmethod
    def setUpServers(cls):
        if not PROBE_BIN:
            raise unittest.SkipTest("ALMANAC_STRUCTURED_PROBE_BIN is not set")
        cls.repo = cls.make_repo()
        cls.repo.commit(FILES, "lists and maps")
        cls.server = cls.start_server(cls.repo.uri)
        cls.url = "http://127.0.0.1:%d" % cls.server.port

    def probe(self, profiles, *commands):
        out = subprocess.run([PROBE_BIN, self.url, "orders", profiles, *commands],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(out.returncode, 0, out)
        lines = out.stdout.decode().splitlines()
        self.assertEqual(len(lines), len(commands), lines)
        return lines

    def test_yaml_lists(self):
        self.assertEqual(self.probe(
            "default", "len:hosts", "str:hosts:0", "str:hosts:1", "str:hosts:2", "len:ports",
            "int:ports:1", "bool:flags:0", "bool:flags:1", "double:ratios:1", "len:servers",
            "str:servers:0", "len:zones", "len:many", "int:many:11", "array:hosts",
            "array:tags", "len:tags"), [
            "len hosts 2", "str hosts[0] a", "str hosts[1] b", "str hosts error -4",
            "len ports 2", "int ports[1] 443", "bool flags[0] 1", "bool flags[1] 0",
            "double ratios[1] 2", "len servers 2", "str servers error -4", "len zones 0",
            "len many 12", "int many[11] 11", "array hosts a|b", "array tags red|green|blue",
            "len tags error -12"])

    def test_properties_list_replaces_the_yaml_list_whole(self):
        # The profile's properties file defines hosts[0..2]: the list is its, element for
        # element, and its length is three. Profiles written with a blank are normalised.
        self.assertEqual(self.probe(
            "eu", "len:hosts", "str:hosts:2", "array:hosts"), [
            "len hosts 3", "str hosts[2] eu3", "array hosts eu1|eu2|eu3"])
        self.assertEqual(self.probe("default, eu", "len:hosts"), ["len hosts 3"])

    def test_subtree_in_key_order(self):
        self.assertEqual(self.probe(
            "default", "under:orders.pool", "under:orders.pool.*", "under:servers",
            "under:many"), [
            "under orders.pool orders.pool.max-idle=2,orders.pool.size=8",
            "under orders.pool.* orders.pool.max-idle=2,orders.pool.size=8",
            "under servers servers[0].name=s0,servers[0].port=1,servers[1].name=s1,"
            "servers[1].port=2",
            "under many " + ",".join("many[%d]=%d" % (i, i) for i in range(12))])

    def test_relaxed_names(self):
        # Without the profile: orders.poolSize (camel case in the file) is the only pool size
        # spelled without a dot.
        self.assertEqual(self.probe(
            "default", "relaxed:orders.pool-size", "relaxed:orders.pool_size",
            "relaxed:ORDERS_POOLSIZE", "relaxed:RETRY_MAX_ATTEMPTS", "relaxed:retry.max-attempts",
            "relaxed:ORDERS_POOL_MAX_IDLE", "relaxed:HOSTS_1", "relaxed:SERVERS_1_NAME",
            "relaxed:orders.pool.side"), [
            "relaxed orders.pool-size orders.poolSize=99",
            "relaxed orders.pool_size orders.poolSize=99",
            "relaxed ORDERS_POOLSIZE orders.poolSize=99",
            "relaxed RETRY_MAX_ATTEMPTS retry.maxAttempts=4",
            "relaxed retry.max-attempts retry.maxAttempts=4",
            "relaxed ORDERS_POOL_MAX_IDLE orders.pool.max-idle=2",
            "relaxed HOSTS_1 hosts[1]=b",
            "relaxed SERVERS_1_NAME servers[1].name=s1",
            "relaxed orders.pool.side error -4"])
        # With the profile, orders.pool-size (eu) comes first in precedence order and wins
        # over orders.poolSize and orders.pool.size from orders.yml, in every form.
        self.assertEqual(self.probe(
            "eu", "relaxed:ORDERS_POOL_SIZE", "relaxed:orders.poolSize", "relaxed:orders.pool_size"), [
            "relaxed ORDERS_POOL_SIZE orders.pool-size=30",
            "relaxed orders.poolSize orders.poolSize=99",
            "relaxed orders.pool_size orders.pool-size=30"])


if __name__ == "__main__":
    unittest.main()
