"""What a received CURVE message says about its sender (ZMQ message properties).

The controller's ZAP handler (tether/keys.py) sets ``User-Id`` of an accepted connection
to the worker's z85 public key and ``X-Tether-Key`` to its allow-list file's name; these
read them back from a frame received with ``copy=False``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import zmq
from zmq.utils import z85

KEY_NAME_PROPERTY = "X-Tether-Key"  # ZMQ message property: the allow-list file's name


def fingerprint(public_z85: str | bytes) -> str:
    """A short, stable name for a public key, safe to log (e.g. ``sha256:3f2a…``)."""
    text = public_z85.decode() if isinstance(public_z85, bytes) else public_z85
    raw = z85.decode(text.encode())
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:16]


def peer_key(frame: zmq.Frame) -> str | None:
    """The z85 public key the sender of ``frame`` authenticated with, or None without CURVE.

    ``frame`` is any frame of a message received with ``copy=False`` (e.g. the routing id
    frame of ``sock.recv_multipart(copy=False)``).
    """
    return _property_of(frame, "User-Id")


def _property_of(frame: zmq.Frame, name: str) -> str | None:
    try:
        value = frame.get(name)
    except zmq.ZMQError:  # no ZAP handler judged this connection: no CURVE
        return None
    return str(value) if value else None


def recv_with_key(sock: zmq.Socket[Any], flags: int = 0) -> tuple[list[bytes], str | None]:
    """``sock.recv_multipart(flags)`` plus :func:`peer_key` of the message's sender.

    Only the first frame is received with ``copy=False`` (what carries the metadata), so
    the cost over ``recv_multipart`` is one Frame object per message. Check the key on
    every message, not once per routing id: a routing id is a name, the key is a proof.
    """
    first = sock.recv(flags, copy=False)
    frames = [first.bytes]
    more = first.more
    while more:  # the parts of a message arrive together: these never wait
        frames.append(sock.recv(flags))
        more = bool(sock.getsockopt(zmq.RCVMORE))
    return frames, peer_key(first)


def peer_key_name(frame: zmq.Frame) -> str | None:
    """The allow-list file name (``authorized/NAME.key`` → ``NAME``) the sender's key is in."""
    return _property_of(frame, KEY_NAME_PROPERTY)


def peer_fingerprint(frame: zmq.Frame) -> str | None:
    """:func:`fingerprint` of the sender's key: what ``worker_joined`` should record."""
    return fingerprint(key) if (key := peer_key(frame)) else None
