# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The matrix's own helpers: row normalisation, host tags in rule names, inventory booleans."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.lync.xmpp_federation.plugins.module_utils import matrix
from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import NAME_PATTERN, RuleError


def test_row_normalised():
    row = {'id': 'sip-access-edge', 'application': 'SIP/TLS', 'transport': 'TCP', 'ports': [5061, '443'],
           'source': 'any', 'destination': 'edge_external', 'action': 'ACCEPT', 'comment': ' SIP ',
           'reference': 'Edge port tables'}
    assert matrix.normalize_row(row, 0, "host 'h'") == {
        'variable': 'xmpp_firewall_matrix', 'id': 'sip-access-edge', 'application': 'SIP/TLS', 'transport': 'tcp', 'ports': [443, 5061], 'source': 'any',
        'destination': 'edge_external', 'action': 'accept', 'any_narrowed_to': None, 'comment': 'SIP',
        'side': 'external', 'both_edge_ends': False}


def test_row_with_literal_networks_and_both_edge_ends():
    literal = matrix.normalize_row({'id': 'r', 'transport': 'udp', 'ports': '3478', 'source': ['198.51.100.9/26'],
                                    'destination': 'edge_internal'}, 0, 'h')
    assert (literal['source'], literal['side']) == (['198.51.100.0/26'], 'internal')
    across = matrix.normalize_row({'id': 'r', 'transport': 'tcp', 'ports': 1, 'source': 'edge_internal',
                                   'destination': 'edge_external'}, 0, 'h')
    assert (across['side'], across['both_edge_ends']) == ('external', True)


@pytest.mark.parametrize('row, message', [
    ('not a row', "host 'h': variable 'xmpp_firewall_matrix': row 3: 'not a row' is not a row (a dict is expected)"),
    ({'transport': 'tcp', 'ports': 1, 'source': 'any', 'destination': 'edge_external'},
     "host 'h': variable 'xmpp_firewall_matrix': row 3: field 'id' is required"),
    ({'id': 'r', 'transport': 'tcp', 'ports': 1, 'source': [], 'destination': 'edge_external'},
     "host 'h': variable 'xmpp_firewall_matrix': row 'r': field 'source' is required"),
    ({'id': 'r', 'application': ['XMPP'], 'transport': 'tcp', 'ports': 1, 'source': 'any', 'destination': 'edge_external'},
     "host 'h': variable 'xmpp_firewall_matrix': row 'r': field 'application': ['XMPP'] is not a text (such as XMPP or XMPP/MTLS)"),
    ({'id': 'r', 'transport': 'tcp', 'ports': 1, 'source': 42, 'destination': 'edge_external'},
     "host 'h': variable 'xmpp_firewall_matrix': row 'r': field 'source': 42 is not an endpoint (known: any, "
     "edge_external, edge_internal, front_end, partners, or a list of networks)"),
    ({'id': 'x' * 41, 'transport': 'tcp', 'ports': 1, 'source': 'any', 'destination': 'edge_external'},
     "host 'h': variable 'xmpp_firewall_matrix': row '%s': field 'id': '%s' must be 1-40 letters"
     % ('x' * 41, 'x' * 41)),
    ({'id': 'r\n', 'transport': 'tcp', 'ports': 1, 'source': 'any', 'destination': 'edge_external'},
     "host 'h': variable 'xmpp_firewall_matrix': row 'r\\n': field 'id': 'r\\n' must be 1-40 letters"),
    ({'id': 'r', 'transport': '', 'ports': 1, 'source': 'any', 'destination': 'edge_external'},
     "host 'h': variable 'xmpp_firewall_matrix': row 'r': field 'transport' is required, not ''"),
    ({'id': 'r', 'transport': 'tcp', 'ports': 1, 'source': 'any', 'destination': 'front_end'},
     "host 'h': variable 'xmpp_firewall_matrix': row 'r': fields 'source' and 'destination': one end of the row "
     "must be edge_external or edge_internal, not 'any' and 'front_end'"),
    ({'id': 'r', 'transport': 'tcp', 'ports': 1, 'source': ['fe80::%eth0/64'], 'destination': 'edge_external'},
     "host 'h': variable 'xmpp_firewall_matrix': row 'r': field 'source': 'fe80::%eth0/64' is a scoped IPv6 "
     "address (zone 'eth0')"),
    ({'id': 'r', 'transport': 'tcp', 'ports': 1, 'source': 'any', 'destination': 'edge_external',
      'comment': 'SIP\u2028TLS'},
     "host 'h': variable 'xmpp_firewall_matrix': row 'r': field 'comment': 'SIP\\u2028TLS' must be text without "
     "quotes, backslashes, control characters or line separators"),
])
def test_bad_rows(row, message):
    with pytest.raises(RuleError) as error:
        matrix.normalize_row(row, 3, "host 'h'")
    assert str(error.value).startswith(message)


def test_a_row_of_the_extra_rows_is_named_by_that_variable():
    row = {'id': 'sip', 'transport': 'tcp', 'ports': 5061, 'source': 'any', 'destination': 'edge_external'}
    assert matrix.normalize_row(row, 0, "host 'h'", 'xmpp_firewall_extra_rows')['variable'] == \
        'xmpp_firewall_extra_rows'
    with pytest.raises(RuleError) as error:
        matrix.normalize_row(dict(row, ports=[0]), 0, "host 'h'", 'xmpp_firewall_extra_rows')
    assert str(error.value) == ("host 'h': variable 'xmpp_firewall_extra_rows': row 'sip': field 'ports': port 0 is "
                                "outside 1-65535")
    with pytest.raises(RuleError) as error:
        matrix.normalize_row(dict(row, id=None), 4, "host 'h'", 'xmpp_firewall_extra_rows')
    assert str(error.value) == "host 'h': variable 'xmpp_firewall_extra_rows': row 4: field 'id' is required"


# The digest is the first hex digits of the SHA-256 of the full host name.
@pytest.mark.parametrize('host, room, expected', [
    ('edge1', 20, 'edge1'),
    ('edge01.dmz.example.org', 22, 'edge01.dmz.example.org'),
    ('edge01.dmz.example.org', 21, 'edge01.dmz.e-76e9231b'),
    ('2001:db8::5', 30, '2001_db8__5-e3b38e0a'),
    ('edge 1', 30, 'edge_1-04cf96e0'),
    ('edge01.dmz.example.org', 8, '76e9231b'),
    ('edge01.dmz.example.org', 5, '76e92'),
])
def test_host_tag(host, room, expected):
    tag = matrix._host_tag(host, room)  # pylint: disable=protected-access
    assert tag == expected
    assert len(tag) <= room and NAME_PATTERN.match('x-' + tag)


@pytest.mark.parametrize('value, expected', [
    (True, True), (False, False), ('yes', True), ('No', False), ('true', True), ('off', False), (1, True),
    (0, False), (' on ', True),
])
def test_inventory_booleans(value, expected):
    assert matrix._boolean(value, 'w') is expected  # pylint: disable=protected-access


@pytest.mark.parametrize('value', ['maybe', None, [True], 2])
def test_not_booleans(value):
    with pytest.raises(RuleError, match=r'^w: .* is not a boolean$'):
        matrix._boolean(value, 'w')  # pylint: disable=protected-access
