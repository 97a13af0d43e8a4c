# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The host_rules filter over golden topologies: the shipped matrix + an inventory -> each host's rules.

Every expected list is written out in full. hostvars and groups are plain
dicts, as the filter sees them through Ansible's mappings.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import inspect
import json
import os
import random

import pytest
import yaml

from ansible.errors import AnsibleFilterError

from ansible_collections.lync.xmpp_federation.plugins.filter.host_rules import FilterModule
from ansible_collections.lync.xmpp_federation.plugins.module_utils.matrix import host_rules
from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import RuleError, kernel_comment

COLLECTION_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))
ROLE_DEFAULTS = os.path.join(COLLECTION_ROOT, 'roles', 'xmpp_firewall', 'defaults', 'main.yml')
FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')

ROW1 = 'XMPP federation row 1, partners to Access Edge XMPP proxy'
ROW2 = 'XMPP federation row 2, Access Edge XMPP proxy to partners'
ROW3 = 'XMPP federation row 3, Front End XMPP gateway to Edge internal'
ANY = []


def load_matrix():
    """The matrix the role ships: the tests run against the real data."""
    with open(ROLE_DEFAULTS) as defaults:
        return yaml.safe_load(defaults)['xmpp_firewall_matrix']


MATRIX = load_matrix()


def rule(name, direction, ports, source, destination, comment, protocol='tcp', action='accept', nat=None,
         nat_to=None):
    """One expected rule, in canonical key order."""
    expected = {
        'name': name,
        'direction': direction,
        'protocol': protocol,
        'ports': ports,
        'source': source,
        'destination': destination,
        'action': action,
        'comment': comment,
    }
    if nat:
        expected['nat'] = nat
        expected['nat_to'] = nat_to
    return expected


def topology(edges, front_ends, external_firewalls=('fw-ext',), internal_firewalls=('fw-int',), others=None):
    """hostvars and groups for the four groups plus unrelated hosts (group 'mail')."""
    hostvars = {}
    groups = {'all': [], 'ungrouped': []}
    for group, members in (('lync_edge', edges), ('lync_front_end', front_ends),
                           ('lync_external_firewall', dict.fromkeys(external_firewalls, {})),
                           ('lync_internal_firewall', dict.fromkeys(internal_firewalls, {})),
                           ('mail', others or {})):
        groups[group] = list(members)
        for host, variables in members.items():
            hostvars.setdefault(host, {'inventory_hostname': host})
            hostvars[host].update(variables)
            groups['all'].append(host)
    return hostvars, groups


def translate(host, hostvars, groups, matrix=None, **options):
    rules = host_rules(MATRIX if matrix is None else matrix, host, hostvars, groups, **options)
    # Canonical key order is part of the contract (byte-for-byte output).
    for item in rules:
        assert list(item)[:8] == ['name', 'direction', 'protocol', 'ports', 'source', 'destination', 'action',
                                  'comment']
    return rules


SINGLE_EDGE = dict(
    edges={'edge1': {'ansible_host': '198.51.100.130', 'lync_edge_external_ip': '198.51.100.10',
                     'lync_edge_internal_ip': '198.51.100.130'}},
    front_ends={'fe1': {'ansible_host': '198.51.100.200'}},
    others={'mail1': {'ansible_host': '198.51.100.250', 'lync_edge_external_ip': '198.51.100.99'}},
)


# -- golden topologies --------------------------------------------------------------

def test_single_edge():
    hostvars, groups = topology(**SINGLE_EDGE)
    assert translate('edge1', hostvars, groups) == [
        rule('xmpp-gateway-internal-ipv4', 'in', [23456], ANY, ['198.51.100.130/32'], ROW3),
        rule('xmpp-s2s-inbound-ipv4', 'in', [5269], ANY, ['198.51.100.10/32'], ROW1),
        rule('xmpp-s2s-outbound-ipv4', 'out', [5269], ['198.51.100.10/32'], ANY, ROW2),
    ]
    assert translate('fe1', hostvars, groups) == [
        rule('xmpp-gateway-internal-ipv4', 'out', [23456], ANY, ['198.51.100.130/32'], ROW3),
    ]
    assert translate('fw-ext', hostvars, groups) == [
        rule('xmpp-s2s-inbound-ipv4', 'forward', [5269], ANY, ['198.51.100.10/32'], ROW1),
        rule('xmpp-s2s-outbound-ipv4', 'forward', [5269], ['198.51.100.10/32'], ANY, ROW2),
    ]
    assert translate('fw-int', hostvars, groups) == [
        rule('xmpp-gateway-internal-ipv4', 'forward', [23456], ANY, ['198.51.100.130/32'], ROW3),
    ]


def test_host_in_no_group_gets_nothing():
    hostvars, groups = topology(**SINGLE_EDGE)
    # mail1 even carries an Edge variable: membership decides, not variables.
    assert translate('mail1', hostvars, groups) == []
    assert translate('not-in-inventory', hostvars, groups) == []
    assert host_rules(MATRIX, 'lonely', {'lonely': {}}, {'all': ['lonely'], 'ungrouped': ['lonely']}) == []


def test_host_in_no_group_ignores_bad_options_it_does_not_use():
    hostvars, groups = topology(**SINGLE_EDGE)
    hostvars['mail1']['xmpp_firewall_partner_networks'] = ['not-a-network']
    assert translate('mail1', hostvars, groups) == []


def test_edge_pool():
    hostvars, groups = topology(
        edges={
            'edge1': {'lync_edge_external_ip': '198.51.100.10', 'lync_edge_internal_ip': '198.51.100.130'},
            # Written as an interface, as in ipconfig: the address counts, not the network.
            'edge2': {'lync_edge_external_ip': '198.51.100.11/27', 'lync_edge_internal_ip': ['198.51.100.131']},
        },
        front_ends={'fe1': {'ansible_host': '198.51.100.200'}, 'fe2': {'ansible_host': '198.51.100.201'}},
    )
    assert translate('edge2', hostvars, groups) == [
        rule('xmpp-gateway-internal-ipv4', 'in', [23456], ANY, ['198.51.100.131/32'], ROW3),
        rule('xmpp-s2s-inbound-ipv4', 'in', [5269], ANY, ['198.51.100.11/32'], ROW1),
        rule('xmpp-s2s-outbound-ipv4', 'out', [5269], ['198.51.100.11/32'], ANY, ROW2),
    ]
    pool_internal = ['198.51.100.130/32', '198.51.100.131/32']
    for front_end in ('fe1', 'fe2'):
        assert translate(front_end, hostvars, groups) == [
            rule('xmpp-gateway-internal-ipv4', 'out', [23456], ANY, pool_internal, ROW3),
        ]
    assert translate('fw-ext', hostvars, groups) == [
        rule('xmpp-s2s-inbound-ipv4', 'forward', [5269], ANY, ['198.51.100.10/32', '198.51.100.11/32'], ROW1),
        rule('xmpp-s2s-outbound-ipv4', 'forward', [5269], ['198.51.100.10/32', '198.51.100.11/32'], ANY, ROW2),
    ]
    assert translate('fw-int', hostvars, groups) == [
        rule('xmpp-gateway-internal-ipv4', 'forward', [23456], ANY, pool_internal, ROW3),
    ]


