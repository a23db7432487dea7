"""The Kubernetes manifests as kubectl builds them: every overlay builds, every object validates
against the Kubernetes schema for its kind, and the built output has what running Almanac on
Kubernetes needs (probes, security context, resources, Secrets, replicas, spreading, Services,
autoscaling, disruption budget, network policy), in step with the image and the server's flags."""

import glob
import os
import re
import shutil
import tempfile
import unittest

import dockerfile
import k8s_support as ks

PROBLEM = ks.kustomize_problem() or ks.node_problem()
SERVER_SELECTOR = {"app.kubernetes.io/name": "almanac", "app.kubernetes.io/component": "server"}
FILE_VARIABLES = ("ALMANAC_ENCRYPT_KEY_FILE", "ALMANAC_AUTH_FILE", "ALMANAC_WEBHOOK_SECRET",
                  "ALMANAC_GIT_PASSWORD_FILE", "ALMANAC_CACHE_DIR", "ALMANAC_PEER_SECRET",
                  "ALMANAC_GIT_SSH_KEY_FILE", "ALMANAC_GIT_KNOWN_HOSTS", "ALMANAC_GIT_CA_FILE")


def quantity(text):
    """A Kubernetes quantity as a number (cpu in cores, memory in bytes)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti|k|M|G)?", str(text))
    if not m:
        raise AssertionError(f"not a quantity: {text!r}")
    scale = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 1 << 10, "Mi": 1 << 20,
             "Gi": 1 << 30, "Ti": 1 << 40}[m.group(2)]
    return float(m.group(1)) * scale


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def secret_templates():
    """name -> set of keys, from k8s/secrets/*.yaml (validated like the rest)."""
    text = "\n---\n".join(ks.read_text(p) for p in
                          sorted(glob.glob(os.path.join(ks.K8S_DIR, "secrets", "*.yaml"))))
    objs, errors = ks.validate(text)
    if errors:
        raise AssertionError("secret templates the schema rejects:\n  " + "\n  ".join(errors))
    return objs


def dockerfile_user():
    with open(os.path.join(ks.SOURCE_DIR, "Dockerfile")) as f:
        runtime = dockerfile.parse(f.read())[-1]
    uid, _, gid = runtime.find("USER")[-1].args[0].partition(":")
    return int(uid), int(gid or uid)


@ks.skip_unless(PROBLEM)
class BuildAndSchemaTest(unittest.TestCase):
    def test_every_overlay_builds_and_validates(self):
        for name in ks.OVERLAYS:
            with self.subTest(overlay=name):
                objs = ks.objects(name)
                self.assertTrue(objs)
                for o in objs:
                    self.assertIn("name", o["metadata"])

    def test_the_validator_rejects_what_it_should(self):
        # The checker itself: a wrong type, a missing required field and a misspelt field.
        text = ks.kustomize("base")
        broken = text.replace("readinessProbe:", "readinessProb:", 1)
        broken = broken.replace("replicas: 2", "replicas: two", 1)
        _, errors = ks.validate(broken)
        self.assertTrue(any("readinessProb: unknown field" in e for e in errors), errors)
        self.assertTrue(any("replicas must be integer" in e for e in errors), errors)
        _, errors = ks.validate("apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
                                "spec: {ports: [{name: http}]}\n")
        self.assertTrue(any("port" in e for e in errors), errors)
        _, errors = ks.validate("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: x}\n")
        self.assertTrue(any("no schema" in e for e in errors), errors)

    def test_overlays_set_their_namespace(self):
        for name, namespace in (("dev", "almanac-dev"), ("prod", "almanac")):
            objs = ks.objects(name)
            ks.one(objs, "Namespace", namespace)
            for o in objs:
                if o["kind"] == "ClusterRoleBinding":
                    # Cluster-wide: no namespace of its own, but its ServiceAccount's.
                    for subject in o["subjects"]:
                        self.assertEqual(subject["namespace"], namespace, subject)
                elif o["kind"] != "Namespace":
                    self.assertEqual(o["metadata"].get("namespace"), namespace,
                                     f"{name}: {o['kind']}/{o['metadata']['name']}")
        # Overlays sharing a cluster do not overwrite each other's cluster-wide objects.
        names = [{o["metadata"]["name"] for o in ks.of_kind(ks.objects(n), "ClusterRoleBinding")}
                 for n in ("dev", "prod")]
        self.assertFalse(names[0] & names[1], names)
        prod_ns = ks.one(ks.objects("prod"), "Namespace", "almanac")
        self.assertEqual(prod_ns["metadata"]["labels"].get("pod-security.kubernetes.io/enforce"),
                         "restricted")


@ks.skip_unless(PROBLEM)
class ServerDeploymentTest(unittest.TestCase):
    def each(self):
        for name in ("base", "dev", "prod"):
            objs = ks.objects(name)
            dep = ks.server_deployment(objs)
            pod = dep["spec"]["template"]["spec"]
            yield name, objs, dep, pod, ks.container(pod, "almanac-server")

    def test_can_read_the_cluster_signing_keys(self):
        """The auth template's jwks-url needs a token and the cluster CA at the paths it names,
        and RBAC for /openid/v1/jwks (the built-in discovery ClusterRole, nothing more)."""
        text = next(o for o in secret_templates()
                    if o["metadata"]["name"] == "almanac-auth")["stringData"]["auth.yml"]
        auth = dict(re.findall(r"^\s*(jwks-[a-z-]+): (\S+)$", text, re.M))
        self.assertEqual(auth["jwks-url"], "https://kubernetes.default.svc/openid/v1/jwks")
        for name, objs, dep, pod, c in self.each():
            with self.subTest(overlay=name):
                sa = pod["serviceAccountName"]
                bindings = [b for b in ks.of_kind(objs, "ClusterRoleBinding")
                            if b["roleRef"]["name"] == "system:service-account-issuer-discovery"]
                self.assertEqual(len(bindings), 1)
                self.assertEqual([(s["kind"], s["name"]) for s in bindings[0]["subjects"]],
                                 [("ServiceAccount", sa)])
                self.assertEqual(ks.of_kind(objs, "ClusterRole"), [])
                volumes = {v["name"]: v for v in pod["volumes"]}
                for path in (auth["jwks-ca-file"], auth["jwks-token-file"]):
                    mount = [m for m in c["volumeMounts"]
                             if path.startswith(m["mountPath"].rstrip("/") + "/")]
                    self.assertEqual(len(mount), 1, path)
                    rel = path[len(mount[0]["mountPath"].rstrip("/")) + 1:]
                    sources = volumes[mount[0]["name"]]["projected"]["sources"]
                    paths = [s.get("serviceAccountToken", {}).get("path") for s in sources]
                    paths += [i["path"] for s in sources
                              for i in s.get("configMap", {}).get("items", [])]
                    self.assertIn(rel, paths)

    def test_probes_on_the_health_endpoint(self):
        for name, _, _, _, c in self.each():
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            self.assertEqual(ports.get("http"), 8888)
            self.assertEqual(env_of(c)["ALMANAC_PORT"]["value"], "8888")
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                with self.subTest(overlay=name, probe=probe):
                    get = c[probe]["httpGet"]
                    self.assertEqual(get["path"], "/actuator/health")
                    self.assertIn(get["port"], ("http", 8888))
            startup = c["startupProbe"]
            # The first clone may take minutes: startup must allow for it, liveness must not.
            self.assertGreaterEqual(startup["periodSeconds"] * startup["failureThreshold"], 120)
            live = c["livenessProbe"]
            self.assertLessEqual(live["periodSeconds"] * live["failureThreshold"], 60)

    def test_security_context(self):
        uid, gid = dockerfile_user()
        for name, _, _, pod, c in self.each():
            with self.subTest(overlay=name):
                psc, csc = pod["securityContext"], c["securityContext"]
                self.assertTrue(psc["runAsNonRoot"])
                self.assertEqual(psc["runAsUser"], uid, "the image's USER")
                self.assertEqual(psc["runAsGroup"], gid)
                self.assertEqual(psc["seccompProfile"]["type"], "RuntimeDefault")
                self.assertTrue(csc["runAsNonRoot"])
                self.assertTrue(csc["readOnlyRootFilesystem"])
                self.assertFalse(csc["allowPrivilegeEscalation"])
                self.assertFalse(csc.get("privileged", False))
                self.assertEqual(csc["capabilities"]["drop"], ["ALL"])
                self.assertNotIn("add", csc["capabilities"])
                self.assertEqual(csc["seccompProfile"]["type"], "RuntimeDefault")
                self.assertFalse(pod.get("automountServiceAccountToken", True))
                self.assertFalse(pod.get("hostNetwork", False))

    def test_in_step_with_the_image(self):
        with open(os.path.join(ks.SOURCE_DIR, "Dockerfile")) as f:
            runtime = dockerfile.parse(f.read())[-1]
        image_env = dict(a.split("=", 1) for e in runtime.find("ENV") for a in e.args)
        exposed = {int(a.split("/")[0]) for e in runtime.find("EXPOSE") for a in e.args}
        for name, _, _, _, c in self.each():
            with self.subTest(overlay=name):
                env = env_of(c)
                for var in ("ALMANAC_CACHE_DIR", "ALMANAC_PORT"):
                    self.assertEqual(env[var]["value"], image_env[var], var)
                self.assertEqual({p["containerPort"] for p in c["ports"]}, exposed)

    def test_writable_paths_are_empty_dirs(self):
        # With a read-only root, every place the server writes must be a volume: the Git cache
        # (ALMANAC_CACHE_DIR) and /tmp.
        for name, _, _, pod, c in self.each():
            volumes = {v["name"]: v for v in pod["volumes"]}
            mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
            for path in (env_of(c)["ALMANAC_CACHE_DIR"]["value"], "/tmp"):
                with self.subTest(overlay=name, path=path):
                    self.assertIn(path, mounts)
                    vol = volumes[mounts[path]["name"]]
                    self.assertIn("emptyDir", vol)
                    self.assertIn("sizeLimit", vol["emptyDir"])
                    self.assertFalse(mounts[path].get("readOnly", False))

    def test_files_named_by_variables_are_mounted(self):
        for name, _, _, pod, c in self.each():
            env = env_of(c)
            mounts = [m["mountPath"].rstrip("/") + "/" for m in c["volumeMounts"]]
            for var in FILE_VARIABLES:
                with self.subTest(overlay=name, var=var):
                    value = env[var]["value"]
                    self.assertTrue(any((value.rstrip("/") + "/").startswith(m) for m in mounts),
                                    f"{var}={value} is on no volume")

    def test_git_trust_comes_from_its_config_map(self):
        # The host keys and extra CAs of the Git channel: files of the almanac-git-trust
        # ConfigMap, mounted read-only where ALMANAC_GIT_KNOWN_HOSTS and ALMANAC_GIT_CA_FILE
        # point, never a ~/.ssh in the cache directory.
        for name, objs, _, pod, c in self.each():
            with self.subTest(overlay=name):
                env = env_of(c)
                volume = next(v for v in pod["volumes"] if v["name"] == "git-trust")
                cm = ks.one(objs, "ConfigMap", volume["configMap"]["name"])
                mount = next(m for m in c["volumeMounts"] if m["name"] == "git-trust")
                self.assertTrue(mount["readOnly"])
                for var, key in (("ALMANAC_GIT_KNOWN_HOSTS", "known_hosts"),
                                 ("ALMANAC_GIT_CA_FILE", "ca.crt")):
                    self.assertEqual(env[var]["value"], mount["mountPath"] + "/" + key)
                    self.assertIn(key, cm["data"])

    def test_environment_names_are_server_settings(self):
        known = ks.server_env_names()
        for name, objs, _, pod, c in self.each():
            for var in env_of(c):
                self.assertIn(var, known, f"{name}: the server reads no {var}")
            refs = [e["configMapRef"]["name"] for e in c.get("envFrom", [])]
            self.assertEqual(len(refs), 1)
            cm = ks.one(objs, "ConfigMap", refs[0])
            for key in cm["data"]:
                self.assertIn(key, known, f"{name}: ConfigMap key {key} is no server setting")
            self.assertIn("ALMANAC_REPO", cm["data"])
            self.assertIn("ALMANAC_REFRESH_INTERVAL", cm["data"])
            # Settings that are files or ports belong with the Deployment's mounts, not here.
            for key in FILE_VARIABLES + ("ALMANAC_PORT",):
                self.assertNotIn(key, cm["data"])

    def test_resources(self):
        for name, _, _, _, c in self.each():
            with self.subTest(overlay=name):
                req, lim = c["resources"]["requests"], c["resources"]["limits"]
                self.assertGreater(quantity(req["cpu"]), 0)
                self.assertGreater(quantity(req["memory"]), 0)
                # The response cache alone may take ALMANAC_RESPONSE_CACHE_BYTES.
                self.assertGreaterEqual(quantity(lim["memory"]), quantity(req["memory"]))
        prod = ks.container(ks.server_deployment(ks.objects("prod"))["spec"]["template"]["spec"],
                            "almanac-server")
        cm = ks.one(ks.objects("prod"), "ConfigMap", prod["envFrom"][0]["configMapRef"]["name"])
        cache = quantity(cm["data"]["ALMANAC_RESPONSE_CACHE_BYTES"].replace("M", "Mi"))
        self.assertGreater(quantity(prod["resources"]["limits"]["memory"]), 2 * cache)

    def test_graceful_termination(self):
        for name, _, _, pod, c in self.each():
            with self.subTest(overlay=name):
                command = c["lifecycle"]["preStop"]["exec"]["command"]
                self.assertEqual(command[0], "sleep")
                pause = int(command[1])
                self.assertGreaterEqual(pause, 3, "time for endpoints to drop the pod")
                # preStop counts against the grace period; the server needs about a second more.
                self.assertGreaterEqual(pod["terminationGracePeriodSeconds"], pause + 5)
                self.assertLessEqual(pod["terminationGracePeriodSeconds"], 60)

    def test_replicas_and_spreading(self):
        minimum = {"base": 2, "dev": 2, "prod": 3}
        for name, objs, dep, pod, _ in self.each():
            with self.subTest(overlay=name):
                self.assertGreaterEqual(dep["spec"]["replicas"], minimum[name])
                self.assertEqual(dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0)
                labels = dep["spec"]["template"]["metadata"]["labels"]
                self.assertTrue(ks.selects(dep["spec"]["selector"], labels))
                spread = pod.get("topologySpreadConstraints", [])
                keys = {s["topologyKey"] for s in spread if ks.selects(s["labelSelector"], labels)}
                self.assertIn("kubernetes.io/hostname", keys)
                anti = pod["affinity"]["podAntiAffinity"]
                self.assertTrue(anti)
        spread = ks.server_deployment(ks.objects("prod"))["spec"]["template"]["spec"][
            "topologySpreadConstraints"]
        by_key = {s["topologyKey"]: s["whenUnsatisfiable"] for s in spread}
        self.assertEqual(len(by_key), len(spread), "one constraint per topology key")
        self.assertEqual(by_key["kubernetes.io/hostname"], "DoNotSchedule")
        self.assertIn("topology.kubernetes.io/zone", by_key)
        image = ks.container(ks.server_deployment(ks.objects("prod"))["spec"]["template"]["spec"],
                             "almanac-server")["image"]
        self.assertRegex(image, r"^[a-z0-9.-]+/[a-z0-9./-]+:\d+\.\d+\.\d+$", "a pinned tag")


@ks.skip_unless(PROBLEM)
class AroundTheServerTest(unittest.TestCase):
    def test_services(self):
        for name in ("base", "dev", "prod"):
            objs = ks.objects(name)
            dep = ks.server_deployment(objs)
            labels = dep["spec"]["template"]["metadata"]["labels"]
            ports = {p["name"] for c in dep["spec"]["template"]["spec"]["containers"]
                     for p in c.get("ports", [])}
            svc = ks.one(objs, "Service", "almanac")
            headless = ks.one(objs, "Service", "almanac-headless")
            self.assertNotEqual(svc["spec"].get("clusterIP"), "None")
            self.assertEqual(headless["spec"]["clusterIP"], "None")
            self.assertFalse(headless["spec"].get("publishNotReadyAddresses", False))
            for s in (svc, headless):
                with self.subTest(overlay=name, service=s["metadata"]["name"]):
                    sel = s["spec"]["selector"]
                    self.assertTrue(sel and all(labels.get(k) == v for k, v in sel.items()))
                    self.assertEqual([p["port"] for p in s["spec"]["ports"]], [8888])
                    self.assertIn(s["spec"]["ports"][0]["targetPort"], ports)

    def test_autoscaler_and_disruption_budget(self):
        for name, lowest in (("base", 2), ("dev", 2), ("prod", 3)):
            objs = ks.objects(name)
            dep = ks.server_deployment(objs)
            labels = dep["spec"]["template"]["metadata"]["labels"]
            hpa = ks.one(objs, "HorizontalPodAutoscaler", "almanac")
            target = hpa["spec"]["scaleTargetRef"]
            self.assertEqual((target["kind"], target["name"]), ("Deployment", "almanac"))
            self.assertGreaterEqual(hpa["spec"]["minReplicas"], lowest)
            self.assertGreater(hpa["spec"]["maxReplicas"], hpa["spec"]["minReplicas"])
            self.assertEqual(hpa["spec"]["minReplicas"], dep["spec"]["replicas"])
            for metric in hpa["spec"]["metrics"]:
                if metric["type"] == "Resource":
                    # Utilisation is relative to requests: they must exist (checked above).
                    self.assertEqual(metric["resource"]["name"], "cpu")
            pdb = ks.one(objs, "PodDisruptionBudget", "almanac")
            self.assertTrue(ks.selects(pdb["spec"]["selector"], labels))
            spec = pdb["spec"]
            self.assertEqual(len({"minAvailable", "maxUnavailable"} & set(spec)), 1)
            if "minAvailable" in spec:
                self.assertLess(spec["minAvailable"], hpa["spec"]["minReplicas"],
                                "a drain must be able to evict a pod")

    def test_network_policy_lets_only_labelled_clients_in(self):
        for name in ("base", "dev", "prod"):
            objs = ks.objects(name)
            labels = ks.server_deployment(objs)["spec"]["template"]["metadata"]["labels"]
            pol = ks.one(objs, "NetworkPolicy", "almanac")
            self.assertTrue(ks.selects(pol["spec"]["podSelector"], labels))
            self.assertEqual(pol["spec"]["policyTypes"], ["Ingress"])
            for rule in pol["spec"]["ingress"]:
                self.assertEqual([p["port"] for p in rule["ports"]], [8888])
                for peer in rule["from"]:
                    self.assertNotIn("ipBlock", peer)
                    # Labelled clients from anywhere, or the other replicas (same namespace).
                    if "namespaceSelector" in peer:
                        self.assertEqual(peer["podSelector"]["matchLabels"],
                                         {"almanac.io/client": "true"})
                    else:
                        self.assertEqual(peer["podSelector"]["matchLabels"], SERVER_SELECTOR)
        # The example application carries the label.
        orders = ks.one(ks.objects("dev"), "Deployment", "orders")
        self.assertEqual(orders["spec"]["template"]["metadata"]["labels"]["almanac.io/client"],
                         "true")


@ks.skip_unless(PROBLEM)
class EveryContainerTest(unittest.TestCase):
    """What the restricted Pod Security Standard and a scheduler need, for every container of
    every workload, the example application's included."""

    def containers(self):
        for name in ks.OVERLAYS:
            for dep in ks.of_kind(ks.objects(name), "Deployment"):
                pod = dep["spec"]["template"]["spec"]
                for c in pod.get("initContainers", []) + pod["containers"]:
                    yield f"{name}:{dep['metadata']['name']}/{c['name']}", pod, c

    def test_restricted_security_context(self):
        seen = 0
        for where, pod, c in self.containers():
            seen += 1
            with self.subTest(container=where):
                psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
                self.assertTrue(csc.get("runAsNonRoot", psc.get("runAsNonRoot")))
                self.assertNotEqual(csc.get("runAsUser", psc.get("runAsUser")), 0)
                self.assertFalse(csc.get("allowPrivilegeEscalation", True))
                self.assertTrue(csc.get("readOnlyRootFilesystem"))
                self.assertEqual(csc.get("capabilities", {}).get("drop"), ["ALL"])
                seccomp = csc.get("seccompProfile", psc.get("seccompProfile", {}))
                self.assertEqual(seccomp.get("type"), "RuntimeDefault")
                self.assertFalse(pod.get("automountServiceAccountToken", True))
        self.assertGreaterEqual(seen, 4)

    def test_resources(self):
        for where, _, c in self.containers():
            with self.subTest(container=where):
                res = c["resources"]
                self.assertGreater(quantity(res["requests"]["cpu"]), 0)
                self.assertGreater(quantity(res["requests"]["memory"]), 0)
                self.assertGreaterEqual(quantity(res["limits"]["memory"]),
                                        quantity(res["requests"]["memory"]))

    def test_images(self):
        with open(os.path.join(ks.SOURCE_DIR, "CMakeLists.txt")) as f:
            version = re.search(r"project\(almanac VERSION (\S+)", f.read()).group(1)
        for where, _, c in self.containers():
            with self.subTest(container=where):
                image = c["image"]
                self.assertRegex(image, r":[\w][\w.-]*$", "a tag")
                self.assertFalse(image.endswith(":latest"))
                if c["name"] != "orders":  # the stand-in application
                    # almanac, or the gateway example's almanac plus nginx
                    self.assertRegex(image, r"(^|/)almanac(-gateway)?:")
                    self.assertTrue(image.endswith(":" + version), f"{image}: not {version}")
                    self.assertNotIn("command", c, "keep the image's entrypoint (tini)")
                    self.assertIn(c["args"][0], ("almanac-server", "almanac")
                                  if "-gateway:" not in image else ("almanac", "nginx"))


@ks.skip_unless(PROBLEM)
class SecretsTest(unittest.TestCase):
    """No Secret is ever applied by the manifests (so real ones are never overwritten with
    templates); each one they reference has a template under k8s/secrets/ with the same keys,
    and the templates hold no value."""

    @classmethod
    def setUpClass(cls):
        cls.templates = {o["metadata"]["name"]: o for o in secret_templates()}

    def references(self, objs):
        refs = []  # (secret, key or None, optional)
        for dep in ks.of_kind(objs, "Deployment"):
            pod = dep["spec"]["template"]["spec"]
            for v in pod.get("volumes", []):
                if "secret" in v:
                    s = v["secret"]
                    keys = [i["key"] for i in s.get("items", [])] or [None]
                    refs += [(s["secretName"], k, s.get("optional", False)) for k in keys]
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                for e in c.get("env", []):
                    ref = e.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        refs.append((ref["name"], ref["key"], ref.get("optional", False)))
                for e in c.get("envFrom", []):
                    if "secretRef" in e:
                        refs.append((e["secretRef"]["name"], None, False))
        return refs

    def test_manifests_apply_no_secret(self):
        for name in ks.OVERLAYS:
            self.assertEqual(ks.of_kind(ks.objects(name), "Secret"), [], name)

    def test_every_reference_has_a_template(self):
        seen = set()
        for name in ks.OVERLAYS:
            for secret, key, _ in self.references(ks.objects(name)):
                seen.add(secret)
                self.assertIn(secret, self.templates, f"{name}: no template for {secret}")
                if key is not None:
                    self.assertIn(key, self.templates[secret]["stringData"],
                                  f"{name}: {secret} has no key {key}")
        self.assertEqual(sorted(seen), sorted(self.templates), "a template nothing uses")

    def test_server_secrets_are_files_not_variables(self):
        # Keys and passwords reach the server as files (flags and variables show in /proc).
        for name in ("base", "prod"):
            pod = ks.server_deployment(ks.objects(name))["spec"]["template"]["spec"]
            c = ks.container(pod, "almanac-server")
            for e in c.get("env", []):
                self.assertNotIn("valueFrom", e, e["name"])
            mode = {v["name"]: v["secret"]["defaultMode"] for v in pod["volumes"] if "secret" in v}
            self.assertEqual(set(mode.values()), {0o400})
            by_volume = {m["name"]: m for m in c["volumeMounts"]}
            for vol in mode:
                self.assertTrue(by_volume[vol]["readOnly"])

    def test_templates_hold_no_values(self):
        for name, secret in self.templates.items():
            self.assertNotIn("data", secret, f"{name}: use stringData with empty values")
            for key, value in secret["stringData"].items():
                # Empty, or the auth file that lets nobody in.
                if key == "auth.yml":
                    self.assertNotIn("$", value)
                    self.assertNotIn("sha256", value)
                else:
                    self.assertEqual(value, "", f"{name}/{key}")


if __name__ == "__main__":
    unittest.main()


@ks.skip_unless(PROBLEM)
class SecretTemplatesAgainstTheServerTest(unittest.TestCase):
    """What docs/kubernetes.md promises of the templates, checked with the real server: the
    auth file as templated starts a server that lets nobody in, and the empty key stops it."""

    @classmethod
    def setUpClass(cls):
        ks.almanac_harness.require_server_bin()
        cls.templates = {o["metadata"]["name"]: o["stringData"] for o in secret_templates()}
        cls.tmp = tempfile.mkdtemp(prefix="almanac-k8s-secrets-")
        cls.repo = ks.GitRepo(cls.tmp)
        cls.repo.commit({"orders.yml": "a: 1\n"})

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o600)
        return path

    def test_templated_auth_file_lets_nobody_in(self):
        auth = self.write("auth.yml", self.templates["almanac-auth"]["auth.yml"])
        server = ks.Server(self.repo.uri, self.tmp, extra_args=["--auth-file", auth]).start()
        try:
            self.assertEqual(server.get("/actuator/health").status, 200)
            self.assertEqual(server.get("/orders/default").status, 401)
        finally:
            server.stop()

    def test_templated_git_trust_files_let_the_server_fetch(self):
        # As shipped, the ConfigMap's files trust nothing extra and break nothing: the CA file
        # without a certificate adds none (with a warning), the known_hosts of comments is read.
        trust = os.path.join(ks.K8S_DIR, "base", "git-trust")
        server = ks.Server(self.repo.uri, self.tmp, extra_args=[
            "--git-ca-file", os.path.join(trust, "ca.crt"),
            "--git-known-hosts", os.path.join(trust, "known_hosts")]).start()
        try:
            self.assertEqual(server.get("/orders/default").status, 200)
            self.assertIn("holds no PEM certificate", server.log())
        finally:
            server.stop()

    def test_templated_empty_key_stops_the_server(self):
        key = self.write("encrypt.key", self.templates["almanac-encrypt-key"]["encrypt.key"])
        server = ks.Server(self.repo.uri, self.tmp, extra_args=["--encrypt-key-file", key])
        server.launch()
        self.assertNotEqual(server.wait_exit(), 0)


@ks.skip_unless(PROBLEM)
class GracefulShutdownTest(unittest.TestCase):
    """The server's side of the Deployment's termination settings: after SIGTERM, a parked
    long-poll watcher is answered 503 with Retry-After: 0 (so a client asks another replica at
    once instead of taking it for "unchanged") and the process exits 0 within the time the
    grace period leaves after preStop."""

    def test_sigterm_within_the_grace_period(self):
        import http.client
        import signal
        import threading
        import time
        from urllib.parse import quote

        ks.almanac_harness.require_server_bin()
        pod = ks.server_deployment(ks.objects("prod"))["spec"]["template"]["spec"]
        pre_stop = int(ks.container(pod, "almanac-server")["lifecycle"]["preStop"]["exec"][
            "command"][1])
        budget = pod["terminationGracePeriodSeconds"] - pre_stop
        tmp = tempfile.mkdtemp(prefix="almanac-k8s-stop-")
        server = None
        try:
            repo = ks.GitRepo(tmp)
            repo.commit({"orders.yml": "a: 1\n"})
            server = ks.Server(repo.uri, tmp).start()
            etag = server.get("/orders/prod").header("ETag")
            answer = {}

            def watch():
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
                conn.request("GET", f"/orders/prod?watch={quote(etag)}&timeout=100")
                response = conn.getresponse()
                answer["status"] = response.status
                answer["retry_after"] = response.getheader("Retry-After")
                conn.close()

            watcher = threading.Thread(target=watch)
            watcher.start()
            # Parked once the server's gauge counts it (polled; bounded by the deadline).
            deadline = time.monotonic() + 30
            while not re.search(r"^almanac_watchers 1(\.0)?$",
                                server.get("/metrics").body.decode(), re.M):
                self.assertLess(time.monotonic(), deadline, "the watch was never parked")
                time.sleep(0.02)
            server.proc.send_signal(signal.SIGTERM)
            code = server.proc.wait(timeout=budget)
            watcher.join(timeout=budget)
            self.assertEqual(code, 0)
            self.assertEqual((answer.get("status"), answer.get("retry_after")), (503, "0"))
        finally:
            if server is not None and server.alive():
                server.stop()
            shutil.rmtree(tmp, ignore_errors=True)
