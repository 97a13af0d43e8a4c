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
    source       sorted canonical networks ("198.51.100.7/32"); [] means any; a list of SET_MIN_ADDRESSES or more
                 once merged (a kernel set) with overlapping and adjacent networks merged, as the kernel's sets
                 hold it
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

# ASCII only, so a name's length in characters is its length in bytes. \A and \Z, not ^ and $: '$' also matches
# before a final newline, which would let 'name\n' through into a kernel comment.
NAME_PATTERN = re.compile(r'\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z')
# The kernels store a rule's comment in bytes, not characters: the iptables comment match at most 255 (a 256-byte
# buffer with its NUL), nftables at most 128 (NFTNL_UDATA_COMMENT_MAXLEN). The model refuses what no kernel takes
# (the loosest limit); each backend refuses what its own kernel does not take with check_kernel_comment. Refused,
# not cut: a cut comment reads back different from the rule written, so every later run would report a change.
IPTABLES_COMMENT_MAX_BYTES = 255
NFTABLES_COMMENT_MAX_BYTES = 128
KERNEL_COMMENT_MAX_BYTES = max(IPTABLES_COMMENT_MAX_BYTES, NFTABLES_COMMENT_MAX_BYTES)
# Quotes and backslashes would need escaping in nft and iptables-restore scripts. Control characters (C0, DEL, C1)
# and the Unicode line and paragraph separators: the backends read iptables-save and nft output line by line
# (str.splitlines splits at all of them). Lone surrogates are not text and have no UTF-8 form.
COMMENT_FORBIDDEN = re.compile(r'["\\\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]')
COMMENT_RULES = 'must be text without quotes, backslashes, control characters or line separators'
KERNEL_COMMENT_SEPARATOR = ': '
# Our mark. Every object the collection creates carries it, and only what carries it is ours: nftables tables
# and chains in their comments, jump rules (nftables and iptables) as their whole comment, our policy files in
# their description. Each kernel rule of ours starts its comment with RULE_MARK, then the rule's name.
OUR_MARK = 'lync-xmpp-federation'
RULE_MARK = 'lync-xmpp:'
# A source or destination list of at least this many addresses (after overlapping and adjacent networks are merged)
# is matched through a kernel set of ours (an nftables interval set, an ipset, a firewalld ipset) in one rule,
# instead of one rule per address. A set is a hash/interval lookup whatever its size, a rule list is scanned
# linearly per packet; below four addresses the linear scan costs nothing measurable, and the rules stay readable in
# `nft list`/`iptables -L` without a set object (with its own name, ownership and persistence) to manage. Every
# backend reads this one constant, so a list is a set on one backend exactly when it is on another.
SET_MIN_ADDRESSES = 4


class RuleError(ValueError):
    """Invalid input; the message names where (host/variable/rule) and what."""


def _text(value):
    """A value as a message shows it: text in single quotes, anything unprintable escaped."""
    return "'%s'" % value if isinstance(value, str) and value.isprintable() else repr(value)


HOST_ADDRESS_TYPES = (str, ipaddress.IPv4Address, ipaddress.IPv6Address)
NETWORK_TYPES = HOST_ADDRESS_TYPES + (ipaddress.IPv4Network, ipaddress.IPv6Network)


def _refuse_scope(text, where):
    """Refuse a scoped IPv6 address ('fe80::1%eth0'), which Python's ipaddress parses and neither nft nor iptables.

    Called only on text that did parse, so a '%' in it is a zone; ip_network('fe80::1%eth0/64', strict=False)
    even drops the zone without a word.
    """
    if '%' in text:
        zone = text.partition('%')[2].split('/')[0]
        raise RuleError("%s: %s is a scoped IPv6 address (zone '%s'); nftables and iptables take addresses without "
                        "a zone: write it without '%%%s'" % (where, _text(text), zone, zone))


def normalize_network(value, where):
    """A network or address in canonical form with prefix length.

    '198.51.100.7' -> '198.51.100.7/32'; '2001:DB8::1' -> '2001:db8::1/128';
    '198.51.100.7/24' -> '198.51.100.0/24' (host bits are masked, as nft and
    iptables do).
    """
    if isinstance(value, bool) or not isinstance(value, NETWORK_TYPES):
        raise RuleError('%s: %s is not an IP address or network' % (where, _text(value)))
    text = str(value).strip()
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise RuleError('%s: %s is not a valid IP address or network' % (where, _text(value)))
    _refuse_scope(text, where)
    return str(network)


def _interface(value, where):
    """An address as an interface is written ('198.51.100.7', '198.51.100.7/24') -> ip_interface."""
    if isinstance(value, bool) or not isinstance(value, HOST_ADDRESS_TYPES):
        raise RuleError('%s: %s is not an IP address' % (where, _text(value)))
    text = str(value).strip()
    try:
        interface = ipaddress.ip_interface(text)
    except ValueError:
        raise RuleError('%s: %s is not a valid IP address' % (where, _text(value)))
    _refuse_scope(text, where)
    return interface