def test_ipv6_only():
    hostvars, groups = topology(
        edges={'edge1': {'lync_edge_external_ip': '2001:DB8:10:0:0::10',
                         'lync_edge_internal_ip': '2001:db8:20::10/64'}},
        front_ends={'fe1': {'ansible_host': '2001:db8:30::200'}},
    )
    assert translate('edge1', hostvars, groups) == [
        rule('xmpp-gateway-internal-ipv6', 'in', [23456], ANY, ['2001:db8:20::10/128'], ROW3),
        rule('xmpp-s2s-inbound-ipv6', 'in', [5269], ANY, ['2001:db8:10::10/128'], ROW1),
        rule('xmpp-s2s-outbound-ipv6', 'out', [5269], ['2001:db8:10::10/128'], ANY, ROW2),
    ]
    assert translate('fe1', hostvars, groups) == [
        rule('xmpp-gateway-internal-ipv6', 'out', [23456], ANY, ['2001:db8:20::10/128'], ROW3),
    ]
    assert translate('fw-ext', hostvars, groups) == [
        rule('xmpp-s2s-inbound-ipv6', 'forward', [5269], ANY, ['2001:db8:10::10/128'], ROW1),
        rule('xmpp-s2s-outbound-ipv6', 'forward', [5269], ['2001:db8:10::10/128'], ANY, ROW2),
    ]
    assert translate('fw-int', hostvars, groups) == [
        rule('xmpp-gateway-internal-ipv6', 'forward', [23456], ANY, ['2001:db8:20::10/128'], ROW3),
    ]


DUAL_STACK = dict(
    edges={
        'edge1': {'lync_edge_external_ip': ['2001:db8:10::10', '198.51.100.10'],
                  'lync_edge_internal_ip': ['198.51.100.130', '2001:db8:20::10']},
        'edge2': {'lync_edge_external_ip': ['198.51.100.11', '2001:db8:10::11'],
                  'lync_edge_internal_ip': '198.51.100.131'},
    },
    front_ends={'fe1': {'ansible_host': '198.51.100.200'},
                'fe2': {'ansible_host': '198.51.100.201', 'lync_internal_ip': ['198.51.100.201', '2001:db8:30::201']}},
)


def test_dual_stack():
    hostvars, groups = topology(**DUAL_STACK)
    assert translate('edge1', hostvars, groups) == [
        rule('xmpp-gateway-internal-ipv4', 'in', [23456], ANY, ['198.51.100.130/32'], ROW3),
        rule('xmpp-gateway-internal-ipv6', 'in', [23456], ANY, ['2001:db8:20::10/128'], ROW3),
        rule('xmpp-s2s-inbound-ipv4', 'in', [5269], ANY, ['198.51.100.10/32'], ROW1),
        rule('xmpp-s2s-inbound-ipv6', 'in', [5269], ANY, ['2001:db8:10::10/128'], ROW1),
        rule('xmpp-s2s-outbound-ipv4', 'out', [5269], ['198.51.100.10/32'], ANY, ROW2),
        rule('xmpp-s2s-outbound-ipv6', 'out', [5269], ['2001:db8:10::10/128'], ANY, ROW2),
    ]
    # edge2's internal side is IPv4 only: no IPv6 rule for 23456.
    assert translate('edge2', hostvars, groups) == [
        rule('xmpp-gateway-internal-ipv4', 'in', [23456], ANY, ['198.51.100.131/32'], ROW3),
        rule('xmpp-s2s-inbound-ipv4', 'in', [5269], ANY, ['198.51.100.11/32'], ROW1),
        rule('xmpp-s2s-inbound-ipv6', 'in', [5269], ANY, ['2001:db8:10::11/128'], ROW1),
        rule('xmpp-s2s-outbound-ipv4', 'out', [5269], ['198.51.100.11/32'], ANY, ROW2),
        rule('xmpp-s2s-outbound-ipv6', 'out', [5269], ['2001:db8:10::11/128'], ANY, ROW2),
    ]
    assert translate('fe2', hostvars, groups) == [
        rule('xmpp-gateway-internal-ipv4', 'out', [23456], ANY, ['198.51.100.130/32', '198.51.100.131/32'], ROW3),
        rule('xmpp-gateway-internal-ipv6', 'out', [23456], ANY, ['2001:db8:20::10/128'], ROW3),
    ]
    assert translate('fw-ext', hostvars, groups) == [
        rule('xmpp-s2s-inbound-ipv4', 'forward', [5269], ANY, ['198.51.100.10/32', '198.51.100.11/32'], ROW1),
        rule('xmpp-s2s-inbound-ipv6', 'forward', [5269], ANY, ['2001:db8:10::10/128', '2001:db8:10::11/128'], ROW1),
        rule('xmpp-s2s-outbound-ipv4', 'forward', [5269], ['198.51.100.10/32', '198.51.100.11/32'], ANY, ROW2),
        rule('xmpp-s2s-outbound-ipv6', 'forward', [5269], ['2001:db8:10::10/128', '2001:db8:10::11/128'], ANY, ROW2),
    ]
    assert translate('fw-int', hostvars, groups) == [
        rule('xmpp-gateway-internal-ipv4', 'forward', [23456], ANY, ['198.51.100.130/32', '198.51.100.131/32'],
             ROW3),
        rule('xmpp-gateway-internal-ipv6', 'forward', [23456], ANY, ['2001:db8:20::10/128'], ROW3),
    ]


def test_nat_on_the_external_firewall():
    hostvars, groups = topology(
        edges={
            'edge1': {'lync_edge_external_ip': '198.51.100.10', 'lync_edge_internal_ip': '198.51.100.130'},
            # Dual stack, published through NAT on IPv4 only; IPv6 is routed as is.
            'edge2': {'lync_edge_external_ip': ['198.51.100.11', '2001:db8:10::11'],
                      'lync_edge_internal_ip': '198.51.100.131', 'lync_edge_public_ip': '198.51.100.62'},
        },
        front_ends={'fe1': {'ansible_host': '198.51.100.200'}},
    )
    assert translate('fw-ext', hostvars, groups) == [
        rule('xmpp-s2s-inbound-dnat-edge2-ipv4', 'forward', [5269], ANY, ['198.51.100.62/32'], ROW1,
             nat='dnat', nat_to='198.51.100.11'),
        rule('xmpp-s2s-inbound-ipv4', 'forward', [5269], ANY, ['198.51.100.10/32', '198.51.100.11/32'], ROW1),
        rule('xmpp-s2s-inbound-ipv6', 'forward', [5269], ANY, ['2001:db8:10::11/128'], ROW1),
        rule('xmpp-s2s-outbound-ipv4', 'forward', [5269], ['198.51.100.10/32', '198.51.100.11/32'], ANY, ROW2),
        rule('xmpp-s2s-outbound-ipv6', 'forward', [5269], ['2001:db8:10::11/128'], ANY, ROW2),
        rule('xmpp-s2s-outbound-snat-edge2-ipv4', 'forward', [5269], ['198.51.100.11/32'], ANY, ROW2,
             nat='snat', nat_to='198.51.100.62'),
    ]
    # The Edge itself and the internal side do not see the translation.
    assert translate('edge2', hostvars, groups) == [
        rule('xmpp-gateway-internal-ipv4', 'in', [23456], ANY, ['198.51.100.131/32'], ROW3),
        rule('xmpp-s2s-inbound-ipv4', 'in', [5269], ANY, ['198.51.100.11/32'], ROW1),
        rule('xmpp-s2s-inbound-ipv6', 'in', [5269], ANY, ['2001:db8:10::11/128'], ROW1),
        rule('xmpp-s2s-outbound-ipv4', 'out', [5269], ['198.51.100.11/32'], ANY, ROW2),
        rule('xmpp-s2s-outbound-ipv6', 'out', [5269], ['2001:db8:10::11/128'], ANY, ROW2),
    ]
    assert translate('fw-int', hostvars, groups) == [
        rule('xmpp-gateway-internal-ipv4', 'forward', [23456], ANY, ['198.51.100.130/32', '198.51.100.131/32'],
             ROW3),
    ]


