#!/usr/bin/env python3
"""A fixed delay for a host's incoming IP packets, where the kernel has no sch_netem.

Usage: delay_line.py TAP_NAME DELAY_MS (run inside the host's network namespace).

Creates the TAP device TAP_NAME and holds it open: two_hosts_test.sh redirects the
veth's incoming IP packets to it (tc ingress + mirred), this process reads each frame
and writes it back DELAY_MS later, and the kernel receives it on the TAP as if it came
on the wire (the TAP carries the veth's MAC address). Frames leave in arrival order, so
the delay is a constant and no packet is reordered or dropped. Prints "ready" once the
device exists; stops on SIGTERM or when its namespace goes away.
"""
import collections
import fcntl
import os
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: delay_line.py TAP_NAME DELAY_MS")
    name, delay = sys.argv[1], float(sys.argv[2]) / 1000
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # A wire does not wait for a CPU: real-time priority keeps the delay near DELAY_MS on
    # a machine busy training (this process sleeps between frames).
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except OSError as e:
        print(f"delay_line: no real-time priority ({e}): delays will stretch under load",
              file=sys.stderr)
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    print("ready", flush=True)
    queue = collections.deque()  # (due, frame), due ascending
    while True:
        timeout = max(0.0, queue[0][0] - time.monotonic()) if queue else None
        readable, _, _ = select.select([fd], [], [], timeout)
        if readable:
            arrived = time.monotonic()
            while True:
                try:
                    queue.append((arrived + delay, os.read(fd, 65536)))
                except BlockingIOError:
                    break
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            try:
                os.write(fd, queue.popleft()[1])
            except BlockingIOError:
                pass  # the kernel's backlog is full: a loss, as on a wire


if __name__ == "__main__":
    main()
