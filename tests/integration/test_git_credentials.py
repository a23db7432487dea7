"""Git credentials go to the configured host only, and never in clear unless asked for.

The remote is `git http-backend` (the real smart-HTTP Git server) run as a CGI program behind a
small Python HTTP server that demands HTTP Basic credentials and records every Authorization
header it is sent. A second such server on another host name stands behind a redirect.
"""

import base64
import http.server
import os
import subprocess
import threading
import unittest

from almanac_harness import ServerTestCase, GitRepo, Server, wait_until

USER = "alice"
RIGHT = "correct horse"


class GitHttpServer:
    """HTTP Basic in front of `git http-backend`; redirect_to turns it into a redirector."""

    def __init__(self, project_root, redirect_to=None, redirect_after_auth=False):
        self.project_root = project_root
        self.redirect_to = redirect_to
        self.redirect_after_auth = redirect_after_auth
        self.requests = 0
        self.authorizations = []  # every Authorization header received
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.handle(self)

            def do_POST(self):
                outer.handle(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def body(self, h):
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(h.rfile.readline().strip(), 16)
                if size == 0:
                    h.rfile.readline()
                    return data
                data += h.rfile.read(size)
                h.rfile.readline()
        return h.rfile.read(int(h.headers.get("Content-Length") or 0))

    def answer(self, h, status, headers=(), data=b""):
        h.send_response(status)
        for k, v in headers:
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def handle(self, h):
        self.requests += 1
        auth = h.headers.get("Authorization")
        if auth is not None:
            self.authorizations.append(auth)
        data = self.body(h) if h.command == "POST" else b""
        if self.redirect_to is not None and not self.redirect_after_auth:
            self.answer(h, 301, [("Location", self.redirect_to + h.path)])
            return
        expected = "Basic " + base64.b64encode(("%s:%s" % (USER, RIGHT)).encode()).decode()
        if auth != expected:
            # no body: libgit2 1.5 misreads the next answer on a kept-alive connection after a
            # 401 that has one
            self.answer(h, 401, [("WWW-Authenticate", 'Basic realm="git"')])
            return
        if self.redirect_to is not None:
            self.answer(h, 301, [("Location", self.redirect_to + h.path)])
            return
        path, _, query = h.path.partition("?")
        env = {"GIT_PROJECT_ROOT": self.project_root, "GIT_HTTP_EXPORT_ALL": "1",
               "PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": h.command,
               "CONTENT_TYPE": h.headers.get("Content-Type", ""),
               "CONTENT_LENGTH": str(len(data)), "REMOTE_USER": USER,
               "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        out = subprocess.run(["git", "http-backend"], input=data, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.answer(h, status, headers, payload)


class CredentialsTest(ServerTestCase):
    @classmethod
    def setUpServers(cls):
        work = GitRepo(cls.tmp, "work")
        work.commit({"application.yml": "greeting: hello\n"}, "first")
        cls.root = os.path.join(cls.tmp, "served")
        os.makedirs(cls.root)
        subprocess.run(["git", "clone", "-q", "--bare", work.path,
                        os.path.join(cls.root, "origin.git")], check=True)
        cls.origin = GitHttpServer(cls.root)
        # the same kind of server, reached under another host name
        cls.other = GitHttpServer(cls.root)
        cls.redirector = GitHttpServer(cls.root,
                                       redirect_to="http://localhost:%d" % cls.other.port)
        cls.late_redirector = GitHttpServer(cls.root, redirect_after_auth=True,
                                            redirect_to="http://localhost:%d" % cls.other.port)

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            for s in (cls.origin, cls.other, cls.redirector, cls.late_redirector):
                s.close()

    def password_file(self, password):
        path = os.path.join(self.tmp, "pw-%d" % len(os.listdir(self.tmp)))
        with open(path, "w") as f:
            f.write(password + "\n")
        return path

    def server(self, url, password, extra=()):
        s = Server(url, self.tmp, extra_args=list(extra),
                   env={"ALMANAC_GIT_USERNAME": USER,
                        "ALMANAC_GIT_PASSWORD_FILE": self.password_file(password)})
        type(self).servers.append(s)
        return s

    def url(self, server, host="127.0.0.1"):
        return "http://%s:%d/origin.git" % (host, server.port)

    def test_right_password_is_sent_to_the_configured_host(self):
        seen = len(self.origin.authorizations)
        s = self.server(self.url(self.origin), RIGHT, ["--git-allow-insecure-http"]).start()
        status, _, env = s.get_json("/app/default")
        self.assertEqual(status, 200)
        self.assertEqual(env["propertySources"][0]["source"]["greeting"], "hello")
        self.assertGreater(len(self.origin.authorizations), seen)

    def test_wrong_password_says_authentication_failed(self):
        s = self.server(self.url(self.origin), "wrong", ["--git-allow-insecure-http"])
        s.launch()
        self.assertEqual(s.wait_exit(), 1)
        self.assertIn("authentication failed for 127.0.0.1", s.log())

    def test_redirect_to_another_host_gets_no_credentials(self):
        before = self.other.requests
        s = self.server(self.url(self.redirector), RIGHT, ["--git-allow-insecure-http"])
        s.launch()
        self.assertEqual(s.wait_exit(), 1)
        # the redirect was followed (the other host was asked) but told nothing
        self.assertGreater(self.other.requests, before)
        self.assertEqual(self.other.authorizations, [])
        self.assertIn("refusing to send credentials for 127.0.0.1 to localhost", s.log())

    def test_redirect_after_authenticating_gets_no_credentials(self):
        before = self.other.requests
        s = self.server(self.url(self.late_redirector), RIGHT, ["--git-allow-insecure-http"])
        s.launch()
        self.assertEqual(s.wait_exit(), 1)
        self.assertGreater(len(self.late_redirector.authorizations), 0)
        self.assertGreater(self.other.requests, before)
        self.assertEqual(self.other.authorizations, [])

    def test_password_over_plain_http_is_refused(self):
        seen = len(self.origin.authorizations)
        s = self.server(self.url(self.origin), RIGHT)
        s.launch()
        self.assertEqual(s.wait_exit(), 1)
        self.assertIn("plain http://", s.log())
        self.assertIn("--git-allow-insecure-http", s.log())
        self.assertEqual(len(self.origin.authorizations), seen)

    def test_password_in_repo_on_the_command_line_is_refused(self):
        url = "http://%s:%s@127.0.0.1:%d/origin.git" % (USER, "s3cret", self.origin.port)
        s = Server(url, self.tmp)
        type(self).servers.append(s)
        s.launch()
        self.assertEqual(s.wait_exit(), 2)
        self.assertIn("ALMANAC_GIT_PASSWORD_FILE", s.log())
        self.assertNotIn("s3cret", s.log())


if __name__ == "__main__":
    unittest.main()