def test_nat_ipv6_and_long_host_names():
    long_name = 'edge-number-one.perimeter.datacentre-north.example.org'
    hostvars, groups = topology(
        edges={long_name: {'lync_edge_external_ip': ['2001:db8:10::10'], 'lync_edge_internal_ip': '2001:db8:20::10',
                           'lync_edge_public_ip': '2001:db8:62::10/64'}},
        front_ends={'fe1': {'ansible_host': '2001:db8:30::200'}},
    )
    # A host name that does not fit is cut and given the first 8 hex digits of the SHA-256 of the full name, so
    # that the name stays unique and stable. It must fit in a rule name (64 characters), and with our mark and
    # the row's comment in a kernel comment, which nftables keeps in 128 bytes.
    rules = translate('fw-ext', hostvars, groups)
    assert rules == [
        rule('xmpp-s2s-inbound-dnat-edge-number-one.perimet-39b828ee-ipv6', 'forward', [5269], ANY,
             ['2001:db8:62::10/128'], ROW1, nat='dnat', nat_to='2001:db8:10::10'),
        rule('xmpp-s2s-inbound-ipv6', 'forward', [5269], ANY, ['2001:db8:10::10/128'], ROW1),
        rule('xmpp-s2s-outbound-ipv6', 'forward', [5269], ['2001:db8:10::10/128'], ANY, ROW2),
        rule('xmpp-s2s-outbound-snat-edge-number-one.perime-39b828ee-ipv6', 'forward', [5269],
             ['2001:db8:10::10/128'], ANY, ROW2, nat='snat', nat_to='2001:db8:62::10'),
    ]
    assert [len(kernel_comment(each).encode('utf-8')) for each in rules] == [128, 90, 91, 128]
    # A shorter name that fits both keeps its host name whole.
    hostvars, groups = topology(
        edges={'edge01.dmz.example.org': {'lync_edge_external_ip': ['2001:db8:10::10'],
                                          'lync_edge_internal_ip': '2001:db8:20::10',
                                          'lync_edge_public_ip': '2001:db8:62::10'}},
        front_ends={'fe1': {'ansible_host': '2001:db8:30::200'}},
    )
    assert translate('fw-ext', hostvars, groups)[0]['name'] == 'xmpp-s2s-inbound-dnat-edge01.dmz.example.org-ipv6'


PARTNERS = ['198.51.100.64/27', '2001:DB8:64::/48', '198.51.100.96/28']


def test_partner_networks_narrow_5269_both_ways():
    hostvars, groups = topology(**DUAL_STACK)
    partners4 = ['198.51.100.64/27', '198.51.100.96/28']
    partners6 = ['2001:db8:64::/48']
    expected_fw_ext = [
        rule('xmpp-s2s-inbound-ipv4', 'forward', [5269], partners4, ['198.51.100.10/32', '198.51.100.11/32'], ROW1),
        rule('xmpp-s2s-inbound-ipv6', 'forward', [5269], partners6, ['2001:db8:10::10/128', '2001:db8:10::11/128'],
             ROW1),
        rule('xmpp-s2s-outbound-ipv4', 'forward', [5269], ['198.51.100.10/32', '198.51.100.11/32'], partners4, ROW2),
        rule('xmpp-s2s-outbound-ipv6', 'forward', [5269], ['2001:db8:10::10/128', '2001:db8:10::11/128'], partners6,
             ROW2),
    ]
    assert translate('fw-ext', hostvars, groups, partner_networks=PARTNERS) == expected_fw_ext
    # The same from the host's own variable, as the role sets it.
    hostvars['fw-ext']['xmpp_firewall_partner_networks'] = PARTNERS
    assert translate('fw-ext', hostvars, groups) == expected_fw_ext
    # An explicit empty list is "Any, as documented" and wins over the variable.
    assert translate('fw-ext', hostvars, groups, partner_networks=[])[0]['source'] == ANY
    assert translate('edge1', hostvars, groups, partner_networks=PARTNERS) == [
        rule('xmpp-gateway-internal-ipv4', 'in', [23456], ANY, ['198.51.100.130/32'], ROW3),
        rule('xmpp-gateway-internal-ipv6', 'in', [23456], ANY, ['2001:db8:20::10/128'], ROW3),
        rule('xmpp-s2s-inbound-ipv4', 'in', [5269], partners4, ['198.51.100.10/32'], ROW1),
        rule('xmpp-s2s-inbound-ipv6', 'in', [5269], partners6, ['2001:db8:10::10/128'], ROW1),
        rule('xmpp-s2s-outbound-ipv4', 'out', [5269], ['198.51.100.10/32'], partners4, ROW2),
        rule('xmpp-s2s-outbound-ipv6', 'out', [5269], ['2001:db8:10::10/128'], partners6, ROW2),
    ]
    # Row 3 is not a partner row.
    assert translate('fw-int', hostvars, groups, partner_networks=PARTNERS) == translate('fw-int', hostvars, groups)


def test_ipv4_partners_with_dual_stack_edge_never_open_ipv6_to_any():
    hostvars, groups = topology(
        edges={'edge1': {'lync_edge_external_ip': ['198.51.100.10', '2001:db8:10::10'],
                         'lync_edge_internal_ip': ['198.51.100.130', '2001:db8:20::10'],
                         'lync_edge_public_ip': ['198.51.100.62', '2001:db8:62::10']}},
        front_ends={'fe1': {'ansible_host': '198.51.100.200'}},
    )
    partners = ['198.51.100.64/27']
    assert translate('edge1', hostvars, groups, partner_networks=partners) == [
        rule('xmpp-gateway-internal-ipv4', 'in', [23456], ANY, ['198.51.100.130/32'], ROW3),
        rule('xmpp-gateway-internal-ipv6', 'in', [23456], ANY, ['2001:db8:20::10/128'], ROW3),
        rule('xmpp-s2s-inbound-ipv4', 'in', [5269], partners, ['198.51.100.10/32'], ROW1),
        rule('xmpp-s2s-outbound-ipv4', 'out', [5269], ['198.51.100.10/32'], partners, ROW2),
    ]
    fw_ext = translate('fw-ext', hostvars, groups, partner_networks=partners)
    assert fw_ext == [
        rule('xmpp-s2s-inbound-dnat-edge1-ipv4', 'forward', [5269], partners, ['198.51.100.62/32'], ROW1,
             nat='dnat', nat_to='198.51.100.10'),
        rule('xmpp-s2s-inbound-ipv4', 'forward', [5269], partners, ['198.51.100.10/32'], ROW1),
        rule('xmpp-s2s-outbound-ipv4', 'forward', [5269], ['198.51.100.10/32'], partners, ROW2),
        rule('xmpp-s2s-outbound-snat-edge1-ipv4', 'forward', [5269], ['198.51.100.10/32'], partners, ROW2,
             nat='snat', nat_to='198.51.100.62'),
    ]
    # Said once more as the property it is: no 5269 rule has an open partner side.
    for item in fw_ext:
        assert item['source'] and item['destination']


