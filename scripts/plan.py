#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Print every host's XMPP federation rules for an inventory, as a table.

Computed on the control node with the collection's own filter and the role's
matrix (plus the inventory's xmpp_firewall_* variables): no connection to any
host. Usage: plan.py -i INVENTORY [--host PATTERN]
"""

from __future__ import absolute_import, division, print_function

import argparse
import os
import sys

import yaml
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar
from ansible.vars.manager import VariableManager

from ansible_collections.lync.xmpp_federation.plugins.module_utils.matrix import host_rules
from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import RuleError

ROLE_DEFAULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'roles', 'xmpp_firewall',
                             'defaults', 'main.yml')
COLUMNS = ('host', 'rule', 'direction', 'proto', 'ports', 'source', 'destination', 'action')


class LazyHostvars(dict):
    """hostvars as the filter sees them in a play: templated variables of each host, read on first use."""

    def __init__(self, inventory, variables, loader):
        super(LazyHostvars, self).__init__()
        self.inventory, self.variables, self.loader = inventory, variables, loader

    def __missing__(self, host):
        found = self.inventory.get_host(host)
        if found is None:
            raise KeyError(host)
        raw = self.variables.get_vars(host=found, include_hostvars=False)
        value = Templar(loader=self.loader, variables=raw).template(raw)
        self[host] = value
        return value


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('-i', '--inventory', required=True)
    parser.add_argument('--host', default='all', help='host pattern (default: all)')
    args = parser.parse_args()

    with open(ROLE_DEFAULTS) as defaults:
        matrix = yaml.safe_load(defaults)['xmpp_firewall_matrix']
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[args.inventory])
    variables = VariableManager(loader=loader, inventory=inventory)
    hostvars = LazyHostvars(inventory, variables, loader)
    groups = inventory.get_groups_dict()

    rows = []
    for host in sorted(h.name for h in inventory.get_hosts(args.host)):
        own = hostvars[host]
        # As the role does: the inventory's matrix replaces the default (even an empty one), and the extra rows
        # go in on their own, so that an error in one of them names xmpp_firewall_extra_rows.
        rules = host_rules(own.get('xmpp_firewall_matrix', matrix), host, hostvars, groups,
                           extra_rows=own.get('xmpp_firewall_extra_rows'))
        for rule in rules:
            action = rule['action'] + (' %s to %s' % (rule['nat'], rule['nat_to']) if rule.get('nat') else '')
            rows.append((host, rule['name'], rule['direction'], rule['protocol'],
                         ','.join(str(port) for port in rule['ports']),
                         ' '.join(rule['source']) or 'any', ' '.join(rule['destination']) or 'any', action))
        if not rules:
            rows.append((host, '(none)', '', '', '', '', '', ''))
    widths = [max(len(str(row[index])) for row in rows + [COLUMNS]) for index in range(len(COLUMNS))]
    line = '+'.join('-' * (width + 2) for width in widths)
    print('+%s+' % line)
    print('| ' + ' | '.join(title.ljust(width) for title, width in zip(COLUMNS, widths)) + ' |')
    print('+%s+' % line)
    for row in rows:
        print('| ' + ' | '.join(str(cell).ljust(width) for cell, width in zip(row, widths)) + ' |')
    print('+%s+' % line)


if __name__ == '__main__':
    try:
        main()
    except RuleError as error:
        sys.exit('plan: %s' % error)
