# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The rule model: validation, normalisation and canonical order of one host's rules."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import (
    FIELDS,
    RuleError,
    as_list,
    families_needed,
    family_of,
    kernel_comment,
    normalize_host_address,
    normalize_network,
    normalize_networks,
    normalize_rule,
    normalize_rules,
    parse_port_item,
    port_spans,
    rule_family,
    sections,
    sort_networks,
    split_kernel_comment,
)


def canonical(name='xmpp-s2s-inbound-ipv4', direction='in', protocol='tcp', ports=None, source=None,
              destination=None, action='accept', comment='', **nat):
    """A rule written out in canonical form, keys in canonical order."""
    rule = {
        'name': name,
        'direction': direction,
        'protocol': protocol,
        'ports': [5269] if ports is None else ports,
        'source': source or [],
        'destination': destination or [],
        'action': action,
        'comment': comment,
    }
    rule.update(nat)
    return rule


# -- addresses ----------------------------------------------------------------

@pytest.mark.parametrize('written, expected', [
    ('198.51.100.7', '198.51.100.7/32'),
    (' 198.51.100.7 ', '198.51.100.7/32'),
    ('198.51.100.7/32', '198.51.100.7/32'),
    ('198.51.100.7/24', '198.51.100.0/24'),        # host bits masked, as nft and iptables do
    ('198.51.100.0/26', '198.51.100.0/26'),
    ('2001:DB8::1', '2001:db8::1/128'),
    ('2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1/128'),   # IPv6 compression
    ('2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1/128'),
    ('2001:db8:10::/48', '2001:db8:10::/48'),
    ('2001:db8:10::5/48', '2001:db8:10::/48'),
    ('::ffff:198.51.100.7', '::ffff:c633:6407/128'),
])
def test_normalize_network_forms(written, expected):
    assert normalize_network(written, 'here') == expected


@pytest.mark.parametrize('written, expected', [
    ('198.51.100.7', '198.51.100.7/32'),
    ('198.51.100.7/24', '198.51.100.7/32'),        # an interface as written: the address is the host
    ('2001:DB8:0:0::7/64', '2001:db8::7/128'),
])
def test_normalize_host_address_keeps_the_host(written, expected):
    assert normalize_host_address(written, 'here') == expected


@pytest.mark.parametrize('bad', ['198.51.100.300', '198.51.100.0/33', '2001:db8::g', 'edge01', '', '198.51.100'])
def test_malformed_network_names_place_and_value(bad):
    with pytest.raises(RuleError) as error:
        normalize_network(bad, "host 'fw1': variable 'xmpp_firewall_partner_networks'")
    assert str(error.value) == ("host 'fw1': variable 'xmpp_firewall_partner_networks': '%s' is not a valid IP "
                                "address or network" % bad)


@pytest.mark.parametrize('bad', [5269, True, None, ['198.51.100.7']])
def test_non_text_network_is_refused(bad):
    with pytest.raises(RuleError, match=r"^where: .* is not an IP address or network$"):
        normalize_network(bad, 'where')


@pytest.mark.parametrize('bad', ['198.51.100.256', 'fe01', 42])
def test_malformed_host_address(bad):
    with pytest.raises(RuleError) as error:
        normalize_host_address(bad, "host 'edge1': variable 'lync_edge_external_ip'")
    assert str(error.value).startswith("host 'edge1': variable 'lync_edge_external_ip': %r" % bad)


def test_networks_sorted_deduplicated_ipv4_first():
    written = ['2001:db8::1', '198.51.100.20', '198.51.100.3/32', '2001:DB8::1/128', '198.51.100.3', '198.51.100.0/24']
    assert normalize_networks(written, 'w') == ['198.51.100.0/24', '198.51.100.3/32', '198.51.100.20/32',
                                                '2001:db8::1/128']


def test_networks_error_names_the_list_index():
    with pytest.raises(RuleError, match=r"^w\[1\]: 'nope' is not a valid"):
        normalize_networks(['198.51.100.1', 'nope'], 'w')


def test_sort_is_numeric_not_textual():
    assert sort_networks(['198.51.100.100/32', '198.51.100.9/32', '198.51.100.10/32']) == [
        '198.51.100.9/32', '198.51.100.10/32', '198.51.100.100/32']


def test_as_list_and_family():
    assert as_list(None) == []
    assert as_list('198.51.100.1') == ['198.51.100.1']
    assert as_list(('a', 'b')) == ['a', 'b']
    assert family_of('198.51.100.0/24') == 4
    assert family_of('2001:db8::/32') == 6


# -- ports --------------------------------------------------------------------