RESTRICTED = dict(
    edges={'edge1': {'lync_edge_external_ip': '198.51.100.10',
                     'lync_edge_internal_ip': ['198.51.100.130', '2001:db8:20::10']}},
    front_ends={'fe1': {'ansible_host': '198.51.100.200'},
                'fe2': {'ansible_host': '198.51.100.250',
                        'lync_internal_ip': ['198.51.100.201', '2001:db8:30::201']}},
)


def test_restrict_internal_sources_to_the_front_end_pool():
    hostvars, groups = topology(**RESTRICTED)
    front_ends4 = ['198.51.100.200/32', '198.51.100.201/32']
    front_ends6 = ['2001:db8:30::201/128']
    assert translate('edge1', hostvars, groups, restrict_internal_sources=True) == [
        rule('xmpp-gateway-internal-ipv4', 'in', [23456], front_ends4, ['198.51.100.130/32'], ROW3),
        rule('xmpp-gateway-internal-ipv6', 'in', [23456], front_ends6, ['2001:db8:20::10/128'], ROW3),
        rule('xmpp-s2s-inbound-ipv4', 'in', [5269], ANY, ['198.51.100.10/32'], ROW1),
        rule('xmpp-s2s-outbound-ipv4', 'out', [5269], ['198.51.100.10/32'], ANY, ROW2),
    ]
    expected_fw_int = [
        rule('xmpp-gateway-internal-ipv4', 'forward', [23456], front_ends4, ['198.51.100.130/32'], ROW3),
        rule('xmpp-gateway-internal-ipv6', 'forward', [23456], front_ends6, ['2001:db8:20::10/128'], ROW3),
    ]
    assert translate('fw-int', hostvars, groups, restrict_internal_sources=True) == expected_fw_int
    # From the host's variable, written as an INI inventory gives it.
    hostvars['fw-int']['xmpp_firewall_restrict_internal_sources'] = 'yes'
    assert translate('fw-int', hostvars, groups) == expected_fw_int
    # The external side is not narrowed by it.
    assert translate('fw-ext', hostvars, groups, restrict_internal_sources=True) == translate('fw-ext', hostvars,
                                                                                              groups)


def test_restrict_with_ipv4_front_ends_leaves_no_ipv6_rule():
    restricted = copy.deepcopy(RESTRICTED)
    restricted['front_ends']['fe2']['lync_internal_ip'] = '198.51.100.201'
    hostvars, groups = topology(**restricted)
    assert translate('fw-int', hostvars, groups, restrict_internal_sources=True) == [
        rule('xmpp-gateway-internal-ipv4', 'forward', [23456], ['198.51.100.200/32', '198.51.100.201/32'],
             ['198.51.100.130/32'], ROW3),
    ]


def load_fixture(name):
    with open(os.path.join(FIXTURES, name)) as fixture:
        return yaml.safe_load(fixture)


def test_custom_rows_from_the_edge_port_tables():
    extra = load_fixture('edge_extra_rows.yml')
    hostvars, groups = topology(**SINGLE_EDGE)
    matrix = MATRIX + extra
    sip = 'Access Edge SIP/TLS from federated partners'
    media = 'A/V Edge media from the conferencing provider'
    fe_sip = 'Edge internal to the Front End pool, SIP/MTLS'
    assert translate('edge1', hostvars, groups, matrix=matrix) == [
        rule('av-media-udp-ipv4', 'in', [3478, '50000-59999'], ['198.51.100.192/26'], ['198.51.100.10/32'], media,
             protocol='udp'),
        rule('edge-to-front-end-sip-ipv4', 'out', [5061], ['198.51.100.130/32'], ['198.51.100.200/32'], fe_sip),
        rule('sip-access-edge-ipv4', 'in', [443, 5061], ANY, ['198.51.100.10/32'], sip),
        rule('xmpp-gateway-internal-ipv4', 'in', [23456], ANY, ['198.51.100.130/32'], ROW3),
        rule('xmpp-s2s-inbound-ipv4', 'in', [5269], ANY, ['198.51.100.10/32'], ROW1),
        rule('xmpp-s2s-outbound-ipv4', 'out', [5269], ['198.51.100.10/32'], ANY, ROW2),
    ]
    # The Front End accepts the Edge's connection on its side.
    assert translate('fe1', hostvars, groups, matrix=matrix) == [
        rule('edge-to-front-end-sip-ipv4', 'in', [5061], ['198.51.100.130/32'], ANY, fe_sip),
        rule('xmpp-gateway-internal-ipv4', 'out', [23456], ANY, ['198.51.100.130/32'], ROW3),
    ]
    assert translate('fw-ext', hostvars, groups, matrix=matrix) == [
        rule('av-media-udp-ipv4', 'forward', [3478, '50000-59999'], ['198.51.100.192/26'], ['198.51.100.10/32'],
             media, protocol='udp'),
        rule('sip-access-edge-ipv4', 'forward', [443, 5061], ANY, ['198.51.100.10/32'], sip),
        rule('xmpp-s2s-inbound-ipv4', 'forward', [5269], ANY, ['198.51.100.10/32'], ROW1),
        rule('xmpp-s2s-outbound-ipv4', 'forward', [5269], ['198.51.100.10/32'], ANY, ROW2),
    ]
    assert translate('fw-int', hostvars, groups, matrix=matrix) == [
        rule('edge-to-front-end-sip-ipv4', 'forward', [5061], ['198.51.100.130/32'], ['198.51.100.200/32'], fe_sip),
        rule('xmpp-gateway-internal-ipv4', 'forward', [23456], ANY, ['198.51.100.130/32'], ROW3),
    ]


def test_row_ending_on_the_edge_pool_itself():
    # Edge to Edge inside the pool (e.g. replication): both ends are the Edge,
    # so each Edge gets an inbound and an outbound rule, told apart by name.
    row = {'id': 'edge-pool-sync', 'transport': 'tcp', 'ports': [4443], 'source': 'edge_internal',
           'destination': 'edge_internal', 'comment': 'Edge pool replication'}
    hostvars, groups = topology(**SINGLE_EDGE)
    assert translate('edge1', hostvars, groups, matrix=[row]) == [
        rule('edge-pool-sync-in-ipv4', 'in', [4443], ['198.51.100.130/32'], ['198.51.100.130/32'],
             'Edge pool replication'),
        rule('edge-pool-sync-out-ipv4', 'out', [4443], ['198.51.100.130/32'], ['198.51.100.130/32'],
             'Edge pool replication'),
    ]


# -- determinism ------------------------------------------------------------------------

def all_outputs(hostvars, groups, **options):
    return {host: translate(host, hostvars, groups, **options) for host in sorted(hostvars)}


