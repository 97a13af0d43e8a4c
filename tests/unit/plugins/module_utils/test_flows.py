# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The flow model on golden topologies: every flow, open and blocked, exactly."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import os

import pytest
import yaml

from ansible_collections.lync.xmpp_federation.plugins.module_utils.flows import FLOW_FIELDS, flows
from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import RuleError

COLLECTION_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))
with open(os.path.join(COLLECTION_ROOT, 'roles', 'xmpp_firewall', 'defaults', 'main.yml')) as defaults:
    MATRIX = yaml.safe_load(defaults)['xmpp_firewall_matrix']

SINGLE_EDGE = {'lync_edge_external_ip': '198.51.100.10', 'lync_edge_internal_ip': '198.51.100.130'}
FRONT_END = {'ansible_host': '198.51.100.200'}
PROBE = {'ansible_host': '198.51.100.35'}
UDP_RANGE_ROW = {'id': 'media-udp', 'transport': 'udp', 'ports': ['50000-50019'], 'source': 'any',
                 'destination': 'edge_external', 'comment': 'A/V media relay'}


def topology(edges, front_ends, others=None):
    """(hostvars, groups) of an estate with one external and one internal firewall."""
    hostvars = dict(edges, **front_ends)
    hostvars.update({'fw-ext': {}, 'fw-int': {}})
    hostvars.update(others or {})
    groups = {'lync_edge': sorted(edges), 'lync_front_end': sorted(front_ends),
              'lync_external_firewall': ['fw-ext'], 'lync_internal_firewall': ['fw-int'], 'all': sorted(hostvars)}
    return hostvars, groups


def summary(found):
    """Each flow as (id, expected[, translated_to=..., seen_as=...]): short enough to compare whole lists."""
    def nat(flow):
        return tuple('%s=%s' % (key, flow[key]) for key in ('translated_to', 'seen_as') if flow[key])
    return [(flow['id'], flow['expected']) + nat(flow) for flow in found]


def test_single_edge_without_vantage_or_partner_uses_the_labels():
    hostvars, groups = topology({'edge1': SINGLE_EDGE}, {'fe1': FRONT_END})
    assert summary(flows(MATRIX, hostvars, groups)) == [
        ('xmpp-gateway-internal:row:fe1>198.51.100.130:tcp/23456:ipv4', 'open'),
        ('xmpp-gateway-internal:internal-port-from-internet:internet>198.51.100.10:tcp/23456:ipv4', 'blocked'),
        ('xmpp-gateway-internal:internal-port-from-internet:internet>198.51.100.130:tcp/23456:ipv4', 'blocked'),
        ('xmpp-gateway-internal:next-port:fe1>198.51.100.130:tcp/23457:ipv4', 'blocked'),
        ('xmpp-gateway-internal:reverse:edge1>198.51.100.200:tcp/23456:ipv4', 'blocked'),
        ('xmpp-s2s-inbound:row:internet>198.51.100.10:tcp/5269:ipv4', 'open'),
        ('xmpp-s2s-inbound:next-port:internet>198.51.100.10:tcp/5270:ipv4', 'blocked'),
        ('xmpp-s2s-outbound:row:edge1>partner:tcp/5269:ipv4', 'open'),
        ('xmpp-s2s-outbound:next-port:edge1>partner:tcp/5270:ipv4', 'blocked'),
    ]


def test_a_flow_has_every_field():
    hostvars, groups = topology({'edge1': SINGLE_EDGE}, {'fe1': FRONT_END})
    found = flows(MATRIX, hostvars, groups)
    assert found[0] == {
        'id': 'xmpp-gateway-internal:row:fe1>198.51.100.130:tcp/23456:ipv4', 'row': 'xmpp-gateway-internal',
        'kind': 'row', 'from': 'fe1', 'to': '198.51.100.130', 'to_host': 'edge1', 'family': 4, 'port': 23456,
        'transport': 'tcp', 'application': 'XMPP/MTLS', 'expected': 'open', 'translated_to': None, 'seen_as': None}
    assert all(sorted(flow) == sorted(FLOW_FIELDS) for flow in found)
    assert len(set(flow['id'] for flow in found)) == len(found)


