"""GET /{application}/{profiles}[/{label}]: the Environment JSON, its shape, which files it
reads and in which order, and how values are flattened and typed."""

import json
import os
import tempfile
import unittest

from almanac_harness import (V2_MEDIA_TYPE, ServerTestCase, dir_relative_names, items,
                             relative_names, source)

APPLICATION_YML = """\
greeting: hello
shared:
  name: base
---
spring:
  config:
    activate:
      on-profile: dev
greeting: hello-dev
---
spring:
  config:
    activate:
      on-profile: prod
greeting: hello-prod
"""

EXPR_YML = """\
base: 0
---
spring.config.activate.on-profile: "dev & !cloud"
m.devnotcloud: true
---
spring:
  config:
    activate:
      on-profile: "a | b"
m.aorb: true
---
spring.config.activate.on-profile: "!prod"
m.notprod: true
---
spring:
  profiles: legacy
m.legacy: true
"""

TYPES_YML = """\
int: 42
neg: -7
hex: 0x1F
oct: 010
bin: 0b101
sexa: 1:30
under: 1_000
float: 1.10
exp: 1e3
lead0: 08080
t1: true
t2: True
t3: TRUE
y1: yes
y2: Yes
y3: YES
n1: no
n2: No
n3: NO
o1: on
o2: On
o3: ON
f1: off
f2: Off
f3: OFF
fa: false
qt: 'true'
qn: "42"
str: hello world
date: 2001-12-14
stamp: 2001-12-14t21:59:43.10-05:00
nul: null
tilde: ~
empty:
emptylist: []
emptymap: {}
after: kept
"""

FLAT_YML = """\
a:
  b:
    c: 1
list:
  - x
  - y
maps:
  - name: n0
    port: 1
  - name: n1
nested:
  - [1, 2]
  - [3]
p:
  1: one
q:
  "[a.b]": bracket
r:
  a.b: dotted
anch: &base
  host: h
  port: 1
merged:
  <<: *base
  port: 2
alias: *base
"""

PROPS = (b"# a comment\n"
         b"! another comment\n"
         b"plain=value\n"
         b"colon:value2\n"
         b"space value3\n"
         b"  indented = trimmed\n"
         b"num=42\n"
         b"bool=true\n"
         b"unicode=caf\\u00e9\n"
         b"latin1=caf\xe9\n"
         b"cont=one \\\n"
         b"    two\n"
         b"arr[]=a,b\n"
         b"dup=first\n"
         b"dup=second\n"
         b"esc\\ key=v\n")

MULTIDOC_PROPS = """\
a=1
#---
spring.config.activate.on-profile=dev
a=2
!---
b=3
"""

FILES = {
    "application.yml": APPLICATION_YML,
    "application.properties": "app.props=yes\n",
    "application-dev.yml": "shared:\n  dev: true\n",
    "application-default.yml": "defaults: loaded\n",
    # the worked example of SPRING-COMPAT "Which files" (search path sub)
    "foo.yml": "where: root\n",
    "foo-dev.properties": "foo.dev.prop=from-foo-dev-properties\n",
    "foo-mysql.yml": "db:\n  pool:\n    size: 10\n",
    "sub/foo.yml": "where: sub\n",
    # files that must not be picked for foo/dev,mysql
    "foo-prod.yml": "where: prod\n",
    "foo-dev.txt": "not a config file\n",
    "bar.yml": "bar: 1\n",
    "bar-dev.yml": "bar: 2\n",
    "sub/bar.yml": "bar: 3\n",
    "sub/other/foo.yml": "where: too-deep\n",
    # extension order within one location and name
    "ext.properties": "ext=properties\n",
    "ext.yml": "ext: yml\n",
    "ext.yaml": "ext: yaml\n",
    # locations within a profile
    "loc.yml": "loc: root\n",
    "loc-dev.yml": "loc: root-dev\n",
    "sub/loc.yml": "loc: sub\n",
    "sub/loc-dev.yml": "loc: sub-dev\n",
    # several applications
    "alpha.yml": "who: alpha\n",
    "alpha-dev.yml": "who: alpha-dev\n",
    "beta.yml": "who: beta\n",
    "beta-dev.yml": "who: beta-dev\n",
    "expr.yml": EXPR_YML,
    "empties.yml": "---\n---\nx: 1\n---\ny: 2\n",
    "types.yml": TYPES_YML,
    "flat.yml": FLAT_YML,
    "rootlist.yml": "- a\n- b\n",
    "rootscalar.yml": "just text\n",
    "props.properties": PROPS,
    "mdp.properties": MULTIDOC_PROPS,
    "origin.yml": "alpha: 1\nnest:\n  beta: two\nlist:\n  - x\n  - {k: v}\nq: \"quoted\"\n",
    "originp.properties": "# comment\nkey=value\n  spaced  =  v2\n",
    "ph.yml": "url: http://${host:localhost}/x\n",
    "unicode.yml": ("city: Z\u00fcrich\n"
                    "greeting: \u3053\u3093\u306b\u3061\u306f\n"
                    "emoji: \"\U0001f680\"\n"
                    "\u00e9t\u00e9: summer\n"),
    # for the {application} search path server
    "svc.yml": "svc: root\n",
    "svc/svc.yml": "svc: in-dir\n",
    "svc/svc-dev.yml": "svc: in-dir-dev\n",
}