@pytest.mark.parametrize('written, expected', [
    ([5269], [5269]),
    (5269, [5269]),
    ('5269', [5269]),
    ([5270, '5269', 80], [80, '5269-5270']),           # adjacent ports merge into a range
    (['50000-50999', '51000:59999', 3478], [3478, '50000-59999']),
    (['5000-5010', '5005-5020', 5021], ['5000-5021']),  # overlapping ranges merge
    (['5000-5000'], [5000]),
    ([65535, 1], [1, 65535]),
])
def test_port_merge_and_ranges(written, expected):
    assert normalize_rule(canonical(ports=written))['ports'] == expected


@pytest.mark.parametrize('bad, message', [
    (0, "port 0 is outside 1-65535"),
    (70000, "port 70000 is outside 1-65535"),
    ('0-10', "port '0' is outside 1-65535"),
    ('5000-70000', "port '70000' is outside 1-65535"),
    ('5010-5000', "port range '5010-5000' runs backwards"),
    ('https', "'https' is not a port number"),
    (True, "True is not a port number"),
    (52.5, "52.5 is not a port number"),
])
def test_bad_ports(bad, message):
    with pytest.raises(RuleError) as error:
        normalize_rule(canonical(ports=[bad]), 'rules[0]')
    assert str(error.value) == "rules[0] (xmpp-s2s-inbound-ipv4): field 'ports': " + message


def test_port_spans_and_items():
    assert port_spans([80, '5000-5010']) == [(80, 80), (5000, 5010)]
    assert parse_port_item('5000:5010', 'w') == (5000, 5010)
    assert parse_port_item(' 23456 ', 'w') == (23456, 23456)


# -- whole rules ----------------------------------------------------------------

def test_canonical_form_and_key_order():
    written = {
        'comment': ' XMPP federation row 1 ',
        'ports': ['5269'],
        'destination': '198.51.100.10',
        'name': 'xmpp-s2s-inbound-ipv4',
        'direction': 'IN',
        'protocol': 'TCP',
    }
    expected = canonical(destination=['198.51.100.10/32'], comment='XMPP federation row 1')
    result = normalize_rule(written)
    assert result == expected
    assert list(result) == list(expected) == list(FIELDS[:8])
    assert json.dumps(result) == json.dumps(expected)


def test_rules_equal_in_meaning_compare_equal():
    first = normalize_rule(canonical(ports=[5270, 5269], source=['198.51.100.130', '198.51.100.0/25']))
    second = normalize_rule(canonical(ports=['5269-5270'], source=['198.51.100.9/25', '198.51.100.130/32']))
    assert first == second
    assert normalize_rule(canonical(source=['2001:DB8:0::1'])) == normalize_rule(canonical(source='2001:db8::1/128'))


def test_unknown_field_is_named():
    with pytest.raises(RuleError) as error:
        normalize_rule(dict(canonical(), port=5269, zone='dmz'), 'rules[2]')
    assert str(error.value).startswith("rules[2] (xmpp-s2s-inbound-ipv4): unknown field 'port', 'zone' (known: name,")


@pytest.mark.parametrize('field, value, message', [
    ('direction', 'sideways', "field 'direction': 'sideways' is not one of in, out, forward"),
    ('protocol', 'sctp', "field 'protocol': 'sctp' is not one of tcp, udp"),
    ('action', 'allow', "field 'action': 'allow' is not one of accept, drop, reject"),
    ('comment', 'say "hi"', "field 'comment': 'say \"hi\"' must be text without quotes"),
])
def test_bad_choices(field, value, message):
    with pytest.raises(RuleError) as error:
        normalize_rule(dict(canonical(), **{field: value}), 'r')
    assert str(error.value).startswith('r (xmpp-s2s-inbound-ipv4): ' + message)


@pytest.mark.parametrize('name', ['', '-leading-dash', 'has space', 'x' * 65, 7])
def test_bad_names(name):
    with pytest.raises(RuleError, match=r"field 'name'"):
        normalize_rule(dict(canonical(), name=name))


def test_missing_required_field():
    rule = canonical()
    del rule['direction']
    with pytest.raises(RuleError, match=r"^r \(xmpp-s2s-inbound-ipv4\): field 'direction' is required$"):
        normalize_rule(rule, 'r')


def test_mixed_families_refused():
    with pytest.raises(RuleError) as error:
        normalize_rule(canonical(source=['198.51.100.0/24'], destination=['2001:db8::10']), 'r')
    assert 'mixes IPv4 and IPv6' in str(error.value)
    assert "['198.51.100.0/24']" in str(error.value) and "['2001:db8::10/128']" in str(error.value)


