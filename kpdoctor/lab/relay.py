"""A TCP relay from listening sockets inside network namespaces to an address in this one.

The lab's API server listens on the host's loopback only. kube-proxy runs inside node
namespaces, which have their own loopback; this relay opens a listening socket *inside* each
node namespace (setns, socket(), setns back: a socket stays in the namespace it was made in)
and forwards every connection to the API server's loopback address in the relay's own
namespace. No interface, address or route is added to the host.

    python3 -m kpdoctor.lab.relay --target 127.0.0.1:PORT --listen NS:127.0.0.1:PORT [--listen ...]

It prints "ready" once every socket is listening and runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager

CLONE_NEWNET = 0x40000000
BUFFER = 1 << 16


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextmanager
def in_netns(netns: str) -> Iterator[None]:
    """Runs the block inside the named network namespace, then back in this one (a socket stays where it was made)."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)
        os.close(target)


def listen_in(netns: str, host: str, port: int) -> socket.socket:
    """A listening TCP socket created inside the named network namespace."""
    with in_netns(netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(512)
        sock.setblocking(False)
    return sock


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(BUFFER):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _serve(socks: list[socket.socket], target: tuple[str, int]) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    servers = [await asyncio.start_server(handle, sock=s) for s in socks]
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="relay from node namespaces to the API server")
    parser.add_argument("--target", required=True, help="HOST:PORT in this namespace")
    parser.add_argument("--listen", action="append", default=[], help="NETNS:HOST:PORT (repeatable)")
    args = parser.parse_args(argv)
    socks = []
    for spec in args.listen:
        netns, _, addr = spec.partition(":")
        socks.append(listen_in(netns, *_addr(addr)))
    asyncio.run(_serve(socks, _addr(args.target)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
