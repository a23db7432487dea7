"""GET /{application}-{profiles}.{yml|yaml|properties|json} and /{label}/...: one merged
document, with Spring's merge rules, output formats and placeholder resolution."""

import json
import unittest

from almanac_harness import ServerTestCase

APPLICATION_YML = """\
common: from-application
order.first: app-1
host.name: example.org
url: http://${host.name}:${host.port:8080}/x
list:
  - app0
  - app1
  - app2
flag: true
ratio: 1.10
---
spring:
  profiles: dev
legacy.loaded: true
"""

MERGE_YML = """\
order:
  second: merge-2
  first: merge-1
tail: t
qtrue: 'true'
qnum: '8080'
greeting: hello ${who:world}
nested: ${url}
missing: ${nope.key}
literal: 'cost \\${price}'
servers:
  - host: a
    port: 1
  - host: b
"""

MERGE_DEV_YML = """\
common: from-dev
list:
  - dev0
newkey: n
num: 7
"""

FILES = {
    "application.yml": APPLICATION_YML,
    "merge.yml": MERGE_YML,
    "merge-dev.yml": MERGE_DEV_YML,
    "foo-bar.yml": "fb: base\n",
    "foo-bar-dev.yml": "fbd: dev\n",
    "leafy.properties": ("org.springframework=WARN\n"
                         "org.springframework.cloud=ERROR\n"
                         "other=x\n"),
    "badkey.properties": "a..b=1\n",
    "props.properties": "port=8080\nenabled=true\nname=plain\n",
    "ph.yml": ("base: example.org\n"
               "nested_default: ${missing:${base}}\n"
               "deep_default: ${missing:${also.missing:deep}}\n"
               "list_ref: ${items[1]}\n"
               "items: [a, b]\n"
               "partial: pre-${base}-post\n"
               "multi: ${base}/${base}\n"
               "empty_default: x${missing:}y\n"
               "chained: ${partial}\n"),
    "cycle.yml": "a: ${b}\nb: ${a}\nself: ${self}\nok: fine\n",
    "quoting.yml": ("s_true: 'true'\n"
                    "s_yes: 'yes'\n"
                    "s_off: 'Off'\n"
                    "s_null: 'null'\n"
                    "s_tilde: '~'\n"
                    "s_int: '42'\n"
                    "s_hex: '0x1F'\n"
                    "s_float: '1.5'\n"
                    "s_empty: ''\n"
                    "nothing:\n"
                    "plain: just words\n"
                    "n_int: 42\n"
                    "n_float: 1.5\n"
                    "b_true: true\n"
                    "nested:\n"
                    "  - [1, 2]\n"
                    "  - [3]\n"),
}

MERGED_PROPERTIES = [
    "common: from-dev",
    "order.first: merge-1",
    "host.name: example.org",
    "url: http://example.org:8080/x",
    "flag: true",
    "ratio: 1.1",
    "legacy.loaded: true",
    "order.second: merge-2",
    "tail: t",
    "qtrue: true",
    "qnum: 8080",
    "greeting: hello world",
    "nested: http://example.org:8080/x",
    "missing: ${nope.key}",
    "literal: cost ${price}",
    "newkey: n",
    "num: 7",
    "list[0]: dev0",
    "servers[0].host: a",
    "servers[0].port: 1",
    "servers[1].host: b",
]

MERGED_YAML = """\
common: from-dev
order:
  first: merge-1
  second: merge-2
host:
  name: example.org
url: http://example.org:8080/x
flag: true
ratio: 1.1
legacy:
  loaded: true
tail: t
qtrue: 'true'
qnum: '8080'
greeting: hello world
nested: http://example.org:8080/x
missing: ${nope.key}
literal: cost ${price}
newkey: n
num: 7
list:
- dev0
servers:
- host: a
  port: 1
- host: b
"""

MERGED_TREE = {
    "common": "from-dev",
    "order": {"first": "merge-1", "second": "merge-2"},
    "host": {"name": "example.org"},
    "url": "http://example.org:8080/x",
    "flag": True,
    "ratio": 1.1,
    "legacy": {"loaded": True},
    "tail": "t",
    "qtrue": "true",
    "qnum": "8080",
    "greeting": "hello world",
    "nested": "http://example.org:8080/x",
    "missing": "${nope.key}",
    "literal": "cost ${price}",
    "newkey": "n",
    "num": 7,
    "list": ["dev0"],
    "servers": [{"host": "a", "port": 1}, {"host": "b"}],
}


