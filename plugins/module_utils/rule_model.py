# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one rule model of the collection.

The filter ``host_rules`` produces rules in this model and the module
``firewall_ruleset`` consumes them; both validate and normalise through this
file, so an error reads the same wherever it is raised and two rules that mean
the same thing compare equal.

A rule (canonical form, keys in this order)::

    name         unique in a host's list; letters, digits, '.', '_', '-'
    direction    in | out | forward
    protocol     tcp | udp
    ports        destination ports, sorted, merged: ints and "low-high" strings
    source       sorted canonical networks ("198.51.100.7/32"); [] means any
    destination  likewise
    action       accept | drop | reject
    comment      human text naming the documented row
    nat          only on translation rules: dnat | snat
    nat_to       only on translation rules: the translated host address

A ``dnat`` rule rewrites the destination of matching packets to ``nat_to``
(before routing); a ``snat`` rule rewrites their source to ``nat_to`` (after
routing).  Both are ``forward`` rules: translation happens on the perimeter
firewall, and the accept that lets the translated packet through is an
ordinary forward rule of the same list.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import functools
import ipaddress
import re

DIRECTIONS = ('in', 'out', 'forward')
PROTOCOLS = ('tcp', 'udp')
ACTIONS = ('accept', 'drop', 'reject')
NAT_KINDS = ('dnat', 'snat')
FIELDS = ('name', 'direction', 'protocol', 'ports', 'source', 'destination',
          'action', 'comment', 'nat', 'nat_to')
REQUIRED_FIELDS = ('name', 'direction', 'ports')

NAME_PATTERN = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$')
# nft refuses comments over 128 characters; iptables' limit (256) is looser.
KERNEL_COMMENT_MAX = 128
COMMENT_FORBIDDEN = re.compile(r'["\\\x00-\x1f\x7f]')
KERNEL_COMMENT_SEPARATOR = ': '
# Our mark. Every object the collection creates carries it, and only what carries it is ours: nftables tables
# and chains in their comments, jump rules (nftables and iptables) as their whole comment, our policy files in
# their description. Each kernel rule of ours starts its comment with RULE_MARK, then the rule's name.
OUR_MARK = 'lync-xmpp-federation'
RULE_MARK = 'lync-xmpp:'


class RuleError(ValueError):
    """Invalid input; the message names where (host/variable/rule) and what."""


def _text(value):
    return repr(value) if not isinstance(value, str) else "'%s'" % value


def normalize_network(value, where):
    """A network or address in canonical form with prefix length.

    '198.51.100.7' -> '198.51.100.7/32'; '2001:DB8::1' -> '2001:db8::1/128';
    '198.51.100.7/24' -> '198.51.100.0/24' (host bits are masked, as nft and
    iptables do).
    """
    if isinstance(value, bool) or not isinstance(value, (str, ipaddress.IPv4Network, ipaddress.IPv6Network,
                                                         ipaddress.IPv4Address, ipaddress.IPv6Address)):
        raise RuleError('%s: %s is not an IP address or network' % (where, _text(value)))
    try:
        return str(ipaddress.ip_network(str(value).strip(), strict=False))
    except ValueError:
        raise RuleError('%s: %s is not a valid IP address or network' % (where, _text(value)))