SHARED_DEV = ["application-dev.yml", "application.properties", "application.yml (document #1)",
              "application.yml (document #0)"]
SHARED_PLAIN = ["application.properties", "application.yml (document #0)"]


class EnvironmentTest(ServerTestCase):

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.commit = cls.repo.commit(FILES, "initial configuration")
        cls.server = cls.start_server(cls.repo.uri, search_paths="sub")
        cls.prefix = cls.repo.uri + "/"

    def env(self, path, headers=None):
        r = self.server.get(path, headers)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("content-type").startswith("application/"), r.headers)
        return r.json()

    def names(self, path):
        return relative_names(self.env(path), self.prefix)

    def src(self, env, rel):
        return source(env, rel, self.prefix)

    # -- shape --------------------------------------------------------------------------------

    def test_shape_and_key_order(self):
        env = self.env("/foo/dev,mysql")
        self.assertEqual(list(env), ["name", "profiles", "label", "version", "state",
                                     "propertySources"])
        self.assertEqual(env["name"], "foo")
        self.assertEqual(env["profiles"], ["dev,mysql"])
        self.assertIsNone(env["label"])
        self.assertEqual(env["version"], self.commit)
        self.assertEqual(env["version"], self.repo.head("main"))
        self.assertEqual(env["state"], "")
        self.assertIsInstance(env["propertySources"], list)
        for ps in env["propertySources"]:
            self.assertEqual(list(ps), ["name", "source"])
            self.assertIsInstance(ps["source"], dict)

    def test_null_label_is_written(self):
        r = self.server.get("/foo/dev")
        self.assertIn(b'"label":null', r.body.replace(b" ", b""))

    def test_label_echoed(self):
        env = self.env("/foo/dev/main")
        self.assertEqual(env["label"], "main")
        self.assertEqual(env["version"], self.commit)

    def test_name_verbatim_with_comma(self):
        env = self.env("/orders,billing/dev")
        self.assertEqual(env["name"], "orders,billing")
        self.assertEqual(env["profiles"], ["dev"])

    def test_profiles_raw_string(self):
        env = self.env("/foo/mysql,dev")
        self.assertEqual(env["profiles"], ["mysql,dev"])

    # -- which files, in which order ----------------------------------------------------------

    def test_worked_example_search_path_sub(self):
        self.assertEqual(self.names("/foo/dev,mysql"), [
            "foo-mysql.yml", "foo-dev.properties", "application-dev.yml", "sub/foo.yml",
            "foo.yml", "application.properties", "application.yml (document #1)",
            "application.yml (document #0)"])

    def test_later_profile_wins(self):
        self.assertEqual(self.names("/foo/mysql,dev"), [
            "foo-dev.properties", "application-dev.yml", "foo-mysql.yml", "sub/foo.yml",
            "foo.yml", "application.properties", "application.yml (document #1)",
            "application.yml (document #0)"])

    def test_worked_example_values(self):
        env = self.env("/foo/dev,mysql")
        self.assertEqual(self.src(env, "foo-mysql.yml"), {"db.pool.size": 10})
        self.assertEqual(self.src(env, "foo-dev.properties"),
                         {"foo.dev.prop": "from-foo-dev-properties"})
        self.assertEqual(self.src(env, "sub/foo.yml"), {"where": "sub"})
        self.assertEqual(self.src(env, "foo.yml"), {"where": "root"})
        self.assertEqual(self.src(env, "application.yml (document #1)")["greeting"], "hello-dev")
        self.assertEqual(items(self.src(env, "application.yml (document #0)")),
                         [("greeting", "hello"), ("shared.name", "base")])

    def test_extension_order(self):
        self.assertEqual(self.names("/ext/x"),
                         ["ext.properties", "ext.yml", "ext.yaml"] + SHARED_PLAIN)

    def test_later_location_wins_within_profile(self):
        self.assertEqual(self.names("/loc/dev"),
                         ["sub/loc-dev.yml", "loc-dev.yml", "application-dev.yml", "sub/loc.yml",
                          "loc.yml", "application.properties", "application.yml (document #1)",
                          "application.yml (document #0)"])

    def test_several_applications(self):
        env = self.env("/alpha,beta/dev")
        self.assertEqual(env["name"], "alpha,beta")
        self.assertEqual(relative_names(env, self.prefix),
                         ["beta-dev.yml", "alpha-dev.yml", "application-dev.yml", "beta.yml",
                          "alpha.yml", "application.properties", "application.yml (document #1)",
                          "application.yml (document #0)"])

    def test_unknown_application_gets_shared_sources(self):
        env = self.env("/nosuchapp/dev")
        self.assertEqual(env["name"], "nosuchapp")
        self.assertEqual(relative_names(env, self.prefix), SHARED_DEV)

    def test_unknown_profile(self):
        self.assertEqual(self.names("/foo/nosuchprofile"),
                         ["sub/foo.yml", "foo.yml"] + SHARED_PLAIN)

    def test_application_default_only_for_default(self):
        self.assertEqual(self.names("/nosuchapp/default"),
                         ["application-default.yml"] + SHARED_PLAIN)
        self.assertNotIn("application-default.yml", self.names("/nosuchapp/dev"))
        self.assertNotIn("application-default.yml", self.names("/nosuchapp/prod"))

    def test_multidoc_inactive_document_left_out(self):
        names = self.names("/nosuchapp/prod")
        self.assertEqual(names, ["application.properties", "application.yml (document #2)",
                                 "application.yml (document #0)"])

    def test_on_profile_expressions(self):
        cases = {
            "dev": ["expr.yml (document #3)", "expr.yml (document #1)", "expr.yml (document #0)"],
            "dev,cloud": ["expr.yml (document #3)", "expr.yml (document #0)"],
            "b": ["expr.yml (document #3)", "expr.yml (document #2)", "expr.yml (document #0)"],
            "a": ["expr.yml (document #3)", "expr.yml (document #2)", "expr.yml (document #0)"],
            "prod": ["expr.yml (document #0)"],
            "legacy": ["expr.yml (document #4)", "expr.yml (document #3)",
                       "expr.yml (document #0)"],
        }
        for profiles, expected in cases.items():
            with self.subTest(profiles=profiles):
                names = [n for n in self.names("/expr/" + profiles) if n.startswith("expr.")]
                self.assertEqual(names, expected)

    def test_kept_document_keeps_activation_key(self):
        env = self.env("/expr/dev")
        self.assertEqual(items(self.src(env, "expr.yml (document #1)")),
                         [("spring.config.activate.on-profile", "dev & !cloud"),
                          ("m.devnotcloud", True)])

    def test_document_index_counts_non_empty_documents(self):
        env = self.env("/empties/x")
        self.assertEqual([n for n in relative_names(env, self.prefix) if n.startswith("empt")],
                         ["empties.yml (document #1)", "empties.yml (document #0)"])
        self.assertEqual(self.src(env, "empties.yml (document #0)"), {"x": 1})
        self.assertEqual(self.src(env, "empties.yml (document #1)"), {"y": 2})

    def test_multidoc_properties(self):
        self.assertEqual([n for n in self.names("/mdp/dev") if n.startswith("mdp")],
                         ["mdp.properties (document #2)", "mdp.properties (document #1)",
                          "mdp.properties (document #0)"])
        self.assertEqual([n for n in self.names("/mdp/prod") if n.startswith("mdp")],
                         ["mdp.properties (document #2)", "mdp.properties (document #0)"])
        env = self.env("/mdp/dev")
        self.assertEqual(self.src(env, "mdp.properties (document #1)")["a"], "2")
        self.assertEqual(self.src(env, "mdp.properties (document #2)"), {"b": "3"})

    # -- values -------------------------------------------------------------------------------

    def test_yaml_types(self):
        env = self.env("/types/x")
        src = self.src(env, "types.yml")
        typed = [(k, type(v).__name__, v) for k, v in src.items()]
        T, F = True, False
        expected = [("int", 42), ("neg", -7), ("hex", 31), ("oct", 8), ("bin", 5), ("sexa", 90),
                    ("under", 1000), ("float", 1.1), ("exp", 1000.0), ("lead0", "08080"),
                    ("t1", T), ("t2", T), ("t3", T), ("y1", T), ("y2", T), ("y3", T),
                    ("n1", F), ("n2", F), ("n3", F), ("o1", T), ("o2", T), ("o3", T),
                    ("f1", F), ("f2", F), ("f3", F), ("fa", F), ("qt", "true"), ("qn", "42"),
                    ("str", "hello world"), ("date", "2001-12-14"),
                    ("stamp", "2001-12-14t21:59:43.10-05:00"), ("nul", ""), ("tilde", ""),
                    ("empty", ""), ("emptylist", ""), ("after", "kept")]
        self.assertEqual(typed, [(k, type(v).__name__, v) for k, v in expected])

    def test_floats_printed_like_java(self):
        r = self.server.get("/types/x")
        env = json.loads(r.body, parse_float=lambda s: ("float", s))
        src = self.src(env, "types.yml")
        self.assertEqual(src["float"], ("float", "1.1"))
        self.assertEqual(src["exp"], ("float", "1000.0"))
        # SnakeYAML 2 (Spring Boot 3) reads a float only with a dot or an exponent: the
        # leading-zero non-octal 08080 stays a string.
        self.assertEqual(src["lead0"], "08080")

    def test_flattening(self):
        src = self.src(self.env("/flat/x"), "flat.yml")
        self.assertEqual(items(src)[:12], [
            ("a.b.c", 1), ("list[0]", "x"), ("list[1]", "y"), ("maps[0].name", "n0"),
            ("maps[0].port", 1), ("maps[1].name", "n1"), ("nested[0][0]", 1),
            ("nested[0][1]", 2), ("nested[1][0]", 3), ("p[1]", "one"), ("q[a.b]", "bracket"),
            ("r.a.b", "dotted")])
        self.assertEqual(src["anch.host"], "h")
        self.assertEqual(src["anch.port"], 1)
        self.assertEqual(src["merged.host"], "h")
        self.assertEqual(src["merged.port"], 2)
        self.assertEqual(src["alias.host"], "h")
        self.assertEqual(src["alias.port"], 1)
        self.assertEqual(len(src), 18)

    def test_root_list_and_scalar(self):
        self.assertEqual(items(self.src(self.env("/rootlist/x"), "rootlist.yml")),
                         [("document[0]", "a"), ("document[1]", "b")])
        self.assertEqual(items(self.src(self.env("/rootscalar/x"), "rootscalar.yml")),
                         [("document", "just text")])

    def test_properties_values_are_strings(self):
        src = self.src(self.env("/props/x"), "props.properties")
        expected = {"plain": "value", "colon": "value2", "space": "value3",
                    "indented": "trimmed", "num": "42", "bool": "true", "unicode": "caf\u00e9",
                    "latin1": "caf\u00e9", "cont": "one two", "arr[0]": "a", "arr[1]": "b",
                    "dup": "second", "esc key": "v"}
        self.assertEqual(src, expected)
        self.assertEqual(list(src)[:8], ["plain", "colon", "space", "indented", "num", "bool",
                                         "unicode", "latin1"])

    def test_placeholders_not_resolved_in_environment(self):
        self.assertEqual(self.src(self.env("/ph/x"), "ph.yml"),
                         {"url": "http://${host:localhost}/x"})

    def test_unicode(self):
        self.assertEqual(items(self.src(self.env("/unicode/x"), "unicode.yml")),
                         [("city", "Z\u00fcrich"), ("greeting", "\u3053\u3093\u306b\u3061\u306f"),
                          ("emoji", "\U0001f680"), ("\u00e9t\u00e9", "summer")])

    # -- v2 media type, headers, methods ------------------------------------------------------

    def test_v2_media_type_origins(self):
        env = self.env("/origin,originp/x", {"Accept": V2_MEDIA_TYPE})
        self.assertEqual(list(env)[:6], ["name", "profiles", "label", "version", "state",
                                         "propertySources"])
        src = self.src(env, "origin.yml")
        self.assertEqual(src["alpha"], {"value": 1, "origin": "1:8"})
        self.assertEqual(src["nest.beta"], {"value": "two", "origin": "3:9"})
        psrc = self.src(env, "originp.properties")
        self.assertEqual(psrc["key"], {"value": "value", "origin": "2:5"})
        self.assertEqual(psrc["spaced"], {"value": "v2", "origin": "3:14"})
        self.assertEqual(src["list[0]"], {"value": "x", "origin": "5:5"})
        self.assertEqual(src["list[1].k"], {"value": "v", "origin": "6:9"})
        self.assertEqual(src["q"], {"value": "quoted", "origin": "7:4"})
        shared = self.src(env, "application.properties")
        self.assertEqual(shared["app.props"]["value"], "yes")

    def test_plain_accept_has_no_origins(self):
        env = self.env("/origin/x", {"Accept": "application/json"})
        self.assertEqual(self.src(env, "origin.yml"), {"alpha": 1, "nest.beta": "two",
                                                      "list[0]": "x", "list[1].k": "v",
                                                      "q": "quoted"})

    def test_empty_basic_authorization_ignored(self):
        plain = self.server.get("/foo/dev")
        with_auth = self.server.get("/foo/dev", {"Authorization": "Basic Og=="})
        self.assertEqual(with_auth.status, 200, with_auth)
        self.assertEqual(with_auth.json(), plain.json())

    def test_head(self):
        get = self.server.get("/foo/dev")
        head = self.server.head("/foo/dev")
        self.assertEqual(head.status, 200)
        self.assertEqual(head.body, b"")
        self.assertEqual(head.header("content-length"), str(len(get.body)))

    def test_content_length_on_get(self):
        r = self.server.get("/foo/dev")
        self.assertEqual(r.header("content-length"), str(len(r.body)))

    def test_post_is_405(self):
        r = self.server.post("/foo/dev", b"{}", {"Content-Type": "application/json"})
        self.assertErrorBody(r, 405)

    def test_keep_alive_many_requests(self):
        conn_before = self.server.connection()
        for _ in range(20):
            self.assertEqual(self.server.get("/foo/dev").status, 200)
        self.assertIs(self.server.connection(), conn_before,
                      "server closed a keep-alive connection")


