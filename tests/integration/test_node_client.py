"""The stock Node.js Spring Cloud Config client (cloud-config-client, pinned in
tests/compat/node/package-lock.json) against a real almanac-server: what an application using it
sees must be what a Spring Config Server would give it for the same repository."""

import json
import os
import shutil
import subprocess
import tempfile
import unittest

from almanac_harness import SOURCE_DIR, GitRepo, Server, require_server_bin

COMPAT_DIR = os.path.join(SOURCE_DIR, "tests", "compat", "node")


def node_client_dir():
    """The client installed from the lockfile into the build tree (once)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise unittest.SkipTest("node and npm are needed (scripts/install-deps installs them)")
    build = os.environ.get("ALMANAC_BUILD_DIR") or tempfile.gettempdir()
    target = os.path.join(build, "compat-node")
    os.makedirs(target, exist_ok=True)
    for name in ("package.json", "package-lock.json", "client.js"):
        shutil.copy(os.path.join(COMPAT_DIR, name), target)
    if not os.path.isdir(os.path.join(target, "node_modules", "cloud-config-client")):
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                              cwd=target, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise unittest.SkipTest("cannot install the Node client from the npm registry: "
                                    + done.stderr.strip()[-300:])
    return target


class NodeClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_server_bin()
        cls.client_dir = node_client_dir()
        cls.tmp = tempfile.mkdtemp(prefix="almanac-node-")
        cls.repo = GitRepo(cls.tmp)
        cls.first = cls.repo.commit({
            "application.yml": "shared:\n  timeout: 30\n  hosts: [a, b, c]\nfeature: false\n",
            "orders.yml": ("orders:\n  limit: 10\n  ratio: 0.5\n  name: Orders\n"
                           "shared:\n  hosts: [x]\n"),
            "orders-dev.yml": "orders:\n  limit: 99\nfeature: true\n",
            "orders-prod.properties": "orders.limit=1000\norders.region=eu-west-1\n",
        }, "first")
        cls.repo.branch("release/1.0")
        cls.second = cls.repo.commit({"orders-dev.yml": "orders:\n  limit: 100\nfeature: true\n"},
                                     "second")
        cls.server = Server(cls.repo.uri, cls.tmp).start()
        cls.endpoint = "http://127.0.0.1:%d" % cls.server.port

    @classmethod
    def tearDownClass(cls):
        try:
            cls.server.stop()
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def load(self, name, profiles, label=None):
        args = ["node", "client.js", self.endpoint, name, profiles] + ([label] if label else [])
        done = subprocess.run(args, cwd=self.client_dir, capture_output=True, text=True,
                              timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr + self.server.log_tail())
        return json.loads(done.stdout)

    def test_properties_merge_most_specific_first_with_types(self):
        seen = self.load("orders", "dev")
        self.assertEqual(seen["version"], self.second)
        props = seen["properties"]
        self.assertEqual(props["orders.limit"], 100)      # orders-dev.yml beats orders.yml
        self.assertIs(props["feature"], True)             # orders-dev.yml beats application.yml
        self.assertEqual(props["orders.ratio"], 0.5)
        self.assertEqual(props["orders.name"], "Orders")
        self.assertEqual(props["shared.timeout"], 30)

    def test_lists_from_the_more_specific_source_replace_the_whole_list(self):
        obj = self.load("orders", "dev")["object"]
        self.assertEqual(obj["shared"]["hosts"], ["x"])
        self.assertEqual(obj["orders"], {"limit": 100, "ratio": 0.5, "name": "Orders"})

    def test_properties_file_values_are_strings(self):
        props = self.load("orders", "prod")["properties"]
        self.assertEqual(props["orders.limit"], "1000")
        self.assertEqual(props["orders.region"], "eu-west-1")

    def test_several_profiles_later_wins(self):
        props = self.load("orders", "dev,prod")["properties"]
        self.assertEqual(props["orders.limit"], "1000")
        self.assertIs(props["feature"], True)

    def test_label_with_a_slash_as_the_client_encodes_it(self):
        # The client sends release%2F1.0; Spring reads it as the label release/1.0.
        seen = self.load("orders", "dev", "release/1.0")
        self.assertEqual(seen["version"], self.first)
        self.assertEqual(seen["label"], "release/1.0")
        self.assertEqual(seen["properties"]["orders.limit"], 99)

    def test_unknown_application_gets_the_shared_configuration(self):
        props = self.load("nobody", "dev")["properties"]
        self.assertEqual(props, {"shared.timeout": 30, "shared.hosts[0]": "a",
                                 "shared.hosts[1]": "b", "shared.hosts[2]": "c",
                                 "feature": False})


if __name__ == "__main__":
    unittest.main()