class DocumentTest(ServerTestCase):

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit(FILES, "documents")
        cls.server = cls.start_server(cls.repo.uri)

    def doc(self, path, content_type="text/plain"):
        r = self.server.get(path)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("content-type").startswith(content_type), r.headers)
        self.assertEqual(r.header("content-length"), str(len(r.body)))
        return r.text

    def test_properties_exact(self):
        body = self.doc("/merge-dev.properties")
        self.assertEqual(body, "\n".join(MERGED_PROPERTIES))
        self.assertFalse(body.endswith("\n"))

    def test_spring_profiles_dropped(self):
        body = self.doc("/merge-dev.properties")
        self.assertNotIn("spring.profiles", body)
        self.assertIn("legacy.loaded: true", body.split("\n"))

    def test_yaml_exact(self):
        body = self.doc("/merge-dev.yml")
        self.assertEqual(body.rstrip("\n"), MERGED_YAML.rstrip("\n"))

    def test_yaml_extension_alias(self):
        self.assertEqual(self.doc("/merge-dev.yaml"), self.doc("/merge-dev.yml"))

    def test_json_exact(self):
        body = self.doc("/merge-dev.json", "application/json")
        self.assertEqual(json.loads(body), MERGED_TREE)
        self.assertEqual(list(json.loads(body)), list(MERGED_TREE))
        self.assertEqual(body, json.dumps(MERGED_TREE, separators=(",", ":"), ensure_ascii=False))

    def test_labelled_forms_equal_unlabelled(self):
        for ext in ("properties", "yml", "yaml", "json"):
            with self.subTest(ext=ext):
                ct = "application/json" if ext == "json" else "text/plain"
                self.assertEqual(self.doc("/main/merge-dev." + ext, ct),
                                 self.doc("/merge-dev." + ext, ct))

    def test_unknown_label(self):
        self.assertErrorBody(self.server.get("/nolabel/merge-dev.yml"), 404)

    def test_lower_profile_only(self):
        # Without dev: application.yml document #0 and merge.yml only; lists keep the position
        # where the list first appeared, after every scalar.
        self.assertEqual(self.doc("/merge-prod.properties").split("\n"), [
            "common: from-application",
            "order.first: merge-1",
            "host.name: example.org",
            "url: http://example.org:8080/x",
            "flag: true",
            "ratio: 1.1",
            "order.second: merge-2",
            "tail: t",
            "qtrue: true",
            "qnum: 8080",
            "greeting: hello world",
            "nested: http://example.org:8080/x",
            "missing: ${nope.key}",
            "literal: cost ${price}",
            "list[0]: app0",
            "list[1]: app1",
            "list[2]: app2",
            "servers[0].host: a",
            "servers[0].port: 1",
            "servers[1].host: b",
        ])

    def test_split_at_last_hyphen(self):
        lines = self.doc("/foo-bar-dev.properties").split("\n")
        self.assertIn("fb: base", lines)
        self.assertIn("fbd: dev", lines)
        # app "foo", profile "bar": foo-bar.yml is foo's profile file, foo-bar-dev.yml unrelated
        lines = self.doc("/foo-bar.properties").split("\n")
        self.assertIn("fb: base", lines)
        self.assertNotIn("fbd: dev", lines)

    def test_several_profiles(self):
        lines = self.doc("/merge-prod,dev.properties").split("\n")
        self.assertIn("common: from-dev", lines)
        self.assertIn("list[0]: dev0", lines)

    def test_resolve_placeholders_false(self):
        lines = self.doc("/merge-dev.properties?resolvePlaceholders=false").split("\n")
        self.assertIn("url: http://${host.name}:${host.port:8080}/x", lines)
        self.assertIn("greeting: hello ${who:world}", lines)
        self.assertIn("nested: ${url}", lines)
        self.assertIn("missing: ${nope.key}", lines)
        body = self.doc("/merge-dev.json?resolvePlaceholders=false", "application/json")
        self.assertEqual(json.loads(body)["nested"], "${url}")

    def test_placeholder_forms(self):
        lines = self.doc("/ph-default.properties").split("\n")
        lines = [x for x in lines if not x.startswith(("common:", "order.", "host.", "url:",
                                                        "flag:", "ratio:", "list["))]
        self.assertEqual(lines, [
            "base: example.org",
            "nested_default: example.org",
            "deep_default: deep",
            "list_ref: b",
            "partial: pre-example.org-post",
            "multi: example.org/example.org",
            "empty_default: xy",
            "chained: pre-example.org-post",
            "items[0]: a",
            "items[1]: b",
        ])

    def test_placeholder_cycle_does_not_hang(self):
        # Spring refuses circular references; either refusing or leaving them is fine, but the
        # request must be answered (the connection's timeout fails a hang) and others go on.
        for ext in ("properties", "yml", "json"):
            with self.subTest(ext=ext):
                r = self.server.get("/cycle-default." + ext)
                self.assertIn(r.status, (200, 400, 500), r)
        self.assertEqual(self.server.get("/merge-dev.yml").status, 200)
        self.assertTrue(self.server.alive())

    def test_properties_source_values_in_yaml_quoted(self):
        body = self.doc("/props-default.yml")
        lines = body.rstrip("\n").split("\n")
        self.assertIn("port: '8080'", lines)
        self.assertIn("enabled: 'true'", lines)
        self.assertIn("name: plain", lines)
        tree = json.loads(self.doc("/props-default.json", "application/json"))
        self.assertEqual(tree["port"], "8080")
        self.assertEqual(tree["enabled"], "true")

    def test_yaml_quotes_strings_that_read_as_other_types(self):
        lines = self.doc("/quoting-default.yml").rstrip("\n").split("\n")
        for line in ("s_true: 'true'", "s_yes: 'yes'", "s_off: 'Off'", "s_null: 'null'",
                     "s_tilde: '~'", "s_int: '42'", "s_hex: '0x1F'", "s_float: '1.5'",
                     "s_empty: ''", "nothing: ''", "plain: just words", "n_int: 42",
                     "n_float: 1.5", "b_true: true"):
            with self.subTest(line=line):
                self.assertIn(line, lines)
        body = self.doc("/quoting-default.yml")
        self.assertIn("nested:\n- - 1\n  - 2\n- - 3\n", body)

    def test_json_types(self):
        tree = json.loads(self.doc("/quoting-default.json", "application/json"))
        self.assertEqual(tree["s_true"], "true")
        self.assertEqual(tree["s_int"], "42")
        self.assertEqual(tree["s_empty"], "")
        self.assertEqual(tree["nothing"], "")
        self.assertIs(tree["b_true"], True)
        self.assertEqual((type(tree["n_int"]), tree["n_int"]), (int, 42))
        self.assertEqual((type(tree["n_float"]), tree["n_float"]), (float, 1.5))
        self.assertEqual(tree["nested"], [[1, 2], [3]])

    def test_leaf_and_parent_key(self):
        lines = self.doc("/leafy-default.properties").split("\n")
        self.assertIn("org.springframework: WARN", lines)
        self.assertIn("org.springframework.cloud: ERROR", lines)
        tree = json.loads(self.doc("/leafy-default.json", "application/json"))
        self.assertEqual(tree["org"], {"springframework": "WARN",
                                       "springframework.cloud": "ERROR"})
        self.assertEqual(tree["other"], "x")
        body = self.doc("/leafy-default.yml")
        self.assertIn("org:\n  springframework: WARN\n  springframework.cloud: ERROR\nother: x",
                      body)

    def test_malformed_key_400(self):
        for ext in ("yml", "json"):
            with self.subTest(ext=ext):
                self.assertErrorBody(self.server.get("/badkey-default." + ext), 400)

    def test_two_segments_with_extension_is_404(self):
        for path in ("/merge/dev.yml", "/merge/dev.properties", "/merge/dev.json"):
            with self.subTest(path=path):
                self.assertEqual(self.server.get(path).status, 404)

    def test_head_document(self):
        get = self.server.get("/merge-dev.yml")
        head = self.server.head("/merge-dev.yml")
        self.assertEqual(head.status, 200)
        self.assertEqual(head.body, b"")
        self.assertEqual(head.header("content-length"), str(len(get.body)))

    def test_etag_and_304(self):
        r = self.server.get("/merge-dev.yml")
        etag = r.header("etag")
        self.assertTrue(etag, r.headers)
        again = self.server.get("/merge-dev.yml", {"If-None-Match": etag})
        self.assertEqual(again.status, 304)
        self.assertEqual(again.body, b"")
        # another format of the same environment is another representation
        other = self.server.get("/merge-dev.properties", {"If-None-Match": etag})
        self.assertEqual(other.status, 200)


if __name__ == "__main__":
    unittest.main()
