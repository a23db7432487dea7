"""Shared helpers of the container-image and Kubernetes tests (standard library only).

Environment (set by tests/k8s/CMakeLists.txt):
  ALMANAC_SOURCE_DIR      the repository
  ALMANAC_BUILD_DIR       the build tree
  ALMANAC_SERVER_BIN      almanac-server
  ALMANAC_CLI_BIN         the almanac CLI (may be absent while the CLI is not built)
  ALMANAC_K8S_NODE_PREFIX where the npm packages of package.json are installed (npm ci)
"""

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("ALMANAC_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE)))
BUILD_DIR = os.environ.get("ALMANAC_BUILD_DIR", "")
SERVER_BIN = os.environ.get("ALMANAC_SERVER_BIN", "")
CLI_BIN = os.environ.get("ALMANAC_CLI_BIN", "")
NODE_PREFIX = os.environ.get("ALMANAC_K8S_NODE_PREFIX",
                             os.path.join(BUILD_DIR or tempfile.gettempdir(), "k8s-node"))

K8S_DIR = os.path.join(SOURCE_DIR, "k8s")
OVERLAYS = {
    "base": os.path.join(K8S_DIR, "base"),
    "dev": os.path.join(K8S_DIR, "overlays", "dev"),
    "prod": os.path.join(K8S_DIR, "overlays", "prod"),
    "example": os.path.join(K8S_DIR, "example"),
}

# Variables the server reads besides the ALMANAC_<FLAG> ones its --help lists (Git credentials,
# read by the repository module on each fetch).
SERVER_EXTRA_ENV = {"ALMANAC_GIT_USERNAME", "ALMANAC_GIT_PASSWORD_FILE",
                    "ALMANAC_GIT_SSH_KEY_FILE"}


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def read_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def run(args, **kwargs):
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 300)
    return subprocess.run(args, **kwargs)


# ---- kubectl kustomize ------------------------------------------------------------------------

def kustomize_problem():
    """None when `kubectl kustomize` can build the manifests, else why not."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        return "kubectl is not installed (it brings kustomize: kubectl kustomize)"
    out = run([kubectl, "version", "--client", "-o", "json"])
    if out.returncode != 0:
        return f"kubectl version failed: {out.stderr.strip()}"
    version = json.loads(out.stdout).get("kustomizeVersion", "")
    m = re.match(r"v(\d+)\.", version)
    if not m or int(m.group(1)) < 4:
        return (f"kubectl's kustomize is {version or 'unknown'}; the manifests use the syntax of "
                "kustomize v4 and later (kubectl 1.21+)")
    return None


_built = {}


def kustomize(name):
    """The YAML text `kubectl kustomize` builds for one of OVERLAYS."""
    if name not in _built:
        out = run(["kubectl", "kustomize", OVERLAYS[name]])
        if out.returncode != 0:
            raise AssertionError(f"kubectl kustomize {OVERLAYS[name]} failed:\n{out.stderr}")
        _built[name] = out.stdout
    return _built[name]


# ---- schema validation (node + the npm packages of package.json) -------------------------------

def node_problem():
    for tool in ("node", "npm"):
        if not shutil.which(tool):
            return f"{tool} is not installed (scripts/install-deps installs Node.js and npm)"
    return None


def ensure_node_modules():
    """Installs package-lock.json's packages into NODE_PREFIX once (npm ci), under a lock so that
    tests running in parallel do it only once; reinstalls when the lock file changes."""
    os.makedirs(NODE_PREFIX, exist_ok=True)
    with open(os.path.join(NODE_PREFIX, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        want = read_bytes(os.path.join(HERE, "package-lock.json"))
        stamp = os.path.join(NODE_PREFIX, "installed-package-lock.json")
        have = read_bytes(stamp) if os.path.exists(stamp) else None
        if have != want or not os.path.isdir(os.path.join(NODE_PREFIX, "node_modules")):
            for f in ("package.json", "package-lock.json"):
                shutil.copyfile(os.path.join(HERE, f), os.path.join(NODE_PREFIX, f))
            out = run(["npm", "ci", "--no-audit", "--no-fund", "--prefix", NODE_PREFIX])
            if out.returncode != 0:
                raise AssertionError(f"npm ci failed:\n{out.stdout}\n{out.stderr}")
            with open(stamp, "wb") as f:
                f.write(want)


def validate(yaml_text):
    """(objects, errors): every document of yaml_text as JSON, and the schema errors."""
    ensure_node_modules()
    out = run(["node", os.path.join(HERE, "validate.cjs"), NODE_PREFIX], input=yaml_text)
    if out.returncode != 0:
        raise AssertionError(f"validate.cjs failed:\n{out.stderr}")
    result = json.loads(out.stdout)
    return result["objects"], result["errors"]


_objects = {}


def objects(name):
    """The objects of an overlay, schema-checked (an AssertionError lists the errors)."""
    if name not in _objects:
        objs, errors = validate(kustomize(name))
        if errors:
            raise AssertionError(f"{name}: objects the Kubernetes schema rejects:\n  "
                                 + "\n  ".join(errors))
        _objects[name] = objs
    return _objects[name]


def of_kind(objs, kind):
    return [o for o in objs if o.get("kind") == kind]


def one(objs, kind, name):
    found = [o for o in objs if o.get("kind") == kind and o["metadata"]["name"] == name]
    if len(found) != 1:
        raise AssertionError(f"expected one {kind} named {name}, found {len(found)}")
    return found[0]


def server_deployment(objs):
    return one(objs, "Deployment", "almanac")


def container(pod_spec, name, init=False):
    key = "initContainers" if init else "containers"
    for c in pod_spec.get(key, []):
        if c["name"] == name:
            return c
    raise AssertionError(f"no {key[:-1]} named {name}")


def selects(selector, labels):
    """Whether a matchLabels selector selects an object with these labels."""
    match = selector.get("matchLabels", {})
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


# ---- help texts ---------------------------------------------------------------------------------

def help_text(binary, *args):
    out = run([binary, *args, "--help"], timeout=30)
    return out.returncode, out.stdout + out.stderr


def server_env_names():
    """Every ALMANAC_* variable the server's --help documents, plus the Git credential ones."""
    code, text = help_text(SERVER_BIN)
    if code != 0:
        raise AssertionError(f"almanac-server --help exited {code}")
    names = set(re.findall(r"\[(ALMANAC_[A-Z0-9_]+)", text))
    if len(names) < 10:
        raise AssertionError(f"almanac-server --help lists too few variables: {sorted(names)}")
    return names | SERVER_EXTRA_ENV


# ---- a real server over a real Git repository --------------------------------------------------
# The integration suite's harness (GitRepo, Server) is reused as it is.

sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "integration"))
import almanac_harness  # noqa: E402

GitRepo = almanac_harness.GitRepo
Server = almanac_harness.Server


def skip_unless(problem):
    return unittest.skipIf(problem is not None, problem or "")
