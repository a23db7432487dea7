"""GET /{application}/{profile}/{label}/{path}: plain files from the repository, placeholders
filled from that application's environment."""

import unittest

from almanac_harness import ServerTestCase

NGINX = """\
server_name ${gw.host};
listen ${gw.port};
client_max_body_size ${gw.max-body:1m};
log $remote_addr ${unknown.key};
company ${company.name}
"""

FILES = {
    "application.yml": "company:\n  name: Example\n",
    "gw.yml": "gw:\n  host: gw.example.com\n  port: 8443\n",
    "gw-prod.yml": "gw:\n  host: gw.prod.example.com\n",
    "other.yml": "gw:\n  host: other.example.com\n",
    "nginx.conf": NGINX,
    "templates/deep/routes.tmpl": "route ${gw.host} for ${company.name}\n",
    "static.txt": "no placeholders here\n",
}


class PlainFileTest(ServerTestCase):

    @classmethod
    def setUpServers(cls):
        repo = cls.repo = cls.make_repo()
        repo.commit(FILES, "plain files")
        repo.branch("old")
        repo.checkout("old")
        repo.commit({"nginx.conf": "old ${gw.host}\n"}, "old nginx")
        repo.checkout("main")
        cls.server = cls.start_server(repo.uri)

    def plain(self, path):
        r = self.server.get(path)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("content-length"), str(len(r.body)))
        return r.text

    def test_placeholders_from_app_environment(self):
        self.assertEqual(self.plain("/gw/dev/main/nginx.conf"),
                         "server_name gw.example.com;\n"
                         "listen 8443;\n"
                         "client_max_body_size 1m;\n"
                         "log $remote_addr ${unknown.key};\n"
                         "company Example\n")

    def test_profile_changes_values(self):
        body = self.plain("/gw/prod/main/nginx.conf")
        self.assertIn("server_name gw.prod.example.com;", body)

    def test_application_changes_values(self):
        body = self.plain("/other/dev/main/nginx.conf")
        self.assertIn("server_name other.example.com;", body)

    def test_nested_path_with_escape(self):
        self.assertEqual(self.plain("/gw/prod/main/templates(_)deep(_)routes.tmpl"),
                         "route gw.prod.example.com for Example\n")

    def test_nested_path_with_slashes(self):
        self.assertEqual(self.plain("/gw/prod/main/templates/deep/routes.tmpl"),
                         "route gw.prod.example.com for Example\n")

    def test_label_selects_version(self):
        self.assertEqual(self.plain("/gw/dev/old/nginx.conf"), "old gw.example.com\n")

    def test_use_default_label(self):
        self.assertEqual(self.plain("/gw/dev/nginx.conf?useDefaultLabel"),
                         self.plain("/gw/dev/main/nginx.conf"))
        self.assertEqual(self.plain("/gw/dev/nginx.conf?useDefaultLabel=true"),
                         self.plain("/gw/dev/main/nginx.conf"))

    def test_use_default_label_with_a_nested_path(self):
        # Spring's /{name}/{profile}/**?useDefaultLabel: the path may hold slashes.
        self.assertEqual(self.plain("/gw/prod/templates/deep/routes.tmpl?useDefaultLabel"),
                         "route gw.prod.example.com for Example\n")
        # Without the flag the third segment is a label, and no label "templates" exists.
        self.assertEqual(self.server.get("/gw/prod/templates/deep/routes.tmpl").status, 404)

    def test_file_without_placeholders(self):
        self.assertEqual(self.plain("/gw/dev/main/static.txt"), "no placeholders here\n")

    def test_missing_file_404(self):
        self.assertErrorBody(self.server.get("/gw/dev/main/missing.conf"), 404)
        self.assertErrorBody(self.server.get("/gw/dev/main/templates(_)nope.tmpl"), 404)

    def test_directory_is_not_a_file(self):
        self.assertEqual(self.server.get("/gw/dev/main/templates").status, 404)

    def test_unknown_label_404(self):
        self.assertErrorBody(self.server.get("/gw/dev/nolabel/nginx.conf"), 404)

    def test_head(self):
        get = self.server.get("/gw/dev/main/nginx.conf")
        head = self.server.head("/gw/dev/main/nginx.conf")
        self.assertEqual(head.status, 200)
        self.assertEqual(head.body, b"")
        self.assertEqual(head.header("content-length"), str(len(get.body)))


class PlainFileLookupTest(ServerTestCase):
    """Spring's lookup (GenericResourceRepository): search locations, later ones first, and in
    each a profile-specific variant (name-profile.ext) before the plain name."""

    @classmethod
    def setUpServers(cls):
        repo = cls.repo = cls.make_repo()
        repo.commit({"gw.yml": "gw:\n  host: gw.example.com\n",
                     "nginx.conf": "root ${gw.host}\n",
                     "nginx-prod.conf": "root-prod ${gw.host}\n",
                     "gw/nginx.conf": "in-app-dir ${gw.host}\n",
                     "other/only-here.txt": "only here\n"}, "lookup")
        cls.server = cls.start_server(repo.uri, search_paths="{application}")

    def test_search_location_first(self):
        r = self.server.get("/gw/dev/main/nginx.conf")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.text, "in-app-dir gw.example.com\n")

    def test_root_when_not_in_location(self):
        r = self.server.get("/other/dev/main/nginx.conf")
        self.assertEqual(r.text, "root ${gw.host}\n")

    def test_profile_variant(self):
        r = self.server.get("/other/prod/main/nginx.conf")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.text, "root-prod ${gw.host}\n")

    def test_full_path_still_works(self):
        self.assertEqual(self.server.get("/gw/dev/main/other(_)only-here.txt").text,
                         "only here\n")


if __name__ == "__main__":
    unittest.main()
