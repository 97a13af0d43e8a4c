# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: windows_firewall_rules
short_description: Turn one host's rules into community.windows.win_firewall_rule arguments, and find stale rules
version_added: 1.0.0
author: lync.xmpp_federation contributors
description:
  - Maps each rule of the collection's rule model (as P(lync.xmpp_federation.host_rules#filter) returns it) to the
    arguments of one M(community.windows.win_firewall_rule) task, so that the Windows host firewall of a Lync Edge
    or Front End server enforces the same rule as the Linux backends do.
  - C(direction=in) becomes an inbound rule whose local address is the rule's destination, whose remote address is the
    rule's source and whose local port is the rule's destination port; C(direction=out) becomes an outbound rule whose
    local address is the rule's source, whose remote address is the rule's destination and whose remote port is the
    rule's destination port. The other port is C(any). An empty address list is C(any).
  - Host addresses are written without prefix length (C(198.51.100.10), C(2001:db8::10)); networks keep it.
    Ports and addresses are joined with commas, which is how the Windows firewall takes lists.
  - C(accept) becomes C(allow); C(drop) and C(reject) become C(block) (the Windows firewall has no reject).
  - Every rule gets O(group), O(profiles), C(enabled=true), C(program=any), C(service=any) and a unique name
    C(<group> - <rule name>), so that the collection owns the whole rule and a hand edit is put back on the next run.
  - Forward rules (perimeter firewalls) and translation rules are refused with a message naming the host and the
    rule, because the Windows host firewall only filters the host's own traffic.
  - With O(existing), also returns the names of the rules found in O(group) that are no longer wanted (a removed
    matrix row, a host that left a group, a rule renamed by a changed address family). Names compare without regard
    to case, as the Windows firewall compares them.
positional: group, profiles, host, existing
options:
  _input:
    description: The host's rules, as P(lync.xmpp_federation.host_rules#filter) returns them.
    type: list
    elements: dict
    required: true
  group:
    description: The Windows firewall rule group that holds the collection's rules on the host.
    type: str
    default: Lync XMPP Federation
  profiles:
    description: The Windows firewall profiles the rules apply to.
    type: list
    elements: str
    choices: [domain, private, public]
    default: [domain, private, public]
  host:
    description: The host the rules are for, named in error messages.
    type: str
    default: this host
  existing:
    description:
      - The display names of the rules now in O(group) on the host. Rules among them that are not in the desired
        list are returned in RV(_value.stale).
    type: list
    elements: str
    default: []
'''

EXAMPLES = r'''
- name: Compute the win_firewall_rule arguments of this host
  ansible.builtin.set_fact:
    xmpp_firewall__windows: >-
      {{ xmpp_firewall_matrix
         | lync.xmpp_federation.host_rules(inventory_hostname, hostvars, groups)
         | lync.xmpp_federation.windows_firewall_rules(group='Lync XMPP Federation', profiles=['domain'],
                                                       host=inventory_hostname, existing=['Lync XMPP Federation - old']) }}

# For an Edge whose rule is
#   {name: xmpp-s2s-inbound-ipv4, direction: in, protocol: tcp, ports: [5269], source: [],
#    destination: [198.51.100.10/32], action: accept, comment: XMPP federation row 1, ...}
# xmpp_firewall__windows.rules holds
#   {name: Lync XMPP Federation - xmpp-s2s-inbound-ipv4, group: Lync XMPP Federation, direction: in,
#    action: allow, protocol: tcp, localport: '5269', remoteport: any, localip: 198.51.100.10, remoteip: any,
#    profiles: [domain], enabled: true, program: any, service: any, state: present,
#    description: 'XMPP federation row 1, ... (rule xmpp-s2s-inbound-ipv4, managed by lync.xmpp_federation)'}
# and xmpp_firewall__windows.stale is ['Lync XMPP Federation - old'].
'''

RETURN = r'''
_value:
  description: The arguments and the stale names.
  type: dict
  contains:
    rules:
      description: One dict of M(community.windows.win_firewall_rule) arguments per rule, in the order of the rules.
      type: list
      elements: dict
    stale:
      description: The names in O(existing) that no desired rule has, sorted, each once.
      type: list
      elements: str
