# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: flows
short_description: Every connection the XMPP federation port matrix must open, and those that must stay blocked
version_added: 1.0.0
author: lync.xmpp_federation contributors (@lync-xmpp-federation)
description:
  - Reads the same matrix (C(xmpp_firewall_matrix) plus C(xmpp_firewall_extra_rows)) and the same inventory as
    P(lync.xmpp_federation.host_rules#filter), and says, connection by connection, what the rules must achieve
    across the estate. The playbook C(lync.xmpp_federation.plan) shows it.
  - "Open flows, one per row, source, destination address and port: a row that ends at an Edge goes from every
    host or vantage point of its other end to every address of that end on every Edge; a row that starts at an
    Edge goes from every Edge to every address of its other end of the same address family."
  - The ends stand for hosts as follows. C(any) and C(partners) on the external side are the Internet-side
    vantage point O(vantage) as a source (the label V(internet) without one), and the partner O(partner) as a
    destination (the label V(partner) without one). C(any) on the internal side and C(front_end) are the
    C(lync_front_end) hosts at their C(lync_internal_ip) addresses (default C(ansible_host)). C(edge_external)
    and C(edge_internal) are every C(lync_edge) host at its C(lync_edge_external_ip) or C(lync_edge_internal_ip)
    addresses. A literal network stands for itself.
  - Unlike P(lync.xmpp_federation.host_rules#filter), which needs them only with O(restrict_internal_sources), the
    flows always need the Front End addresses (the reverse of row 3 goes to them, and a Front End reaches only the
    Edge addresses of its own families) - C(lync_internal_ip), or an C(ansible_host) that is an IP address.
  - From the Internet side, an Edge behind NAT is reached at its C(lync_edge_public_ip) of that address family;
    the flow's C(translated_to) is the external address the firewall sends it to. A flow from such an Edge to
    the Internet side has C(seen_as), the public address the far end sees.
  - "Flows that must stay blocked: C(internal-port-from-internet), each port of every internal-side row from the
    vantage point to every address of every Edge (public, external and internal); C(next-port), the port after
    each open flow's port, from the same source to the same address, unless that port is open there itself or is
    above 65535; C(reverse), each port of a row from the Front End side to the Edge internal interface, from
    every Edge to every Front End address of its family; C(outside-narrowing), where O(partner_networks) or
    O(restrict_internal_sources) narrow a row, from every C(lync_external_firewall) (external rows) or
    C(lync_internal_firewall) host (internal rows) to that end of every Edge, unless the firewall's
    C(ansible_host) is an address inside the narrowing."
  - A row's own flow is expected blocked where its C(action) is not C(accept), where O(partner) is outside
    O(partner_networks), or where the vantage point's C(ansible_host) is an address of the flow's family outside
    them.
  - A blocked flow is never planned where some row opens that port of that address from that source.
  - A port range is represented by its two ends (V(50000-50019) gives flows on 50000 and 50019, and a blocked
    one on 50020), so that a wide range does not give thousands of flows.
  - The output is sorted by row id, kind (C(row), C(internal-port-from-internet), C(next-port), C(reverse),
    C(outside-narrowing)), source, address family, address and port, and is the same for the same input.
  - Bad input fails with a message naming the host, the variable or argument, and the value, as
    P(lync.xmpp_federation.host_rules#filter) does.
  - An inventory with no host in the four groups gives an empty list.
positional: hostvars, groups
options:
  _input:
    description:
      - The port matrix, a list of rows, as for P(lync.xmpp_federation.host_rules#filter).
    type: list
    elements: dict
    required: true
  hostvars:
    description: The C(hostvars) magic variable.
    type: dict
    required: true
  groups:
    description: The C(groups) magic variable.
    type: dict
    required: true
  extra_rows:
    description:
      - Rows added to the matrix (the role's C(xmpp_firewall_extra_rows)); their errors name that variable.
    type: list
    elements: dict
    default: []
  partner_networks:
    description:
      - The partner networks that narrow "Any" on the rows marked C(any_narrowed_to=partners)
        (C(xmpp_firewall_partner_networks)). Unlike P(lync.xmpp_federation.host_rules#filter), the flows belong to
        no one host, so no host's variable is read; pass the value.
    type: list
    elements: str
    default: []
  restrict_internal_sources:
    description:
      - Whether "Any" on the rows marked C(any_narrowed_to=front_end) is narrowed to the Front End pool
        (C(xmpp_firewall_restrict_internal_sources)); pass the value, as for O(partner_networks).
    type: bool
    default: false
  vantage:
    description:
      - The inventory host on the Internet side that stands for a federated partner
        (C(xmpp_firewall_verify_vantage)). It must not be in any of the four groups.
      - Without it, those flows start at the label V(internet).
    type: str
  partner:
    description:
      - One or more addresses of a 5269 listener on the Internet side that the Edges must reach
        (C(xmpp_firewall_verify_partner)), at most one per address family that is used.
      - Without it, those flows go to the label V(partner), one per address family of the Edge.
    type: list
    elements: str
'''

EXAMPLES = r'''
- name: Every flow of the estate, as the plan playbook shows it
  ansible.builtin.debug:
    msg: >-
      {{ xmpp_firewall_matrix | lync.xmpp_federation.flows(hostvars, groups,
                                                           extra_rows=xmpp_firewall_extra_rows,
                                                           vantage='probe01', partner='198.51.100.245') }}

- name: Only the connections that must stay blocked
  ansible.builtin.set_fact:
    xmpp_firewall_blocked: >-
      {{ xmpp_firewall_matrix | lync.xmpp_federation.flows(hostvars, groups)
         | selectattr('expected', 'equalto', 'blocked') | list }}

# For one Edge (lync_edge_external_ip: 198.51.100.10, lync_edge_internal_ip: 198.51.100.130) and one
# Front End (ansible_host: 198.51.100.200), without vantage or partner, the ids and expectations are:
#   xmpp-gateway-internal:row:fe1>198.51.100.130:tcp/23456:ipv4                                open
#   xmpp-gateway-internal:internal-port-from-internet:internet>198.51.100.10:tcp/23456:ipv4    blocked
#   xmpp-gateway-internal:internal-port-from-internet:internet>198.51.100.130:tcp/23456:ipv4   blocked
#   xmpp-gateway-internal:next-port:fe1>198.51.100.130:tcp/23457:ipv4                          blocked
#   xmpp-gateway-internal:reverse:edge1>198.51.100.200:tcp/23456:ipv4                          blocked
#   xmpp-s2s-inbound:row:internet>198.51.100.10:tcp/5269:ipv4                                  open
#   xmpp-s2s-inbound:next-port:internet>198.51.100.10:tcp/5270:ipv4                            blocked
#   xmpp-s2s-outbound:row:edge1>partner:tcp/5269:ipv4                                          open
#   xmpp-s2s-outbound:next-port:edge1>partner:tcp/5270:ipv4                                    blocked
'''

RETURN = r'''
_value:
  description:
    - The flows, sorted. Each is a dict with C(id) (stable and unique,
      V(<row>:<kind>:<from>><to>:<transport>/<port>:ipv<family>)), C(row) (the matrix row it comes from),
      C(kind) (C(row) for the row's own flows, or the reason a flow must stay blocked), C(from) (an inventory
      host, or the label V(internet), or a literal network), C(to) (an address without prefix length, a literal
      network, or the label V(partner)), C(to_host) (the inventory host that holds C(to), or V(null)), C(family)
      (V(4) or V(6)), C(port), C(transport) (C(tcp) or C(udp)), C(application) (on an open flow, the row's
      C(application), such as V(XMPP) or V(XMPP/MTLS), which a protocol probe checks; else V(null)),
      C(expected) (V(open) or V(blocked)),
      C(translated_to) and C(seen_as) (NAT, else V(null)).
  type: list
  elements: dict
'''

from ansible.errors import AnsibleFilterError

from ansible_collections.lync.xmpp_federation.plugins.module_utils.flows import flows as plan_flows
from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import RuleError


def flows(matrix, hostvars, groups, extra_rows=None, partner_networks=None, restrict_internal_sources=None,
          vantage=None, partner=None):
    try:
        return plan_flows(matrix, hostvars, groups, extra_rows=extra_rows, partner_networks=partner_networks,
                          restrict_internal_sources=restrict_internal_sources, vantage=vantage, partner=partner)
    except RuleError as error:
        raise AnsibleFilterError('lync.xmpp_federation.flows: %s' % error)


class FilterModule(object):
    def filters(self):
        return {'flows': flows}