def shuffled(hostvars, groups, seed):
    """The same inventory with every order that carries no meaning shuffled."""
    rng = random.Random(seed)
    hosts = list(hostvars)
    rng.shuffle(hosts)
    new_hostvars = {}
    for host in hosts:
        variables = copy.deepcopy(hostvars[host])
        for value in variables.values():
            if isinstance(value, list):
                rng.shuffle(value)
        keys = list(variables)
        rng.shuffle(keys)
        new_hostvars[host] = dict((key, variables[key]) for key in keys)
    names = list(groups)
    rng.shuffle(names)
    new_groups = {}
    for name in names:
        members = list(groups[name])
        rng.shuffle(members)
        new_groups[name] = members
    return new_hostvars, new_groups


def test_same_input_same_bytes():
    hostvars, groups = topology(**DUAL_STACK)
    first = json.dumps(all_outputs(hostvars, groups, partner_networks=PARTNERS))
    second = json.dumps(all_outputs(hostvars, groups, partner_networks=PARTNERS))
    assert first == second
    assert '"xmpp-s2s-inbound-ipv6"' in first


@pytest.mark.parametrize('seed', range(5))
def test_shuffled_inventory_same_bytes(seed):
    inventory = copy.deepcopy(DUAL_STACK)
    inventory['edges']['edge2']['lync_edge_public_ip'] = '198.51.100.62'
    hostvars, groups = topology(**inventory)
    reference = json.dumps(all_outputs(hostvars, groups, partner_networks=PARTNERS, restrict_internal_sources=True))
    other_hostvars, other_groups = shuffled(hostvars, groups, seed)
    assert json.dumps([other_hostvars, other_groups]) != json.dumps([hostvars, groups])
    partners = list(PARTNERS)
    random.Random(seed).shuffle(partners)
    assert json.dumps(all_outputs(other_hostvars, other_groups, partner_networks=partners,
                                  restrict_internal_sources=True)) == reference


def test_input_is_not_modified():
    hostvars, groups = topology(**DUAL_STACK)
    before = json.dumps([hostvars, groups, MATRIX], sort_keys=True)
    all_outputs(hostvars, groups, partner_networks=PARTNERS)
    assert json.dumps([hostvars, groups, MATRIX], sort_keys=True) == before


# -- errors: each names the host, the variable and the value --------------------------------------

def error_of(host, hostvars, groups, matrix=None, **options):
    with pytest.raises(RuleError) as error:
        host_rules(MATRIX if matrix is None else matrix, host, hostvars, groups, **options)
    return str(error.value)


def single_edge(**edge_vars):
    inventory = copy.deepcopy(SINGLE_EDGE)
    inventory['edges']['edge1'].update(edge_vars)
    for name in [name for name, value in edge_vars.items() if value is None]:
        del inventory['edges']['edge1'][name]
    return topology(**inventory)


@pytest.mark.parametrize('variable', ['lync_edge_external_ip', 'lync_edge_internal_ip'])
@pytest.mark.parametrize('host', ['edge1', 'fe1', 'fw-ext', 'fw-int'])
def test_edge_without_interface_variable(variable, host):
    hostvars, groups = single_edge(**{variable: None})
    # Whichever host is translated, the error points at the Edge that lacks the variable.
    assert error_of(host, hostvars, groups) == "host 'edge1': variable '%s' is required and not set" % variable


def test_edge_with_empty_interface_list():
    hostvars, groups = single_edge(lync_edge_internal_ip=[])
    assert error_of('edge1', hostvars, groups) == "host 'edge1': variable 'lync_edge_internal_ip' is required, not []"
    hostvars, groups = single_edge(lync_edge_external_ip='')
    assert error_of('fw-int', hostvars, groups) == "host 'edge1': variable 'lync_edge_external_ip' is required, not ''"


# Python's ipaddress takes a zone; nft and iptables do not. Every inventory address is refused with one.
@pytest.mark.parametrize('variable, scoped, host, options, where', [
    ('lync_edge_external_ip', 'fe80::10%eth0', 'fw-ext', {}, "host 'edge1': variable 'lync_edge_external_ip'"),
    ('lync_edge_external_ip', ['198.51.100.10', 'fe80::10%eth0'], 'fe1', {},
     "host 'edge1': variable 'lync_edge_external_ip'[1]"),
    ('lync_edge_internal_ip', 'fe80::130%eth1/64', 'edge1', {}, "host 'edge1': variable 'lync_edge_internal_ip'"),
    ('lync_edge_public_ip', 'fe80::62%eth0', 'fw-ext', {}, "host 'edge1': variable 'lync_edge_public_ip'"),
    ('lync_internal_ip', 'fe80::200%eth1', 'fw-int', {'restrict_internal_sources': True},
     "host 'fe1': variable 'lync_internal_ip'"),
    # A link-local ansible_host with a zone is a fine SSH target, but no firewall address.
    ('ansible_host', 'fe80::200%eth1', 'fw-int', {'restrict_internal_sources': True},
     "host 'fe1': variable 'lync_internal_ip (from ansible_host)'"),
    ('xmpp_firewall_partner_networks', ['198.51.100.0/24', 'fe80::%eth0/64'], 'fw-ext', {},
     "host 'fw-ext': variable 'xmpp_firewall_partner_networks'[1]"),
])
def test_scoped_ipv6_in_the_inventory_is_refused(variable, scoped, host, options, where):
    hostvars, groups = topology(**SINGLE_EDGE)
    owner = where.split("'")[1]
    hostvars[owner][variable] = scoped
    zoned = scoped[-1] if isinstance(scoped, list) else scoped
    zone = zoned.split('%')[1].split('/')[0]
    assert error_of(host, hostvars, groups, **options) == (
        "%s: '%s' is a scoped IPv6 address (zone '%s'); nftables and iptables take addresses without a zone: "
        "write it without '%%%s'" % (where, zoned, zone, zone))


def test_scoped_ipv6_partner_network_given_as_an_argument_is_refused():
    hostvars, groups = topology(**SINGLE_EDGE)
    assert error_of('edge1', hostvars, groups, partner_networks=['fe80::%eth0/64']).startswith(
        "host 'edge1': variable 'xmpp_firewall_partner_networks': 'fe80::%eth0/64' is a scoped IPv6 address")


@pytest.mark.parametrize('value, expected', [
    ('198.51.100.300', "host 'edge1': variable 'lync_edge_external_ip': '198.51.100.300' is not a valid IP address"),
    (['198.51.100.10', 'edge1.example.org'],
     "host 'edge1': variable 'lync_edge_external_ip'[1]: 'edge1.example.org' is not a valid IP address"),
    ('2001:db8::10::1', "host 'edge1': variable 'lync_edge_external_ip': '2001:db8::10::1' is not a valid IP address"),
    (5269, "host 'edge1': variable 'lync_edge_external_ip': 5269 is not an IP address"),
])
def test_malformed_address(value, expected):
    hostvars, groups = single_edge(lync_edge_external_ip=value)
    assert error_of('fw-ext', hostvars, groups) == expected


def test_malformed_front_end_address():
    hostvars, groups = topology(**SINGLE_EDGE)
    hostvars['fe1']['lync_internal_ip'] = '198.51.100.2000'
    assert error_of('fw-int', hostvars, groups, restrict_internal_sources=True) == \
        "host 'fe1': variable 'lync_internal_ip': '198.51.100.2000' is not a valid IP address"
    del hostvars['fe1']['lync_internal_ip']
    hostvars['fe1']['ansible_host'] = 'fe1.example.org'
    assert error_of('fw-int', hostvars, groups, restrict_internal_sources=True) == \
        "host 'fe1': variable 'lync_internal_ip (from ansible_host)': 'fe1.example.org' is not a valid IP address"