def normalize_host_address(value, where):
    """One host's address, as an interface is written: '198.51.100.7/24' -> '198.51.100.7/32'."""
    interface = _interface(value, where)
    return '%s/%d' % (interface.ip, interface.ip.max_prefixlen)


def normalize_nat_address(value, where):
    """The one host address a translation rewrites to, bare: '198.51.100.10' or '198.51.100.10/32' -> '198.51.100.10'.

    Unlike an inventory address, a prefix shorter than the full length is refused: '198.51.100.7/24' could mean
    the host or the network, and nft and iptables would translate to a range or refuse it.
    """
    interface = _interface(value, where)
    address = interface.ip
    if interface.network.prefixlen != address.max_prefixlen:
        raise RuleError('%s: %s is a network, not one host address: write the address alone (or with /%d)'
                        % (where, _text(value), address.max_prefixlen))
    if address.is_unspecified or address.is_multicast or address == ipaddress.IPv4Address('255.255.255.255'):
        raise RuleError('%s: %s is not a host address a packet can be translated to (unspecified, multicast or '
                        'broadcast)' % (where, _text(value)))
    return str(address)


def as_list(value):
    """Inventory style: a string, a list, or nothing."""
    if value is None:
        return []
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    return [value]


@functools.lru_cache(maxsize=65536)
def _parsed_network(network):
    """Canonical text -> ip_network, parsed once: sorting and family checks ask again and again.

    Room for the longest partner lists (tens of thousands of networks): a cache smaller than the list being sorted
    or merged is emptied before any entry is asked for again.
    """
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


@functools.lru_cache(maxsize=256)
def _collapsed(networks):
    return tuple(str(network) for network in ipaddress.collapse_addresses(_parsed_network(net) for net in networks))


def collapse_networks(networks):
    """Canonical networks of one family, overlapping and adjacent ones merged, sorted: what a kernel set holds.

    nftables interval sets refuse overlapping elements and merge adjacent ones into ranges, and an ipset holds a
    /32 beside the /24 that contains it; merged first, the set written is the set read back.  Kept for the lists
    last asked about: every step of a run asks about the same long lists.
    """
    return list(_collapsed(tuple(networks)))


def uses_set(networks):
    """True when a rule's source or destination list (canonical, one family) is matched through a kernel set: when
    it holds SET_MIN_ADDRESSES networks or more once overlapping and adjacent ones are merged."""
    return len(networks) >= SET_MIN_ADDRESSES and len(_collapsed(tuple(networks))) >= SET_MIN_ADDRESSES


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
        raise RuleError('%s: at least one port is required, not %s' % (where, _text(value)))
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


def utf8_length(text, where):
    """The length of text in UTF-8 bytes, as the kernels count it."""
    try:
        return len(text.encode('utf-8'))
    except UnicodeEncodeError:
        raise RuleError('%s: %s is not valid UTF-8 text' % (where, _text(text)))


def check_kernel_comment(rule, limit_bytes, backend_label, where=None):
    """Refuse a rule whose kernel comment takes more than limit_bytes bytes in UTF-8; -> the kernel comment.

    ``rule`` is a normalised rule; ``backend_label`` names what has the limit ('nftables', 'iptables'); ``where``
    defaults to "rule '<name>'". The message names the rule, the field, the value, the byte counts and the limit.
    The model checks KERNEL_COMMENT_MAX_BYTES itself; each backend calls this with its own limit
    (NFTABLES_COMMENT_MAX_BYTES, IPTABLES_COMMENT_MAX_BYTES).
    """
    where = where or 'rule %s' % _text(rule['name'])
    text = kernel_comment(rule)
    used = utf8_length(text, where)
    if used <= limit_bytes:
        return text
    field = 'comment' if rule['comment'] else 'name'
    value = rule[field]
    raise RuleError("%s: field '%s': %s is %d bytes in UTF-8, which makes the rule's kernel comment (%s, the name, "
                    "%s, the comment) %d bytes, more than the %d bytes %s takes: shorten it by %d byte%s"
                    % (where, field, _text(value), utf8_length(value, where), _text(RULE_MARK),
                       _text(KERNEL_COMMENT_SEPARATOR), used, limit_bytes, backend_label, used - limit_bytes,
                       '' if used - limit_bytes == 1 else 's'))


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


def matched_field(rule):
    """The field holding the address a translation rule rewrites: 'destination' for dnat, 'source' for snat."""
    return 'destination' if rule['nat'] == 'dnat' else 'source'


def rule_family(rule):
    """4 or 6 when the rule's addresses are all of one family, None when it has none."""
    families = set(family_of(net) for net in rule['source'] + rule['destination'])
    if rule.get('nat_to'):
        families.add(family_of(rule['nat_to']))
    return families.pop() if len(families) == 1 else None


