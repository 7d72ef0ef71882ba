"""Serves vantage6 HQ on 127.0.0.1 without uWSGI (scripts/vantage6 runs this
inside the trixie root file system).

    python hq-serve.py CONFIG PORT

HQ's own entry point (vantage6.hq.wsgi) is meant for uWSGI's gevent mode;
here the same application is served by Flask-SocketIO's runner, which under
gevent is gevent's WSGIServer, with WebSockets from simple-websocket. It
listens on loopback only.
"""

import sys

# vantage6.hq monkey-patches the standard library with gevent when imported;
# that must happen before anything else is imported.
from vantage6.hq import run_hq  # noqa: E402  (import order matters)


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: hq-serve.py CONFIG PORT")
    config, port = sys.argv[1], int(sys.argv[2])
    hq = run_hq(config, system_folders=False)
    print(f"HQ serving on http://127.0.0.1:{port}", flush=True)
    hq.socketio.run(hq.app, host="127.0.0.1", port=port, log_output=False)


if __name__ == "__main__":
    main()
