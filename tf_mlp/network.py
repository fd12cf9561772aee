"""Listening addresses, shared by the model server and the page's server.

    listening_socket(host, port)   a bound, listening TCP socket, IPv6 when the host is an IPv6 address
    address(host, port)            "127.0.0.1:8501", "[::1]:8501": how URLs and gRPC targets write them
    is_loopback(host)              whether only this machine can reach the host (127.0.0.0/8, ::1, localhost)
"""

from __future__ import annotations

import ipaddress
import socket

LOOPBACK_NAMES = frozenset({"localhost", "localhost."})


def _family(host: str) -> socket.AddressFamily:
    # An IPv6 address always holds a colon, an IPv4 address or a host name never does.
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on host:port (0: a free port); OSError as socket.create_server raises it."""
    return socket.create_server((host, port), family=_family(host))


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    """True for loopback addresses and the name localhost; False for every other name, which may resolve anywhere."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower() in LOOPBACK_NAMES
