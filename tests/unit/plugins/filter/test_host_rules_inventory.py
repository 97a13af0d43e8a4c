# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""host_rules over inventories read by Ansible itself: its hostvars object, its groups, its value types."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import yaml

from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.vars.hostvars import HostVars
from ansible.vars.manager import VariableManager

from ansible_collections.lync.xmpp_federation.plugins.module_utils.matrix import host_rules

COLLECTION_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))
EXAMPLE_INVENTORY = os.path.join(COLLECTION_ROOT, 'inventory', 'example')
INI_INVENTORY = os.path.join(os.path.dirname(__file__), 'fixtures', 'estate.ini')
ROW1 = 'XMPP federation row 1, partners to Access Edge XMPP proxy'
ROW2 = 'XMPP federation row 2, Access Edge XMPP proxy to partners'
ROW3 = 'XMPP federation row 3, Front End XMPP gateway to Edge internal'

with open(os.path.join(COLLECTION_ROOT, 'roles', 'xmpp_firewall', 'defaults', 'main.yml')) as defaults:
    MATRIX = yaml.safe_load(defaults)['xmpp_firewall_matrix']


def rule(name, direction, ports, source, destination, comment, nat=None, nat_to=None):
    expected = {'name': name, 'direction': direction, 'protocol': 'tcp', 'ports': ports, 'source': source,
                'destination': destination, 'action': 'accept', 'comment': comment}
    if nat:
        expected.update(nat=nat, nat_to=nat_to)
    return expected


def ansible_view(source):
    """hostvars and groups exactly as a play passes them to the filter."""
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[source])
    variables = VariableManager(loader=loader, inventory=inventory)
    hostvars = HostVars(inventory=inventory, variable_manager=variables, loader=loader)
    groups = variables.get_vars(host=inventory.get_host(inventory.list_hosts()[0].name))['groups']
    return hostvars, groups


def test_example_inventory():
    hostvars, groups = ansible_view(EXAMPLE_INVENTORY)
    assert host_rules(MATRIX, 'fw-ext01', hostvars, groups) == [
        rule('xmpp-s2s-inbound-dnat-edge02-ipv4', 'forward', [5269], [], ['198.51.100.62/32'], ROW1,
             nat='dnat', nat_to='198.51.100.11'),
        rule('xmpp-s2s-inbound-ipv4', 'forward', [5269], [], ['198.51.100.10/32', '198.51.100.11/32'], ROW1),
        rule('xmpp-s2s-inbound-ipv6', 'forward', [5269], [], ['2001:db8:10::10/128'], ROW1),
        rule('xmpp-s2s-outbound-ipv4', 'forward', [5269], ['198.51.100.10/32', '198.51.100.11/32'], [], ROW2),
        rule('xmpp-s2s-outbound-ipv6', 'forward', [5269], ['2001:db8:10::10/128'], [], ROW2),
        rule('xmpp-s2s-outbound-snat-edge02-ipv4', 'forward', [5269], ['198.51.100.11/32'], [], ROW2,
             nat='snat', nat_to='198.51.100.62'),
    ]
    assert host_rules(MATRIX, 'edge02', hostvars, groups) == [
        rule('xmpp-gateway-internal-ipv4', 'in', [23456], [], ['198.51.100.141/32'], ROW3),
        rule('xmpp-gateway-internal-ipv6', 'in', [23456], [], ['2001:db8:20::11/128'], ROW3),
        rule('xmpp-s2s-inbound-ipv4', 'in', [5269], [], ['198.51.100.11/32'], ROW1),
        rule('xmpp-s2s-outbound-ipv4', 'out', [5269], ['198.51.100.11/32'], [], ROW2),
    ]
    # fe01 has no lync_internal_ip: its ansible_host stands in; row 3 narrowed to the pool.
    assert host_rules(MATRIX, 'fw-int01', hostvars, groups, restrict_internal_sources=True) == [
        rule('xmpp-gateway-internal-ipv4', 'forward', [23456], ['198.51.100.200/32', '198.51.100.201/32'],
             ['198.51.100.140/32', '198.51.100.141/32'], ROW3),
        rule('xmpp-gateway-internal-ipv6', 'forward', [23456], ['2001:db8:30::201/128'], ['2001:db8:20::11/128'],
             ROW3),
    ]
    # Plain data out, whatever Ansible's own types were on the way in.
    every_host = dict((host, host_rules(MATRIX, host, hostvars, groups)) for host in sorted(groups['all']))
    assert json.loads(json.dumps(every_host)) == every_host
    # Every Lync host gets rules; the Internet-side probe of the verify playbook is in no Lync group and gets none.
    assert [name for name, rules in every_host.items() if not rules] == ['probe01']


def test_ini_inventory_values():
    hostvars, groups = ansible_view(INI_INVENTORY)
    # The partner networks come from fw-ext's own variable, a list written in INI literal syntax;
    # with IPv4 partners only, the dual-stack Edge gets no IPv6 rule that would open to any address.
    assert host_rules(MATRIX, 'fw-ext', hostvars, groups) == [
        rule('xmpp-s2s-inbound-dnat-edge-a-ipv4', 'forward', [5269], ['198.51.100.64/27'], ['198.51.100.62/32'],
             ROW1, nat='dnat', nat_to='198.51.100.10'),
        rule('xmpp-s2s-inbound-ipv4', 'forward', [5269], ['198.51.100.64/27'], ['198.51.100.10/32'], ROW1),
        rule('xmpp-s2s-outbound-ipv4', 'forward', [5269], ['198.51.100.10/32'], ['198.51.100.64/27'], ROW2),
        rule('xmpp-s2s-outbound-snat-edge-a-ipv4', 'forward', [5269], ['198.51.100.10/32'], ['198.51.100.64/27'],
             ROW2, nat='snat', nat_to='198.51.100.62'),
    ]
    # "yes" from the INI file turns the narrowing on.
    assert host_rules(MATRIX, 'fw-int', hostvars, groups) == [
        rule('xmpp-gateway-internal-ipv4', 'forward', [23456], ['198.51.100.200/32'], ['198.51.100.130/32'], ROW3),
    ]
    assert host_rules(MATRIX, 'www1', hostvars, groups) == []