class SearchPathPlaceholderTest(ServerTestCase):
    """--search-paths with {application}, and server-wide overrides."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit(FILES, "initial configuration")
        fd, cls.overrides = tempfile.mkstemp(suffix=".yml", dir=cls.tmp)
        with os.fdopen(fd, "w") as f:
            f.write("forced:\n  value: from-overrides\n")
        cls.server = cls.start_server(cls.repo.uri, search_paths="{application}",
                                      extra_args=["--overrides-file", cls.overrides])
        cls.prefix = cls.repo.uri + "/"

    def test_application_placeholder(self):
        r = self.server.get("/svc/dev")
        self.assertEqual(r.status, 200, r)
        env = r.json()
        self.assertEqual(env["propertySources"][0]["name"], "overrides")
        self.assertEqual(env["propertySources"][0]["source"], {"forced.value": "from-overrides"})
        env["propertySources"] = env["propertySources"][1:]
        self.assertEqual(relative_names(env, self.prefix),
                         ["svc/svc-dev.yml", "application-dev.yml", "svc/svc.yml", "svc.yml",
                          "application.properties", "application.yml (document #1)",
                          "application.yml (document #0)"])

    def test_overrides_in_documents(self):
        r = self.server.get("/svc-dev.properties")
        self.assertEqual(r.status, 200, r)
        self.assertIn("forced.value: from-overrides", r.text.split("\n"))

    def test_missing_directory_ignored(self):
        r = self.server.get("/nosuchdir/dev")
        self.assertEqual(r.status, 200, r)
        env = r.json()
        self.assertEqual(env["propertySources"][0]["name"], "overrides")
        env["propertySources"] = env["propertySources"][1:]
        self.assertEqual(relative_names(env, self.prefix), SHARED_DEV)


class SearchPathPatternTest(ServerTestCase):
    """--search-paths with {profile}, * and **."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit({
            "application.yml": "shared: 1\n",
            "orders.yml": "at: root\n",
            "dev/orders.yml": "at: dev\n",
            "prod/orders.yml": "at: prod\n",
            "team-a/orders.yml": "at: team-a\n",
            "team-b/orders.yml": "at: team-b\n",
            "other/orders.yml": "at: other\n",
            "nested/a/orders.yml": "at: nested-a\n",
            "nested/a/b/orders.yml": "at: nested-a-b\n",
        }, "patterns")
        cls.server = cls.start_server(cls.repo.uri, search_paths="{profile},team-*,nested/**")
        cls.prefix = cls.repo.uri + "/"

    def test_patterns(self):
        r = self.server.get("/orders/dev")
        self.assertEqual(r.status, 200, r)
        names = relative_names(r.json(), self.prefix)
        self.assertEqual(names[-3:], ["dev/orders.yml", "orders.yml", "application.yml"])
        team = {"team-a/orders.yml", "team-b/orders.yml"}
        nested = {"nested/a/orders.yml", "nested/a/b/orders.yml"}
        self.assertEqual(set(names[:-3]), team | nested)
        # later search paths rank higher: nested/** above team-* above {profile}
        self.assertEqual(set(names[:2]), nested)
        self.assertEqual(set(names[2:4]), team)

    def test_profile_placeholder_follows_profile(self):
        r = self.server.get("/orders/prod")
        names = relative_names(r.json(), self.prefix)
        self.assertIn("prod/orders.yml", names)
        self.assertNotIn("dev/orders.yml", names)
        self.assertNotIn("other/orders.yml", names)


