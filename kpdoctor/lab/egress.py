"""The lab API server's way to its kubelets: an HTTP CONNECT proxy that dials inside a network namespace.

kube-apiserver runs on the host's loopback; kubelets listen on node addresses (10.240.0.x:10250) that
exist only inside the lab's namespaces. `exec`, `logs` and the pod proxy go from the API server to the
kubelet, so the lab gives the API server an egress selector (`cluster` egress, HTTPConnect over a unix
socket; kube-apiserver 1.37 dereferences a missing tlsConfig for TCP, so TCP would need TLS) pointing at
this proxy, which opens each upstream connection from inside the lab's client namespace
(on the nodes' segment). No host interface, address or route is added.

    python3 -m kpdoctor.lab.egress --listen /path/to/egress.sock --netns NS

It prints "ready" once listening and runs until SIGTERM. Only CONNECT to the lab's node segment is served.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import signal
import socket
import sys

from kpdoctor.lab.relay import _pipe, in_netns

ALLOWED = ipaddress.ip_network("10.240.0.0/24")
MAX_HEADER = 8192


def egress_config(socket_path: str) -> str:
    """The EgressSelectorConfiguration kube-apiserver reads (--egress-selector-config-file)."""
    return (
        "apiVersion: apiserver.k8s.io/v1beta1\nkind: EgressSelectorConfiguration\negressSelections:\n"
        "- name: cluster\n  connection:\n    proxyProtocol: HTTPConnect\n    transport:\n      uds:\n"
        f"        udsName: {socket_path}\n"
    )


def parse_connect(head: bytes) -> tuple[str, int] | None:
    """(host, port) of a `CONNECT host:port HTTP/1.x` request head to an allowed address, else None."""
    line = head.split(b"\r\n", 1)[0].decode("ascii", errors="replace").split()
    if len(line) != 3 or line[0] != "CONNECT" or not line[2].startswith("HTTP/1."):
        return None
    host, _, port = line[1].rpartition(":")
    try:
        addr = ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        return None
    if addr not in ALLOWED or not 0 < number < 65536:
        return None
    return str(addr), number


def socket_in(netns: str) -> socket.socket:
    with in_netns(netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    return sock


async def _serve(listen: str, netns: str) -> None:
    loop = asyncio.get_running_loop()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            writer.close()
            return
        target = parse_connect(head[:MAX_HEADER])
        if target is None:
            writer.write(b"HTTP/1.1 403 Forbidden\r\n\r\n")
            writer.close()
            return
        sock = socket_in(netns)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, target), 10)
            up_reader, up_writer = await asyncio.open_connection(sock=sock)
        except (TimeoutError, OSError):
            sock.close()
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
            writer.close()
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_unix_server(handle, listen, limit=MAX_HEADER)
    os.chmod(listen, 0o600)
    print("ready", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="HTTP CONNECT proxy from the API server into a lab namespace")
    parser.add_argument("--listen", required=True, help="the unix socket path to listen on")
    parser.add_argument("--netns", required=True, help="the namespace upstream connections are made from")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.listen, args.netns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
