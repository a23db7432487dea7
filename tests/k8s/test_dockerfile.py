"""The container image, checked without a Docker engine: the Dockerfile parses, its stages and
the files it copies exist, it runs as a non-root user with a working health check, and its
runtime packages are exactly what the built binaries link against (ldd, then dpkg -S)."""

import os
import re
import shutil
import subprocess
import tempfile
import unittest

import dockerfile
import k8s_support as ks

DOCKERFILE = os.path.join(ks.SOURCE_DIR, "Dockerfile")
DOCKERIGNORE = os.path.join(ks.SOURCE_DIR, ".dockerignore")

# Runtime packages that are not shared libraries of the binaries, and why the image needs them.
NON_LIBRARY_PACKAGES = {
    "ca-certificates": "verifying https Git remotes and servers",
    "tini": "PID 1 that forwards SIGTERM (see ENTRYPOINT)",
}
# In every Debian image (Priority: required), so never installed explicitly.
BASE_IMAGE_PACKAGES = {"libc6"}
# Sanitizer runtimes, linked when this build is a sanitizer build; the image's Release build
# has none.
SANITIZER_RUNTIME = re.compile(r"^lib(?:a|ub|t|l|hwa)san\.so")


def tracked_files():
    """The repository's files: git ls-files where there is Git, else the file tree."""
    out = ks.run(["git", "-C", ks.SOURCE_DIR, "ls-files", "-z", "--cached", "--others",
                  "--exclude-standard"])
    if out.returncode == 0:
        return {p for p in out.stdout.split("\0") if p}
    found = set()
    for root, dirs, files in os.walk(ks.SOURCE_DIR):
        dirs[:] = [d for d in dirs if d != ".git" and not d.startswith("build")]
        for f in files:
            found.add(os.path.relpath(os.path.join(root, f), ks.SOURCE_DIR))
    return found


def needed(binary):
    """The DT_NEEDED entries of an ELF file."""
    out = ks.run(["objdump", "-p", binary])
    if out.returncode != 0:
        raise AssertionError(f"objdump -p {binary}: {out.stderr}")
    return re.findall(r"^\s*NEEDED\s+(\S+)$", out.stdout, re.M)


def resolved(binary):
    """soname -> path, as the dynamic loader resolves them (ldd)."""
    out = ks.run(["ldd", binary])
    if out.returncode != 0:
        raise AssertionError(f"ldd {binary}: {out.stderr}")
    paths = {}
    for m in re.finditer(r"^\s*(\S+) => (\S+) \(0x", out.stdout, re.M):
        paths[m.group(1)] = m.group(2)
    for m in re.finditer(r"^\s*(/\S+) \(0x", out.stdout, re.M):  # the loader itself
        paths[os.path.basename(m.group(1))] = m.group(1)
    return paths


def owning_package(path):
    """The Debian package that ships a library file (merged /usr aware)."""
    candidates = [path, os.path.realpath(path)]
    for p in list(candidates):
        if p.startswith("/usr/lib/"):
            candidates.append(p[len("/usr"):])
        elif p.startswith("/lib/"):
            candidates.append("/usr" + p)
    for p in candidates:
        out = ks.run(["dpkg", "-S", p])
        if out.returncode == 0:
            return out.stdout.split(":", 1)[0].strip()
    raise AssertionError(f"dpkg -S finds no package for {path}")


class DockerfileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(DOCKERFILE) as f:
            cls.stages = dockerfile.parse(f.read())
        cls.build, cls.runtime = cls.stages[0], cls.stages[-1]

    def test_two_stages_on_debian_12(self):
        self.assertEqual(len(self.stages), 2, "a build stage and a runtime stage")
        self.assertEqual(self.build.image, "debian:bookworm")
        self.assertEqual(self.runtime.image, "debian:bookworm-slim")
        self.assertTrue(self.build.name and self.runtime.name, "stages are named")

    def test_copy_sources_exist_and_are_in_the_context(self):
        files = tracked_files()
        with open(DOCKERIGNORE) as f:
            ignore = dockerfile.dockerignore_patterns(f.read())
        names = {s.name for s in self.stages}
        for stage in self.stages:
            for instr in stage.find("COPY") + stage.find("ADD"):
                sources = instr.args[:-1]
                if "from" in instr.flags:
                    earlier = {s.name for s in self.stages[:stage.index]}
                    self.assertIn(instr.flags["from"], earlier,
                                  f"line {instr.line}: --from names no earlier stage ({names})")
                    continue
                self.assertEqual(instr.keyword, "COPY", f"line {instr.line}: use COPY, not ADD")
                for src in sources:
                    rel = src.rstrip("/")
                    self.assertFalse(os.path.isabs(rel) or ".." in rel.split("/"),
                                     f"line {instr.line}: {src} leaves the context")
                    present = rel in files or any(p.startswith(rel + "/") for p in files)
                    self.assertTrue(present, f"line {instr.line}: {src} is not in the repository")
                    self.assertFalse(dockerfile.ignored(ignore, rel),
                                     f"line {instr.line}: .dockerignore leaves {src} out")
                    for p in files:
                        if p.startswith(rel + "/") and p.endswith((".c", ".h", ".cmake", ".txt")):
                            self.assertFalse(dockerfile.ignored(ignore, p),
                                             f".dockerignore leaves {p} out of {src}")

    def test_context_leaves_out_build_trees_tests_and_keys(self):
        with open(DOCKERIGNORE) as f:
            ignore = dockerfile.dockerignore_patterns(f.read())
        for path in ("build/CMakeCache.txt", "build-asan/server/almanac-server", ".git/config",
                     "tests/integration/test_x.py", "demo-keys/key.pem", "bench/run.sh"):
            self.assertTrue(dockerfile.ignored(ignore, path), f"{path} would be in the context")

    def test_build_stage_needs_no_package_the_project_does_not_list(self):
        # The build stage's packages are the ones scripts/install-deps installs for building.
        with open(os.path.join(ks.SOURCE_DIR, "scripts", "install-deps")) as f:
            text = f.read()
        listed = set(re.search(r'packages="([^"]*)"', text).group(1).split())
        for run in self.build.find("RUN"):
            for pkg in dockerfile.apt_packages(run.args):
                self.assertIn(pkg, listed, f"{pkg} is not in scripts/install-deps")

    def test_runs_as_a_numeric_non_root_user(self):
        users = self.runtime.find("USER")
        self.assertTrue(users, "the runtime stage sets USER")
        uid, _, gid = users[-1].args[0].partition(":")
        # Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
        self.assertRegex(uid, r"^\d+$")
        self.assertNotEqual(int(uid), 0)
        if gid:
            self.assertNotEqual(int(gid), 0)

    def test_entrypoint_and_command(self):
        entry = self.runtime.find("ENTRYPOINT")
        cmd = self.runtime.find("CMD")
        self.assertTrue(entry and entry[-1].json_form, "ENTRYPOINT in exec form")
        self.assertTrue(cmd and cmd[-1].json_form, "CMD in exec form")
        self.assertEqual(entry[-1].args[0], "/usr/bin/tini")
        self.assertEqual(cmd[-1].args, ["almanac-server"])
        exposed = [a for e in self.runtime.find("EXPOSE") for a in e.args]
        self.assertIn("8888", exposed)

    def test_healthcheck_asks_the_health_endpoint(self):
        checks = self.runtime.find("HEALTHCHECK")
        self.assertEqual(len(checks), 1)
        check = checks[0]
        self.assertIn("cmd", check.flags)
        self.assertIn("/actuator/health", " ".join(check.args))
        for flag in ("interval", "timeout", "start-period", "retries"):
            self.assertIn(flag, check.flags)


def runtime_libraries():
    """The packages that the server, the CLI and libalmanac need at run time, from ldd."""
    bins = [ks.SERVER_BIN, ks.CLI_BIN]
    packages, seen, queue = {}, set(), list(bins)
    while queue:
        binary = queue.pop()
        if binary in seen:
            continue
        seen.add(binary)
        paths = resolved(binary)
        for soname in needed(binary):
            if SANITIZER_RUNTIME.match(soname):
                continue
            path = paths.get(soname)
            if path is None:
                raise AssertionError(f"ldd cannot resolve {soname} of {binary}")
            if ks.BUILD_DIR and os.path.realpath(path).startswith(
                    os.path.realpath(ks.BUILD_DIR) + os.sep):
                queue.append(path)  # our own library (libalmanac): installed by the image
                continue
            packages.setdefault(owning_package(path), set()).add(soname)
    return packages


@unittest.skipUnless(shutil.which("dpkg") and shutil.which("objdump") and shutil.which("ldd"),
                     "needs dpkg, objdump and ldd (Debian's dpkg, binutils, libc-bin)")
class RuntimePackagesTest(unittest.TestCase):
    def test_runtime_packages_are_what_the_binaries_link_against(self):
        for binary in (ks.SERVER_BIN, ks.CLI_BIN):
            self.assertTrue(binary and os.access(binary, os.X_OK), f"not built: {binary!r}")
        with open(DOCKERFILE) as f:
            runtime = dockerfile.parse(f.read())[-1]
        installed = set()
        for run in runtime.find("RUN"):
            installed |= set(dockerfile.apt_packages(run.args))
        needed_packages = runtime_libraries()
        want = set(needed_packages) - BASE_IMAGE_PACKAGES
        have = installed - set(NON_LIBRARY_PACKAGES)
        detail = "\n".join(f"  {p}: {', '.join(sorted(s))}" for p, s in
                           sorted(needed_packages.items()))
        self.assertEqual(sorted(have - want), [],
                         f"the runtime stage installs libraries nothing links:\n{detail}")
        self.assertEqual(sorted(want - have), [],
                         f"the binaries need packages the runtime stage lacks:\n{detail}")
        for pkg in NON_LIBRARY_PACKAGES:
            self.assertIn(pkg, installed)


def context_files(ignore):
    """The repository's files that the build context keeps."""
    return sorted(p for p in tracked_files() if not dockerfile.ignored(ignore, p)
                  and os.path.isfile(os.path.join(ks.SOURCE_DIR, p)))


