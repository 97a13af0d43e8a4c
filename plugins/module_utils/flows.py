# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Port matrix + inventory -> the flows that must be open and the ones that must stay blocked.

The rule translation (matrix.py) says what each host's firewall holds; this
module says what that must achieve, connection by connection, from the same
rows and the same inventory (both read through matrix.py, so a row or an
address means the same thing here and there). The ``plan`` playbook shows
it; it is the one list of flows for ``verify`` and the lab's proof to read,
so that no row id or port is written anywhere else.

Who starts a row's flows:

    a row ending at an Edge     from every host or vantage point of its other end, to every address of that end
                                on every Edge
    a row starting at an Edge   from every Edge, to every address of its other end of the same address family

where the ends stand for:

    any, partners (external side)   the Internet-side vantage point (``vantage``, else the label 'internet');
                                    as a destination, the partner's address(es) (``partner``, else the label
                                    'partner')
    any (internal side), front_end  every Front End host, at its ``lync_internal_ip`` addresses
    edge_external, edge_internal    every Edge, at its ``lync_edge_external_ip`` / ``lync_edge_internal_ip``;
                                    from the Internet side an Edge behind NAT is reached at its
                                    ``lync_edge_public_ip`` of that family instead (``translated_to`` says where
                                    the firewall sends it)
    [networks]                      each network (or host address) as written

Flows that must stay blocked (``expected: blocked``):

    internal-port-from-internet  each port of a row on the internal side, from the Internet-side vantage point, to
                                 every address of every Edge (public, external and internal)
    next-port                    the port after each open flow's port, from the same source to the same address
    reverse                      each port of a row from the Front End side to the Edge internal interface, from
                                 every Edge to every Front End address of the same family
    outside-narrowing            where partner networks or restrict_internal_sources narrow a row's "any", each
                                 port of the row from every firewall on that side (lync_external_firewall,
                                 lync_internal_firewall: a host there but no partner, no Front End) to every
                                 address of that end on every Edge; a firewall whose ansible_host is an address
                                 inside the narrowing is left out

A blocked flow is left out where some row opens that port of that address
(for any source): the model never asks for a port to be both open and shut.

A port range is represented by its two ends: each flow names one port, and a
range of thousands of ports would otherwise give thousands of flows. The port
after the range's high end is the next-port check.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress

from ansible_collections.lync.xmpp_federation.plugins.module_utils.matrix import (
    ANY,
    EDGE_EXTERNAL,
    EDGE_INTERNAL,
    FRONT_END,
    GROUP_EDGE,
    GROUP_EXTERNAL_FIREWALL,
    GROUP_FRONT_END,
    GROUP_INTERNAL_FIREWALL,
    PARTNERS,
    _boolean,
    _Inventory,
    check_magic_variables,
    host_roles,
    matrix_rows,
)
from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import (
    RuleError,
    as_list,
    family_of,
    normalize_host_address,
    normalize_networks,
    port_spans,
)

WHERE = 'flow model'
VANTAGE_LABEL = 'internet'
PARTNER_LABEL = 'partner'
KIND_ROW = 'row'
KIND_INTERNAL_FROM_INTERNET = 'internal-port-from-internet'
KIND_NEXT_PORT = 'next-port'
KIND_REVERSE = 'reverse'
KIND_OUTSIDE_NARROWING = 'outside-narrowing'
KINDS = (KIND_ROW, KIND_INTERNAL_FROM_INTERNET, KIND_NEXT_PORT, KIND_REVERSE, KIND_OUTSIDE_NARROWING)
FLOW_FIELDS = ('id', 'row', 'kind', 'from', 'to', 'to_host', 'family', 'port', 'transport', 'application',
               'expected', 'translated_to', 'seen_as')
EDGE_ENDS = (EDGE_EXTERNAL, EDGE_INTERNAL)
PORT_MAX = 65535


def _bare(network):
    """'198.51.100.7/32' -> '198.51.100.7'; a network wider than one host keeps its prefix length."""
    parsed = ipaddress.ip_network(network, strict=False)
    return str(parsed.network_address) if parsed.num_addresses == 1 else str(parsed)


def representative_ports(ports):
    """The ports a row's flows name: each single port, and both ends of each range."""
    chosen = []
    for low, high in port_spans(ports):
        chosen.extend([low] if low == high else [low, high])
    return chosen


def _address_key(text):
    try:
        parsed = ipaddress.ip_network(text, strict=False)
        return (0, parsed.version, int(parsed.network_address), parsed.prefixlen, '')
    except ValueError:
        return (1, 0, 0, 0, text)


