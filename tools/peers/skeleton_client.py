#!/usr/bin/env python3
"""The Python ssl "skeleton" TLS client, used as an interop peer.

It behaves like the textbook Python ssl client:

* ``ssl.create_default_context()`` -- certificate and host-name verification
  on, trusting the system store.  ``load_default_certs`` (called by
  ``create_default_context``) honours the ``SSL_CERT_FILE`` environment
  variable, which is how a test points it at its own CA:

      SSL_CERT_FILE=ca.crt tools/peers/skeleton_client.py --port 4443

* connects to --host/--port, wraps the socket with
  ``server_hostname=host``, prints ``Connected to SSL server``, sends the
  message, reads one ``recv(1024)`` and prints ``Response: <reply>``.

Exit status 0 on success.  On any exception it prints ``Error: <reason>``
(on stdout, like the skeleton) and exits 1.

Standard library only.
"""

import argparse
import socket
import ssl
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="localhost",
                        help="server host name; also used for SNI and verification")
    parser.add_argument("--port", type=int, default=4443)
    parser.add_argument("--message", default="Hello from client!")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="socket timeout in seconds (default 10)")
    args = parser.parse_args()

    try:
        context = ssl.create_default_context()
        with socket.create_connection((args.host, args.port),
                                      timeout=args.timeout) as sock:
            with context.wrap_socket(sock, server_hostname=args.host) as tls:
                print("Connected to SSL server", flush=True)
                tls.sendall(args.message.encode("utf-8"))
                reply = tls.recv(1024)
                print(f"Response: {reply.decode('utf-8', errors='replace')}",
                      flush=True)
        return 0
    except Exception as error:  # the skeleton reports any failure the same way
        print(f"Error: {error}", flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
