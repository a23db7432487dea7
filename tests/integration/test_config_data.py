"""Spring Boot config-data inside the repository, through a real server: the cloud platform a
server detects from its own environment variables (KUBERNETES_SERVICE_HOST/_PORT, VCAP_*) or is
told with --cloud-platform; imports that try to leave a plain directory (dir: mode) are never
read; include, group and import over HTTP, with merged documents and ETags following the same
sources; warnings naming the files Spring Boot would refuse."""

import os
import re
import unittest

from almanac_harness import Server, ServerTestCase, relative_names

CLOUD_YML = """\
a: base
---
spring.config.activate.on-cloud-platform: kubernetes
a: k8s
---
spring.config.activate.on-cloud-platform: none
a: local
---
spring.config.activate.on-cloud-platform: cloud-foundry
a: cf
"""

PLATFORM_VARS = re.compile(r"^(VCAP_APPLICATION|VCAP_SERVICES|DYNO|HC_LANDSCAPE|NOMAD_ALLOC_ID|"
                           r"WEBSITE_.*|AWS_EXECUTION_ENV|.*_SERVICE_HOST|.*_SERVICE_PORT)$")


def get_env(server, path):
    """The JSON of a 200 answer."""
    status, _, body = server.get_json(path)
    if status != 200:
        raise AssertionError("GET %s -> %d %r" % (path, status, body))
    return body


def clean_env(**extra):
    """The test process's environment without anything Spring Boot reads as a platform (the
    tests may themselves run inside Kubernetes), plus extra."""
    env = {k: None for k in os.environ if PLATFORM_VARS.match(k)}
    env.update(extra)
    return env


class CloudPlatformTest(ServerTestCase):

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit({"cloud.yml": CLOUD_YML, "application.yml": "shared: 1\n"}, "cloud")
        cls.prefix = cls.repo.uri + "/"

    def sources(self, server):
        return relative_names(get_env(server, "/cloud/dev"), self.prefix)

    def test_off_any_cloud(self):
        s = self.start_server(self.repo.uri, env=clean_env())
        self.assertEqual(self.sources(s), ["cloud.yml (document #2)", "cloud.yml (document #0)",
                                           "application.yml"])
        s.wait_for_log(r"cloud platform for spring\.config\.activate\.on-cloud-platform: none "
                       r"\(detected\)")

    def test_kubernetes_variables(self):
        s = self.start_server(self.repo.uri, env=clean_env(KUBERNETES_SERVICE_HOST="10.96.0.1",
                                                           KUBERNETES_SERVICE_PORT="443"))
        self.assertEqual(self.sources(s), ["cloud.yml (document #1)", "cloud.yml (document #0)",
                                           "application.yml"])
        self.assertEqual(get_env(s, "/cloud-dev.json")["a"], "k8s")
        s.wait_for_log(r"on-cloud-platform: kubernetes \(detected\)")

    def test_kubernetes_host_without_port_is_not_kubernetes(self):
        s = self.start_server(self.repo.uri, env=clean_env(KUBERNETES_SERVICE_HOST="10.96.0.1"))
        self.assertEqual(self.sources(s)[0], "cloud.yml (document #2)")

    def test_any_service_variables(self):
        # Spring's second rule: any X_SERVICE_HOST with an X_SERVICE_PORT.
        s = self.start_server(self.repo.uri, env=clean_env(ORDERS_SERVICE_HOST="10.0.0.7",
                                                           ORDERS_SERVICE_PORT="8080"))
        self.assertEqual(self.sources(s)[0], "cloud.yml (document #1)")

    def test_cloud_foundry_variables(self):
        s = self.start_server(self.repo.uri, env=clean_env(VCAP_APPLICATION="{}"))
        self.assertEqual(self.sources(s)[0], "cloud.yml (document #3)")

    def test_setting_forces_the_platform(self):
        s = self.start_server(self.repo.uri, env=clean_env(),
                              extra_args=["--cloud-platform", "kubernetes"])
        self.assertEqual(self.sources(s)[0], "cloud.yml (document #1)")
        s = self.start_server(self.repo.uri, env=clean_env(KUBERNETES_SERVICE_HOST="10.96.0.1",
                                                           KUBERNETES_SERVICE_PORT="443",
                                                           ALMANAC_CLOUD_PLATFORM="none"))
        self.assertEqual(self.sources(s)[0], "cloud.yml (document #2)")
        s.wait_for_log(r"on-cloud-platform: none\n")

    def test_unknown_setting_is_refused(self):
        srv = Server(self.repo.uri, self.tmp, extra_args=["--cloud-platform", "k8s"])
        type(self).servers.append(srv)
        srv.launch()
        self.assertNotEqual(srv.wait_exit(), 0)
        self.assertIn("cloud-platform", srv.log())


