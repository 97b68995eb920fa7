#!/usr/bin/env python3
"""The 'internet' of the lab: answers the OS connectivity checks the way the real servers do,
on ports 80 and 8080, over IPv4 and IPv6. Standard library only."""
import http.server
import socket
import socketserver
import threading

ANSWERS = {
    "/hotspot-detect.html": (200, "text/html", b"<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>"),
    "/generate_204": (204, "text/plain", b""),
    "/connecttest.txt": (200, "text/plain", b"Microsoft Connect Test"),
    "/ncsi.txt": (200, "text/plain", b"Microsoft NCSI"),
    "/canonical.html": (200, "text/html", b'<meta http-equiv="refresh" content="0;url=https://support.mozilla.org/kb/captive-portal"/>'),
    "/success.txt": (200, "text/plain", b"success\n"),
}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        status, ctype, body = ANSWERS.get(self.path, (200, "text/html", b"<h1>The internet</h1>"))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


servers = [Server(("::", port), Handler) for port in (80, 8080)]
for s in servers[1:]:
    threading.Thread(target=s.serve_forever, daemon=True).start()
servers[0].serve_forever()
