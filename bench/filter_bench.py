# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the host_rules filter costs on a large inventory (a measurement, not a test).

Builds inventories in memory, as a play hands them to the filter (hostvars
and groups): 10 Edge servers (dual stack, two of them behind NAT), 40 Front
End servers, one external and one internal firewall, and unrelated hosts with
variables of their own, in groups of their own. Translates every host through
the filter plugin, as the role does, and prints:

- the total for every host of the inventory, and the time per host by kind,
  each translation starting cold (as in a play, where each host's task runs
  in a worker process of its own);
- the same per-host figures with ten times as many unrelated hosts, and how
  many hostvars entries one translation reads: the cost of a host's
  translation depends on the Lync hosts, not on the size of the inventory.

Usage (from the checkout):
    source scripts/env.sh && python bench/filter_bench.py [--unrelated 1948 19948] [--repeat 5]
"""

from __future__ import absolute_import, division, print_function

import argparse
import os
import platform
import sys
import time

try:
    from collections.abc import Mapping
except ImportError:  # pragma: no cover - Python 2 is not supported by the collection anyway
    Mapping = dict

import yaml

from ansible_collections.lync.xmpp_federation.plugins.filter.host_rules import FilterModule
from ansible_collections.lync.xmpp_federation.plugins.module_utils import rule_model

ROLE_DEFAULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'roles', 'xmpp_firewall', 'defaults',
                             'main.yml')
EDGES = 10
FRONT_ENDS = 40
KINDS = ('edge', 'front_end', 'firewall', 'unrelated')


class CountingHostvars(Mapping):
    """hostvars that count which hosts' variables are read (Ansible's own hostvars are lazy too)."""

    def __init__(self, data):
        self.data = data
        self.read = set()

    def __getitem__(self, host):
        self.read.add(host)
        return self.data[host]

    def __iter__(self):
        return iter(self.data)

    def __len__(self):
        return len(self.data)


def build_inventory(unrelated):
    """hostvars and groups for 10 Edge, 40 Front End, 2 firewalls and ``unrelated`` other hosts."""
    hostvars, groups = {}, {'all': [], 'ungrouped': []}

    def add(host, group, variables):
        variables = dict(variables, inventory_hostname=host, group_names=[group])
        hostvars[host] = variables
        groups.setdefault(group, []).append(host)
        groups['all'].append(host)

    for index in range(EDGES):
        edge = {'ansible_host': '198.51.100.%d' % (100 + index),
                'lync_edge_external_ip': ['198.51.100.%d' % (10 + index), '2001:db8:10::%x' % (10 + index)],
                'lync_edge_internal_ip': ['198.51.100.%d' % (100 + index), '2001:db8:20::%x' % (100 + index)]}
        if index < 2:
            edge['lync_edge_public_ip'] = '198.51.100.%d' % (60 + index)
        add('edge%02d.dmz.example.org' % index, 'lync_edge', edge)
    for index in range(FRONT_ENDS):
        add('fe%02d.corp.example.org' % index, 'lync_front_end',
            {'ansible_host': '198.51.100.%d' % (150 + index), 'lync_internal_ip': '2001:db8:30::%x' % (150 + index)})
    add('fw-ext.example.org', 'lync_external_firewall', {'ansible_host': '198.51.100.1'})
    add('fw-int.example.org', 'lync_internal_firewall', {'ansible_host': '198.51.100.2'})
    for index in range(unrelated):
        # Unrelated hosts look like any estate's: addresses, a few settings, a list or two.
        add('host%05d.example.org' % index, ('web', 'db', 'mail', 'file')[index % 4],
            {'ansible_host': '2001:db8:ff::%x' % index, 'ntp_servers': ['198.51.100.250', '198.51.100.251'],
             'backup_window': '02:00-04:00', 'packages': ['nginx', 'chrony'], 'cost_centre': index % 17})
    return hostvars, groups


def kind_of(host):
    if host.startswith('edge'):
        return 'edge'
    if host.startswith('fe'):
        return 'front_end'
    if host.startswith('fw-'):
        return 'firewall'
    return 'unrelated'


def measure(unrelated, repeat, matrix, host_rules):
    """Per kind: best-of-``repeat`` seconds per host, hostvars entries read per host; and the total."""
    hostvars, groups = build_inventory(unrelated)
    hosts = list(hostvars)
    options = dict(partner_networks=['198.51.100.192/26', '2001:db8:64::/48'], restrict_internal_sources=True)
    best_total = None
    per_host = dict((host, None) for host in hosts)
    reads = dict((kind, 0) for kind in KINDS)
    rule_count = 0
    for _round in range(repeat):
        started = time.perf_counter()
        for host in hosts:
            counting = CountingHostvars(hostvars)
            # In a play each host's set_fact is templated in a freshly forked worker: nothing parsed
            # for one host is left for the next. Start every translation as cold.
            rule_model._parsed_network.cache_clear()  # pylint: disable=protected-access
            before = time.perf_counter()
            rules = host_rules(matrix, host, counting, groups, **options)
            took = time.perf_counter() - before
            if per_host[host] is None or took < per_host[host]:
                per_host[host] = took
            reads[kind_of(host)] = max(reads[kind_of(host)], len(counting.read))
            rule_count += len(rules)
        total = time.perf_counter() - started
        best_total = total if best_total is None else min(best_total, total)
    by_kind = {}
    for kind in KINDS:
        times = [per_host[host] for host in hosts if kind_of(host) == kind]
        by_kind[kind] = {'hosts': len(times), 'mean': sum(times) / len(times), 'max': max(times),
                         'reads': reads[kind]}
    return {'hosts': len(hosts), 'total': best_total, 'by_kind': by_kind, 'rules': rule_count // repeat}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--unrelated', type=int, nargs='+', default=[2000 - EDGES - FRONT_ENDS - 2, 19948],
                        help='numbers of unrelated hosts to compare (default: 1948 19948, i.e. 2,000 and 20,000 hosts)')
    parser.add_argument('--repeat', type=int, default=5, help='rounds per inventory; the best round counts')
    args = parser.parse_args()

    with open(ROLE_DEFAULTS) as defaults:
        matrix = yaml.safe_load(defaults)['xmpp_firewall_matrix']
    host_rules = FilterModule().filters()['host_rules']

    print('host_rules filter, Python %s on %s, best of %d rounds'
          % (platform.python_version(), platform.machine(), args.repeat))
    print('every host translated with partner_networks and restrict_internal_sources on (the widest case)')
    results = [(unrelated, measure(unrelated, args.repeat, matrix, host_rules)) for unrelated in args.unrelated]
    for unrelated, result in results:
        print('')
        print('inventory of %d hosts (%d Edge, %d Front End, 2 firewalls, %d unrelated): %d rules' % (
            result['hosts'], EDGES, FRONT_ENDS, unrelated, result['rules']))
        print('  total, every host: %.1f ms' % (result['total'] * 1000))
        print('  %-10s %6s %14s %14s %16s' % ('kind', 'hosts', 'mean/host', 'max/host', 'hostvars read'))
        for kind in KINDS:
            figures = result['by_kind'][kind]
            print('  %-10s %6d %11.1f us %11.1f us %16d'
                  % (kind, figures['hosts'], figures['mean'] * 1e6, figures['max'] * 1e6, figures['reads']))
    if len(results) > 1:
        (small_n, small), (large_n, large) = results[0], results[-1]
        print('')
        print('per-host time, %d vs %d hosts (ratio; 1.0 = no growth with unrelated hosts):'
              % (small['hosts'], large['hosts']))
        for kind in KINDS:
            print('  %-10s %.2f' % (kind, large['by_kind'][kind]['mean'] / small['by_kind'][kind]['mean']))
        print('total time grows with the number of hosts translated (%d -> %d unrelated hosts), '
              'not per host: %.1f ms -> %.1f ms' % (small_n, large_n, small['total'] * 1000, large['total'] * 1000))
    return 0


if __name__ == '__main__':
    sys.exit(main())
