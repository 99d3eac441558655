"""A DNS server as a Lambda function behind a UDP listener (README, "UDP gateway").

The listener batches DNS queries (UDP packets) into one invocation: {"Messages": [{"Tag", "Data", ...}]} with
each packet base64 in Data; the function answers {"Replies": [{"Tag", "Data"}]} and each reply goes back to
the packet's sender. It needs dnslib, shipped inside the function's zip:

    mkdir -p build/dns && cp src/lamina/examples/dns/app.py build/dns/
    .venv/bin/pip install --quiet --target build/dns dnslib
    lamina deploy build/dns --name dns
"""

import base64

from dnslib import QTYPE, RCODE, RR, A, DNSRecord

# The zone this server answers for; every other name is NXDOMAIN.
ZONE = {"example.test.": "192.0.2.53", "www.example.test.": "192.0.2.80"}


def answer(packet: bytes) -> bytes:
    query = DNSRecord.parse(packet)
    reply = query.reply()
    name = str(query.q.qname).lower()
    if name not in ZONE:
        reply.header.rcode = RCODE.NXDOMAIN
    elif query.q.qtype == QTYPE.A:
        reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A(ZONE[name]), ttl=60))
    return reply.pack()


def handler(event, context):
    replies = []
    for message in event["Messages"]:
        data = answer(base64.b64decode(message["Data"]))
        replies.append({"Tag": message["Tag"], "Data": base64.b64encode(data).decode()})
    return {"Replies": replies}