def test_kernel_comment_length_limit():
    with pytest.raises(RuleError, match='exceed 128 characters'):
        normalize_rule(canonical(comment='x' * 120))


def test_duplicate_names_refused():
    with pytest.raises(RuleError) as error:
        normalize_rules([canonical(), canonical(ports=[5270])], "host 'edge1': rules")
    assert str(error.value) == "host 'edge1': rules: name 'xmpp-s2s-inbound-ipv4' is used by more than one rule"


def test_rules_sorted_by_name():
    rules = normalize_rules([canonical(name='b'), canonical(name='a-2'), canonical(name='a-10')])
    assert [rule['name'] for rule in rules] == ['a-10', 'a-2', 'b']
    assert normalize_rules(None) == []
    with pytest.raises(RuleError, match='is not a list of rules'):
        normalize_rules({'name': 'x'})


# -- translation rules --------------------------------------------------------------

def test_dnat_rule():
    written = canonical(name='xmpp-s2s-inbound-dnat-edge1-ipv4', direction='forward', destination=['198.51.100.62'],
                        nat='DNAT', nat_to='198.51.100.10/32')
    assert normalize_rule(written) == canonical(name='xmpp-s2s-inbound-dnat-edge1-ipv4', direction='forward',
                                                destination=['198.51.100.62/32'], nat='dnat',
                                                nat_to='198.51.100.10')


def test_snat_rule_ipv6():
    result = normalize_rule(canonical(name='s', direction='forward', source=['2001:db8:10::10'],
                                      nat='snat', nat_to='2001:DB8:62:0::1'))
    assert result['nat_to'] == '2001:db8:62::1'
    assert rule_family(result) == 6


@pytest.mark.parametrize('change, message', [
    (dict(direction='in'), "field 'nat': translation is only done on forward rules, not 'in'"),
    (dict(action='drop'), "field 'action': a translation rule has no verdict other than accept, not 'drop'"),
    (dict(destination=[]), "field 'destination' is required on a dnat rule"),
    (dict(nat_to=None), "field 'nat_to' is required on a dnat rule"),
    (dict(nat='masquerade'), "field 'nat': 'masquerade' is not one of dnat, snat"),
    (dict(nat_to='2001:db8::10'), 'mixes IPv4 and IPv6'),
    (dict(nat_to='198.51.100.0/24/1'), "field 'nat_to': '198.51.100.0/24/1' is not a valid IP address"),
])
def test_bad_translation_rules(change, message):
    rule = canonical(name='d', direction='forward', destination=['198.51.100.62'], nat='dnat', nat_to='198.51.100.10')
    rule.update(change)
    with pytest.raises(RuleError) as error:
        normalize_rule(rule, 'r')
    assert message in str(error.value)


def test_nat_to_without_nat():
    with pytest.raises(RuleError, match=r"field 'nat_to': '198.51.100.10' given without 'nat'"):
        normalize_rule(dict(canonical(), nat_to='198.51.100.10'))


# -- helpers the backends use --------------------------------------------------------

def test_kernel_comment_round_trip():
    rule = normalize_rule(canonical(comment='XMPP federation row 1: partners'))
    text = kernel_comment(rule)
    assert text == 'lync-xmpp:xmpp-s2s-inbound-ipv4: XMPP federation row 1: partners'
    assert split_kernel_comment(text) == ('xmpp-s2s-inbound-ipv4', 'XMPP federation row 1: partners')
    assert split_kernel_comment('lync-xmpp:xmpp-s2s-inbound-ipv4') == ('xmpp-s2s-inbound-ipv4', '')
    # Without our mark a comment is not ours, however much it looks like a rule name.
    assert split_kernel_comment('xmpp-s2s-inbound-ipv4') == (None, '')
    assert split_kernel_comment('allow ssh from admins') == (None, '')
    assert split_kernel_comment('lync-xmpp:') == (None, '')


def test_families_and_sections():
    any_rule = normalize_rule(canonical(name='any'))
    v4 = normalize_rule(canonical(name='v4', destination=['198.51.100.10']))
    v6 = normalize_rule(canonical(name='v6', direction='out', source=['2001:db8::10']))
    dnat = normalize_rule(canonical(name='d', direction='forward', destination=['198.51.100.62'], nat='dnat',
                                    nat_to='198.51.100.10'))
    assert rule_family(any_rule) is None
    assert families_needed([any_rule]) == {4, 6}
    assert families_needed([v4]) == {4}
    assert families_needed([v4, v6]) == {4, 6}
    assert families_needed([]) == set()
    assert sections([v4, v6, dnat]) == {'in', 'out', 'dnat'}