def test_edge_behind_nat_is_reached_at_its_public_address_and_seen_as_it():
    edge = dict(SINGLE_EDGE, lync_edge_public_ip='198.51.100.62')
    hostvars, groups = topology({'edge1': edge}, {'fe1': FRONT_END}, {'probe': PROBE})
    assert summary(flows(MATRIX, hostvars, groups, vantage='probe', partner='198.51.100.36')) == [
        ('xmpp-gateway-internal:row:fe1>198.51.100.130:tcp/23456:ipv4', 'open'),
        ('xmpp-gateway-internal:internal-port-from-internet:probe>198.51.100.10:tcp/23456:ipv4', 'blocked'),
        ('xmpp-gateway-internal:internal-port-from-internet:probe>198.51.100.62:tcp/23456:ipv4', 'blocked'),
        ('xmpp-gateway-internal:internal-port-from-internet:probe>198.51.100.130:tcp/23456:ipv4', 'blocked'),
        ('xmpp-gateway-internal:next-port:fe1>198.51.100.130:tcp/23457:ipv4', 'blocked'),
        ('xmpp-gateway-internal:reverse:edge1>198.51.100.200:tcp/23456:ipv4', 'blocked'),
        ('xmpp-s2s-inbound:row:probe>198.51.100.62:tcp/5269:ipv4', 'open', 'translated_to=198.51.100.10'),
        ('xmpp-s2s-inbound:next-port:probe>198.51.100.62:tcp/5270:ipv4', 'blocked'),
        ('xmpp-s2s-outbound:row:edge1>198.51.100.36:tcp/5269:ipv4', 'open', 'seen_as=198.51.100.62'),
        ('xmpp-s2s-outbound:next-port:edge1>198.51.100.36:tcp/5270:ipv4', 'blocked'),
    ]


def test_dual_stack_gives_each_family_its_own_flows():
    edge = {'lync_edge_external_ip': ['198.51.100.10', '2001:db8:10::10'],
            'lync_edge_internal_ip': ['198.51.100.130', '2001:db8:20::130']}
    hostvars, groups = topology({'edge1': edge}, {'fe1': {'lync_internal_ip': ['198.51.100.200', '2001:db8:30::200']}})
    assert summary(flows(MATRIX, hostvars, groups, partner=['2001:db8:99::36', '198.51.100.36'])) == [
        ('xmpp-gateway-internal:row:fe1>198.51.100.130:tcp/23456:ipv4', 'open'),
        ('xmpp-gateway-internal:row:fe1>2001:db8:20::130:tcp/23456:ipv6', 'open'),
        ('xmpp-gateway-internal:internal-port-from-internet:internet>198.51.100.10:tcp/23456:ipv4', 'blocked'),
        ('xmpp-gateway-internal:internal-port-from-internet:internet>198.51.100.130:tcp/23456:ipv4', 'blocked'),
        ('xmpp-gateway-internal:internal-port-from-internet:internet>2001:db8:10::10:tcp/23456:ipv6', 'blocked'),
        ('xmpp-gateway-internal:internal-port-from-internet:internet>2001:db8:20::130:tcp/23456:ipv6', 'blocked'),
        ('xmpp-gateway-internal:next-port:fe1>198.51.100.130:tcp/23457:ipv4', 'blocked'),
        ('xmpp-gateway-internal:next-port:fe1>2001:db8:20::130:tcp/23457:ipv6', 'blocked'),
        ('xmpp-gateway-internal:reverse:edge1>198.51.100.200:tcp/23456:ipv4', 'blocked'),
        ('xmpp-gateway-internal:reverse:edge1>2001:db8:30::200:tcp/23456:ipv6', 'blocked'),
        ('xmpp-s2s-inbound:row:internet>198.51.100.10:tcp/5269:ipv4', 'open'),
        ('xmpp-s2s-inbound:row:internet>2001:db8:10::10:tcp/5269:ipv6', 'open'),
        ('xmpp-s2s-inbound:next-port:internet>198.51.100.10:tcp/5270:ipv4', 'blocked'),
        ('xmpp-s2s-inbound:next-port:internet>2001:db8:10::10:tcp/5270:ipv6', 'blocked'),
        ('xmpp-s2s-outbound:row:edge1>198.51.100.36:tcp/5269:ipv4', 'open'),
        ('xmpp-s2s-outbound:row:edge1>2001:db8:99::36:tcp/5269:ipv6', 'open'),
        ('xmpp-s2s-outbound:next-port:edge1>198.51.100.36:tcp/5270:ipv4', 'blocked'),
        ('xmpp-s2s-outbound:next-port:edge1>2001:db8:99::36:tcp/5270:ipv6', 'blocked'),
    ]


