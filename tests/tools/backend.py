#!/usr/bin/env python3
"""A test backend that says who it is: an HTTP server (python's http.server) answering
`GET /` with `backend=NAME`, `GET /stream?secs=N` with one line every 100 ms for N seconds
(a long-lived connection), `GET /bytes?n=N` with N bytes, `PUT`/`POST` reading the whole body
and answering its length and SHA-256, and optionally an agent port that answers every connection with
the text of a file (`up`, `down`, `drain`, `maint`, `50%`...), HAProxy agent-check style.
Every answer of `GET /`, `PUT` and `POST` carries the connection's peer as this server saw it
(`X-Peer: ADDR:PORT`: the client, or a FullNAT balancer's local address and port). With
`--udp-port`, each datagram to that port is answered with `backend=NAME peer=ADDR:PORT
echo=DATAGRAM` to its sender.

    backend.py --name b1 --port 80 --port 8080 [--udp-port 80] [--agent-port 5555 --agent-file /tmp/b1.agent]
"""
import argparse
import hashlib
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fulcrum-test-backend"

    def log_message(self, *args):  # quiet: the tests read outcomes, not logs
        pass

    def do_GET(self):
        url = urlparse(self.path)
        name = self.server.backend_name
        if url.path == "/stream":
            secs = float(parse_qs(url.query).get("secs", ["5"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            # Exactly 10 lines a second, each at its due time (at once if the process ran
            # late): the count is exact however the backend is scheduled.
            start = time.monotonic()
            try:
                for i in range(int(min(secs, 600) * 10)):
                    delay = start + i / 10 - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    line = f"backend={name} tick={i}\n".encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        if url.path == "/bytes":
            # A large download: N bytes of a pattern the client can check (bytes i % 251).
            n = min(int(parse_qs(url.query).get("n", ["0"])[0]), 1 << 30)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            block = bytes(i % 251 for i in range(251 * 256))
            try:
                while n > 0:
                    chunk = block[: min(n, len(block))]
                    self.wfile.write(chunk)
                    n -= len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        self.answer(f"backend={name}\n".encode())

    def do_PUT(self):
        # A large upload: read the whole body, answer its length and digest.
        n = int(self.headers.get("Content-Length", "0"))
        digest = hashlib.sha256()
        left = n
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
        name = self.server.backend_name
        self.answer(f"backend={name} bytes={n - left} sha256={digest.hexdigest()}\n".encode())

    do_POST = do_PUT

    def answer(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("X-Peer", peer(self.client_address))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def peer(addr):
    """`ADDR:PORT` of a peer, an IPv4 one without the dual-stack socket's `::ffff:` prefix."""
    host = addr[0].removeprefix("::ffff:")
    return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"


def dual_stack(server_class):
    """`server_class` listening on IPv6 and, through the same socket, IPv4 (`::` takes both
    families when IPV6_V6ONLY is off, as `python3 -m http.server` does)."""

    class DualStack(server_class):
        address_family = socket.AF_INET6

        def server_bind(self):
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            super().server_bind()

    return DualStack


@dual_stack
class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


class AgentHandler(socketserver.BaseRequestHandler):
    def handle(self):
        try:
            with open(self.server.agent_file) as f:
                text = f.read().strip()
        except OSError:
            text = "up"
        self.request.sendall((text + "\n").encode())


@dual_stack
class AgentServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class UdpHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        name = self.server.backend_name
        text = data.decode(errors="replace").strip()
        sock.sendto(f"backend={name} peer={peer(self.client_address)} echo={text}\n".encode(),
                    self.client_address)


@dual_stack
class UdpServer(socketserver.UDPServer):
    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--port", type=int, action="append", required=True)
    ap.add_argument("--bind", default="::", help="default: every IPv6 and IPv4 address")
    ap.add_argument("--udp-port", type=int, help="answer datagrams on this port")
    ap.add_argument("--agent-port", type=int)
    ap.add_argument("--agent-file")
    a = ap.parse_args()
    servers = []
    for p in a.port:
        s = Server((a.bind, p), Handler)
        s.backend_name = a.name
        servers.append(s)
    if a.udp_port:
        u = UdpServer((a.bind, a.udp_port), UdpHandler)
        u.backend_name = a.name
        servers.append(u)
    if a.agent_port:
        ag = AgentServer((a.bind, a.agent_port), AgentHandler)
        ag.agent_file = a.agent_file or "/dev/null"
        servers.append(ag)
    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
