# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: host_rules
short_description: Turn the XMPP federation port matrix and the inventory into one host's firewall rules
version_added: 1.0.0
author: lync.xmpp_federation contributors (@lync-xmpp-federation)
description:
  - Translates the documented Lync Server 2013 / Skype for Business "Port summary - XMPP federation" matrix
    (C(xmpp_firewall_matrix), shipped in the role C(lync.xmpp_federation.xmpp_firewall)) plus the inventory
    into the rule list of one host, in the rule model that M(lync.xmpp_federation.firewall_ruleset) applies.
  - Hosts in C(lync_edge) get host rules on their interfaces (inbound and outbound 5269 on
    C(lync_edge_external_ip), inbound 23456 on C(lync_edge_internal_ip)).
  - Hosts in C(lync_front_end) get outbound 23456 to every Edge internal address of the pool.
  - Hosts in C(lync_external_firewall) get forward rules for the rows that touch the Edge external interfaces,
    plus destination and source translation for every Edge with C(lync_edge_public_ip) (one public address per
    address family, of that Edge's own, translated to the Edge's one C(lync_edge_external_ip) address of that
    family). Translation
    rules are named C(<row id>-dnat-<edge>-ipv4) and C(<row id>-snat-<edge>-ipv4) (C(-ipv6) likewise); a host
    name too long for a rule name, or for the kernel comment with the row's comment (128 bytes in nftables), is
    cut and given a short digest of the full name.
  - Hosts in C(lync_internal_firewall) get forward rules for the rows that touch the Edge internal interfaces.
  - Any other host gets an empty list.
  - Addresses may be IPv4 or IPv6, a string or a list, with or without prefix length. Host addresses become
    C(/32) or C(/128); networks are written in canonical form, sorted, without duplicates. A rule never mixes
    address families; rules limited to one family carry the suffix C(-ipv4) or C(-ipv6) in their name.
  - Where one end is narrowed (partner networks, the Front End pool) to addresses of one family only, the other
    family gets no rule at all rather than a rule open to any address.
  - The output is sorted by name and is the same, byte for byte, for the same input.
  - Reads only the groups C(lync_edge), C(lync_front_end), C(lync_external_firewall), C(lync_internal_firewall)
    and the variables of the hosts in them, so its cost does not grow with unrelated hosts.
  - Bad input fails with an error naming the host, the variable (and the row and field) and the value. The
    inventory variables of every Edge are checked whichever host is translated, so a broken Edge fails every
    host's run alike.
  - Scoped IPv6 addresses (V(fe80::1%eth0)) are refused wherever an address is read (inventory variables,
    partner networks, rows), because nftables and iptables take no zone.
  - Each rule's kernel comment is V(lync-xmpp:), the rule name and, when the row has a C(comment), a colon, a
    space and the comment. The kernels limit it in UTF-8 bytes, not characters. A rule whose kernel comment
    is over 255 bytes, the most any kernel stores (the iptables comment match), is refused here; on nftables,
    which stores 128 bytes, the module M(lync.xmpp_federation.firewall_ruleset) refuses more than 128.
    Comments are refused, never cut, because a cut comment would read back different from the rule and every
    later run would report a change. A rule name takes up to 64 bytes (ASCII only), so a comment of up to 52
    bytes always fits on nftables, and one of up to 179 bytes on iptables.
  - Comments must be text without quotes, backslashes, control characters or line separators.