@pytest.mark.parametrize('partners, expected', [
    (['198.51.100.0/33'], "'198.51.100.0/33' is not a valid IP address or network"),
    (['198.51.100.0/24', 'partner.example.org'], "[1]: 'partner.example.org' is not a valid IP address or network"),
    ('2001:db8::/129', "'2001:db8::/129' is not a valid IP address or network"),
])
def test_malformed_partner_network(partners, expected):
    hostvars, groups = topology(**SINGLE_EDGE)
    assert error_of('fw-ext', hostvars, groups, partner_networks=partners) == \
        "host 'fw-ext': variable 'xmpp_firewall_partner_networks'" + (': ' if expected[0] != '[' else '') + expected
    hostvars['fw-ext']['xmpp_firewall_partner_networks'] = partners
    assert error_of('fw-ext', hostvars, groups).startswith("host 'fw-ext': variable 'xmpp_firewall_partner_networks'")


def bad_row(**fields):
    row = {'id': 'custom-row', 'transport': 'tcp', 'ports': [5061], 'source': 'any', 'destination': 'edge_external'}
    row.update(fields)
    return MATRIX + [row]


ROW_WHERE = "host 'edge1': variable 'xmpp_firewall_matrix': row 'custom-row': "


@pytest.mark.parametrize('fields, expected', [
    (dict(ports=[0]), "field 'ports': port 0 is outside 1-65535"),
    (dict(ports=[70000]), "field 'ports': port 70000 is outside 1-65535"),
    (dict(ports=['5000-70000']), "field 'ports': port '70000' is outside 1-65535"),
    (dict(ports=[]), "field 'ports' is required, not []"),
    (dict(transport='sctp'), "field 'transport': unknown transport 'sctp' (known: tcp, udp)"),
    (dict(destination='edge_dmz'),
     "field 'destination': unknown endpoint 'edge_dmz' (known: any, edge_external, edge_internal, front_end, "
     "partners, or a list of networks)"),
    (dict(source=['198.51.100.0/24', '198.51.100.999']),
     "field 'source'[1]: '198.51.100.999' is not a valid IP address or network"),
    (dict(port=5061), "unknown field 'port' (known: id, application, transport, ports, source, destination, action, "
                      "any_narrowed_to, comment, reference)"),
    (dict(action='allow'), "field 'action': 'allow' is not one of accept, drop, reject"),
    (dict(any_narrowed_to='everyone'), "field 'any_narrowed_to': 'everyone' is not one of partners, front_end"),
    (dict(comment='the "SIP" row'),
     "field 'comment': 'the \"SIP\" row' must be text without quotes, backslashes, control characters or line "
     "separators"),
    (dict(source='any', destination='front_end'),
     "fields 'source' and 'destination': one end of the row must be edge_external or edge_internal, not 'any' and "
     "'front_end'"),
    (dict(source=['fe80::1%eth0']),
     "field 'source': 'fe80::1%eth0' is a scoped IPv6 address (zone 'eth0'); nftables and iptables take addresses "
     "without a zone: write it without '%eth0'"),
])
def test_bad_row(fields, expected):
    hostvars, groups = topology(**SINGLE_EDGE)
    assert error_of('edge1', hostvars, groups, matrix=bad_row(**fields)) == ROW_WHERE + expected


def test_bad_row_id_and_duplicate_row():
    hostvars, groups = topology(**SINGLE_EDGE)
    matrix = MATRIX + [dict(MATRIX[0], id='bad id')]
    assert error_of('edge1', hostvars, groups, matrix=matrix) == (
        "host 'edge1': variable 'xmpp_firewall_matrix': row 'bad id': field 'id': 'bad id' must be 1-40 letters, "
        "digits, '.', '_' or '-', starting with a letter or digit")
    assert error_of('edge1', hostvars, groups, matrix=MATRIX + [MATRIX[0]]) == (
        "host 'edge1': variable 'xmpp_firewall_matrix': row 'xmpp-s2s-inbound': field 'id': 'xmpp-s2s-inbound' is "
        "already the id of an earlier row; give each row an id of its own")
    assert error_of('edge1', hostvars, groups, matrix={'rows': MATRIX}) == \
        "host 'edge1': variable 'xmpp_firewall_matrix': {'rows': %r} is not a list of rows" % (MATRIX,)


@pytest.mark.parametrize('group', ['lync_external_firewall', 'lync_internal_firewall', 'lync_front_end'])
def test_edge_in_a_conflicting_group(group):
    hostvars, groups = topology(**SINGLE_EDGE)
    groups[group].append('edge1')
    assert error_of('edge1', hostvars, groups) == (
        "host 'edge1': is in group 'lync_edge' and in '%s'; an Edge server cannot also be a Front End or a "
        "firewall" % group)


def test_front_end_that_is_also_a_firewall():
    hostvars, groups = topology(**SINGLE_EDGE)
    groups['lync_internal_firewall'].append('fe1')
    assert error_of('fe1', hostvars, groups) == (
        "host 'fe1': is in group 'lync_front_end' and in 'lync_internal_firewall'; a Front End server cannot also "
        "be a firewall")


@pytest.mark.parametrize('host, group', [('fe1', 'lync_front_end'), ('fw-ext', 'lync_external_firewall'),
                                         ('fw-int', 'lync_internal_firewall')])
def test_no_edge_in_the_inventory(host, group):
    hostvars, groups = topology(**SINGLE_EDGE)
    groups['lync_edge'] = []
    assert error_of(host, hostvars, groups) == (
        "host '%s': is in group '%s' but group 'lync_edge' has no host; there is no Edge to open paths to"
        % (host, group))
    del groups['lync_edge']
    assert 'has no host' in error_of(host, hostvars, groups)


@pytest.mark.parametrize('edge_vars, expected', [
    (dict(lync_edge_public_ip='2001:db8:62::10'),
     "host 'edge1': variable 'lync_edge_public_ip': 2001:db8:62::10 needs exactly one IPv6 address in "
     "'lync_edge_external_ip' to translate to, found ['198.51.100.10']"),
    (dict(lync_edge_external_ip=['198.51.100.10', '198.51.100.12'], lync_edge_public_ip='198.51.100.62'),
     "host 'edge1': variable 'lync_edge_public_ip': 198.51.100.62 needs exactly one IPv4 address in "
     "'lync_edge_external_ip' to translate to, found ['198.51.100.10', '198.51.100.12']"),
    (dict(lync_edge_public_ip=['198.51.100.62', '198.51.100.63']),
     "host 'edge1': variable 'lync_edge_public_ip': ['198.51.100.62', '198.51.100.63'] are 2 IPv4 addresses; an "
     "Edge is published through one public address per address family"),
    (dict(lync_edge_public_ip='public'),
     "host 'edge1': variable 'lync_edge_public_ip': 'public' is not a valid IP address"),
    (dict(lync_edge_public_ip='198.51.100.10/24'),
     "host 'edge1': variable 'lync_edge_public_ip': 198.51.100.10 is the Edge's own 'lync_edge_external_ip' "
     "address; an Edge that is not behind NAT needs no 'lync_edge_public_ip'"),
])
@pytest.mark.parametrize('host', ['fw-ext', 'edge1', 'fw-int'])
def test_bad_public_address(edge_vars, expected, host):
    hostvars, groups = single_edge(**edge_vars)
    assert error_of(host, hostvars, groups) == expected