def flow_sort_key(flow):
    return (flow['row'], KINDS.index(flow['kind']), flow['from'], flow['family'], _address_key(flow['to']),
            flow['port'], flow['transport'])


def _inside(address, networks):
    parsed = ipaddress.ip_address(address)
    return any(parsed in ipaddress.ip_network(network, strict=False) for network in networks
               if family_of(network) == parsed.version)


def _ip_address(value):
    """The IP address a host's ansible_host names, or None for a DNS name or nothing."""
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        return None


class _Flows(object):
    def __init__(self, inventory, rows, vantage, vantage_address, partners):
        self.inv = inventory
        self.rows = rows
        self.vantage = vantage or VANTAGE_LABEL
        self.vantage_address = vantage_address
        self.partners = partners
        self.flows = []
        # (from, to, transport) -> [(low, high), ...] that some row opens.
        self.open_spans = {}

    # -- the ends of a row ---------------------------------------------------
    def front_end_hosts(self):
        return [(host, self.inv.front_end_addresses(host)) for host in self.inv.group(GROUP_FRONT_END)]

    def edge_targets(self, edge, endpoint, from_internet):
        """[(address, translated_to)]: where a flow to this end of this Edge goes."""
        addresses = self.inv.edge_addresses(edge, endpoint)
        public = {}
        if endpoint == EDGE_EXTERNAL and from_internet:
            public = dict((family_of(private), _bare(address)) for address, private in self.inv.edge_public(edge))
        targets = []
        for address in addresses:
            if family_of(address) in public:
                targets.append((public[family_of(address)], _bare(address)))
            else:
                targets.append((_bare(address), None))
        return targets

    def narrowing(self, row, end):
        """The networks that narrow a row's 'any' or 'partners' end, [] where it stays any."""
        if row[end] == PARTNERS or (row[end] == ANY and row['any_narrowed_to'] == PARTNERS):
            return list(self.inv.partners)
        if row[end] == ANY and row['any_narrowed_to'] == FRONT_END and self.inv.restrict_internal_sources:
            return [address for _host, addresses in self.front_end_hosts() for address in addresses]
        return []

    def sources(self, row):
        """[(from, families or None for any, from the Internet side, address to judge a narrowing by)]."""
        source = row['source']
        if source in (ANY, PARTNERS) and (source == PARTNERS or row['side'] == 'external'):
            return [(self.vantage, None, True, self.vantage_address)]
        if source in (ANY, FRONT_END):
            return [(host, set(family_of(address) for address in addresses), False, None)
                    for host, addresses in self.front_end_hosts()]
        if source in EDGE_ENDS:
            return [(edge, set(family_of(address) for address in self.inv.edge_addresses(edge, source)), False, None)
                    for edge in self.inv.edges()]
        return [(_bare(network), set([family_of(network)]), row['side'] == 'external', None) for network in source]

    def destinations(self, row, families):
        """[(to, to_host, family)] of a row that starts at an Edge, limited to the Edge's own address families."""
        destination = row['destination']
        if destination in (ANY, PARTNERS) and (destination == PARTNERS or row['side'] == 'external'):
            if self.partners:
                found = [(address, None, family_of(address)) for address in self.partners]
            else:
                found = [(PARTNER_LABEL, None, family) for family in sorted(families)]
        elif destination in (ANY, FRONT_END):
            found = [(_bare(address), host, family_of(address))
                     for host, addresses in self.front_end_hosts() for address in addresses]
        else:
            found = [(_bare(network), None, family_of(network)) for network in destination]
        return [target for target in found if target[2] in families]

    # -- emitting ------------------------------------------------------------
    def add(self, row, kind, origin, to, to_host, family, port, expected, translated_to=None, seen_as=None):
        flow = {
            'id': '%s:%s:%s>%s:%s/%d:ipv%d' % (row['id'], kind, origin, to, row['transport'], port, family),
            'row': row['id'],
            'kind': kind,
            'from': origin,
            'to': to,
            'to_host': to_host,
            'family': family,
            'port': port,
            'transport': row['transport'],
            # What answers on an open flow (the row's application, e.g. XMPP or XMPP/MTLS), for a protocol probe;
            # None on a blocked flow, where nothing may answer.
            'application': row.get('application') if expected == 'open' else None,
            'expected': expected,
            'translated_to': translated_to,
            'seen_as': seen_as,
        }
        self.flows.append(flow)
        if expected == 'open':
            self.open_spans.setdefault((origin, to, row['transport']), []).extend(port_spans(row['ports']))

    def is_open(self, origin, to, transport, port):
        return any(low <= port <= high for low, high in self.open_spans.get((origin, to, transport), ()))

    # -- the rows' own flows -------------------------------------------------
    def row_flows(self, row):
        allowed = 'open' if row['action'] == 'accept' else 'blocked'
        if row['destination'] in EDGE_ENDS:
            narrowed_to = self.narrowing(row, 'source')
            for origin, families, from_internet, judged_address in self.sources(row):
                for edge in self.inv.edges():
                    if edge == origin:
                        continue
                    for to, translated_to in self.edge_targets(edge, row['destination'], from_internet):
                        family = family_of(to)
                        if families is not None and family not in families:
                            continue
                        # The vantage point stands for a partner; where its address is known and the partner
                        # networks leave it out, the row's own rule must stop it.
                        judged = judged_address if narrowed_to and judged_address else None
                        left_out = judged and family_of(judged) == family and not _inside(judged, narrowed_to)
                        expected = 'blocked' if left_out else allowed
                        for port in representative_ports(row['ports']):
                            self.add(row, KIND_ROW, origin, to, edge, family, port, expected, translated_to)
            return
        narrowed_to = self.narrowing(row, 'destination')
        for edge in self.inv.edges():
            own = self.inv.edge_addresses(edge, row['source'])
            seen_as = {}
            if row['source'] == EDGE_EXTERNAL and row['side'] == 'external':
                seen_as = dict((family_of(private), _bare(public)) for public, private in self.inv.edge_public(edge))
            for to, to_host, family in self.destinations(row, set(family_of(address) for address in own)):
                expected = allowed
                if narrowed_to and to != PARTNER_LABEL and not _inside(to, narrowed_to):
                    expected = 'blocked'
                for port in representative_ports(row['ports']):
                    self.add(row, KIND_ROW, edge, to, to_host, family, port, expected, seen_as=seen_as.get(family))

    # -- what must stay blocked ----------------------------------------------
    def blocked(self, row, kind, origin, to, to_host, family, port):
        if not self.is_open(origin, to, row['transport'], port):
            self.add(row, kind, origin, to, to_host, family, port, 'blocked')

    def internal_ports_from_internet(self, row):
        for edge in self.inv.edges():
            targets = set()
            for endpoint in EDGE_ENDS:
                for to, translated_to in self.edge_targets(edge, endpoint, True):
                    targets.add(to)
                    if translated_to:
                        targets.add(translated_to)
            for to in sorted(targets, key=_address_key):
                for port in representative_ports(row['ports']):
                    self.blocked(row, KIND_INTERNAL_FROM_INTERNET, self.vantage, to, edge, family_of(to), port)

    def reverse(self, row):
        front_ends = self.front_end_hosts()
        for edge in self.inv.edges():
            families = set(family_of(address) for address in self.inv.edge_addresses(edge, EDGE_INTERNAL))
            for host, addresses in front_ends:
                for address in addresses:
                    if family_of(address) in families:
                        for port in representative_ports(row['ports']):
                            self.blocked(row, KIND_REVERSE, edge, _bare(address), host, family_of(address), port)

    def outside_narrowing(self, row):
        narrowed_to = self.narrowing(row, 'source')
        if not narrowed_to or row['destination'] not in EDGE_ENDS:
            return
        group = GROUP_EXTERNAL_FIREWALL if row['side'] == 'external' else GROUP_INTERNAL_FIREWALL
        for firewall in self.inv.group(group):
            address = _ip_address(self.inv.vars(firewall).get('ansible_host'))
            for edge in self.inv.edges():
                for to, _translated_to in self.edge_targets(edge, row['destination'], False):
                    if address and family_of(address) == family_of(to) and _inside(address, narrowed_to):
                        continue
                    for port in representative_ports(row['ports']):
                        self.blocked(row, KIND_OUTSIDE_NARROWING, firewall, to, edge, family_of(to), port)

    def next_ports(self, opened):
        for flow in opened:
            port = flow['port'] + 1
            if port <= PORT_MAX:
                row = {'id': flow['row'], 'transport': flow['transport'], 'ports': [port]}
                self.blocked(row, KIND_NEXT_PORT, flow['from'], flow['to'], flow['to_host'], flow['family'], port)

    def build(self):
        for row in self.rows:
            self.row_flows(row)
        opened = [flow for flow in self.flows if flow['expected'] == 'open']
        for row in self.rows:
            if row['action'] != 'accept':
                continue
            self.outside_narrowing(row)
            if row['side'] != 'internal':
                continue
            self.internal_ports_from_internet(row)
            if row['destination'] == EDGE_INTERNAL and row['source'] in (ANY, FRONT_END):
                self.reverse(row)
        self.next_ports(opened)
        # One check per blocked connection: one that two reasons name is kept once, under the first in order.
        kept, seen = [], set()
        for flow in sorted(self.flows, key=flow_sort_key):
            key = (flow['from'], flow['to'], flow['port'], flow['transport'])
            if flow['expected'] == 'open':
                key += (flow['row'],)
            if key in seen:
                continue
            seen.add(key)
            kept.append(flow)
        return kept