positional: host, hostvars, groups
options:
  _input:
    description:
      - The port matrix, a list of rows. Each row has C(id), C(transport) (C(tcp) or C(udp)), C(ports),
        C(source) and C(destination), and optionally C(application), C(action) (C(accept), C(drop), C(reject)),
        C(any_narrowed_to), C(comment) and C(reference).
      - An endpoint (C(source), C(destination)) is one of C(any), C(edge_external), C(edge_internal),
        C(front_end), C(partners), or a list of addresses and networks. One end of every row must be
        C(edge_external) or C(edge_internal).
      - C(any_narrowed_to=partners) lets O(partner_networks) narrow C(any); C(any_narrowed_to=front_end) lets
        O(restrict_internal_sources) narrow C(any) to the Front End pool.
    type: list
    elements: dict
    required: true
  host:
    description: The host to translate for, usually C(inventory_hostname).
    type: str
    required: true
  hostvars:
    description: The C(hostvars) magic variable.
    type: dict
    required: true
  groups:
    description: The C(groups) magic variable.
    type: dict
    required: true
  partner_networks:
    description:
      - Networks of the federated XMPP partners. When not empty, they replace "Any" on the rows marked
        C(any_narrowed_to=partners) (5269 in both directions).
      - Defaults to the host's C(xmpp_firewall_partner_networks), or an empty list (Any, as documented).
    type: list
    elements: str
  extra_rows:
    description:
      - Rows added to the matrix, in the same format as the input; the role passes C(xmpp_firewall_extra_rows).
      - Validated as a list of their own, so that an error in one of them names C(xmpp_firewall_extra_rows) and the
        row's id (or its index in that list), not C(xmpp_firewall_matrix). Row ids are unique across both lists.
      - Rows appended to the input instead (C(xmpp_firewall_matrix + xmpp_firewall_extra_rows)) give the same
        rules; their errors then name C(xmpp_firewall_matrix).
    type: list
    elements: dict
    default: []
  restrict_internal_sources:
    description:
      - Narrow the "Any" of rows marked C(any_narrowed_to=front_end) (23456) to the C(lync_internal_ip)
        addresses of the C(lync_front_end) hosts.
      - Defaults to the host's C(xmpp_firewall_restrict_internal_sources), or V(false) (Any, as documented).
        Strings an INI inventory gives (V(yes), V(true), V(1), V(no)...) are understood.
    type: bool
'''

EXAMPLES = r'''
- name: Compute this host's rules from the documented matrix
  ansible.builtin.set_fact:
    xmpp_firewall_rules: >-
      {{ xmpp_firewall_matrix | lync.xmpp_federation.host_rules(inventory_hostname, hostvars, groups) }}

- name: The documented matrix plus rows of your own, whose errors name xmpp_firewall_extra_rows
  ansible.builtin.set_fact:
    xmpp_firewall_rules: >-
      {{ xmpp_firewall_matrix | lync.xmpp_federation.host_rules(inventory_hostname, hostvars, groups,
                                                                extra_rows=xmpp_firewall_extra_rows) }}

- name: Only two partner networks may use 5269, and only the Front End pool may reach 23456
  ansible.builtin.debug:
    msg: >-
      {{ xmpp_firewall_matrix | lync.xmpp_federation.host_rules(inventory_hostname, hostvars, groups,
           partner_networks=['198.51.100.0/26', '2001:db8:100::/48'], restrict_internal_sources=true) }}

# For an Edge with lync_edge_external_ip: 198.51.100.10 and lync_edge_internal_ip: 198.51.100.130
# the result is:
#   - {name: xmpp-gateway-internal-ipv4, direction: in, protocol: tcp, ports: [23456],
#      source: [], destination: [198.51.100.130/32], action: accept, comment: ...}
#   - {name: xmpp-s2s-inbound-ipv4, direction: in, protocol: tcp, ports: [5269],
#      source: [], destination: [198.51.100.10/32], action: accept, comment: ...}
#   - {name: xmpp-s2s-outbound-ipv4, direction: out, protocol: tcp, ports: [5269],
#      source: [198.51.100.10/32], destination: [], action: accept, comment: ...}
'''

RETURN = r'''
_value:
  description:
    - The host's rules, sorted by name. Each rule has C(name), C(direction) (C(in), C(out) or C(forward)),
      C(protocol), C(ports) (integers and C("low-high") strings), C(source) and C(destination) (lists of
      networks with prefix length; an empty list means any), C(action) and C(comment).
    - Translation rules on the external firewall also have C(nat) (C(dnat) or C(snat)) and C(nat_to), one host
      address of the rule's own address family, without prefix length.
  type: list
  elements: dict
'''

from ansible.errors import AnsibleFilterError

from ansible_collections.lync.xmpp_federation.plugins.module_utils.matrix import host_rules as translate
from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import RuleError


def host_rules(matrix, host, hostvars, groups, partner_networks=None, restrict_internal_sources=None, extra_rows=None):
    try:
        return translate(matrix, host, hostvars, groups, partner_networks=partner_networks,
                         restrict_internal_sources=restrict_internal_sources, extra_rows=extra_rows)
    except RuleError as error:
        raise AnsibleFilterError('lync.xmpp_federation.host_rules: %s' % error)


class FilterModule(object):
    def filters(self):
        return {'host_rules': host_rules}
