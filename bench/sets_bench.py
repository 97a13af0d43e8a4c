# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Partner lists as kernel sets against one rule per address (a measurement, not a test).

Runs, as root, in throwaway network namespaces (lxSb*, deleted at the end): a
client - router - server topology whose router is the firewall, forwarding
dropped by the admin's ruleset (established connections accepted first), one
rule opening 5269 from N partner networks (distinct, non-adjacent /24s of
10.0.0.0/8, rule data only) with the client's own address LAST.  For each N
and backend, with the collection of this checkout (sets) and with the
collection at --before (one kernel rule per address), through ansible as a
play runs it (module_bench.play):

- first apply and no-op re-run, in seconds;
- kernel rules in our forward chain;
- the per-packet cost: --connects TCP connection attempts, one after the
  other, from the client to the server's port 5269 through the router (each
  SYN is a new flow and walks our chain; the server's kernel answers with a
  reset, so no server process sets the pace), as attempts per second, the
  best of three loops.

Usage (from the checkout, as root):
    source scripts/env.sh && python bench/sets_bench.py [--sizes 10 1000 10000] [--connects 2000]
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'system'))

import module_bench  # noqa: E402  pylint: disable=wrong-import-position
from netlab import CLIENT4, REPO, SERVER4, Topology  # noqa: E402  pylint: disable=wrong-import-position

PREFIX = 'lxSb'
NFT_ADMIN = '''table inet filter {
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
    }
}
'''
IPTABLES_ADMIN = '''*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
'''
# Connection attempts to 5269 where nothing listens: the server's kernel answers each SYN with a reset, so every
# attempt is one new flow through the router's forward chain (the reset returns as part of that flow, accepted by
# the admin's established,related rule), and no server process sets the pace.  A reset is an answer: the router
# let the SYN through.  A time-out is a SYN the router dropped.
CONNECT_LOOP = textwrap.dedent('''
    import socket, sys, time
    address, count = sys.argv[1], int(sys.argv[2])
    started, dropped = time.time(), 0
    for _index in range(count):
        attempt = socket.socket()
        attempt.settimeout(1)
        try:
            attempt.connect((address, 5269))
        except ConnectionRefusedError:
            pass
        except OSError:
            dropped += 1
        attempt.close()
    print(count / (time.time() - started), dropped)
''')


def partner_rules(count):
    networks = ['10.%d.%d.0/24' % (index // 128, (index % 128) * 2) for index in range(count - 1)]
    return [{'name': 'partners-in', 'direction': 'forward', 'protocol': 'tcp', 'ports': [5269],
             'source': networks + [CLIENT4 + '/32'], 'destination': [SERVER4], 'comment': 'partner networks'}]


def collection_at(commit, directory):
    """An ansible_collections tree holding the collection as it was at ``commit``."""
    target = os.path.join(directory, 'ansible_collections', 'lync', 'xmpp_federation')
    os.makedirs(target)
    archive = subprocess.run(['git', '-C', REPO, 'archive', commit], stdout=subprocess.PIPE, check=True).stdout
    subprocess.run(['tar', '-x', '-C', target], input=archive, check=True)
    return os.path.join(directory)


def kernel_rules(namespace, backend):
    if backend == 'nftables':
        document = json.loads(namespace.run('nft', '-j', 'list', 'ruleset'))
        return sum(1 for item in document['nftables'] if 'rule' in item and item['rule']['chain'] == 'lync_xmpp_fwd')
    return sum(1 for line in namespace.run('iptables-nft-save').splitlines() if line.startswith('-A LYNC-XMPP-FWD '))


def measure(backend, count, collections, connects):
    module_bench.COLLECTIONS = collections
    lab = Topology(PREFIX)
    try:
        if backend == 'nftables':
            lab.router.run('nft', '-f', '-', input=NFT_ADMIN)
        else:
            lab.router.run('iptables-nft-restore', input=IPTABLES_ADMIN)
        variables = {'bench_backend': backend, 'bench_rules': partner_rules(count)}
        first, changed = module_bench.play(lab.router, 'module', variables)
        assert changed, 'the first apply must change'
        noop, changed = module_bench.play(lab.router, 'module', variables)
        assert not changed, 'a no-op re-run reported a change'
        rules = kernel_rules(lab.router, backend)
        # Warm up (neighbour resolution), then the timed loop.
        lab.client.run(sys.executable, '-c', CONNECT_LOOP, SERVER4, '20')
        rates = []
        for _attempt in range(3):
            rate, dropped = lab.client.run(sys.executable, '-c', CONNECT_LOOP, SERVER4, str(connects)).split()
            assert dropped == '0', '%s attempts from the listed address were dropped' % dropped
            rates.append(float(rate))
        # The best of three loops: what the path costs without the shared machine's noise.
        return {'first': first, 'noop': noop, 'rules': rules, 'rate': max(rates)}
    finally:
        lab.delete()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[10, 1000, 10000])
    parser.add_argument('--backends', nargs='+', default=['nftables', 'iptables'], choices=['nftables', 'iptables'])
    parser.add_argument('--connects', type=int, default=2000)
    parser.add_argument('--before', default='fd8ed70', help='the commit whose collection writes one rule per address')
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error('run as root: it creates network namespaces')
    before_dir = tempfile.mkdtemp(prefix='lxSb-before-')
    try:
        trees = {'rules': collection_at(args.before, before_dir), 'set': module_bench.COLLECTIONS}
        print('%s, Python %s, %s' % (platform.platform(), platform.python_version(), os.cpu_count()), 'CPUs')
        print('%-9s %-6s %6s  %8s %8s %12s %12s' % ('backend', 'list', 'N', 'first s', 'no-op s', 'kernel rules',
                                                    'attempts/s'))
        for backend in args.backends:
            for count in args.sizes:
                for mode in ('rules', 'set'):
                    result = measure(backend, count, trees[mode], args.connects)
                    row = (backend, mode, count, result['first'], result['noop'], result['rules'], result['rate'])
                    print('%-9s %-6s %6d  %8.2f %8.2f %12d %12.0f' % row, flush=True)
    finally:
        shutil.rmtree(before_dir, ignore_errors=True)


if __name__ == '__main__':
    main()