def test_an_ipv4_only_edge_reaches_no_ipv6_partner_or_front_end():
    dual_stack_front_end = {'lync_internal_ip': ['198.51.100.200', '2001:db8:30::200']}
    hostvars, groups = topology({'edge1': SINGLE_EDGE}, {'fe1': dual_stack_front_end})
    found = flows(MATRIX, hostvars, groups, partner=['2001:db8:99::36', '198.51.100.36'])
    assert [(flow['kind'], flow['to']) for flow in found if flow['from'] == 'edge1'] == [
        ('reverse', '198.51.100.200'), ('row', '198.51.100.36'), ('next-port', '198.51.100.36')]


def test_pool_of_two_edges_and_two_front_ends():
    edges = {'edge1': SINGLE_EDGE,
             'edge2': {'lync_edge_external_ip': '198.51.100.11', 'lync_edge_internal_ip': '198.51.100.131'}}
    hostvars, groups = topology(edges, {'fe1': FRONT_END, 'fe2': {'ansible_host': '198.51.100.201'}})
    found = flows(MATRIX, hostvars, groups)
    assert [flow['id'] for flow in found if flow['kind'] in ('row', 'reverse')] == [
        'xmpp-gateway-internal:row:fe1>198.51.100.130:tcp/23456:ipv4',
        'xmpp-gateway-internal:row:fe1>198.51.100.131:tcp/23456:ipv4',
        'xmpp-gateway-internal:row:fe2>198.51.100.130:tcp/23456:ipv4',
        'xmpp-gateway-internal:row:fe2>198.51.100.131:tcp/23456:ipv4',
        'xmpp-gateway-internal:reverse:edge1>198.51.100.200:tcp/23456:ipv4',
        'xmpp-gateway-internal:reverse:edge1>198.51.100.201:tcp/23456:ipv4',
        'xmpp-gateway-internal:reverse:edge2>198.51.100.200:tcp/23456:ipv4',
        'xmpp-gateway-internal:reverse:edge2>198.51.100.201:tcp/23456:ipv4',
        'xmpp-s2s-inbound:row:internet>198.51.100.10:tcp/5269:ipv4',
        'xmpp-s2s-inbound:row:internet>198.51.100.11:tcp/5269:ipv4',
        'xmpp-s2s-outbound:row:edge1>partner:tcp/5269:ipv4',
        'xmpp-s2s-outbound:row:edge2>partner:tcp/5269:ipv4',
    ]
    assert [flow['to_host'] for flow in found if flow['kind'] == 'internal-port-from-internet'] == [
        'edge1', 'edge2', 'edge1', 'edge2']
    assert len(found) == 24


def test_an_extra_udp_range_row_is_represented_by_both_ends_and_the_port_after_it():
    hostvars, groups = topology({'edge1': SINGLE_EDGE}, {'fe1': FRONT_END})
    found = flows(MATRIX, hostvars, groups, extra_rows=[UDP_RANGE_ROW])
    assert summary(flow for flow in found if flow['row'] == 'media-udp') == [
        ('media-udp:row:internet>198.51.100.10:udp/50000:ipv4', 'open'),
        ('media-udp:row:internet>198.51.100.10:udp/50019:ipv4', 'open'),
        ('media-udp:next-port:internet>198.51.100.10:udp/50020:ipv4', 'blocked'),
    ]
    # The documented rows' flows are unchanged by a row added beside them.
    assert [flow for flow in found if flow['row'] != 'media-udp'] == flows(MATRIX, hostvars, groups)


