# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The rule model: validation, normalisation and canonical order of one host's rules."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import json

import pytest

from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import (
    FIELDS,
    IPTABLES_COMMENT_MAX_BYTES,
    KERNEL_COMMENT_MAX_BYTES,
    NFTABLES_COMMENT_MAX_BYTES,
    SET_MIN_ADDRESSES,
    RuleError,
    as_list,
    check_kernel_comment,
    families_needed,
    family_of,
    kernel_comment,
    normalize_host_address,
    normalize_nat_address,
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


# Python's ipaddress takes a zone ('%eth0') and nft and iptables do not; ip_network(..., strict=False) even
# drops the zone of 'fe80::1%eth0/64' without a word.
SCOPED = ['fe80::1%eth0', 'fe80::1%eth0/64', 'fe80::%eth0/64', 'FE80::1%2']


@pytest.mark.parametrize('scoped', SCOPED)
@pytest.mark.parametrize('normalize', [normalize_network, normalize_host_address, normalize_nat_address])
def test_scoped_ipv6_is_refused_naming_place_value_and_zone(normalize, scoped):
    with pytest.raises(RuleError) as error:
        normalize(scoped, "host 'edge1': variable 'lync_edge_external_ip'")
    zone = scoped.split('%')[1].split('/')[0]
    assert str(error.value) == (
        "host 'edge1': variable 'lync_edge_external_ip': '%s' is a scoped IPv6 address (zone '%s'); nftables and "
        "iptables take addresses without a zone: write it without '%%%s'" % (scoped, zone, zone))


def test_scoped_ipv6_given_as_an_ipaddress_object_is_refused_too():
    with pytest.raises(RuleError, match=r"^w: 'fe80::1%eth0' is a scoped IPv6 address"):
        normalize_network(ipaddress.ip_address('fe80::1%eth0'), 'w')


@pytest.mark.parametrize('field', ['source', 'destination'])
def test_scoped_ipv6_in_a_rule_names_the_field(field):
    with pytest.raises(RuleError) as error:
        normalize_rule(canonical(**{field: ['2001:db8::1', 'fe80::1%eth0']}), 'rules[0]')
    assert str(error.value).startswith(
        "rules[0] (xmpp-s2s-inbound-ipv4): field '%s'[1]: 'fe80::1%%eth0' is a scoped IPv6 address" % field)


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


@pytest.mark.parametrize('name', ['', '-leading-dash', 'has space', 'x' * 65, 7, 'name\n', 'n\u00e4me', '\uff41'])
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
    assert str(error.value) == (
        "r (xmpp-s2s-inbound-ipv4): fields 'source' ['198.51.100.0/24'] and 'destination' ['2001:db8::10/128'] mix "
        "IPv4 and IPv6 addresses; write one rule per address family")


@pytest.mark.parametrize('field, value, message', [
    ('ports', [], "field 'ports' is required, not []"),
    ('name', '', "field 'name' is required, not ''"),
    ('direction', None, "field 'direction' is required"),
])
def test_a_required_field_given_empty_shows_what_was_given(field, value, message):
    with pytest.raises(RuleError) as error:
        normalize_rule(dict(canonical(), **{field: value}), 'r')
    assert str(error.value).endswith(': ' + message)


def test_an_unprintable_value_is_shown_escaped():
    with pytest.raises(RuleError) as error:
        normalize_rule(canonical(comment='row 1\n-A INPUT -j ACCEPT'), 'r')
    assert str(error.value).startswith("r (xmpp-s2s-inbound-ipv4): field 'comment': 'row 1\\n-A INPUT -j ACCEPT' "
                                       "must be text without quotes")
    assert '\n' not in str(error.value)


def test_duplicate_names_refused():
    with pytest.raises(RuleError) as error:
        normalize_rules([canonical(), canonical(name='other'), canonical(ports=[5270])], "host 'edge1': rules")
    assert str(error.value) == ("host 'edge1': rules[2]: field 'name': 'xmpp-s2s-inbound-ipv4' is already the name of "
                                "the rule at index 0; each rule of a host needs a name of its own")


# -- kernel comments, counted in bytes as the kernels count them ---------------------------

LONGEST_NAME = 'n' * 64
# 'lync-xmpp:' + name + ': ' + comment
PREFIX_BYTES = len('lync-xmpp:') + 64 + len(': ')


def test_kernel_limits():
    assert (NFTABLES_COMMENT_MAX_BYTES, IPTABLES_COMMENT_MAX_BYTES, KERNEL_COMMENT_MAX_BYTES) == (128, 255, 255)


@pytest.mark.parametrize('comment', [
    'x' * (255 - PREFIX_BYTES),                      # ASCII up to the loosest limit: more than 128 characters
    '\u00fc' * ((255 - PREFIX_BYTES) // 2) + 'x',     # two bytes a character, to the byte
    '\u20ac' * ((255 - PREFIX_BYTES) // 3) + 'xx',    # three bytes a character
    '\U0001f4de' * ((255 - PREFIX_BYTES) // 4) + 'xxx',  # four, plus one-byte filler to the byte
], ids=['one-byte', 'two-byte', 'three-byte', 'four-byte'])
def test_a_kernel_comment_of_up_to_255_bytes_is_valid(comment):
    rule = normalize_rule(canonical(name=LONGEST_NAME, comment=comment))
    assert len(kernel_comment(rule).encode('utf-8')) == 255


@pytest.mark.parametrize('comment, comment_bytes', [
    ('x' * (256 - PREFIX_BYTES), 256 - PREFIX_BYTES),
    ('\u00fc' * ((256 - PREFIX_BYTES) // 2), 256 - PREFIX_BYTES),
    # 121 characters, 256 bytes: iptables would cut it, mid-character.
    ('\U0001f4de' * 45, 180),
], ids=['one-byte', 'two-byte', 'four-byte'])
def test_a_kernel_comment_over_255_bytes_is_refused_with_its_byte_count(comment, comment_bytes):
    with pytest.raises(RuleError) as error:
        normalize_rule(canonical(name=LONGEST_NAME, comment=comment), 'rules[0]')
    assert PREFIX_BYTES + comment_bytes == 256
    assert str(error.value) == (
        "rules[0] (%s): field 'comment': '%s' is %d bytes in UTF-8, which makes the rule's kernel comment "
        "('lync-xmpp:', the name, ': ', the comment) 256 bytes, more than the 255 bytes any firewall backend takes: "
        "shorten it by 1 byte" % (LONGEST_NAME, comment, comment_bytes))


def test_short_non_ascii_comment_that_fits_nowhere_in_characters_is_refused():
    # 115 characters make a kernel comment of 128 characters: the old check in characters let it through.
    rule = canonical(name='x', comment='\u20ac' * 115)
    assert len(kernel_comment(rule)) == 128
    with pytest.raises(RuleError, match=r"is 345 bytes in UTF-8.* 358 bytes, more than the 255 bytes"):
        normalize_rule(rule)


def test_check_kernel_comment_for_one_backend():
    rule = normalize_rule(canonical(name='xmpp-s2s-inbound-ipv4', comment='\u00e9' * 50))
    # 10 + 21 + 2 + 100 = 133 bytes: iptables takes it, nftables does not.
    assert check_kernel_comment(rule, IPTABLES_COMMENT_MAX_BYTES, 'iptables') == kernel_comment(rule)
    with pytest.raises(RuleError) as error:
        check_kernel_comment(rule, NFTABLES_COMMENT_MAX_BYTES, 'nftables')
    assert str(error.value) == (
        "rule 'xmpp-s2s-inbound-ipv4': field 'comment': '%s' is 100 bytes in UTF-8, which makes the rule's kernel "
        "comment ('lync-xmpp:', the name, ': ', the comment) 133 bytes, more than the 128 bytes nftables takes: "
        "shorten it by 5 bytes" % ('\u00e9' * 50))
    with pytest.raises(RuleError, match=r"^host 'fw1': rules\[3\] \(xmpp-s2s-inbound-ipv4\): field 'comment'"):
        check_kernel_comment(rule, 128, 'nftables', where="host 'fw1': rules[3] (xmpp-s2s-inbound-ipv4)")
    # At the limit exactly: taken.
    fits = normalize_rule(canonical(name='xmpp-s2s-inbound-ipv4', comment='\u00e9' * 47 + 'x'))
    assert len(check_kernel_comment(fits, 128, 'nftables').encode('utf-8')) == 128


def test_check_kernel_comment_without_a_comment_names_the_name():
    rule = normalize_rule(canonical(name='n' * 30))
    with pytest.raises(RuleError) as error:
        check_kernel_comment(rule, 32, 'a tiny kernel')
    assert str(error.value).startswith("rule '%s': field 'name': '%s' is 30 bytes in UTF-8" % ('n' * 30, 'n' * 30))
    assert str(error.value).endswith("40 bytes, more than the 32 bytes a tiny kernel takes: shorten it by 8 bytes")


@pytest.mark.parametrize('character', [
    '\n', '\r', '\x0b', '\x0c', '\x1c', '\x1d', '\x1e', '\x85', '\u2028', '\u2029',
])
def test_comment_characters_that_split_a_line_are_refused(character):
    # The backends read iptables-save and nft output with str.splitlines: each of these ends a line there.
    assert len(('a%sb' % character).splitlines()) == 2
    with pytest.raises(RuleError, match=r"field 'comment': .* must be text without quotes, backslashes, control "
                                        r"characters or line separators$"):
        normalize_rule(canonical(comment='a%sb' % character))


@pytest.mark.parametrize('character', ['\x00', '\x7f', '\x9b', '\udc80'])
def test_comment_control_characters_and_lone_surrogates_are_refused(character):
    # A lone surrogate (from undecodable input) has no UTF-8 form: counting or writing it would raise.
    with pytest.raises(RuleError, match=r"field 'comment'"):
        normalize_rule(canonical(comment='a%sb' % character))


def test_comment_text_beyond_ascii_is_kept():
    comment = 'F\u00f6deration \u00fcber XMPP \u2013 \u6f22\u5b57 \U0001f4de'
    assert normalize_rule(canonical(comment=comment))['comment'] == comment


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
    (dict(direction='in'), "field 'nat': 'dnat' is only done on forward rules, and field 'direction' is 'in'"),
    (dict(action='drop'), "field 'action': a translation rule has no verdict other than accept, not 'drop'"),
    (dict(destination=[]), "field 'destination' is required on a dnat rule"),
    (dict(nat_to=None), "field 'nat_to' is required on a dnat rule"),
    (dict(nat='masquerade'), "field 'nat': 'masquerade' is not one of dnat, snat"),
    (dict(nat_to='198.51.100.0/24/1'), "field 'nat_to': '198.51.100.0/24/1' is not a valid IP address"),
])
def test_bad_translation_rules(change, message):
    rule = canonical(name='d', direction='forward', destination=['198.51.100.62'], nat='dnat', nat_to='198.51.100.10')
    rule.update(change)
    with pytest.raises(RuleError) as error:
        normalize_rule(rule, 'r')
    assert message in str(error.value)


@pytest.mark.parametrize('nat_to, expected', [
    ('198.51.100.10', '198.51.100.10'),
    (' 198.51.100.10 ', '198.51.100.10'),
    ('198.51.100.10/32', '198.51.100.10'),          # the full prefix length is one host too
    (ipaddress.ip_address('198.51.100.10'), '198.51.100.10'),
])
def test_nat_to_is_one_host_address(nat_to, expected):
    rule = canonical(name='d', direction='forward', destination=['198.51.100.62'], nat='dnat', nat_to=nat_to)
    assert normalize_rule(rule)['nat_to'] == expected


def test_nat_to_ipv6_host_address_with_full_prefix():
    rule = canonical(name='s', direction='forward', source=['2001:db8:10::10'], nat='snat',
                     nat_to='2001:DB8:62::1/128')
    assert normalize_rule(rule)['nat_to'] == '2001:db8:62::1'


@pytest.mark.parametrize('nat_to, message', [
    ('198.51.100.0/24', "'198.51.100.0/24' is a network, not one host address: write the address alone (or with /32)"),
    # ip_interface takes this as the host .7 in a /24; a translation target must say one host, not maybe a network.
    ('198.51.100.7/24', "'198.51.100.7/24' is a network, not one host address: write the address alone (or with /32)"),
    ('198.51.100.7/31', "'198.51.100.7/31' is a network, not one host address"),
    ('0.0.0.0', "'0.0.0.0' is not a host address a packet can be translated to (unspecified, multicast or "
                "broadcast)"),
    ('224.0.0.5', "'224.0.0.5' is not a host address a packet can be translated to"),
    ('255.255.255.255', "'255.255.255.255' is not a host address a packet can be translated to"),
    (['198.51.100.10'], "['198.51.100.10'] is not an IP address"),
    (3325256714, "3325256714 is not an IP address"),
])
def test_nat_to_must_be_one_host_address(nat_to, message):
    rule = canonical(name='d', direction='forward', destination=['198.51.100.62'], nat='dnat', nat_to=nat_to)
    with pytest.raises(RuleError) as error:
        normalize_rule(rule, 'r')
    assert str(error.value).startswith("r (d): field 'nat_to': " + message)


def test_nat_to_ipv6_network_is_refused():
    rule = canonical(name='s', direction='forward', source=['2001:db8:10::10'], nat='snat', nat_to='2001:db8:62::1/64')
    with pytest.raises(RuleError, match=r"^r \(s\): field 'nat_to': '2001:db8:62::1/64' is a network, not one host "
                                        r"address: write the address alone \(or with /128\)$"):
        normalize_rule(rule, 'r')


@pytest.mark.parametrize('nat, matched, addresses, nat_to, message', [
    ('dnat', 'destination', ['198.51.100.62'], '2001:db8::10',
     "field 'nat_to': '2001:db8::10' is an IPv6 address, but field 'destination' ['198.51.100.62/32'] is IPv4"),
    ('snat', 'source', ['2001:db8:10::10'], '198.51.100.62/32',
     "field 'nat_to': '198.51.100.62/32' is an IPv4 address, but field 'source' ['2001:db8:10::10/128'] is IPv6"),
])
def test_nat_to_of_the_wrong_family_names_the_field_and_the_value(nat, matched, addresses, nat_to, message):
    rule = canonical(name='t', direction='forward', nat=nat, nat_to=nat_to, **{matched: addresses})
    with pytest.raises(RuleError) as error:
        normalize_rule(rule, 'r')
    assert str(error.value) == "r (t): %s; a translation rewrites to an address of the rule's own family" % message


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
    assert split_kernel_comment('lync-xmpp:xmpp-s2s-inbound-ipv4\n') == (None, '')


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


# -- a /0 is every address of its family: the kernels write it as no match --------------------------

def test_a_whole_family_network_becomes_any_where_the_rule_keeps_its_family():
    rule = normalize_rule(canonical(source=['0.0.0.0/0', '198.51.100.0/24'], destination=['198.51.100.10']))
    assert rule['source'] == [] and rule['destination'] == ['198.51.100.10/32']
    assert rule_family(rule) == 4


def test_a_whole_family_network_alone_is_refused_rather_than_opening_both_families():
    with pytest.raises(RuleError) as error:
        normalize_rule(canonical(source=['::/0'], destination=[]))
    assert "field 'source'" in str(error.value) and "'::/0' is every IPv6 address" in str(error.value)


def test_a_translation_of_every_address_is_refused():
    with pytest.raises(RuleError) as error:
        normalize_rule(canonical(direction='forward', nat='dnat', nat_to='2001:db8::1', destination=['2001:db8::/0']))
    assert "field 'destination': '::/0' is every IPv6 address" in str(error.value)


def test_a_long_list_is_merged_as_a_kernel_set_holds_it_and_a_short_one_is_kept():
    base = {'name': 'partners', 'direction': 'forward', 'ports': [5269]}
    long_list = ['198.51.100.0/26', '198.51.100.64/26', '198.51.100.7', '198.51.100.200/29', '198.51.100.150',
                 '198.51.100.160/28']
    rule = normalize_rule(dict(base, source=long_list))
    assert rule['source'] == ['198.51.100.0/25', '198.51.100.150/32', '198.51.100.160/28', '198.51.100.200/29']
    assert len(rule['source']) >= SET_MIN_ADDRESSES
    # Normalising again gives the same rule.
    assert normalize_rule(rule) == rule
    # Four networks that merge into fewer than SET_MIN_ADDRESSES are no set: one kernel rule each, as written.
    short = normalize_rule(dict(base, source=long_list[:4]))
    assert short['source'] == ['198.51.100.0/26', '198.51.100.7/32', '198.51.100.64/26', '198.51.100.200/29']
    quarters = normalize_rule(dict(base, source=['0.0.0.0/2', '64.0.0.0/2', '128.0.0.0/2', '192.0.0.0/2']))
    assert len(quarters['source']) == 4
