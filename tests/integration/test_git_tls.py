"""HTTPS trust and proxies on the Git channel, against nginx + fcgiwrap + git http-backend.

The test makes its own CA with the openssl CLI, a certificate for localhost and one for another
name, and starts nginx (TLS, two ports: the right certificate and the wrong-name one) passing
requests through fcgiwrap to `git http-backend`. Almanac must refuse the test CA unless
--git-ca-file names it, must still trust the system's CAs when it does, must refuse a certificate
for another name even from a trusted CA, and must reach the remote through an HTTP CONNECT proxy
(--git-proxy, or https_proxy) unless no_proxy names the host. The proxy is a small one in this
file that counts the tunnels it opens.
"""

import os
import select
import shutil
import signal
import socket
import subprocess
import threading
import unittest

from almanac_harness import ServerTestCase, GitRepo, Server, wait_until

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
FCGIWRAP = shutil.which("fcgiwrap") or "/usr/sbin/fcgiwrap"
OPENSSL = shutil.which("openssl")
HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"


def spare_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def openssl(*args, cwd):
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def make_ca(directory, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out",
            name + ".pem", "-days", "2", "-subj", "/CN=" + name,
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    return os.path.join(directory, name + ".pem")


def make_cert(directory, ca, name, dns):
    ext = os.path.join(directory, name + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
                "subjectAltName=DNS:%s\n" % dns)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out",
            name + ".csr", "-subj", "/CN=" + dns, cwd=directory)
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
            "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", ext,
            cwd=directory)
    return os.path.join(directory, name + ".pem"), os.path.join(directory, name + ".key")


class Peer:
    """A process of ours, stopped by its PID."""

    def __init__(self, args, log_path):
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.log_path = log_path

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-2000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class ConnectProxy:
    """An HTTP CONNECT proxy on loopback that counts the tunnels it opens and where to."""

    def __init__(self):
        self.tunnels = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.closing = False
        threading.Thread(target=self.accept, daemon=True).start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def accept(self):
        while not self.closing:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 8192:
            chunk = conn.recv(1024)
            if not chunk:
                conn.close()
                return
            head += chunk
        line = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(line) < 2 or line[0] != "CONNECT":
            conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            conn.close()
            return
        host, _, port = line[1].rpartition(":")
        self.tunnels.append(line[1])
        try:
            upstream = socket.create_connection((host, int(port)), timeout=10)
        except OSError:
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            conn.close()
            return
        conn.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        rest = head.split(b"\r\n\r\n", 1)[1]
        if rest:
            upstream.sendall(rest)
        socks = [conn, upstream]
        try:
            while True:
                ready, _, _ = select.select(socks, [], [], 30)
                if not ready:
                    break
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (upstream if s is conn else conn).sendall(data)
        except OSError:
            pass
        finally:
            conn.close()
            upstream.close()

    def close(self):
        self.closing = True
        self.sock.close()


@unittest.skipUnless(OPENSSL and os.access(NGINX, os.X_OK) and os.access(FCGIWRAP, os.X_OK)
                     and os.access(HTTP_BACKEND, os.X_OK),
                     "nginx, fcgiwrap, openssl or git-http-backend is not installed")
