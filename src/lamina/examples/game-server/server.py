"""A UDP game server as a MicroVM (README, "A MicroVM per tenant"): one instance per tenant, so its state is that
tenant's alone. Each datagram is answered to its sender with how many this instance has seen.
Standard library only."""

import socket

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", 7000))
seen = 0
while True:
    data, sender = sock.recvfrom(65535)
    seen += 1
    sock.sendto(b"packet %d of this instance: %s" % (seen, data), sender)