def test_an_internal_range_row_is_blocked_from_the_internet_at_both_ends():
    row = {'id': 'internal-range', 'transport': 'udp', 'ports': ['3478-3479', 65535], 'source': 'front_end',
           'destination': 'edge_internal'}
    hostvars, groups = topology({'edge1': SINGLE_EDGE}, {'fe1': FRONT_END})
    found = [flow for flow in flows(MATRIX, hostvars, groups, extra_rows=[row]) if flow['row'] == 'internal-range']
    checked = [(flow['kind'], flow['from'], flow['to'], flow['port']) for flow in found if flow['kind'] != 'reverse']
    assert checked == [
        ('row', 'fe1', '198.51.100.130', 3478),
        ('row', 'fe1', '198.51.100.130', 3479),
        ('row', 'fe1', '198.51.100.130', 65535),
        ('internal-port-from-internet', 'internet', '198.51.100.10', 3478),
        ('internal-port-from-internet', 'internet', '198.51.100.10', 3479),
        ('internal-port-from-internet', 'internet', '198.51.100.10', 65535),
        ('internal-port-from-internet', 'internet', '198.51.100.130', 3478),
        ('internal-port-from-internet', 'internet', '198.51.100.130', 3479),
        ('internal-port-from-internet', 'internet', '198.51.100.130', 65535),
        # 3479 is open itself, and there is no port after 65535.
        ('next-port', 'fe1', '198.51.100.130', 3480),
    ]


def test_a_next_port_that_another_row_opens_is_not_asked_to_be_blocked():
    row = {'id': 'xmpp-s2s-next', 'transport': 'tcp', 'ports': [5270], 'source': 'any',
           'destination': 'edge_external'}
    hostvars, groups = topology({'edge1': SINGLE_EDGE}, {'fe1': FRONT_END})
    found = flows(MATRIX, hostvars, groups, extra_rows=[row])
    to_the_edge = [(flow['row'], flow['kind'], flow['port'], flow['expected']) for flow in found
                   if flow['from'] == 'internet' and flow['to'] == '198.51.100.10' and flow['transport'] == 'tcp']
    assert to_the_edge == [
        ('xmpp-gateway-internal', 'internal-port-from-internet', 23456, 'blocked'),
        ('xmpp-s2s-inbound', 'row', 5269, 'open'),
        ('xmpp-s2s-next', 'row', 5270, 'open'),
        ('xmpp-s2s-next', 'next-port', 5271, 'blocked'),
    ]


def test_narrowing_blocks_the_sources_it_leaves_out():
    hostvars, groups = topology({'edge1': SINGLE_EDGE}, {'fe1': FRONT_END}, {'probe': PROBE})
    assert summary(flows(MATRIX, hostvars, groups, vantage='probe', partner=['198.51.100.36', '198.51.100.99'],
                         partner_networks=['198.51.100.32/28'], restrict_internal_sources=True)) == [
        ('xmpp-gateway-internal:row:fe1>198.51.100.130:tcp/23456:ipv4', 'open'),
        ('xmpp-gateway-internal:internal-port-from-internet:probe>198.51.100.10:tcp/23456:ipv4', 'blocked'),
        ('xmpp-gateway-internal:internal-port-from-internet:probe>198.51.100.130:tcp/23456:ipv4', 'blocked'),
        ('xmpp-gateway-internal:next-port:fe1>198.51.100.130:tcp/23457:ipv4', 'blocked'),
        ('xmpp-gateway-internal:reverse:edge1>198.51.100.200:tcp/23456:ipv4', 'blocked'),
        ('xmpp-gateway-internal:outside-narrowing:fw-int>198.51.100.130:tcp/23456:ipv4', 'blocked'),
        ('xmpp-s2s-inbound:row:probe>198.51.100.10:tcp/5269:ipv4', 'open'),
        ('xmpp-s2s-inbound:next-port:probe>198.51.100.10:tcp/5270:ipv4', 'blocked'),
        ('xmpp-s2s-inbound:outside-narrowing:fw-ext>198.51.100.10:tcp/5269:ipv4', 'blocked'),
        ('xmpp-s2s-outbound:row:edge1>198.51.100.36:tcp/5269:ipv4', 'open'),
        # The second partner address is outside the partner networks: the outbound rule must stop it.
        ('xmpp-s2s-outbound:row:edge1>198.51.100.99:tcp/5269:ipv4', 'blocked'),
        ('xmpp-s2s-outbound:next-port:edge1>198.51.100.36:tcp/5270:ipv4', 'blocked'),
    ]