class LabelSearchPathTest(ServerTestCase):
    """{label} in --search-paths; without a label, the default label fills it (as Spring's
    JGitEnvironmentRepository.getLocations does)."""

    @classmethod
    def setUpServers(cls):
        cls.repo = cls.make_repo()
        cls.repo.commit({"orders.yml": "at: root\n", "main/orders.yml": "at: main-dir\n",
                         "release/orders.yml": "at: release-dir\n"}, "label dirs")
        cls.repo.branch("release")
        cls.server = cls.start_server(cls.repo.uri, search_paths="{label}")
        cls.prefix = cls.repo.uri + "/"

    def names(self, path):
        r = self.server.get(path)
        self.assertEqual(r.status, 200, r)
        return relative_names(r.json(), self.prefix)

    def test_explicit_label(self):
        self.assertEqual(self.names("/orders/dev/main"), ["main/orders.yml", "orders.yml"])
        self.assertEqual(self.names("/orders/dev/release"), ["release/orders.yml", "orders.yml"])

    def test_default_label_fills_placeholder(self):
        self.assertEqual(self.names("/orders/dev"), ["main/orders.yml", "orders.yml"])


class DirModeTest(ServerTestCase):
    """dir:PATH serves a plain directory with the same rules (Spring's native mode)."""

    @classmethod
    def setUpServers(cls):
        cls.dir = os.path.join(cls.tmp, "config")
        for rel, content in FILES.items():
            full = os.path.join(cls.dir, rel)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb" if isinstance(content, bytes) else "w") as f:
                f.write(content)
        cls.server = cls.start_server("dir:" + cls.dir, search_paths="sub")

    def test_worked_example(self):
        r = self.server.get("/foo/dev,mysql")
        self.assertEqual(r.status, 200, r)
        env = r.json()
        self.assertEqual(list(env), ["name", "profiles", "label", "version", "state",
                                     "propertySources"])
        self.assertIn(env["version"], (None, ""))
        self.assertEqual(dir_relative_names(env, self.dir), [
            "foo-mysql.yml", "foo-dev.properties", "application-dev.yml", "sub/foo.yml",
            "foo.yml", "application.properties", "application.yml (document #1)",
            "application.yml (document #0)"])

    def test_label_ignored(self):
        plain = self.server.get("/foo/dev").json()
        labelled = self.server.get("/foo/dev/anything")
        self.assertEqual(labelled.status, 200, labelled)
        self.assertEqual(labelled.json()["label"], "anything")
        self.assertEqual(labelled.json()["propertySources"], plain["propertySources"])

    def test_file_changes_seen_after_refresh(self):
        path = os.path.join(self.dir, "live.yml")
        with open(path, "w") as f:
            f.write("v: 1\n")
        self.server.post("/actuator/refresh")
        self.assertEqual(source(self.server.get("/live/x").json(), "live.yml"), {"v": 1})
        with open(path, "w") as f:
            f.write("v: 2\n")
        self.server.post("/actuator/refresh")
        self.assertEqual(source(self.server.get("/live/x").json(), "live.yml"), {"v": 2})


if __name__ == "__main__":
    unittest.main()
