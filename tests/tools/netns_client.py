#!/usr/bin/env python3
"""A TCP client that the end-to-end tests drive line by line, run inside a namespace with
`ip netns exec NS python3 netns_client.py` (so its sockets live in that namespace and the
tests need no setns of their own). One command per stdin line, one answer per stdout line:

    connect HOST PORT TIMEOUT_MS   -> ok | refused | timeout | other MSG     (connect, close)
    request HOST PORT TIMEOUT_MS   -> backend NAME | refused | timeout | other MSG
                                      (GET / HTTP/1.0 on a new connection)
    open HOST PORT TIMEOUT_MS      -> ok | refused | timeout | other MSG
                                      (the one kept-alive connection, replacing any before)
    get                            -> backend NAME | ... (GET / HTTP/1.1 on it)

`refused` is a connection refused or reset (a RST), `timeout` a connect or read timeout.
It prints `ready` once started (so a caller timing requests does not time Python's start)
and exits when stdin closes.
"""
import socket
import sys


def answer_of(text):
    for line in text.splitlines():
        if line.startswith("backend="):
            return "backend " + line.split("=", 1)[1].strip()
    return "other no backend line in " + repr(text)[:200]


def failure(e):
    if isinstance(e, (ConnectionRefusedError, ConnectionResetError)):
        return "refused"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timeout"
    return "other " + str(e).replace("\n", " ")


def connect(host, port, timeout_ms):
    return socket.create_connection((host, int(port)), timeout=int(timeout_ms) / 1000)


def request(host, port, timeout_ms):
    try:
        with connect(host, port, timeout_ms) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        return answer_of(data.decode(errors="replace"))
    except OSError as e:
        return failure(e)


def get(s):
    """One HTTP/1.1 request on the kept-alive connection: headers, then Content-Length bytes."""
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")
        buf = b""
        while not buf.endswith(b"\r\n\r\n"):
            b = s.recv(1)
            if not b:
                return "other closed"
            buf += b
            if len(buf) > 8192:
                return "other headers too long"
        length = 0
        for line in buf.decode(errors="replace").lower().splitlines():
            if line.startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        body = b""
        while len(body) < length:
            chunk = s.recv(length - len(body))
            if not chunk:
                return "other closed"
            body += chunk
        return answer_of(body.decode(errors="replace"))
    except OSError as e:
        return "other " + str(e).replace("\n", " ")


def main():
    kept = None
    print("ready", flush=True)
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "connect":
            try:
                connect(*args).close()
                out = "ok"
            except OSError as e:
                out = failure(e)
        elif cmd == "request":
            out = request(*args)
        elif cmd == "open":
            if kept is not None:
                kept.close()
                kept = None
            try:
                kept = connect(*args)
                out = "ok"
            except OSError as e:
                out = failure(e)
        elif cmd == "get":
            out = get(kept) if kept is not None else "other not open"
        else:
            out = "other unknown command " + cmd
        print(out, flush=True)


if __name__ == "__main__":
    main()