def _vantage(vantage, hostvars, groups):
    """(name, IP address of its ansible_host or None) of the Internet-side vantage host; (None, None) without one."""
    if vantage in (None, ''):
        return None, None
    if not isinstance(vantage, str) or vantage not in hostvars:
        raise RuleError("%s: argument 'vantage': %r is not a host of the inventory; name the inventory host on the "
                        "Internet side" % (WHERE, vantage))
    ours = [group for group in (GROUP_EDGE, GROUP_FRONT_END, GROUP_EXTERNAL_FIREWALL, GROUP_INTERNAL_FIREWALL)
            if vantage in (groups.get(group) or ())]
    if ours:
        raise RuleError("%s: argument 'vantage': host '%s' is in group '%s'; the vantage point stands for a partner "
                        "on the Internet side, outside the Lync perimeter" % (WHERE, vantage, ours[0]))
    # A DNS name gives None: the flows stand, but no partner-network narrowing can be judged by it.
    return vantage, _ip_address(hostvars[vantage].get('ansible_host') or vantage)


def _partner_addresses(partner):
    """The partner listener's addresses, bare; each one host, since a flow connects to one address."""
    where = "%s: argument 'partner'" % WHERE
    addresses = []
    for item in as_list(partner) if partner not in (None, '') else []:
        address = normalize_host_address(item, where)
        if ipaddress.ip_interface(str(item).strip()).network.prefixlen != ipaddress.ip_interface(address).max_prefixlen:
            raise RuleError("%s: %r is a network; name the address of the partner's 5269 listener" % (where, item))
        addresses.append(_bare(address))
    return sorted(set(addresses), key=_address_key)


