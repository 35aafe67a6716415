"""A CoreDNS stand-in: answers every DNS query on UDP port 53 with an A record naming itself.

Run inside a pod's network namespace (``ip netns exec``); standard library only, so it starts
fast on an emulated CPU. On SIGTERM it keeps answering for ``--lameduck`` seconds, as CoreDNS's
``health { lameduck }`` does, then exits. It prints ``ready`` once its socket is bound.
"""

from __future__ import annotations

import argparse
import selectors
import signal
import socket
import struct
import sys
import time


def answer(query: bytes, name: str, ip: str) -> bytes | None:
    """A response to ``query``: same ID and question, QR and RA set, one A record of ``ip``,
    and the server's ``name`` in a TXT record, so a client knows which pod answered."""
    if len(query) < 12:
        return None
    qid, _, qdcount = struct.unpack("!HHH", query[:6])
    if qdcount != 1:
        return None
    header = struct.pack("!HHHHHH", qid, 0x8180, 1, 2, 0, 0)
    question = query[12:]
    a_record = struct.pack("!HHHIH", 0xC00C, 1, 1, 5, 4) + socket.inet_aton(ip)
    text = name.encode()[:255]
    txt_record = struct.pack("!HHHIHB", 0xC00C, 16, 1, 5, len(text) + 1, len(text)) + text
    return header + question + a_record + txt_record


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--ip", required=True)
    parser.add_argument("--lameduck", type=float, default=5.0)
    args = parser.parse_args()
    stopping_at: list[float] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping_at.append(time.monotonic()))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.ip, 53))
    sock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    print("ready", flush=True)
    while not stopping_at or time.monotonic() - stopping_at[0] < args.lameduck:
        for _ in sel.select(timeout=0.2):
            while True:
                try:
                    query, peer = sock.recvfrom(512)
                except BlockingIOError:
                    break
                reply = answer(query, args.name, args.ip)
                if reply is not None:
                    sock.sendto(reply, peer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
