#!/usr/bin/env python
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A bounded TCP listener for the lab: runs inside a lab container.

    listener.py NAME SECONDS PORT...

Accepts connections on every PORT (IPv4 and IPv6, every address) and answers
each with one line, "lab-listener NAME PORT PEER", so that a probe knows which
host it reached and the host knows whom it saw (a translated source shows up
here). Writes /run/lab-listener.ready once every port is bound, and exits
after SECONDS whatever happens.
"""

import selectors
import socket
import sys
import time

READY_FILE = '/run/lab-listener.ready'


def main():
    name, seconds, ports = sys.argv[1], float(sys.argv[2]), [int(port) for port in sys.argv[3:]]
    deadline = time.monotonic() + seconds
    selector = selectors.DefaultSelector()
    for port in ports:
        server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        server.bind(('::', port))
        server.listen(64)
        selector.register(server, selectors.EVENT_READ, port)
    # Every port is bound: whoever started us may go on.
    with open(READY_FILE, 'w') as ready:
        ready.write('%s\n' % ' '.join(str(port) for port in ports))
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return 0
        for key, _events in selector.select(timeout=min(remaining, 5)):
            try:
                connection, peer = key.fileobj.accept()
            except OSError:
                continue
            peer_address = peer[0][7:] if peer[0].startswith('::ffff:') else peer[0]
            try:
                connection.settimeout(2)
                connection.sendall(('lab-listener %s %d %s\n' % (name, key.data, peer_address)).encode())
            except OSError:
                pass
            finally:
                connection.close()


if __name__ == '__main__':
    sys.exit(main())