def test_restrict_needs_front_ends():
    hostvars, groups = topology(**SINGLE_EDGE)
    groups['lync_front_end'] = []
    assert error_of('fw-int', hostvars, groups, restrict_internal_sources=True) == (
        "host 'fw-int': variable 'xmpp_firewall_restrict_internal_sources': true, but group 'lync_front_end' is "
        "empty")
    assert error_of('fw-int', hostvars, groups, restrict_internal_sources='maybe') == \
        "host 'fw-int': variable 'xmpp_firewall_restrict_internal_sources': 'maybe' is not a boolean"


def test_front_end_endpoint_needs_front_ends():
    hostvars, groups = topology(**SINGLE_EDGE)
    groups['lync_front_end'] = []
    matrix = load_fixture('edge_extra_rows.yml')
    assert error_of('fw-int', hostvars, groups, matrix=matrix) == (
        "host 'fw-int': variable 'xmpp_firewall_matrix': row 'edge-to-front-end-sip': field 'destination': "
        "'front_end', but group 'lync_front_end' is empty")


# -- extra rows: passed on their own, named on their own ---------------------------------------

EXTRA_ROWS = load_fixture('edge_extra_rows.yml')


@pytest.mark.parametrize('host', ['edge1', 'fe1', 'fw-ext', 'fw-int', 'mail1'])
def test_extra_rows_give_the_rules_of_rows_appended_to_the_matrix(host):
    hostvars, groups = single_edge(lync_edge_public_ip='198.51.100.62')
    assert translate(host, hostvars, groups, extra_rows=EXTRA_ROWS) == \
        translate(host, hostvars, groups, matrix=MATRIX + EXTRA_ROWS)
    # No extra rows, said three ways.
    assert translate(host, hostvars, groups, extra_rows=[]) == translate(host, hostvars, groups, extra_rows=None) \
        == translate(host, hostvars, groups)


def extra_row(**fields):
    row = {'id': 'sip-access-edge', 'transport': 'tcp', 'ports': [5061], 'source': 'any',
           'destination': 'edge_external'}
    row.update(fields)
    return EXTRA_ROWS[1:] + [row]


EXTRA_WHERE = "host 'edge1': variable 'xmpp_firewall_extra_rows': row 'sip-access-edge': "


@pytest.mark.parametrize('row_fields, expected', [
    (dict(ports=[70000]), EXTRA_WHERE + "field 'ports': port 70000 is outside 1-65535"),
    (dict(transport='sctp'), EXTRA_WHERE + "field 'transport': unknown transport 'sctp' (known: tcp, udp)"),
    (dict(source=['198.51.100.0/24', 'fe80::1%eth0']),
     EXTRA_WHERE + "field 'source'[1]: 'fe80::1%eth0' is a scoped IPv6 address (zone 'eth0'); nftables and iptables "
                   "take addresses without a zone: write it without '%eth0'"),
    (dict(comment='SIP \\ TLS'),
     EXTRA_WHERE + "field 'comment': 'SIP \\\\ TLS' must be text without quotes, backslashes, control characters or "
                   "line separators"),
    # An error found once the row became a rule names the row's variable too.
    (dict(comment='\u00e9' * 115),
     EXTRA_WHERE[:-2] + " (sip-access-edge-ipv4): field 'comment': '%s' is 230 bytes in UTF-8, which makes the "
                        "rule's kernel comment ('lync-xmpp:', the name, ': ', the comment) 262 bytes, more than the "
                        "255 bytes any firewall backend takes: shorten it by 7 bytes" % ('\u00e9' * 115)),
    # A row without a usable id is named by its index in the extra rows, not in matrix + extra rows.
    (dict(id=None), "host 'edge1': variable 'xmpp_firewall_extra_rows': row 2: field 'id' is required"),
])
def test_an_error_in_an_extra_row_names_xmpp_firewall_extra_rows(row_fields, expected):
    hostvars, groups = topology(**SINGLE_EDGE)
    assert error_of('edge1', hostvars, groups, extra_rows=extra_row(**row_fields)) == expected


def test_an_extra_row_to_an_empty_front_end_pool_names_its_variable_and_field():
    hostvars, groups = topology(**SINGLE_EDGE)
    groups['lync_front_end'] = []
    assert error_of('fw-int', hostvars, groups, extra_rows=EXTRA_ROWS) == (
        "host 'fw-int': variable 'xmpp_firewall_extra_rows': row 'edge-to-front-end-sip': field 'destination': "
        "'front_end', but group 'lync_front_end' is empty")


def test_extra_rows_that_are_not_a_list():
    hostvars, groups = topology(**SINGLE_EDGE)
    assert error_of('edge1', hostvars, groups, extra_rows={'id': 'sip'}) == \
        "host 'edge1': variable 'xmpp_firewall_extra_rows': {'id': 'sip'} is not a list of rows"


def test_an_extra_row_with_the_id_of_a_documented_row():
    hostvars, groups = topology(**SINGLE_EDGE)
    assert error_of('edge1', hostvars, groups, extra_rows=[dict(MATRIX[0], ports=[5270])]) == (
        "host 'edge1': variable 'xmpp_firewall_extra_rows': row 'xmpp-s2s-inbound': field 'id': 'xmpp-s2s-inbound' "
        "is already the id of a row of 'xmpp_firewall_matrix'; give each row an id of its own")


def test_an_extra_row_whose_rule_name_clashes_with_a_matrix_rule():
    hostvars, groups = single_edge(lync_edge_public_ip='198.51.100.62')
    clash = dict(MATRIX[0], id='xmpp-s2s-inbound-dnat-edge1')
    assert error_of('fw-ext', hostvars, groups, extra_rows=[clash]) == (
        "host 'fw-ext': variable 'xmpp_firewall_extra_rows': row 'xmpp-s2s-inbound-dnat-edge1': field 'id': its "
        "rule 'xmpp-s2s-inbound-dnat-edge1-ipv4' has the name of a rule of row 'xmpp-s2s-inbound' of variable "
        "'xmpp_firewall_matrix'; rename one of the rows")


def test_rows_appended_to_the_matrix_still_work_and_are_named_as_the_matrix():
    # The call of earlier releases (matrix + extra rows in one list) gives the same rules; its errors can only
    # name the one list it was given.
    hostvars, groups = topology(**SINGLE_EDGE)
    assert error_of('edge1', hostvars, groups, matrix=MATRIX + extra_row(ports=[0])) == (
        "host 'edge1': variable 'xmpp_firewall_matrix': row 'sip-access-edge': field 'ports': port 0 is outside "
        "1-65535")


# -- through the filter plugin, as a play calls it ------------------------------------------