@unittest.skipUnless(os.environ.get("ALMANAC_K8S_IMAGE_BUILD", "1") != "0",
                     "the image build is replayed once, in the plain build "
                     "(ALMANAC_K8S_IMAGE_BUILD=0)")
class BuildStageTest(unittest.TestCase):
    """The build stage replayed on this machine (the same Debian packages): its COPY lines
    materialise the context into a scratch directory, its RUN lines run there with /staging
    moved into it, and the staged tree is what the runtime stage copies and can run."""

    @classmethod
    def setUpClass(cls):
        with open(DOCKERFILE) as f:
            cls.stages = dockerfile.parse(f.read())
        with open(DOCKERIGNORE) as f:
            cls.ignore = dockerfile.dockerignore_patterns(f.read())
        cls.tmp = tempfile.mkdtemp(prefix="almanac-image-")
        cls.staging = os.path.join(cls.tmp, "staging")
        build = cls.stages[0]
        workdir = None
        kept = context_files(cls.ignore)
        cls.runs = []
        for instr in build.instructions:
            if instr.keyword == "WORKDIR":
                workdir = os.path.join(cls.tmp, instr.args[0].lstrip("/"))
                os.makedirs(workdir, exist_ok=True)
            elif instr.keyword == "COPY":
                *sources, dest = instr.args
                target = os.path.join(workdir, dest)
                for src in sources:
                    rel = src.rstrip("/")
                    for p in kept:
                        if p == rel:
                            into = target if not dest.endswith("/") else os.path.join(
                                target, os.path.basename(p))
                        elif p.startswith(rel + "/"):
                            into = os.path.join(target, p[len(rel) + 1:])
                        else:
                            continue
                        os.makedirs(os.path.dirname(into), exist_ok=True)
                        shutil.copy2(os.path.join(ks.SOURCE_DIR, p), into)
            elif instr.keyword == "RUN" and workdir is not None:
                cls.runs.append((workdir, instr))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_build_stage_builds_and_stages_runnable_programs(self):
        self.assertTrue(self.runs, "the build stage runs its build after WORKDIR")
        for workdir, instr in self.runs:
            # The RUN as the shell would see it, with /staging moved into the scratch directory.
            script = dockerfile.shell_text(instr).replace("/staging", self.staging)
            out = subprocess.run(["sh", "-ec", script], cwd=workdir, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, timeout=1200)
            self.assertEqual(out.returncode, 0,
                             f"line {instr.line} failed:\n{out.stdout[-4000:]}")
        runtime = self.stages[-1]
        for instr in runtime.find("COPY"):
            if instr.flags.get("from") == self.stages[0].name:
                for src in instr.args[:-1]:
                    self.assertTrue(os.path.exists(self.staging + src.replace("/staging", "", 1)),
                                    f"line {instr.line}: {src} was not staged")
        local = os.path.join(self.staging, "usr", "local")
        for program in ("almanac-server", "almanac"):
            path = os.path.join(local, "bin", program)
            self.assertTrue(os.access(path, os.X_OK), f"{program} is not staged")
            # Runs from the staged tree alone: libalmanac is found through the RUNPATH.
            env = {k: v for k, v in os.environ.items()
                   if k not in ("LD_LIBRARY_PATH",) and not k.startswith("ALMANAC_")}
            out = subprocess.run([path, "--help"], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, timeout=30)
            self.assertEqual(out.returncode, 0, f"{program} --help: {out.stderr}")
            if program == "almanac":
                ldd = ks.run(["ldd", path], env=env).stdout
                self.assertIn(os.path.join(local, "lib"), ldd.replace("/bin/../lib", "/lib"))
        # Nothing for building against the library goes into the image.
        self.assertFalse(os.path.exists(os.path.join(local, "include")))
        self.assertFalse([f for f in os.listdir(os.path.join(local, "lib")) if f.endswith(".a")])


class HealthcheckCommandTest(unittest.TestCase):
    """The HEALTHCHECK's command run for real against a server, and with none listening."""

    @classmethod
    def setUpClass(cls):
        ks.almanac_harness.require_server_bin()
        if not shutil.which("bash"):
            raise unittest.SkipTest("bash is not installed")
        with open(DOCKERFILE) as f:
            cls.check = dockerfile.parse(f.read())[-1].find("HEALTHCHECK")[0]
        cls.tmp = tempfile.mkdtemp(prefix="almanac-k8s-")
        repo = ks.GitRepo(cls.tmp)
        repo.commit({"application.yml": "greeting: hello\n"})
        cls.server = ks.Server(repo.uri, cls.tmp).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_check(self, port):
        env = dict(os.environ, ALMANAC_PORT=str(port))
        return subprocess.run(self.check.args, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=30).returncode

    def test_healthy_server_passes(self):
        self.assertEqual(self.run_check(self.server.port), 0)

    def test_nothing_listening_fails(self):
        import socket
        with socket.socket() as s:  # a port that was free a moment ago, and is not listened on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.assertNotEqual(self.run_check(port), 0)


if __name__ == "__main__":
    unittest.main()