class GitTlsTest(ServerTestCase):
    @classmethod
    def setUpServers(cls):
        pki = os.path.join(cls.tmp, "pki")
        os.makedirs(pki)
        cls.ca_file = make_ca(pki, "test-ca")
        cls.unrelated_ca = make_ca(pki, "unrelated-ca")
        good_cert, good_key = make_cert(pki, "test-ca", "localhost", "localhost")
        wrong_cert, wrong_key = make_cert(pki, "test-ca", "other", "other.example")

        cls.root = os.path.join(cls.tmp, "git")
        os.makedirs(cls.root)
        work = GitRepo(cls.tmp, "work")
        cls.commit = work.commit({"application.yml": "greeting: over https\n"}, "first")
        subprocess.run(["git", "clone", "-q", "--bare", work.path,
                        os.path.join(cls.root, "config.git")], check=True)

        nginx_dir = os.path.join(cls.tmp, "nginx")
        for sub in ("body", "fastcgi", "proxy", "uwsgi", "scgi"):
            os.makedirs(os.path.join(nginx_dir, sub))
        socket_path = os.path.join(nginx_dir, "fcgiwrap.sock")
        cls.peers = []
        fcgi = Peer([FCGIWRAP, "-c", "2", "-s", "unix:" + socket_path],
                    os.path.join(nginx_dir, "fcgiwrap.log"))
        cls.peers.append(fcgi)
        if not wait_until(lambda: os.path.exists(socket_path) or fcgi.proc.poll() is not None,
                          deadline=10) or fcgi.proc.poll() is not None:
            cls.stop_peers()
            raise unittest.SkipTest("fcgiwrap cannot start here: " + fcgi.log())

        cls.port = spare_port()
        cls.wrong_port = spare_port()
        location = """
            location / {
                fastcgi_pass unix:%s;
                fastcgi_param SCRIPT_FILENAME %s;
                fastcgi_param GIT_PROJECT_ROOT %s;
                fastcgi_param GIT_HTTP_EXPORT_ALL "";
                fastcgi_param PATH_INFO $uri;
                fastcgi_param QUERY_STRING $query_string;
                fastcgi_param REQUEST_METHOD $request_method;
                fastcgi_param CONTENT_TYPE $content_type;
                fastcgi_param CONTENT_LENGTH $content_length;
                fastcgi_param REMOTE_ADDR $remote_addr;
                fastcgi_param SERVER_PROTOCOL $server_protocol;
                fastcgi_param GATEWAY_INTERFACE CGI/1.1;
            }""" % (socket_path, HTTP_BACKEND, cls.root)
        conf = os.path.join(nginx_dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write("""
daemon off;
worker_processes 1;
%s
pid %s/nginx.pid;
error_log %s/error.log info;
events { worker_connections 64; }
http {
    access_log %s/access.log;
    client_body_temp_path %s/body;
    fastcgi_temp_path %s/fastcgi;
    proxy_temp_path %s/proxy;
    uwsgi_temp_path %s/uwsgi;
    scgi_temp_path %s/scgi;
    server {
        listen 127.0.0.1:%d ssl;
        ssl_certificate %s;
        ssl_certificate_key %s;
        %s
    }
    server {
        listen 127.0.0.1:%d ssl;
        ssl_certificate %s;
        ssl_certificate_key %s;
        %s
    }
}
""" % ("user root;" if os.geteuid() == 0 else "", nginx_dir, nginx_dir, nginx_dir,
                nginx_dir, nginx_dir, nginx_dir, nginx_dir, nginx_dir,
                cls.port, good_cert, good_key, location,
                cls.wrong_port, wrong_cert, wrong_key, location))
        nginx = Peer([NGINX, "-p", nginx_dir, "-e", os.path.join(nginx_dir, "error.log"),
                      "-c", conf], os.path.join(nginx_dir, "nginx.out"))
        cls.peers.append(nginx)
        if not wait_until(lambda: nginx.proc.poll() is not None or cls.listening(cls.port),
                          deadline=10) or nginx.proc.poll() is not None:
            reason = nginx.log() + open(os.path.join(nginx_dir, "error.log")).read()[-1000:]
            cls.stop_peers()
            raise unittest.SkipTest("nginx cannot start here: " + reason)

        # the peer must serve Git over TLS to a client that trusts the test CA
        probe = subprocess.run(["git", "ls-remote", cls.url()], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=dict(os.environ,
                                                                GIT_SSL_CAINFO=cls.ca_file))
        if probe.returncode != 0 or cls.commit.encode() not in probe.stdout:
            cls.stop_peers()
            raise unittest.SkipTest("nginx + git http-backend does not serve the repository: "
                                    + probe.stderr.decode()[-500:])
        cls.proxy = ConnectProxy()

    @classmethod
    def listening(cls, port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    @classmethod
    def url(cls, port=None):
        return "https://localhost:%d/config.git" % (port or cls.port)

    @classmethod
    def stop_peers(cls):
        for p in reversed(cls.peers):
            p.stop()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.stop_peers()
            if getattr(cls, "proxy", None):
                cls.proxy.close()

    # A proxy variable of the machine running the tests must not decide where fetches go.
    CLEAN_ENV = {"https_proxy": None, "HTTPS_PROXY": None, "http_proxy": None,
                 "all_proxy": None, "ALL_PROXY": None, "no_proxy": None, "NO_PROXY": None,
                 "SSL_CERT_DIR": None, "SSL_CERT_FILE": None}

    def start(self, args=(), env=None, url=None):
        full_env = dict(self.CLEAN_ENV)
        full_env.update(env or {})
        return type(self).start_server(url or self.url(), extra_args=list(args), env=full_env)

    def start_failing(self, args=(), env=None, url=None, status=1):
        full_env = dict(self.CLEAN_ENV)
        full_env.update(env or {})
        s = Server(url or self.url(), self.tmp, extra_args=list(args), env=full_env)
        type(self).servers.append(s)
        s.launch()
        self.assertEqual(s.wait_exit(), status, s.log_tail())
        return s.log()

    def assert_serves(self, server):
        status, _, body = server.get_json("/app/default")
        self.assertEqual(status, 200)
        self.assertEqual(body["version"], self.commit)
        self.assertEqual(body["propertySources"][0]["source"]["greeting"], "over https")

    # -- certificates ---------------------------------------------------------------------------

    def test_test_ca_is_refused_without_ca_file(self):
        log = self.start_failing()
        self.assertIn("cannot open repository", log)
        self.assertRegex(log, r"(?i)certificate|x509|verif")

    def test_ca_file_makes_the_test_ca_trusted(self):
        s = self.start(["--git-ca-file", self.ca_file])
        self.assert_serves(s)
        s.refresh()  # and again, from the fetch process of a running server
        self.assert_serves(s)

    def test_ca_file_from_environment(self):
        s = self.start(env={"ALMANAC_GIT_CA_FILE": self.ca_file})
        self.assert_serves(s)

    def test_wrong_host_name_is_refused_even_from_a_trusted_ca(self):
        log = self.start_failing(["--git-ca-file", self.ca_file], url=self.url(self.wrong_port))
        self.assertIn("cannot open repository", log)
        self.assertRegex(log, r"(?i)certificate|x509|verif|name")

    def test_unrelated_ca_file_does_not_trust_the_test_ca(self):
        log = self.start_failing(["--git-ca-file", self.unrelated_ca])
        self.assertIn("cannot open repository", log)

    def system_cert_dir(self):
        """The test CA standing in for the system's: a certificate directory as OpenSSL reads
        it (SSL_CERT_DIR)."""
        system_dir = os.path.join(self.tmp, "system-certs")
        if not os.path.isdir(system_dir):
            os.makedirs(system_dir)
            shutil.copy(self.ca_file, os.path.join(system_dir, "test-ca.pem"))
            openssl("rehash", system_dir, cwd=system_dir)
        return system_dir

    def test_system_cas_stay_trusted_beside_the_ca_file(self):
        # --git-ca-file names an unrelated CA: the system's must still be trusted.
        s = self.start(["--git-ca-file", self.unrelated_ca],
                       env={"SSL_CERT_DIR": self.system_cert_dir()})
        self.assert_serves(s)

    def test_ca_file_without_certificates_adds_nothing(self):
        # As the Kubernetes manifests ship it: a file of comments. It is warned about, and the
        # fetch trusts what it would trust without the flag (not the test CA), rather than
        # failing on the file.
        empty = os.path.join(self.tmp, "no-certificates.pem")
        with open(empty, "w") as f:
            f.write("# PEM certificates of the Git server's CA go here\n")
        log = self.start_failing(["--git-ca-file", empty])
        self.assertIn("--git-ca-file %s holds no PEM certificate" % empty, log)
        self.assertIn("cannot open repository", log)
        self.assertNotIn("cannot read --git-ca-file", log)
        self.assertNotIn("cannot use --git-ca-file", log)

    def test_ca_file_per_repository(self):
        # A repos: entry trusts its own CA; the default repository (file://) and the server's
        # settings have none. Without the entry's git-ca-file the same configuration fails.
        default = GitRepo(self.tmp, "default-for-repos")
        default.commit({"application.yml": "where: default\n"}, "first")
        def config(name, with_ca):
            path = os.path.join(self.tmp, name)
            with open(path, "w") as f:
                f.write("repos:\n  secure:\n    pattern: secure-*\n    uri: %s\n" % self.url())
                if with_ca:
                    f.write("    git-ca-file: %s\n" % self.ca_file)
            return path
        s = self.start(["--config", config("repos-with-ca.yml", True)], url=default.uri)
        status, _, body = s.get_json("/secure-app/default")
        self.assertEqual(status, 200)
        self.assertEqual(body["version"], self.commit)
        self.assertEqual(body["propertySources"][0]["source"]["greeting"], "over https")
        status, _, body = s.get_json("/other/default")
        self.assertEqual(body["propertySources"][0]["source"]["where"], "default")
        log = self.start_failing(["--config", config("repos-without-ca.yml", False)],
                                 url=default.uri)
        self.assertIn("repos.secure", log)

    def test_missing_ca_file_is_a_clear_error(self):
        missing = os.path.join(self.tmp, "no-such-ca.pem")
        log = self.start_failing(["--git-ca-file", missing])
        self.assertIn("cannot read --git-ca-file %s" % missing, log)

    # -- proxy ----------------------------------------------------------------------------------

    def test_git_proxy_carries_the_fetch(self):
        before = len(self.proxy.tunnels)
        s = self.start(["--git-ca-file", self.ca_file, "--git-proxy", self.proxy.url])
        self.assert_serves(s)
        self.assertIn("localhost:%d" % self.port, self.proxy.tunnels[before:])

    def test_https_proxy_from_environment(self):
        before = len(self.proxy.tunnels)
        s = self.start(["--git-ca-file", self.ca_file], env={"https_proxy": self.proxy.url})
        self.assert_serves(s)
        self.assertIn("localhost:%d" % self.port, self.proxy.tunnels[before:])

    def test_git_proxy_wins_over_environment(self):
        before = len(self.proxy.tunnels)
        dead = "http://127.0.0.1:%d" % spare_port()  # nothing listens there
        s = self.start(["--git-ca-file", self.ca_file, "--git-proxy", self.proxy.url],
                       env={"https_proxy": dead})
        self.assert_serves(s)
        self.assertIn("localhost:%d" % self.port, self.proxy.tunnels[before:])

    def test_no_proxy_goes_direct(self):
        before = len(self.proxy.tunnels)
        s = self.start(["--git-ca-file", self.ca_file, "--git-proxy", self.proxy.url],
                       env={"no_proxy": "example.com,.localhost,localhost"})
        self.assert_serves(s)
        s.refresh()
        self.assertEqual(self.proxy.tunnels[before:], [])

    def test_dead_proxy_fails_the_fetch(self):
        dead = "http://127.0.0.1:%d" % spare_port()
        log = self.start_failing(["--git-ca-file", self.ca_file, "--git-proxy", dead])
        self.assertIn("cannot open repository", log)

    def test_password_in_proxy_on_the_command_line_is_refused(self):
        log = self.start_failing(["--git-proxy", "http://user:secret@127.0.0.1:1"], status=2)
        self.assertIn("--git-proxy: a URL with a password does not belong on the command line",
                      log)
        self.assertNotIn("secret", log)


if __name__ == "__main__":
    unittest.main()