def test_filter_plugin_returns_the_rules():
    hostvars, groups = topology(**SINGLE_EDGE)
    host_rules_filter = FilterModule().filters()['host_rules']
    assert host_rules_filter(MATRIX, 'fw-int', hostvars, groups) == [
        rule('xmpp-gateway-internal-ipv4', 'forward', [23456], ANY, ['198.51.100.130/32'], ROW3),
    ]
    assert host_rules_filter(MATRIX, 'fw-int', hostvars, groups, restrict_internal_sources=True)[0]['source'] == \
        ['198.51.100.200/32']


def test_filter_plugin_takes_extra_rows():
    hostvars, groups = topology(**SINGLE_EDGE)
    host_rules_filter = FilterModule().filters()['host_rules']
    assert host_rules_filter(MATRIX, 'edge1', hostvars, groups, extra_rows=EXTRA_ROWS) == \
        host_rules(MATRIX + EXTRA_ROWS, 'edge1', hostvars, groups)
    with pytest.raises(AnsibleFilterError) as error:
        host_rules_filter(MATRIX, 'edge1', hostvars, groups, extra_rows=extra_row(ports=[0]))
    assert error.value.message == ("lync.xmpp_federation.host_rules: " + EXTRA_WHERE
                                   + "field 'ports': port 0 is outside 1-65535")


def test_filter_plugin_error_is_an_ansible_filter_error():
    hostvars, groups = single_edge(lync_edge_external_ip='198.51.100.300')
    host_rules_filter = FilterModule().filters()['host_rules']
    with pytest.raises(AnsibleFilterError) as error:
        host_rules_filter(MATRIX, 'fw-ext', hostvars, groups)
    assert error.value.message == ("lync.xmpp_federation.host_rules: host 'edge1': variable 'lync_edge_external_ip': "
                                   "'198.51.100.300' is not a valid IP address")


def test_filter_documentation_matches_the_function():
    from ansible_collections.lync.xmpp_federation.plugins.filter import host_rules as plugin
    documentation = yaml.safe_load(plugin.DOCUMENTATION)
    assert documentation['name'] == 'host_rules'
    assert set(documentation['options']) == {'_input', 'host', 'hostvars', 'groups', 'partner_networks',
                                             'restrict_internal_sources', 'extra_rows'}
    # Every option is a keyword of the function the plugin exports, and the other way round.
    keywords = inspect.signature(FilterModule().filters()['host_rules']).parameters
    assert set(keywords) == set(documentation['options']) - {'_input'} | {'matrix'}
    assert documentation['positional'] == 'host, hostvars, groups'
    examples = yaml.safe_load(plugin.EXAMPLES)
    assert all('lync.xmpp_federation.host_rules' in json.dumps(example) for example in examples)
    assert yaml.safe_load(plugin.RETURN)['_value']['type'] == 'list'


# -- more shapes of estate --------------------------------------------------------------------

def test_one_firewall_on_both_sides():
    # A three-legged firewall: Internet, DMZ and internal network on one host.
    hostvars, groups = topology(external_firewalls=('fw',), internal_firewalls=('fw',), **SINGLE_EDGE)
    assert translate('fw', hostvars, groups) == [
        rule('xmpp-gateway-internal-ipv4', 'forward', [23456], ANY, ['198.51.100.130/32'], ROW3),
        rule('xmpp-s2s-inbound-ipv4', 'forward', [5269], ANY, ['198.51.100.10/32'], ROW1),
        rule('xmpp-s2s-outbound-ipv4', 'forward', [5269], ['198.51.100.10/32'], ANY, ROW2),
    ]


def test_nat_for_an_edge_named_by_its_address():
    # Host names that a rule name cannot hold (':' of an IPv6 literal) are made safe and given a digest,
    # so that '2001:db8::5' and '2001_db8__5' can never meet on one name.
    hostvars, groups = topology(
        edges={'2001:db8::5': {'lync_edge_external_ip': '198.51.100.10', 'lync_edge_internal_ip': '198.51.100.130',
                               'lync_edge_public_ip': '198.51.100.62'}},
        front_ends={'fe1': {'ansible_host': '198.51.100.200'}},
    )
    names = [item['name'] for item in translate('fw-ext', hostvars, groups)]
    assert names == ['xmpp-s2s-inbound-dnat-2001_db8__5-e3b38e0a-ipv4', 'xmpp-s2s-inbound-ipv4',
                     'xmpp-s2s-outbound-ipv4', 'xmpp-s2s-outbound-snat-2001_db8__5-e3b38e0a-ipv4']


def test_rule_errors_name_the_row():
    hostvars, groups = topology(**SINGLE_EDGE)
    # 'lync-xmpp:' + 'custom-row-ipv4' + ': ' = 27 bytes, + 229 = 256: one byte over the loosest kernel limit.
    matrix = bad_row(id='custom-row', comment='x' * 229)
    assert error_of('edge1', hostvars, groups, matrix=matrix).startswith(
        "host 'edge1': variable 'xmpp_firewall_matrix': row 'custom-row' (custom-row-ipv4): field 'comment': '%s' "
        "is 229 bytes in UTF-8, which makes the rule's kernel comment ('lync-xmpp:', the name, ': ', the comment) "
        "256 bytes, more than the 255 bytes any firewall backend takes: shorten it by 1 byte" % ('x' * 229))
    assert translate('edge1', hostvars, groups, matrix=bad_row(id='custom-row', comment='x' * 228))
    clash = dict(MATRIX[0], id='xmpp-s2s-inbound-dnat-edge1')
    hostvars, groups = single_edge(lync_edge_public_ip='198.51.100.62')
    assert error_of('fw-ext', hostvars, groups, matrix=MATRIX + [clash]) == (
        "host 'fw-ext': variable 'xmpp_firewall_matrix': row 'xmpp-s2s-inbound-dnat-edge1': field 'id': its rule "
        "'xmpp-s2s-inbound-dnat-edge1-ipv4' has the name of a rule of row 'xmpp-s2s-inbound'; rename one of the rows")


@pytest.mark.parametrize('swap', ['hostvars', 'groups'])
def test_magic_variables_in_the_wrong_place(swap):
    hostvars, groups = topology(**SINGLE_EDGE)
    arguments = {'hostvars': hostvars, 'groups': groups}
    arguments[swap] = ['edge1']
    with pytest.raises(RuleError) as error:
        host_rules(MATRIX, 'edge1', arguments['hostvars'], arguments['groups'])
    assert str(error.value) == (
        "host 'edge1': argument '%s': a list is not a mapping; pass the magic variable '%s' "
        "(host_rules(inventory_hostname, hostvars, groups))" % (swap, swap))


@pytest.mark.parametrize('host', ['fw-ext', 'edge2'])
def test_two_edges_on_one_public_address(host):
    hostvars, groups = topology(
        edges={'edge1': {'lync_edge_external_ip': '198.51.100.10', 'lync_edge_internal_ip': '198.51.100.130',
                         'lync_edge_public_ip': '198.51.100.62'},
               'edge2': {'lync_edge_external_ip': '198.51.100.11', 'lync_edge_internal_ip': '198.51.100.131',
                         'lync_edge_public_ip': '198.51.100.62/32'}},
        front_ends={'fe1': {'ansible_host': '198.51.100.200'}},
    )
    assert error_of(host, hostvars, groups) == (
        "host 'edge2': variable 'lync_edge_public_ip': 198.51.100.62 is also the public address of 'edge1'; each "
        "Edge behind NAT needs a public address of its own")