def normalize_host_address(value, where):
    """One host's address, as an interface is written: '198.51.100.7/24' -> '198.51.100.7/32'."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise RuleError('%s: %s is not an IP address' % (where, _text(value)))
    try:
        interface = ipaddress.ip_interface(value.strip())
    except ValueError:
        raise RuleError('%s: %s is not a valid IP address' % (where, _text(value)))
    return '%s/%d' % (interface.ip, interface.ip.max_prefixlen)


def as_list(value):
    """Inventory style: a string, a list, or nothing."""
    if value is None:
        return []
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    return [value]


@functools.lru_cache(maxsize=4096)
def _parsed_network(network):
    """Canonical text -> ip_network, parsed once: sorting and family checks ask again and again."""
    return ipaddress.ip_network(network)


def _network_sort_key(network):
    net = _parsed_network(network)
    return (net.version, int(net.network_address), net.prefixlen)


def sort_networks(networks):
    """Sorted, duplicates removed; IPv4 before IPv6, then numerically."""
    return sorted(set(networks), key=_network_sort_key)


def normalize_networks(value, where):
    items = as_list(value)
    return sort_networks(normalize_network(item, '%s[%d]' % (where, index) if len(items) > 1 else where)
                         for index, item in enumerate(items))


def family_of(network):
    """4 or 6."""
    return _parsed_network(network).version


def _port_number(value, where):
    if isinstance(value, bool):
        raise RuleError('%s: %s is not a port number' % (where, _text(value)))
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise RuleError('%s: %s is not a port number' % (where, _text(value)))
    if str(number) != str(value).strip() and not isinstance(value, int):
        raise RuleError('%s: %s is not a port number' % (where, _text(value)))
    if not 1 <= number <= 65535:
        raise RuleError('%s: port %s is outside 1-65535' % (where, _text(value)))
    return number


def parse_port_item(item, where):
    """An int, '5269', '5000-5010' or '5000:5010' -> (low, high)."""
    if isinstance(item, str) and re.match(r'^\s*\d+\s*[-:]\s*\d+\s*$', item):
        low_text, high_text = re.split(r'[-:]', item, maxsplit=1)
        low, high = _port_number(low_text.strip(), where), _port_number(high_text.strip(), where)
        if low > high:
            raise RuleError('%s: port range %s runs backwards' % (where, _text(item)))
        return low, high
    number = _port_number(item, where)
    return number, number


def normalize_ports(value, where):
    """Sorted, overlapping and adjacent ranges merged: [5270, '5269', 80] -> [80, '5269-5270']."""
    items = as_list(value)
    if not items:
        raise RuleError('%s: at least one port is required' % where)
    spans = sorted(parse_port_item(item, where) for item in items)
    merged = []
    for low, high in spans:
        if merged and low <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    return [low if low == high else '%d-%d' % (low, high) for low, high in merged]


def port_spans(ports):
    """Canonical ports -> [(low, high), ...]."""
    return [parse_port_item(item, 'ports') for item in ports]


def kernel_comment(rule):
    """The text a backend stores on each kernel rule: our mark, the name, the comment; see split_kernel_comment."""
    if rule['comment']:
        return RULE_MARK + rule['name'] + KERNEL_COMMENT_SEPARATOR + rule['comment']
    return RULE_MARK + rule['name']


def split_kernel_comment(text):
    """-> (name, comment); (None, '') when the text does not carry our rule mark and a valid name."""
    if not isinstance(text, str) or not text.startswith(RULE_MARK):
        return None, ''
    name, separator, comment = text[len(RULE_MARK):].partition(KERNEL_COMMENT_SEPARATOR)
    if not NAME_PATTERN.match(name):
        return None, ''
    return name, comment if separator else ''


def _choice(rule, field, choices, default, where):
    value = rule.get(field, default)
    if value is None:
        value = default
    if not isinstance(value, str) or value.lower() not in choices:
        raise RuleError("%s: field '%s': %s is not one of %s" % (where, field, _text(value), ', '.join(choices)))
    return value.lower()


def rule_family(rule):
    """4 or 6 when the rule's addresses are all of one family, None when it has none."""
    families = set(family_of(net) for net in rule['source'] + rule['destination'])
    if rule.get('nat_to'):
        families.add(family_of(rule['nat_to']))
    return families.pop() if len(families) == 1 else None


