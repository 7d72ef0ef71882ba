"""Starts an unmodified vantage6 5 node (`vnode-local start`) with its proxy
server on loopback (scripts/vantage6 runs this inside the trixie root file
system).

    python node.py CONFIG

The node serves its proxy for algorithm containers with gevent's WSGIServer
bound to 0.0.0.0 (vantage6/node/__init__.py, __proxy_server_worker), which
is hard-coded. Everything this harness starts must listen on loopback only,
so gevent's WSGIServer is wrapped before vantage6 imports it: a listener on
every address becomes one on SANDLET_V6_PROXY_BIND (default 127.0.0.1), the
same port. Nothing of vantage6 itself is changed.
"""

import os
import sys

import gevent.pywsgi

_WSGIServer = gevent.pywsgi.WSGIServer
_BIND = os.environ.get("SANDLET_V6_PROXY_BIND", "127.0.0.1")


class LoopbackWSGIServer(_WSGIServer):
    """gevent's WSGIServer, with listeners on every address moved to _BIND."""

    def __init__(self, listener, *args, **kwargs):
        if isinstance(listener, tuple) and listener[0] in ("", "0.0.0.0", "::"):
            listener = (_BIND,) + tuple(listener[1:])
        super().__init__(listener, *args, **kwargs)


gevent.pywsgi.WSGIServer = LoopbackWSGIServer

from vantage6.node.cli.node import cli_node  # noqa: E402  (after the wrap above)

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: node.py CONFIG")
    cli_node.main(args=["start", "--config", sys.argv[1]], prog_name="vnode-local")