def _collapse_whole_family(normalized, rule, where):
    """A field holding '0.0.0.0/0' or '::/0' (every address of a family) becomes empty, in place.

    The kernels match a /0 as no address at all (iptables-save prints none), so a /0 kept in the model would never
    read back and every run would report a change. Empty, the field no longer says which family the rule is for:
    that must then follow from the other field or from nat_to, else the rule would open both families, and it is
    refused. A translation needs the address it translates, never every address.
    """
    for field in ('source', 'destination'):
        whole = [net for net in normalized[field] if _parsed_network(net).prefixlen == 0]
        if not whole:
            continue
        normalized[field] = []
        label = 'IPv%d' % family_of(whole[0])
        if rule.get('nat') not in (None, '') and field == ('destination' if rule.get('nat') == 'dnat' else 'source'):
            raise RuleError("%s: field '%s': %s is every %s address; a translation rule needs the address it "
                            "translates" % (where, field, _text(whole[0]), label))
        others = normalized['source'] + normalized['destination']
        if not others and rule.get('nat_to') in (None, ''):
            raise RuleError("%s: field '%s': %s is every %s address, which the kernels match as no address at "
                            "all; leave the field empty for any address of both families, or give the rule an %s "
                            "address in its other field" % (where, field, _text(whole[0]), label, label))


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
            given = '' if rule.get(field) is None else ', not %s' % _text(rule[field])
            raise RuleError("%s: field '%s' is required%s" % (where, field, given))
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise RuleError("%s: field 'name': %s must be 1-64 letters, digits, '.', '_' or '-', "
                        "starting with a letter or digit" % (where, _text(name)))
    comment = rule.get('comment') or ''
    if not isinstance(comment, str) or COMMENT_FORBIDDEN.search(comment):
        raise RuleError("%s: field 'comment': %s %s" % (where, _text(comment), COMMENT_RULES))
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
    for field in ('source', 'destination'):
        # A long list is a kernel set, which holds it merged (nftables interval sets merge overlapping and adjacent
        # networks themselves): merged here, the model says what the kernel will read back, and a rule whose list
        # differs only in a network already covered is the same rule. Shorter lists (fewer than SET_MIN_ADDRESSES
        # networks once merged) are one kernel rule per network and keep their networks as written.
        if len(set(family_of(net) for net in normalized[field])) == 1 and uses_set(normalized[field]):
            normalized[field] = collapse_networks(normalized[field])
    check_kernel_comment(normalized, KERNEL_COMMENT_MAX_BYTES, 'any firewall backend', where)
    families = set(family_of(net) for net in normalized['source'] + normalized['destination'])
    if len(families) > 1:
        raise RuleError("%s: fields 'source' %s and 'destination' %s mix IPv4 and IPv6 addresses; write one rule "
                        "per address family" % (where, normalized['source'], normalized['destination']))
    _collapse_whole_family(normalized, rule, where)
    nat = rule.get('nat')
    if nat not in (None, ''):
        normalized['nat'] = _choice(rule, 'nat', NAT_KINDS, None, where)
        if normalized['direction'] != 'forward':
            raise RuleError("%s: field 'nat': %s is only done on forward rules, and field 'direction' is %s"
                            % (where, _text(normalized['nat']), _text(normalized['direction'])))
        if normalized['action'] != 'accept':
            raise RuleError("%s: field 'action': a translation rule has no verdict other than accept, not %s"
                            % (where, _text(normalized['action'])))
        matched = matched_field(normalized)
        if not normalized[matched]:
            raise RuleError("%s: field '%s' is required on a %s rule (the address being translated)"
                            % (where, matched, normalized['nat']))
        if rule.get('nat_to') in (None, ''):
            raise RuleError("%s: field 'nat_to' is required on a %s rule" % (where, normalized['nat']))
        # One address, written without prefix length: it is what the packet is rewritten to.
        normalized['nat_to'] = normalize_nat_address(rule['nat_to'], "%s: field 'nat_to'" % where)
    elif rule.get('nat_to') not in (None, ''):
        raise RuleError("%s: field 'nat_to': %s given without 'nat'" % (where, _text(rule.get('nat_to'))))
    if normalized.get('nat_to'):
        translated = matched_field(normalized)
        rule_version = family_of(normalized[translated][0])
        nat_version = ipaddress.ip_address(normalized['nat_to']).version
        if nat_version != rule_version:
            raise RuleError("%s: field 'nat_to': %s is an IPv%d address, but field '%s' %s is IPv%d; a translation "
                            "rewrites to an address of the rule's own family"
                            % (where, _text(rule['nat_to']), nat_version, translated, normalized[translated],
                               rule_version))
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
    first_index = {}
    for index, rule in enumerate(normalized):
        earlier = first_index.setdefault(rule['name'], index)
        if earlier != index:
            raise RuleError("%s[%d]: field 'name': %s is already the name of the rule at index %d; each rule of a "
                            "host needs a name of its own" % (where, index, _text(rule['name']), earlier))
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