def normalize_rule(rule, where='rule'):
    """Validate one rule and return it in canonical form (see the module docstring)."""
    if not isinstance(rule, dict):
        raise RuleError('%s: %s is not a rule (a dict is expected)' % (where, _text(rule)))
    name = rule.get('name')
    if isinstance(name, str) and NAME_PATTERN.match(name):
        where = '%s (%s)' % (where, name)
    unknown = sorted(str(key) for key in rule if key not in FIELDS)
    if unknown:
        raise RuleError("%s: unknown field %s (known: %s)" % (where, ', '.join("'%s'" % key for key in unknown),
                                                              ', '.join(FIELDS)))
    for field in REQUIRED_FIELDS:
        if rule.get(field) in (None, '', []):
            raise RuleError("%s: field '%s' is required" % (where, field))
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise RuleError("%s: field 'name': %s must be 1-64 letters, digits, '.', '_' or '-', "
                        "starting with a letter or digit" % (where, _text(name)))
    comment = rule.get('comment') or ''
    if not isinstance(comment, str) or COMMENT_FORBIDDEN.search(comment):
        raise RuleError("%s: field 'comment': %s must be text without quotes, backslashes or control characters"
                        % (where, _text(comment)))
    normalized = {
        'name': name,
        'direction': _choice(rule, 'direction', DIRECTIONS, None, where),
        'protocol': _choice(rule, 'protocol', PROTOCOLS, 'tcp', where),
        'ports': normalize_ports(rule.get('ports'), "%s: field 'ports'" % where),
        'source': normalize_networks(rule.get('source'), "%s: field 'source'" % where),
        'destination': normalize_networks(rule.get('destination'), "%s: field 'destination'" % where),
        'action': _choice(rule, 'action', ACTIONS, 'accept', where),
        'comment': comment.strip(),
    }
    if len(kernel_comment(normalized)) > KERNEL_COMMENT_MAX:
        raise RuleError("%s: field 'comment': name and comment together exceed %d characters: %s"
                        % (where, KERNEL_COMMENT_MAX, _text(comment)))
    nat = rule.get('nat')
    if nat not in (None, ''):
        normalized['nat'] = _choice(rule, 'nat', NAT_KINDS, None, where)
        if normalized['direction'] != 'forward':
            raise RuleError("%s: field 'nat': translation is only done on forward rules, not %s"
                            % (where, _text(normalized['direction'])))
        if normalized['action'] != 'accept':
            raise RuleError("%s: field 'action': a translation rule has no verdict other than accept, not %s"
                            % (where, _text(normalized['action'])))
        matched = 'destination' if normalized['nat'] == 'dnat' else 'source'
        if not normalized[matched]:
            raise RuleError("%s: field '%s' is required on a %s rule (the address being translated)"
                            % (where, matched, normalized['nat']))
        if rule.get('nat_to') in (None, ''):
            raise RuleError("%s: field 'nat_to' is required on a %s rule" % (where, normalized['nat']))
        # One address, written without prefix length: it is what the packet is rewritten to.
        normalized['nat_to'] = normalize_host_address(str(rule['nat_to']), "%s: field 'nat_to'" % where).split('/')[0]
    elif rule.get('nat_to') not in (None, ''):
        raise RuleError("%s: field 'nat_to': %s given without 'nat'" % (where, _text(rule.get('nat_to'))))
    families = set(family_of(net) for net in normalized['source'] + normalized['destination'])
    if normalized.get('nat_to'):
        families.add(family_of(normalized['nat_to']))
    if len(families) > 1:
        raise RuleError('%s: mixes IPv4 and IPv6 addresses (source %s, destination %s); '
                        'write one rule per address family' % (where, normalized['source'], normalized['destination']))
    return normalized


def rule_sort_key(rule):
    return rule['name']


def normalize_rules(rules, where='rules'):
    """Validate a host's list; canonical rules sorted by name (the order they take in a chain)."""
    if rules is None:
        return []
    if not isinstance(rules, (list, tuple)):
        raise RuleError('%s: %s is not a list of rules' % (where, _text(rules)))
    normalized = [normalize_rule(rule, '%s[%d]' % (where, index)) for index, rule in enumerate(rules)]
    seen = set()
    for rule in normalized:
        if rule['name'] in seen:
            raise RuleError("%s: name %s is used by more than one rule" % (where, _text(rule['name'])))
        seen.add(rule['name'])
    return sorted(normalized, key=rule_sort_key)


def families_needed(rules):
    """The address families (4, 6) a list's rules must be written to."""
    needed = set()
    for rule in rules:
        family = rule_family(rule)
        needed.update((family,) if family else (4, 6))
    return needed


def sections(rules):
    """Which of our chains a list needs: 'in', 'out', 'forward', 'dnat', 'snat'."""
    return set(rule.get('nat') or rule['direction'] for rule in rules)