'''

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text

from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import (
    RuleError,
    normalize_rules,
)

DEFAULT_GROUP = 'Lync XMPP Federation'
PROFILES = ('domain', 'private', 'public')
ACTIONS = {'accept': 'allow', 'drop': 'block', 'reject': 'block'}
NAME_SEPARATOR = ' - '
MANAGED_BY = 'managed by lync.xmpp_federation'


def _addresses(networks):
    """Canonical networks -> the Windows firewall's comma list; host routes lose their prefix length."""
    if not networks:
        return 'any'
    written = []
    for network in networks:
        address, _slash, length = network.partition('/')
        host_length = '128' if ':' in address else '32'
        written.append(address if length == host_length else network)
    return ','.join(written)


def _ports(ports):
    return ','.join(to_text(port) for port in ports)


def rule_name(group, name):
    return group + NAME_SEPARATOR + name


def win_firewall_rule_args(rule, group, profiles):
    """One canonical rule -> the arguments of one win_firewall_rule task."""
    if rule['direction'] == 'in':
        local, remote, local_port, remote_port = rule['destination'], rule['source'], _ports(rule['ports']), 'any'
    else:
        local, remote, local_port, remote_port = rule['source'], rule['destination'], 'any', _ports(rule['ports'])
    description = '%s (rule %s, %s)' % (rule['comment'], rule['name'], MANAGED_BY) if rule['comment'] \
        else '%s (rule %s)' % (MANAGED_BY, rule['name'])
    return {
        'name': rule_name(group, rule['name']),
        'group': group,
        'description': description,
        'direction': rule['direction'],
        'action': ACTIONS[rule['action']],
        'protocol': rule['protocol'],
        'localport': local_port,
        'remoteport': remote_port,
        'localip': _addresses(local),
        'remoteip': _addresses(remote),
        'profiles': list(profiles),
        'program': 'any',
        'service': 'any',
        'enabled': True,
        'state': 'present',
    }


def stale_rule_names(existing, wanted):
    """Names in ``existing`` that no wanted rule has; compared without case, as Windows compares names."""
    wanted_keys = set(name.casefold() for name in wanted)
    return sorted(set(name for name in existing if name.casefold() not in wanted_keys))


def windows_firewall_plan(rules, group=DEFAULT_GROUP, profiles=PROFILES, host='this host', existing=None):
    """-> {'rules': [win_firewall_rule args], 'stale': [names]}; raises RuleError on input Windows cannot take."""
    where = "host '%s'" % host
    if not isinstance(group, str) or not group.strip():
        raise RuleError("%s: variable 'xmpp_firewall_windows_group': %r is not a group name" % (where, group))
    if isinstance(profiles, str):
        profiles = [profiles]
    if not isinstance(profiles, (list, tuple)) or not profiles:
        raise RuleError("%s: variable 'xmpp_firewall_windows_profiles': %r is not a list of profiles (%s)"
                        % (where, profiles, ', '.join(PROFILES)))
    for profile in profiles:
        if profile not in PROFILES:
            raise RuleError("%s: variable 'xmpp_firewall_windows_profiles': %r is not one of %s"
                            % (where, profile, ', '.join(PROFILES)))
    canonical = normalize_rules(rules, '%s: rules' % where)
    for rule in canonical:
        if rule['direction'] == 'forward' or rule.get('nat'):
            raise RuleError("%s: rule '%s' is a forward rule; the Windows host firewall only filters the host's own "
                            "traffic, so a host in lync_external_firewall or lync_internal_firewall must be a Linux "
                            "firewall" % (where, rule['name']))
    arguments = [win_firewall_rule_args(rule, group, sorted(set(profiles), key=PROFILES.index)) for rule in canonical]
    if existing is None:
        existing = []
    if isinstance(existing, str) or not isinstance(existing, (list, tuple)) \
            or not all(isinstance(name, str) for name in existing):
        raise RuleError("%s: the existing rule names %r are not a list of names" % (where, existing))
    return {'rules': arguments, 'stale': stale_rule_names(existing, [args['name'] for args in arguments])}


def windows_firewall_rules(rules, group=DEFAULT_GROUP, profiles=PROFILES, host='this host', existing=None):
    try:
        return windows_firewall_plan(rules, group=group, profiles=profiles, host=host, existing=existing)
    except RuleError as error:
        raise AnsibleFilterError('lync.xmpp_federation.windows_firewall_rules: %s' % error)


class FilterModule(object):
    def filters(self):
        return {'windows_firewall_rules': windows_firewall_rules}