def flows(matrix, hostvars, groups, extra_rows=None, partner_networks=None, restrict_internal_sources=None,
          vantage=None, partner=None):
    """Every flow the matrix implies on this inventory, open and blocked, sorted; raises RuleError on bad input.

    Each flow is a dict with FLOW_FIELDS. ``partner_networks`` and ``restrict_internal_sources`` narrow the rows
    as in host_rules (default: none, false); ``vantage`` is the inventory host on the Internet side (default: the
    label 'internet'); ``partner`` one or more addresses of a 5269 listener the Edges must reach (default: the
    label 'partner').
    """
    check_magic_variables(WHERE, hostvars, groups, 'flows(hostvars, groups)')
    hostvars = hostvars or {}
    groups = groups or {}
    rows = matrix_rows(matrix, extra_rows, WHERE)
    partners = normalize_networks([] if partner_networks is None else partner_networks,
                                  "%s: argument 'partner_networks'" % WHERE)
    restrict = _boolean(False if restrict_internal_sources is None else restrict_internal_sources,
                        "%s: argument 'restrict_internal_sources'" % WHERE)
    partner_addresses = _partner_addresses(partner)
    vantage_name, vantage_address = _vantage(vantage, hostvars, groups)
    members = set(host for group in (GROUP_EDGE, GROUP_FRONT_END, GROUP_EXTERNAL_FIREWALL, GROUP_INTERNAL_FIREWALL)
                  for host in (groups.get(group) or ()))
    for host in sorted(members):
        host_roles(host, groups)
    if not members:
        return []
    inventory = _Inventory(None, hostvars, groups, partners, restrict)
    if not inventory.edges():
        raise RuleError("%s: group '%s' has no host, but %s are in the other groups; every row ends at an Edge"
                        % (WHERE, GROUP_EDGE, ', '.join("'%s'" % host for host in sorted(members))))
    return _Flows(inventory, rows, vantage_name, vantage_address, partner_addresses).build()
