#!/usr/bin/env python3
"""The Python ssl "skeleton" TLS server, used as an interop peer.

It behaves like the textbook Python ssl server:

* ``ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)`` with
  ``load_cert_chain(--cert, --key)``; client certificates are not requested.
* binds --host/--port (port 0 picks a free port) and prints
  ``SSL Server listening on HOST:PORT`` with the real port.
* for each connection: accept, TLS handshake, one ``recv(1024)``, print
  ``Received: <message>`` -- and then drops the connection WITHOUT replying
  and WITHOUT sending a TLS close_notify alert.

That last point is the interesting part for interop: the client sees the TCP
connection end (EOF) with no reply and no close_notify.  Python's
``SSLSocket.shutdown()`` is a plain TCP shutdown (it discards the TLS state
first and never calls SSL_shutdown), so no alert goes on the wire; only
``SSLSocket.unwrap()`` would send close_notify, and it is never called here.

--once serves a single connection and exits (for tests).  Without it the
server loops until interrupted.  Every line is flushed, so a test can read
stdout through a pipe.

Standard library only.
"""

import argparse
import socket
import ssl
import sys


def serve_one(listener: socket.socket, context: ssl.SSLContext, timeout: float) -> None:
    """Accept one TCP connection, handshake, read once, drop it."""
    raw, address = listener.accept()
    raw.settimeout(timeout)
    try:
        with context.wrap_socket(raw, server_side=True) as conn:
            data = conn.recv(1024)
            print(f"Received: {data.decode('utf-8', errors='replace')}", flush=True)
            # Drop the connection: TCP FIN only, no reply, no close_notify.
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # the peer may already be gone
    except (ssl.SSLError, OSError) as error:
        print(f"Connection from {address[0]} failed: {error}", flush=True)
    finally:
        raw.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=4443,
                        help="port to bind; 0 picks a free port")
    parser.add_argument("--cert", required=True, help="PEM certificate chain")
    parser.add_argument("--key", required=True, help="PEM private key")
    parser.add_argument("--once", action="store_true",
                        help="serve one connection, then exit")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="per-connection socket timeout in seconds (default 10)")
    args = parser.parse_args()

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)

    # getaddrinfo picks the family (127.0.0.1 -> IPv4, ::1 -> IPv6).
    family, kind, proto, _, address = socket.getaddrinfo(
        args.host, args.port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(5)
        port = listener.getsockname()[1]
        print(f"SSL Server listening on {args.host}:{port}", flush=True)
        try:
            while True:
                serve_one(listener, context, args.timeout)
                if args.once:
                    break
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