def test_restrict_internal_sources_adds_only_the_internal_firewalls_check():
    hostvars, groups = topology({'edge1': SINGLE_EDGE}, {'fe1': FRONT_END})
    restricted = flows(MATRIX, hostvars, groups, restrict_internal_sources='yes')
    added = [flow for flow in restricted if flow not in flows(MATRIX, hostvars, groups)]
    assert summary(added) == [('xmpp-gateway-internal:outside-narrowing:fw-int>198.51.100.130:tcp/23456:ipv4',
                               'blocked')]


def test_a_vantage_outside_the_partner_networks_expects_5269_blocked():
    hostvars, groups = topology({'edge1': SINGLE_EDGE}, {'fe1': FRONT_END}, {'probe': PROBE})
    found = flows(MATRIX, hostvars, groups, vantage='probe', partner_networks=['198.51.100.224/28'])
    assert [(flow['id'], flow['expected']) for flow in found if flow['row'] == 'xmpp-s2s-inbound'] == [
        ('xmpp-s2s-inbound:row:probe>198.51.100.10:tcp/5269:ipv4', 'blocked'),
        ('xmpp-s2s-inbound:outside-narrowing:fw-ext>198.51.100.10:tcp/5269:ipv4', 'blocked'),
    ]


def test_the_same_input_gives_the_same_output_and_is_not_changed():
    hostvars, groups = topology({'edge1': SINGLE_EDGE}, {'fe1': FRONT_END})
    before = copy.deepcopy((MATRIX, hostvars, groups))
    assert flows(MATRIX, hostvars, groups) == flows(MATRIX, hostvars, groups)
    assert (MATRIX, hostvars, groups) == before


def test_an_inventory_without_our_groups_has_no_flows():
    assert flows(MATRIX, {'web1': {}}, {'all': ['web1']}) == []


@pytest.mark.parametrize('edges, front_ends, arguments, message', [
    ({'edge1': {'lync_edge_internal_ip': '198.51.100.130'}}, {}, {},
     "host 'edge1': variable 'lync_edge_external_ip' is required and not set"),
    ({'edge1': dict(SINGLE_EDGE, lync_edge_external_ip='198.51.100.300')}, {}, {},
     "host 'edge1': variable 'lync_edge_external_ip'"),
    ({'edge1': SINGLE_EDGE}, {'fe1': {'lync_internal_ip': 'fe1.example.org'}}, {},
     "host 'fe1': variable 'lync_internal_ip'"),
    ({'edge1': SINGLE_EDGE}, {}, {'extra_rows': [dict(UDP_RANGE_ROW, ports=[70000])]},
     "flow model: variable 'xmpp_firewall_extra_rows': row 'media-udp': field 'ports': port 70000 is outside "
     "1-65535"),
    ({'edge1': SINGLE_EDGE}, {}, {'extra_rows': [dict(UDP_RANGE_ROW, id='xmpp-s2s-inbound')]},
     "flow model: variable 'xmpp_firewall_extra_rows': row 'xmpp-s2s-inbound': field 'id': 'xmpp-s2s-inbound' is "
     "already the id of a row of 'xmpp_firewall_matrix'"),
    ({'edge1': SINGLE_EDGE}, {}, {'partner_networks': ['198.51.100.0/33']}, "flow model: argument 'partner_networks'"),
    ({'edge1': SINGLE_EDGE}, {}, {'partner': 'partner.example.org'},
     "flow model: argument 'partner': 'partner.example.org'"),
    ({'edge1': SINGLE_EDGE}, {}, {'restrict_internal_sources': 'maybe'},
     "flow model: argument 'restrict_internal_sources': 'maybe' is not a boolean"),
    ({'edge1': SINGLE_EDGE}, {}, {'vantage': 'nowhere'},
     "flow model: argument 'vantage': 'nowhere' is not a host of the inventory"),
    ({'edge1': SINGLE_EDGE}, {}, {'vantage': 'fw-ext'},
     "flow model: argument 'vantage': host 'fw-ext' is in group 'lync_external_firewall'"),
    ({}, {'fe1': FRONT_END}, {}, "flow model: group 'lync_edge' has no host"),
])
def test_bad_input_names_the_host_or_argument_the_variable_and_the_value(edges, front_ends, arguments, message):
    hostvars, groups = topology(edges, front_ends)
    with pytest.raises(RuleError) as error:
        flows(MATRIX, hostvars, groups, **arguments)
    assert str(error.value).startswith(message), str(error.value)


