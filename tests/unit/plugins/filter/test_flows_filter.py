# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The flows filter over the example inventory, read by Ansible itself (its hostvars object and groups)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest
import yaml

from ansible.errors import AnsibleFilterError
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.vars.hostvars import HostVars
from ansible.vars.manager import VariableManager

from ansible_collections.lync.xmpp_federation.plugins.filter.flows import FilterModule

COLLECTION_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))
EXAMPLE_INVENTORY = os.path.join(COLLECTION_ROOT, 'inventory', 'example')

with open(os.path.join(COLLECTION_ROOT, 'roles', 'xmpp_firewall', 'defaults', 'main.yml')) as defaults:
    MATRIX = yaml.safe_load(defaults)['xmpp_firewall_matrix']

flows = FilterModule().filters()['flows']


def ansible_view(source):
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[source])
    variables = VariableManager(loader=loader, inventory=inventory)
    hostvars = HostVars(inventory=inventory, variable_manager=variables, loader=loader)
    groups = variables.get_vars(host=inventory.get_host(inventory.list_hosts()[0].name))['groups']
    return hostvars, groups


def test_the_example_estate_row_1_reaches_edge02_through_its_nat_and_edge01_directly():
    hostvars, groups = ansible_view(EXAMPLE_INVENTORY)
    found = flows(MATRIX, hostvars, groups, vantage='probe01', partner=['198.51.100.245', '2001:db8:99::5'])
    assert [(flow['from'], flow['to'], flow['to_host'], flow['translated_to'], flow['expected'])
            for flow in found if flow['row'] == 'xmpp-s2s-inbound' and flow['kind'] == 'row'] == [
        ('probe01', '198.51.100.10', 'edge01', None, 'open'),
        ('probe01', '198.51.100.62', 'edge02', '198.51.100.11', 'open'),
        ('probe01', '2001:db8:10::10', 'edge01', None, 'open'),
    ]
    # edge02 has no IPv6 external address: it reaches only the IPv4 partner, seen as its public address.
    assert [(flow['from'], flow['to'], flow['seen_as']) for flow in found
            if flow['row'] == 'xmpp-s2s-outbound' and flow['kind'] == 'row'] == [
        ('edge01', '198.51.100.245', None), ('edge01', '2001:db8:99::5', None), ('edge02', '198.51.100.245', '198.51.100.62')]
    # fe01 has no lync_internal_ip: its ansible_host (IPv4 only) stands in, so it reaches IPv4 addresses only.
    assert [flow['to'] for flow in found if flow['kind'] == 'row' and flow['from'] == 'fe01'] == [
        '198.51.100.140', '198.51.100.141']
    assert [flow['to'] for flow in found if flow['kind'] == 'reverse' and flow['from'] == 'edge02'] == [
        '198.51.100.200', '198.51.100.201', '2001:db8:30::201']
    # Plain data out, whatever Ansible's own types were on the way in.
    assert json.loads(json.dumps(found)) == found


def test_errors_name_the_filter():
    hostvars, groups = ansible_view(EXAMPLE_INVENTORY)
    with pytest.raises(AnsibleFilterError) as error:
        flows(MATRIX, hostvars, groups, vantage='edge01')
    assert str(error.value).startswith("lync.xmpp_federation.flows: flow model: argument 'vantage': host 'edge01' "
                                       "is in group 'lync_edge'")


def test_a_partner_address_must_be_an_address():
    hostvars, groups = ansible_view(EXAMPLE_INVENTORY)
    with pytest.raises(AnsibleFilterError, match="argument 'partner'"):
        flows(MATRIX, hostvars, groups, partner='198.51.100.0/24')
