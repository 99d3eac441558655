"""Send one datagram and print the reply: python3 client.py HOST PORT MESSAGE (standard library only)."""

import socket
import sys

host, port, message = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    sock.settimeout(10)
    sock.sendto(message.encode(), (host, port))
    print(sock.recv(65535).decode(errors="replace"))
