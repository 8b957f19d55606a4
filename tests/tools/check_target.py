#!/usr/bin/env python3
"""Many health-check targets at once: an asyncio server on 0.0.0.0:PORT (every address of
its namespace) that answers any request with `HTTP/1.0 200 OK` and closes, and a TLS port
that completes handshakes with a self-signed certificate when --tls-port is given. Cheap
enough per connection to take thousands of checks a second on one core.

    check_target.py --port 80 [--tls-port 443 --cert cert.pem --key key.pem]
"""
import argparse
import asyncio
import resource
import ssl

RESPONSE = b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"


async def handle(reader, writer):
    try:
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        writer.write(RESPONSE)
        await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
            ConnectionError, ssl.SSLError):
        pass  # checks reset the connection once they have their answer
    finally:
        try:
            writer.close()
        except ConnectionError:
            pass


async def handle_tls(reader, writer):
    # The handshake is done by the time we get here; a tls-hello check has reset already.
    try:
        writer.close()
    except ConnectionError:
        pass


async def main(a):
    # Thousands of checks a second keep many connections open for a moment: lift the
    # default limit of 1024 descriptors.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    servers = [await asyncio.start_server(handle, "0.0.0.0", a.port, backlog=4096)]
    if a.tls_port:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)
        servers.append(await asyncio.start_server(handle_tls, "0.0.0.0", a.tls_port, ssl=ctx, backlog=4096))
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=80)
    ap.add_argument("--tls-port", type=int)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    try:
        asyncio.run(main(ap.parse_args()))
    except KeyboardInterrupt:
        pass