class DirModeImportTest(ServerTestCase):
    """An import that tries to leave the served directory is never read, even though the file
    it names exists right next to it."""

    @classmethod
    def setUpServers(cls):
        cls.root = os.path.join(cls.tmp, "conf")
        os.makedirs(os.path.join(cls.root, "sub"))
        with open(os.path.join(cls.tmp, "outside.yml"), "w") as f:
            f.write("stolen: outside-secret\n")
        files = {
            "esc.yml": "spring.config.import:\n  - ../outside.yml\n  - sub/../../outside.yml\n"
                       "  - /etc/passwd\n  - file:../outside.yml\n  - " + cls.tmp +
                       "/outside.yml\n  - inside.yml\ne: 1\n",
            "inside.yml": "i: 1\n",
            "application.yml": "a: 1\n",
        }
        for name, text in files.items():
            with open(os.path.join(cls.root, name), "w") as f:
                f.write(text)
        cls.server = cls.start_server("dir:" + cls.root)

    def test_outside_never_read(self):
        r = self.server.get("/esc/dev")
        self.assertEqual(r.status, 200, r)
        self.assertNotIn(b"outside-secret", r.body)
        self.assertNotIn(b"root:", r.body)
        names = [ps["name"].rsplit("/", 1)[-1] for ps in r.json()["propertySources"]]
        self.assertEqual(names, ["inside.yml", "esc.yml", "application.yml"])
        for loc in ("../outside.yml", "sub/../../outside.yml", "/etc/passwd",
                    "file:../outside.yml"):
            self.server.wait_for_log(r"esc\.yml: spring\.config\.import '%s' ignored"
                                     % re.escape(loc))
        r = self.server.get("/esc-dev.properties")
        self.assertNotIn(b"outside-secret", r.body)


INCLUDE_FILES = {
    "inc.yml": "spring.profiles.include: x\nspring.config.import: shared/common.yml\nv: inc\n",
    "inc-dev.yml": "v: inc-dev\n",
    "application.yml": "spring:\n  profiles:\n    group:\n      x: [y]\nv: app\n",
    "application-x.yml": "v: app-x\nx: 1\n",
    "application-y.yml": "y: 1\n",
    "shared/common.yml": "c: common\n",
    "shared/common-dev.yml": "c: common-dev\n",
    "bad-dev.yml": "spring.profiles.include: q\n",
    "bad.yml": "b: 1\n",
    "unrelated.yml": "u: 1\n",
}


class IncludeGroupImportTest(ServerTestCase):

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit(INCLUDE_FILES, "config-data")
        cls.server = cls.start_server(cls.repo.uri)
        cls.prefix = cls.repo.uri + "/"

    def test_order_and_documents(self):
        env = get_env(self.server, "/inc/dev")
        self.assertEqual(env["profiles"], ["dev"])  # the request, not the active list
        # active: dev, x (included), y (x's group); shared/common-dev moves up to the top
        self.assertEqual(relative_names(env, self.prefix),
                         ["shared/common-dev.yml", "application-y.yml", "application-x.yml",
                          "inc-dev.yml", "shared/common.yml", "inc.yml", "application.yml"])
        # merged documents follow the same sources (another test may have edited common-dev)
        top = env["propertySources"][0]["source"]["c"]
        doc = self.server.get("/inc-dev.properties").text.splitlines()
        self.assertIn("v: app-x", doc)
        self.assertIn("c: " + top, doc)
        self.assertIn("y: 1", doc)
        yml = self.server.get("/inc-dev.yml").text.splitlines()
        self.assertIn("c: " + top, yml)
        self.assertIn("v: app-x", yml)
        # a default request ignores include and group
        env = get_env(self.server, "/inc/default")
        self.assertEqual(relative_names(env, self.prefix),
                         ["shared/common.yml", "inc.yml", "application.yml"])

    def test_etag_follows_imported_file(self):
        before = self.server.get("/inc/dev")
        tag = before.header("ETag")
        self.assertTrue(tag)
        self.repo.commit({"unrelated.yml": "u: 2\n"}, "unrelated")
        self.server.refresh()
        self.assertEqual(self.server.get("/inc/dev").header("ETag"), tag)
        self.repo.commit({"shared/common-dev.yml": "c: common-dev-2\n"}, "imported file")
        self.server.refresh()
        after = self.server.get("/inc/dev")
        self.assertNotEqual(after.header("ETag"), tag)
        r = self.server.get("/inc/dev?watch=%s&timeout=5" % tag.strip('"'))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["propertySources"][0]["source"], {"c": "common-dev-2"})

    def test_warning_names_refused_file(self):
        env = get_env(self.server, "/bad/dev")
        self.assertEqual(relative_names(env, self.prefix)[0], "bad-dev.yml")
        self.server.wait_for_log(r"bad-dev\.yml: 'spring\.profiles\.include' in a "
                                 r"profile-specific file is ignored")


if __name__ == "__main__":
    unittest.main()
