#!/usr/bin/env python
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""TCP probes for the lab: runs inside the lab container a flow starts on.

Reads a JSON list of checks on stdin, each {"id", "address", "port",
"timeout"} and optionally "bind" (the source address to connect from), tries them all at once (a blocked check costs its timeout, so they
run in parallel) and prints a JSON object id -> result:

    {"state": "open", "banner": "lab-listener edge1 5269 198.51.100.2"}
    {"state": "blocked", "reason": "timeout" | "refused" | "unreachable" | ...}
"""

import errno
import json
import socket
import sys
import threading


def probe(check):
    family = socket.AF_INET6 if ':' in check['address'] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(check.get('timeout', 2))
    try:
        if check.get('bind'):
            # A flow from one particular address of the host (one a firewall treats apart, such as a banned one).
            sock.bind((check['bind'], 0))
        sock.connect((check['address'], check['port']))
    except socket.timeout:
        return {'state': 'blocked', 'reason': 'timeout'}
    except OSError as error:
        reason = {errno.ECONNREFUSED: 'refused', errno.EHOSTUNREACH: 'unreachable',
                  errno.ENETUNREACH: 'no route', errno.EPERM: 'denied locally'}.get(error.errno, str(error))
        return {'state': 'blocked', 'reason': reason}
    try:
        banner = sock.makefile().readline().strip()
    except OSError as error:
        banner = 'no banner (%s)' % error
    finally:
        sock.close()
    return {'state': 'open', 'banner': banner}


def main():
    checks = json.load(sys.stdin)
    results = {}

    def run(check):
        results[check['id']] = probe(check)

    threads = [threading.Thread(target=run, args=(check,)) for check in checks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    json.dump(results, sys.stdout)
    return 0


if __name__ == '__main__':
    sys.exit(main())
