#!/usr/bin/env python3
"""Clients that misbehave on purpose, for HummingbirdStressTests: a slow reader, a client that never reads, and
one that resets the TCP connection in the middle of a request (HTTP/1.1 or HTTP/2). Each prints one JSON line.
Only 127.0.0.1; every wait is bounded by a socket timeout.

    stress_client.py slow-reader PORT CAFILE BYTES
    stress_client.py never-reads PORT CAFILE
    stress_client.py reset PORT CAFILE h1|h2 [--no-follow-up]
"""
import hashlib
import json
import os
import socket
import ssl
import struct
import sys
import threading
import time


def connect(port, cafile, alpn=None, timeout=30):
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        context.set_alpn_protocols(alpn)
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return context.wrap_socket(raw, server_hostname="localhost")


def read_head(sock):
    """Reads up to the end of an HTTP/1.1 response head; returns (status, headers, bytes already read past it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError(f"connection closed inside the response head: {data!r}")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, rest


def get_root(port, cafile):
    """GET / on a new connection; returns (status, body)."""
    with connect(port, cafile) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        status, headers, body = read_head(sock)
        length = int(headers.get("content-length", "-1"))
        while length < 0 or len(body) < length:
            chunk = sock.recv(4096)
            if not chunk:
                break
            body += chunk
        return status, body.decode("utf-8", "replace")


def slow_reader(port, cafile, size):
    """POST /echo of `size` random bytes, sent by a thread while the reader takes 64 KiB every 10 ms."""
    body = os.urandom(size)
    sock = connect(port, cafile)
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\n"
                 b"Content-Length: %d\r\n\r\n" % size)
    failure = []

    def send():
        try:
            view = memoryview(body)
            for offset in range(0, size, 65536):
                sock.sendall(view[offset:offset + 65536])
        except OSError as error:
            failure.append(repr(error))

    writer = threading.Thread(target=send)
    writer.start()
    status, headers, got = read_head(sock)
    received = bytearray(got)
    chunked = headers.get("transfer-encoding") == "chunked"
    started = time.monotonic()
    done = False
    while not done:
        tick = 0  # one recv returns at most one TLS record (16 KiB): take up to 64 KiB, then pause
        while tick < 65536:
            chunk = sock.recv(65536 - tick)
            if not chunk:
                done = True
                break
            received += chunk
            tick += len(chunk)
            if chunked and received.endswith(b"\r\n0\r\n\r\n") or \
                    not chunked and len(received) >= int(headers.get("content-length", "0")):
                done = True
                break
        time.sleep(0.01)
    writer.join(30)
    sock.close()
    if chunked:  # undo the chunked framing
        payload, data = bytearray(), bytes(received)
        while True:
            line, _, data = data.partition(b"\r\n")
            length = int(line.split(b";")[0], 16)
            if length == 0:
                break
            payload += data[:length]
            data = data[length + 2:]
        received = payload
    print(json.dumps({"status": status, "sent": size, "received": len(received),
                      "intact": hashlib.sha256(received).digest() == hashlib.sha256(body).digest(),
                      "read_s": round(time.monotonic() - started, 2), "writer_error": failure}))


def never_reads(port, cafile):
    """Declares a 64 MiB POST /echo and sends until the server stops taking bytes for 2 s, never reading the echo;
    then, with that connection still open, GET / on a second connection."""
    total = 64 * 1024 * 1024
    sock = connect(port, cafile)
    sock.settimeout(2)  # after the handshake: a send that waits this long means the server stopped taking bytes
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\n"
                 b"Content-Length: %d\r\n\r\n" % total)
    chunk = os.urandom(65536)
    sent = 0
    stalled = False
    while sent < total:
        try:
            sent += sock.send(chunk)
        except (socket.timeout, ssl.SSLWantWriteError):
            stalled = True
            break
    status, body = get_root(port, cafile)
    sock.close()
    print(json.dumps({"declared": total, "sent": sent, "stalled": stalled, "other_status": status,
                      "other_body": body}))


def h2_frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def reset(port, cafile, version, follow_up=True):
    """Starts a 10 MiB POST /echo, sends 1 MiB (HTTP/1.1) or 48 KiB (HTTP/2, inside the first flow-control
    window), then closes with SO_LINGER 0, so the kernel sends a TCP RST instead of a FIN; then (unless
    follow_up is off, for servers that do not speak HTTP/1.1) GET / on a new connection."""
    sock = connect(port, cafile, alpn=["h2"] if version == "h2" else ["http/1.1"])
    negotiated = sock.selected_alpn_protocol()
    if version == "h2":
        # The preface, empty SETTINGS, HEADERS (HPACK: :method POST, :scheme https by static index; :path and
        # :authority as literals with an indexed name) and three 16 KiB DATA frames, stream 1 left open.
        headers = bytes([0x83, 0x87, 0x04, 5]) + b"/echo" + bytes([0x01, 9]) + b"localhost"
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0, b"") + h2_frame(1, 4, 1, headers))
        for _ in range(3):
            sock.sendall(h2_frame(0, 0, 1, os.urandom(16384)))
    else:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % (10 * 1024 * 1024))
        for _ in range(16):
            sock.sendall(os.urandom(65536))
    time.sleep(0.3)  # the server is now in the middle of the request, echoing
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    time.sleep(0.3)
    if not follow_up:
        print(json.dumps({"alpn": negotiated}))
        return
    status, body = get_root(port, cafile)
    print(json.dumps({"alpn": negotiated, "other_status": status, "other_body": body}))


if __name__ == "__main__":
    mode, port, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if mode == "slow-reader":
        slow_reader(port, cafile, int(sys.argv[4]))
    elif mode == "never-reads":
        never_reads(port, cafile)
    elif mode == "reset":
        reset(port, cafile, sys.argv[4], follow_up="--no-follow-up" not in sys.argv[5:])
    else:
        sys.exit(f"unknown mode {mode}")
