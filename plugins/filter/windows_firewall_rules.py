# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: windows_firewall_rules
short_description: Turn one host's rules into community.windows.win_firewall_rule arguments, and judge the host's listing
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
    C(<group> - <rule name>), so that every property the module documents is given and a hand edit of any of them is
    put back, and reported changed, on the next run. The properties the module does not document (interface types,
    edge traversal, the security flags of authenticated connections) and those it cannot set at all (owner, package,
    authorized users and computers) are read by the role's listing step and put back by its COM step, see
    RV(_value.reset) and RV(_value.replace).
  - Refused before the host is touched, with a message naming the host, the variable and the value, is input the
    Windows firewall cannot take or would enforce differently from the Linux backends. A forward rule or a
    translation rule (the Windows host firewall only filters the host's own traffic). A C(|) in O(group) or in a
    description (the rule's comment), which the firewall's COM API refuses. A rule named C(all), which Windows tools
    take to mean every rule. An C(accept) rule and a C(drop)/C(reject) rule of the same direction and protocol whose
    ports and addresses overlap; the Linux backends apply rules in order, but on Windows a block rule always wins
    over an allow rule, so the overlap would block what the allow rule is meant to let through.
  - With O(listing), the result of the role's read-only listing step on the host (C(files/list_group.ps1)), also
    judges the host. A rule outside O(group) that has the name of a rule of ours is refused, naming it, because
    M(community.windows.win_firewall_rule) finds rules by name alone and would change or remove it. So is a rule of
    O(group) that would be removed but whose description lacks the collection's mark (the group name is in use by
    something else). When the host
    has rules, Group Policy overriding the local rules (C(LocalPolicyModifyState) 1) is refused unless
    O(accept_group_policy); so is a profile in use that is one of O(profiles) and blocks all inbound connections while
    the host has inbound allow rules, and a host none of whose profiles in use is in O(profiles). It then returns the
    rule objects of O(group) that are no longer wanted (RV(_value.stale)), the wanted ones whose interface types, edge
    traversal or security flags must be put back (RV(_value.reset)), and those that must be replaced rather than
    edited (RV(_value.replace)).
  - Names compare without regard to case, as the Windows firewall compares them.
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
        list are returned in RV(_value.stale). Superseded by O(listing), which the role uses.
    type: list
    elements: str
    default: []
  listing:
    description:
      - What the role's read-only listing step (C(roles/xmpp_firewall/files/list_group.ps1)) returned for the host, a
        dict with C(ours) (the rule objects in O(group), each with C(name), C(description), C(interface_types), C(edge_traversal),
        C(secure_flags) and C(settings), the INetFwRule3 settings that M(community.windows.win_firewall_rule) cannot
        set), C(namesakes) (rules outside O(group) sharing a name
        with one of ours, each with C(name) and C(group)) and C(policy) (C(modify_state), C(current_profiles) as the
        bit mask 1 domain, 2 private, 4 public, and C(profiles), per profile C(enabled) and C(block_all_inbound)).
    type: dict
    version_added: 1.1.0
  accept_group_policy:
    description:
      - Write the rules even when Group Policy overrides the local firewall rules of the host (they then take no
        effect until the same rules come by Group Policy). For estates that deploy the firewall by Group Policy.
    type: bool
    default: false
    version_added: 1.1.0
  extra_rows:
    description:
      - The rows added to the matrix (the role's C(xmpp_firewall_extra_rows)); only used to name, in an error, the
        variable that holds the row of a refused rule.
    type: list
    elements: dict
    default: []
    version_added: 1.1.0
'''

EXAMPLES = r'''
- name: Compute the win_firewall_rule arguments of this host
  ansible.builtin.set_fact:
    xmpp_firewall__windows: >-
      {{ xmpp_firewall_matrix
         | lync.xmpp_federation.host_rules(inventory_hostname, hostvars, groups)
         | lync.xmpp_federation.windows_firewall_rules(group='Lync XMPP Federation', profiles=['public'],
                                                       host=inventory_hostname, listing=listed.result) }}

# For an Edge whose rule is
#   {name: xmpp-s2s-inbound-ipv4, direction: in, protocol: tcp, ports: [5269], source: [],
#    destination: [198.51.100.10/32], action: accept, comment: XMPP federation row 1, ...}
# xmpp_firewall__windows.rules holds
#   {name: Lync XMPP Federation - xmpp-s2s-inbound-ipv4, group: Lync XMPP Federation, direction: in,
#    action: allow, protocol: tcp, localport: '5269', remoteport: any, localip: 198.51.100.10, remoteip: any,
#    profiles: [public], enabled: true, program: any, service: any, state: present,
#    description: 'XMPP federation row 1, ... (rule xmpp-s2s-inbound-ipv4, managed by lync.xmpp_federation)'}
# and, when listed.result.ours also holds 'Lync XMPP Federation - old', xmpp_firewall__windows.stale is
# ['Lync XMPP Federation - old'].
'''

RETURN = r'''
_value:
  description: The arguments, and what to take out of the host's group.
  type: dict
  contains:
    rules:
      description: One dict of M(community.windows.win_firewall_rule) arguments per rule, in the order of the rules.
      type: list
      elements: dict
    stale:
      description: The names of the rule objects of O(group) (from O(listing), or O(existing)) that no desired rule has,
        sorted, each once.
      type: list
      elements: str
    replace:
      description:
        - The names of desired rules whose objects in O(group) must be removed before the module writes them again,
          because the module could not put them back - the name is held by more than one object of the group, or an
          object carries an INetFwRule3 setting (owner, package, authorized users or computers) the module cannot set.
      type: list
      elements: str
      version_added: 1.1.0
    reset:
      description:
        - The names of desired rules whose objects in O(group) have interface types other than all, edge traversal,
          or security flags (authentication, encryption) set; the role's COM step puts these back to the defaults of a
          new rule before the module runs, as the module does not document them.
      type: list
      elements: str
      version_added: 1.1.0
'''

import ipaddress

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text

from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import (
    RuleError,
    normalize_rules,
    port_spans,
)

DEFAULT_GROUP = 'Lync XMPP Federation'
PROFILES = ('domain', 'private', 'public')
# NET_FW_PROFILE_TYPE2 bits, as INetFwPolicy2.CurrentProfileTypes reports the profiles in use.
PROFILE_BITS = {'domain': 1, 'private': 2, 'public': 4}
ACTIONS = {'accept': 'allow', 'drop': 'block', 'reject': 'block'}
NAME_SEPARATOR = ' - '
MANAGED_BY = 'managed by lync.xmpp_federation'
# The COM API refuses this character in a rule's name, description and group ("The parameter is incorrect").
FORBIDDEN_CHARACTER = '|'
# netsh advfirewall takes name=all to mean every rule.
RESERVED_NAME = 'all'
# NET_FW_MODIFY_STATE
MODIFY_STATE_GP_OVERRIDE = 1
# What every rule sets explicitly, so that win_firewall_rule compares, and puts back, each of these properties.
OWNED_DEFAULTS = {'program': 'any', 'service': 'any', 'enabled': True, 'state': 'present'}
# What a new rule object has, and the role's COM step puts back: properties win_firewall_rule does not document.
COM_DEFAULTS = {'interface_types': 'all', 'edge_traversal': 0, 'secure_flags': 0}
FAMILY_SUFFIXES = ('-ipv4', '-ipv6')


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
    if rule['comment']:
        description = '%s (rule %s, %s)' % (rule['comment'], rule['name'], MANAGED_BY)
    else:
        description = '%s (rule %s)' % (MANAGED_BY, rule['name'])
    arguments = {
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
    }
    for key, value in OWNED_DEFAULTS.items():
        arguments[key] = list(value) if isinstance(value, list) else value
    return arguments


def stale_rule_names(existing, wanted):
    """Names in ``existing`` that no wanted rule has; compared without case, as Windows compares names."""
    wanted_keys = set(name.casefold() for name in wanted)
    stale = {}
    for name in existing:
        if name.casefold() not in wanted_keys:
            stale.setdefault(name.casefold(), name)
    return sorted(stale.values())


# -- refusals that need no host ------------------------------------------------------

def _row_variable(rule, extra_row_ids):
    """The variable that holds the row a rule comes from, for error messages."""
    row = rule['name']
    for suffix in FAMILY_SUFFIXES:
        if row.endswith(suffix):
            row = row[:-len(suffix)]
    if row in extra_row_ids:
        return "variable 'xmpp_firewall_extra_rows' (row '%s')" % row
    return "variable 'xmpp_firewall_matrix' (row '%s')" % row


def check_windows_names(canonical, where, extra_row_ids):
    for rule in canonical:
        origin = _row_variable(rule, extra_row_ids)
        if rule['name'].casefold() == RESERVED_NAME:
            raise RuleError("%s: %s: rule name %r is refused on Windows, whose tools take the name 'all' to mean "
                            "every rule; give the row another id" % (where, origin, rule['name']))
        if FORBIDDEN_CHARACTER in rule['comment']:
            raise RuleError("%s: %s: comment %r of rule '%s' holds '|', which the Windows firewall refuses in a rule's "
                            "description" % (where, origin, rule['comment'], rule['name']))


def _spans_overlap(first, second):
    return any(low <= other_high and other_low <= high
               for low, high in port_spans(first) for other_low, other_high in port_spans(second))


def _networks_overlap(first, second):
    """Empty means any address; networks of different families never overlap."""
    if not first or not second:
        return True
    for network in first:
        parsed = ipaddress.ip_network(network, strict=False)
        for other in second:
            other_parsed = ipaddress.ip_network(other, strict=False)
            if parsed.version == other_parsed.version and parsed.overlaps(other_parsed):
                return True
    return False


def _families(rule):
    return set(ipaddress.ip_network(network, strict=False).version for network in rule['source'] + rule['destination'])


def overlapping_allow_and_block(canonical):
    """Pairs (allow rule, block rule) that can match the same connection."""
    pairs = []
    allows = [rule for rule in canonical if rule['action'] == 'accept']
    blocks = [rule for rule in canonical if rule['action'] != 'accept']
    for allow in allows:
        for block in blocks:
            if allow['direction'] != block['direction'] or allow['protocol'] != block['protocol']:
                continue
            # A rule with addresses of one family only matches that family.
            families, block_families = _families(allow), _families(block)
            if families and block_families and not families & block_families:
                continue
            ports = _spans_overlap(allow['ports'], block['ports'])
            sources = _networks_overlap(allow['source'], block['source'])
            destinations = _networks_overlap(allow['destination'], block['destination'])
            if ports and sources and destinations:
                pairs.append((allow, block))
    return pairs


def check_allow_block_overlap(canonical, where, extra_row_ids):
    pairs = overlapping_allow_and_block(canonical)
    if not pairs:
        return
    allow, block = pairs[0]
    more = '' if len(pairs) == 1 else ' (%d such pairs in all)' % len(pairs)
    raise RuleError("%s: %s: %s rule '%s' and allow rule '%s' of %s match the same connections (%s, %s, ports %s "
                    "and %s)%s; on Windows a block rule always wins over an allow rule, whatever their order, so it "
                    "would block what the allow rule lets through (the Linux backends apply rules in order). Narrow "
                    "the block rule so that it leaves out what the allow rule lets in"
                    % (where, _row_variable(block, extra_row_ids), block['action'], block['name'], allow['name'],
                       _row_variable(allow, extra_row_ids), allow['direction'], allow['protocol'],
                       _ports(block['ports']), _ports(allow['ports']), more))


# -- the host's listing ------------------------------------------------------------

def _listing_part(listing, key, kind, where):
    value = listing.get(key)
    if value is None:
        value = kind()
    if not isinstance(value, kind):
        raise RuleError("%s: the listing of the host's firewall has %r as '%s', not a %s; nothing was changed"
                        % (where, value, key, kind.__name__))
    return value


def check_namesakes(namesakes, group, where):
    """Rules outside our group with a name of ours: refused, named, before anything changes."""
    if not namesakes:
        return
    named = ', '.join("'%s' (group '%s')" % (item.get('name'), item.get('group') or '')
                      for item in sorted(namesakes, key=lambda item: (str(item.get('name')), str(item.get('group')))))
    raise RuleError("%s: variable 'xmpp_firewall_windows_group': %r: the host has rules outside this group with the "
                    "name of a rule of ours: %s. They are not ours and nothing was changed; win_firewall_rule finds "
                    "rules by name alone and would change or remove them. Rename or remove those rules, or choose "
                    "another group" % (where, group, named))


def check_unmarked(ours, stale, group, where):
    """A rule object in our group that we would remove, but whose description lacks our mark, is refused.

    The group is our mark, and the description a second one: a group name that is already in use (a built-in group,
    another tool's) would otherwise have its rules removed as stale.
    """
    stale_keys = set(name.casefold() for name in stale)
    unmarked = sorted(set(item['name'] for item in ours
                          if item['name'].casefold() in stale_keys and MANAGED_BY not in to_text(item.get('description') or '')))
    if unmarked:
        raise RuleError("%s: variable 'xmpp_firewall_windows_group': %r holds rules that are not ours (their description "
                        "lacks '%s'): %s. Nothing was changed; the group must hold nothing but the collection's rules, "
                        "so move those rules out of it or choose another group"
                        % (where, group, MANAGED_BY, ', '.join("'%s'" % name for name in unmarked)))


def check_policy(policy, canonical, profiles, where, accept_group_policy):
    """Refuse when the rules could not take effect: Group Policy, a profile that blocks all inbound, no profile."""
    try:
        modify_state = int(policy.get('modify_state', 0))
        current = int(policy.get('current_profiles', 0))
    except (TypeError, ValueError):
        raise RuleError("%s: the listing of the host's firewall has no readable policy state %r; nothing was changed"
                        % (where, policy))
    in_use = [profile for profile in PROFILES if current & PROFILE_BITS[profile]]
    in_use_text = ', '.join(in_use) or 'none'
    if modify_state == MODIFY_STATE_GP_OVERRIDE and not accept_group_policy:
        raise RuleError("%s: variable 'xmpp_firewall_windows_accept_group_policy': false: Group Policy overrides the "
                        "local firewall rules of this host (LocalPolicyModifyState %d, GP_OVERRIDE: \"Apply local "
                        "firewall rules: No\") in the profile(s) in use (%s), so rules written here would take no "
                        "effect. Deploy the rules by Group Policy, or set "
                        "xmpp_firewall_windows_accept_group_policy: true to write them anyway"
                        % (where, modify_state, in_use_text))
    ours_in_use = [profile for profile in in_use if profile in profiles]
    if not ours_in_use:
        raise RuleError("%s: variable 'xmpp_firewall_windows_profiles': %s: none of the profiles in use on the host "
                        "(%s) is among them, so the rules would never apply (a workgroup server has no domain "
                        "profile)" % (where, list(profiles), in_use_text))
    inbound = [rule['name'] for rule in canonical if rule['direction'] == 'in' and rule['action'] == 'accept']
    profile_states = policy.get('profiles') or {}
    for profile in ours_in_use:
        state = profile_states.get(profile) or {}
        if inbound and state.get('block_all_inbound'):
            raise RuleError("%s: variable 'xmpp_firewall_windows_profiles': profile '%s' is in use and blocks all "
                            "inbound connections (BlockAllInboundTraffic, \"Block all connections\", "
                            "LocalPolicyModifyState %d), so the inbound rules %s would take no effect. Allow inbound "
                            "connections in that profile" % (where, profile, modify_state, ', '.join(inbound)))


def judge_listing(listing, wanted_names, canonical, group, profiles, where, accept_group_policy):
    """-> (stale names, names to replace, names to reset); raises RuleError on what makes the run unsafe or pointless."""
    if not isinstance(listing, dict):
        raise RuleError("%s: the listing of the host's firewall %r is not a dict; nothing was changed" % (where, listing))
    ours = _listing_part(listing, 'ours', list, where)
    namesakes = _listing_part(listing, 'namesakes', list, where)
    policy = _listing_part(listing, 'policy', dict, where)
    for item in ours + namesakes:
        if not isinstance(item, dict) or not isinstance(item.get('name'), str):
            raise RuleError("%s: the listing of the host's firewall holds %r, not a rule with a name; nothing was "
                            "changed" % (where, item))
    check_namesakes(namesakes, group, where)
    stale = stale_rule_names([item['name'] for item in ours], wanted_names)
    check_unmarked(ours, stale, group, where)
    if canonical:
        check_policy(policy, canonical, profiles, where, accept_group_policy)
    objects = {}
    for item in ours:
        objects.setdefault(item['name'].casefold(), []).append(item)
    replace, reset = [], []
    for name in wanted_names:
        found = objects.get(name.casefold(), [])
        if len(found) > 1 or any(item.get('settings') for item in found):
            replace.append(name)
        elif any(_differs_from_com_defaults(item) for item in found):
            reset.append(name)
    return stale, sorted(replace), sorted(reset)


def _differs_from_com_defaults(item):
    for key, default in COM_DEFAULTS.items():
        value = item.get(key)
        # None: the property does not exist on this Windows (edge traversal before 2008 R2, security flags before 2012).
        if value is None:
            continue
        if isinstance(default, str):
            if to_text(value).strip().casefold() != default:
                return True
        elif value != default:
            return True
    return False


def windows_firewall_plan(rules, group=DEFAULT_GROUP, profiles=PROFILES, host='this host', existing=None,
                          listing=None, accept_group_policy=False, extra_rows=None):
    """-> {'rules', 'stale', 'replace', 'reset'}; raises RuleError on input Windows cannot take, or a host it must not touch."""
    where = "host '%s'" % host
    if not isinstance(group, str) or not group.strip():
        raise RuleError("%s: variable 'xmpp_firewall_windows_group': %r is not a group name" % (where, group))
    if FORBIDDEN_CHARACTER in group:
        raise RuleError("%s: variable 'xmpp_firewall_windows_group': %r holds '|', which the Windows firewall refuses "
                        "in a rule group" % (where, group))
    if isinstance(profiles, str):
        profiles = [profiles]
    if not isinstance(profiles, (list, tuple)) or not profiles:
        raise RuleError("%s: variable 'xmpp_firewall_windows_profiles': %r is not a list of profiles (%s)"
                        % (where, profiles, ', '.join(PROFILES)))
    for profile in profiles:
        if profile not in PROFILES:
            raise RuleError("%s: variable 'xmpp_firewall_windows_profiles': %r is not one of %s"
                            % (where, profile, ', '.join(PROFILES)))
    if not isinstance(accept_group_policy, bool):
        raise RuleError("%s: variable 'xmpp_firewall_windows_accept_group_policy': %r is not true or false"
                        % (where, accept_group_policy))
    extra_row_ids = set(row.get('id') for row in (extra_rows or []) if isinstance(row, dict))
    canonical = normalize_rules(rules, '%s: rules' % where)
    for rule in canonical:
        if rule['direction'] == 'forward' or rule.get('nat'):
            raise RuleError("%s: rule '%s' is a forward rule; the Windows host firewall only filters the host's own "
                            "traffic, so a host in lync_external_firewall or lync_internal_firewall must be a Linux "
                            "firewall" % (where, rule['name']))
    check_windows_names(canonical, where, extra_row_ids)
    check_allow_block_overlap(canonical, where, extra_row_ids)
    profiles = sorted(set(profiles), key=PROFILES.index)
    arguments = [win_firewall_rule_args(rule, group, profiles) for rule in canonical]
    wanted_names = [args['name'] for args in arguments]
    if listing is not None:
        stale, replace, reset = judge_listing(listing, wanted_names, canonical, group, profiles, where,
                                              accept_group_policy)
        return {'rules': arguments, 'stale': stale, 'replace': replace, 'reset': reset}
    if existing is None:
        existing = []
    names_only = isinstance(existing, (list, tuple)) and all(isinstance(name, str) for name in existing)
    if not names_only:
        raise RuleError("%s: the existing rule names %r are not a list of names" % (where, existing))
    return {'rules': arguments, 'stale': stale_rule_names(existing, wanted_names), 'replace': [], 'reset': []}


def windows_firewall_rules(rules, group=DEFAULT_GROUP, profiles=PROFILES, host='this host', existing=None,
                           listing=None, accept_group_policy=False, extra_rows=None):
    try:
        return windows_firewall_plan(rules, group=group, profiles=profiles, host=host, existing=existing,
                                     listing=listing, accept_group_policy=accept_group_policy, extra_rows=extra_rows)
    except RuleError as error:
        raise AnsibleFilterError('lync.xmpp_federation.windows_firewall_rules: %s' % error)


class FilterModule(object):
    def filters(self):
        return {'windows_firewall_rules': windows_firewall_rules}