def test_a_host_in_two_of_our_groups_is_refused():
    hostvars, groups = topology({'edge1': SINGLE_EDGE}, {'fe1': FRONT_END})
    groups['lync_internal_firewall'].append('fe1')
    with pytest.raises(RuleError, match="host 'fe1': is in group 'lync_front_end' and in 'lync_internal_firewall'"):
        flows(MATRIX, hostvars, groups)


def test_magic_variables_in_the_wrong_place_are_named():
    with pytest.raises(RuleError, match="flow model: argument 'hostvars': a list is not a mapping"):
        flows(MATRIX, ['edge1'], {})


def test_literal_networks_stand_for_themselves_as_source_and_destination():
    rows = [{'id': 'admin-rdp', 'transport': 'tcp', 'ports': [3389], 'destination': 'edge_internal',
             'source': ['198.51.100.192/27', '2001:db8:40::/48']},
            {'id': 'edge-ntp', 'transport': 'udp', 'ports': [123], 'source': 'edge_internal',
             'destination': ['198.51.100.250']}]
    edge = dict(SINGLE_EDGE, lync_edge_public_ip='198.51.100.62')
    hostvars, groups = topology({'edge1': edge}, {'fe1': FRONT_END})
    extra_ids = ('admin-rdp', 'edge-ntp')
    found = [flow for flow in flows(MATRIX, hostvars, groups, extra_rows=rows) if flow['row'] in extra_ids]
    # The IPv6 admin network reaches nothing: the Edge has no IPv6 internal address.
    assert [(flow['id'], flow['expected'], flow['to_host']) for flow in found] == [
        ('admin-rdp:row:198.51.100.192/27>198.51.100.130:tcp/3389:ipv4', 'open', 'edge1'),
        ('admin-rdp:internal-port-from-internet:internet>198.51.100.10:tcp/3389:ipv4', 'blocked', 'edge1'),
        ('admin-rdp:internal-port-from-internet:internet>198.51.100.62:tcp/3389:ipv4', 'blocked', 'edge1'),
        ('admin-rdp:internal-port-from-internet:internet>198.51.100.130:tcp/3389:ipv4', 'blocked', 'edge1'),
        ('admin-rdp:next-port:198.51.100.192/27>198.51.100.130:tcp/3390:ipv4', 'blocked', 'edge1'),
        ('edge-ntp:row:edge1>198.51.100.250:udp/123:ipv4', 'open', None),
        ('edge-ntp:internal-port-from-internet:internet>198.51.100.10:udp/123:ipv4', 'blocked', 'edge1'),
        ('edge-ntp:internal-port-from-internet:internet>198.51.100.62:udp/123:ipv4', 'blocked', 'edge1'),
        ('edge-ntp:internal-port-from-internet:internet>198.51.100.130:udp/123:ipv4', 'blocked', 'edge1'),
        ('edge-ntp:next-port:edge1>198.51.100.250:udp/124:ipv4', 'blocked', None),
    ]
