# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Partner lists on a ufw firewall: what one module run costs (a measurement, not a test).

Starts one lab container (lab/build-image.sh's image, no network but its own
loopback, removed at the end) with ufw enabled as an admin sets it up, and
runs the module's own flow (``converge``, what firewall_ruleset runs, without
Ansible's cost) there, with this checkout's collection mounted read-only: one
forward rule for 5269 from N IPv6 partner prefixes (distinct, non-adjacent
/64s of 2001:db8::/32, rule data only) to an Edge address and one back to
them. For each N: the first apply, the no-op re-run, the same list with one
prefix more, and the removal, in seconds; the kernel rules in our forward
chain; and the lines of ours ufw reloads from (before6.rules, before.init, the
ipset file). The per-packet cost is iptables' with ipsets (bench/sets_bench.py):
ufw runs the same kernel rules.

Usage (from the checkout, as root):
    source scripts/env.sh && python bench/ufw_sets_bench.py [--sizes 10 1000 5000 10000]
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# Runs inside the container: argv[1] is N; prints one JSON line.
DRIVER = r'''
import json, subprocess, sys, time
from ansible_collections.lync.xmpp_federation.plugins.module_utils.backend import converge
from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import normalize_rules
from ansible_collections.lync.xmpp_federation.plugins.module_utils.ufw import UfwBackend


def run_command(argv, data=None, binary_data=False):
    proc = subprocess.run(argv, input=data, capture_output=True, text=True)
    return proc.returncode, proc.stdout, proc.stderr


def get_bin_path(name, required=False, opt_dirs=None):
    for directory in ('/usr/sbin', '/usr/bin', '/sbin', '/bin'):
        path = directory + '/' + name
        if subprocess.run(['test', '-x', path]).returncode == 0:
            return path
    return None


def prefixes(count):
    return ['2001:db8:f%03x:%x::/64' % (index // 32768, index % 32768 * 2) for index in range(count)]


def rules(count):
    partners = prefixes(count)
    return normalize_rules([
        {'name': 'xmpp-s2s-inbound-ipv6', 'direction': 'forward', 'ports': [5269], 'source': partners,
         'destination': ['2001:db8:601::2']},
        {'name': 'xmpp-s2s-outbound-ipv6', 'direction': 'forward', 'ports': [5269], 'source': ['2001:db8:601::2'],
         'destination': partners},
    ])


def timed(wanted, state):
    backend = UfwBackend(run_command, get_bin_path, {'persist': True}, 'nft')
    started = time.time()
    result = converge(backend, wanted, state, True, False)
    return round(time.time() - started, 2), result['changed']


def ours(path):
    try:
        with open(path) as handle:
            return sum(1 for line in handle if 'LYNC-XMPP' in line or 'lync-xmpp' in line)
    except FileNotFoundError:
        return 0


count = int(sys.argv[1])
row = {'prefixes': count}
row['first'], changed = timed(rules(count), 'present')
assert changed
save = subprocess.run(['ip6tables-save'], capture_output=True, text=True).stdout
row['kernel_rules'] = sum(1 for line in save.splitlines() if line.startswith('-A LYNC-XMPP-FWD'))
row['file_lines'] = sum(ours(path) for path in ('/etc/ufw/before6.rules', '/etc/ufw/before.init'))
row['ipset_entries'] = ours('/etc/ufw/lync-xmpp-federation.ipsets')
row['noop'], changed = timed(rules(count), 'present')
assert not changed
row['one_more'], changed = timed(rules(count + 1), 'present')
assert changed
row['absent'], changed = timed([], 'absent')
assert changed
print(json.dumps(row))
'''


def run(argv, **kwargs):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[10, 1000, 5000, 10000])
    args = parser.parse_args()
    os.environ.setdefault('CONTAINERS_CONF', os.path.join(REPO, 'lab', 'containers.conf'))
    image = run(['bash', os.path.join(REPO, 'lab', 'build-image.sh')]).stdout.strip().splitlines()[-1]
    import ansible
    ansible_dir = os.path.dirname(os.path.abspath(ansible.__file__))
    container = 'lxUb-%d' % os.getpid()
    run(['podman', 'run', '--detach', '--name', container, '--network', 'none', '--cap-add', 'NET_ADMIN',
         '--cap-add', 'NET_RAW', '--volume', '%s:/bench/ansible_collections/lync/xmpp_federation:ro' % REPO,
         '--volume', '%s:/bench/ansible:ro' % ansible_dir, image, 'sleep', '3600'])
    try:
        run(['podman', 'exec', container, 'sh', '-euc',
             'ufw default deny incoming >/dev/null; ufw default deny routed >/dev/null; '
             'ufw allow 22/tcp >/dev/null; ufw --force enable >/dev/null'])
        version = run(['podman', 'exec', container, 'ufw', 'version']).stdout.split()[1]
        print('ufw %s in %s; seconds of converge() (the module\'s flow, without Ansible)' % (version, image))
        headers = ('prefixes', 'first s', 'no-op s', 'one more s', 'absent s', 'kernel rules', 'lines in files',
                   'ipset lines')
        print('%9s %8s %8s %10s %8s %13s %16s %12s' % headers)
        for count in args.sizes:
            out = run(['podman', 'exec', '--env', 'PYTHONPATH=/bench', container, 'python3', '-c', DRIVER,
                       str(count)]).stdout
            row = json.loads(out.strip().splitlines()[-1])
            print('%9s %8.2f %8.2f %10.2f %8.2f %13d %16d %12d' % (
                '{:,}'.format(row['prefixes']), row['first'], row['noop'], row['one_more'], row['absent'],
                row['kernel_rules'], row['file_lines'], row['ipset_entries']))
            sys.stdout.flush()
    finally:
        subprocess.run(['podman', 'rm', '--force', '--time', '0', container], capture_output=True, check=False)


if __name__ == '__main__':
    main()
