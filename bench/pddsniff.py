#!/usr/bin/env python3
"""bench/pddsniff.py — microsecond post-dial delay from kernel timestamps on the loopback interface.

sipp's -trace_rtt has a 1 ms resolution, too coarse for a p99 <= 1 ms goal. This captures, for
SECONDS, every UDP datagram on `lo` that starts with "INVITE" or "SIP/2.0 180" (a classic BPF
filter in the kernel, so nothing else is copied to user space), with its kernel receive timestamp
(SO_TIMESTAMPNS), then pairs each INVITE with the first 180 of the same Call-ID travelling back
over the same port:
  port SUT (5070): UAC -> system under test -> UAC   (the caller's post-dial delay)
  port UAS (5080): system under test (or UAC) -> UAS -> back  (the UAS's own turnaround)
The difference of the two is what the system in the middle adds. Needs root (AF_PACKET).
Prints one line per port: `port N p50_us p99_us max_us`.
Usage: pddsniff.py SECONDS [SUT_PORT UAS_PORT]
"""

import ctypes
import select
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
PACKET_HOST = 0

# ethertype IPv4, protocol UDP, payload (IHL 5, loopback) starts "INVI" or bytes 8..11 are "180 "
BPF = [
    (0x28, 0, 0, 12),
    (0x15, 0, 7, 0x0800),
    (0x30, 0, 0, 23),
    (0x15, 0, 5, 17),
    (0x20, 0, 0, 42),
    (0x15, 2, 0, 0x494E5649),
    (0x20, 0, 0, 50),
    (0x15, 0, 1, 0x31383020),
    (0x06, 0, 0, 0xFFFF),
    (0x06, 0, 0, 0),
]


def open_socket():
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    prog = b"".join(struct.pack("HBBI", *ins) for ins in BPF)
    buf = ctypes.create_string_buffer(prog)
    fprog = struct.pack("HxxxxxxQ", len(BPF), ctypes.addressof(buf))
    s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.bind(("lo", 0))
    return s, buf


def capture(seconds):
    s, _keep = open_socket()
    end = time.monotonic() + seconds
    pkts = []
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        if not select.select([s], [], [], min(left, 0.2))[0]:
            continue
        data, anc, _flags, addr = s.recvmsg(1500, 64)
        if addr[2] != PACKET_HOST:
            continue  # lo shows every datagram twice (outgoing + host); keep one copy
        ts = None
        for level, kind, val in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", val[:16])
                ts = sec * 1_000_000_000 + nsec
        if ts is not None:
            pkts.append((ts, data))
    return pkts


def call_id(payload):
    for marker in (b"\r\nCall-ID:", b"\r\ni:", b"\r\nCall-Id:", b"\r\ncall-id:"):
        i = payload.find(marker)
        if i >= 0:
            j = payload.find(b"\r\n", i + 2)
            return payload[i + len(marker):j].strip()
    return None


def pair(pkts, ports):
    invites, delays = {}, {p: [] for p in ports}
    for ts, data in pkts:
        ihl = (data[14] & 0x0F) * 4
        udp = 14 + ihl
        sport, dport = struct.unpack("!HH", data[udp:udp + 4])
        payload = data[udp + 8:]
        cid = call_id(payload)
        if cid is None:
            continue
        if payload.startswith(b"INVITE") and dport in delays:
            invites.setdefault((cid, dport), ts)
        elif payload.startswith(b"SIP/2.0 180") and sport in delays:
            sent = invites.pop((cid, sport), None)
            if sent is not None:
                delays[sport].append((ts - sent) / 1000.0)
    return delays


def pct(values, q):
    return values[min(len(values) - 1, max(0, int(len(values) * q) - 1))]


def main():
    seconds = float(sys.argv[1])
    ports = [int(p) for p in sys.argv[2:4]] or [5070, 5080]
    delays = pair(capture(seconds), ports)
    for port in ports:
        d = sorted(delays[port])
        if d:
            print(f"port {port} n={len(d)} p50_us={pct(d, 0.5):.0f} p99_us={pct(d, 0.99):.0f} max_us={d[-1]:.0f}")
        else:
            print(f"port {port} n=0")


if __name__ == "__main__":
    main()
