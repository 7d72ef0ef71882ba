"""Waits until every node of V6_COLLABORATION is online at HQ (scripts/vantage6
up runs this once the nodes are started).

    python wait-nodes.py SECONDS

Exits 0 when all are online, 1 naming those that are not after SECONDS.
"""

import os
import sys
import time

from v6login import login

deadline = time.monotonic() + float(sys.argv[1] if len(sys.argv) > 1 else 120)
client = login()
collaboration = int(os.environ["V6_COLLABORATION"])
while True:
    nodes = client.node.list(collaboration=collaboration)["data"]
    offline = [n["name"] for n in nodes if n.get("status") != "online"]
    if nodes and not offline:
        print("online: " + ", ".join(n["name"] for n in nodes))
        sys.exit(0)
    if time.monotonic() > deadline:
        sys.exit(f"not online: {', '.join(offline) or 'no node at all'}")
    time.sleep(1)
