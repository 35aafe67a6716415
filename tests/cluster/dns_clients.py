"""Resolver stand-ins: each client sends a DNS query for the same name from its own fixed source
port every ``--interval`` seconds to the Service VIP, and records every answer and every loss.

Run inside the clients' network namespace; standard library only. ``--status`` is rewritten
several times a second (per client: answers, the answering pod, queries unanswered for longer
than ``--lost-after``) so a test can wait on it; on SIGTERM the clients stop sending, wait
``--lost-after`` for late answers and write every query to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import selectors
import signal
import socket
import struct
import sys
import time
from typing import Any

QNAME = b"".join(bytes([len(p)]) + p for p in b"kubernetes.default.svc.cluster.local".split(b".")) + b"\0"


def query(qid: int) -> bytes:
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + QNAME + struct.pack("!HH", 1, 1)


def responder(reply: bytes) -> tuple[int, str] | None:
    """(query ID, the name in the answer's TXT record) of a response to ``query``; None if malformed."""
    try:
        qid, flags, _, ancount = struct.unpack("!HHHH", reply[:8])
        if not flags & 0x8000 or ancount != 2:
            return None
        at = 12 + len(QNAME) + 4 + 16 + 12  # question, A record, TXT record header
        return qid, reply[at + 1 : at + 1 + reply[at]].decode()
    except (struct.error, IndexError, UnicodeDecodeError):
        return None


class Client:
    def __init__(self, source: str, port: int, vip: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((source, port))
        self.sock.setblocking(False)
        self.port, self.vip = port, vip
        self.next_id = random.randrange(1 << 16)
        self.sent: dict[int, list[Any]] = {}  # query ID → [seq, sent at, answered by]
        self.rows: list[list[Any]] = []

    def send(self, now: float) -> None:
        qid = self.next_id
        self.next_id = (qid + 1) & 0xFFFF
        row = [len(self.rows), now, None]
        self.rows.append(row)
        self.sent[qid] = row
        with contextlib.suppress(OSError):  # no route: a lost query like any other
            self.sock.sendto(query(qid), (self.vip, 53))

    def receive(self) -> None:
        while True:
            try:
                reply = self.sock.recv(512)
            except (BlockingIOError, ConnectionRefusedError):
                return
            parsed = responder(reply)
            if parsed and parsed[0] in self.sent:
                self.sent.pop(parsed[0])[2] = parsed[1]

    def status(self, now: float, lost_after: float) -> dict[str, Any]:
        answered = [r for r in self.rows if r[2] is not None]
        lost = [r for r in self.rows if r[2] is None and now - r[1] > lost_after]
        return {
            "sent": len(self.rows),
            "answered": len(answered),
            "lost": len(lost),
            "last_lost_sent_at": lost[-1][1] if lost else None,
            "backend": answered[-1][2] if answered else None,
            "last_answer_sent_at": answered[-1][1] if answered else None,
        }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", required=True)
    parser.add_argument("--ports", required=True, help="comma-separated source ports, one client each")
    parser.add_argument("--vip", default="10.96.0.10")
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--lost-after", type=float, default=2.0)
    parser.add_argument("--status", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    clients = [Client(args.source, int(p), args.vip) for p in args.ports.split(",")]
    stop: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    sel = selectors.DefaultSelector()
    for c in clients:
        sel.register(c.sock, selectors.EVENT_READ, c)
    next_send = next_status = time.time()
    end = None
    while end is None or time.time() < end:
        now = time.time()
        if stop and end is None:
            end = now + args.lost_after
        if end is None and now >= next_send:
            for c in clients:
                c.send(now)
            next_send += args.interval
            if next_send < now:  # the CPU was busy: keep the pace, do not burst
                next_send = now + args.interval
        if now >= next_status:
            write(args.status, {str(c.port): c.status(now, args.lost_after) for c in clients})
            next_status = now + 0.25
        for key, _ in sel.select(timeout=max(0.0, min(next_send, next_status) - time.time())):
            key.data.receive()
    write(args.out, {str(c.port): c.rows for c in clients})
    return 0


def write(path: str, data: Any) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
