# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The nftables backend.

Where our rules go, per section (rule_model.sections) and address family:

    in       lync_xmpp_in    <- jump at the top of the filter base chain at hook input
    out      lync_xmpp_out   <- ... hook output
    forward  lync_xmpp_fwd   <- ... hook forward
    dnat     lync_xmpp_dnat  <- ... the nat base chain at hook prerouting
    snat     lync_xmpp_snat  <- ... the nat base chain at hook postrouting

Our chain lives in the table of the base chain that decides the packet's fate
(a verdict in one table cannot override a drop in another table at the same
hook), so the base chain is chosen among the host's own: policy drop first,
then an inet table, then the earliest priority.  Where the host has no base
chain at a hook, our chain becomes a base chain itself, with policy accept, in
a table of ours (``inet lync_xmpp``), which filters nothing else.

The live state is read once (``nft -j list ruleset``).  The transaction is one
``nft -f`` script, checked first with ``nft -c``, that names only our chains,
our jump rules (deleted by handle) and our table: foreign tables, chains,
rules, their order and chain policies are never named in it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch
import functools
import ipaddress
import json
import os
import re

from ansible_collections.lync.xmpp_federation.plugins.module_utils.backend import (
    FAMILY_LABEL,
    SECTION_ORDER,
    Backend,
    BackendError,
    KeyedValue,
    Transaction,
    port_span_text,
    read_file_or_none,
    remove_file,
    write_file_atomic,
)
from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import (
    NFTABLES_COMMENT_MAX_BYTES,
    OUR_MARK,
    collapse_networks,
    family_of,
    kernel_comment,
    port_spans,
    rule_family,
    split_kernel_comment,
    uses_set,
)

OUR_TABLE = ('inet', 'lync_xmpp')
OUR_CHAINS = {
    'in': 'lync_xmpp_in',
    'out': 'lync_xmpp_out',
    'forward': 'lync_xmpp_fwd',
    'dnat': 'lync_xmpp_dnat',
    'snat': 'lync_xmpp_snat',
}
SECTION_OF_CHAIN = dict((chain, section) for section, chain in OUR_CHAINS.items())
HOOKS = {'in': 'input', 'out': 'output', 'forward': 'forward', 'dnat': 'prerouting', 'snat': 'postrouting'}
CHAIN_TYPES = {'in': 'filter', 'out': 'filter', 'forward': 'filter', 'dnat': 'nat', 'snat': 'nat'}
# The priorities our own base chains get: nft's named priorities filter, dstnat and srcnat.
OWN_PRIORITIES = {'in': 0, 'out': 0, 'forward': 0, 'dnat': -100, 'snat': 100}
TABLE_FAMILIES = {'inet': (4, 6), 'ip': (4,), 'ip6': (6,)}
ADDRESS_KEYWORD = {4: 'ip', 6: 'ip6'}
NFPROTO = {4: 'ipv4', 6: 'ipv6'}
INCLUDE_MARKER = '# lync.xmpp_federation: XMPP federation rules (firewall_ruleset)'
INCLUDE_LINE = re.compile(r'^\s*include\s+"([^"]+)"\s*(#.*)?$')
# Where the nftables service of each distribution family loads its ruleset from, and where files it includes
# conventionally live: (main configuration, our file). The first whose main configuration exists is taken;
# the last is the default where none exists yet. RHEL, CentOS and Fedora load /etc/sysconfig/nftables.conf
# (which includes files under /etc/nftables/); Debian and Ubuntu load /etc/nftables.conf.
PERSISTENCE_LAYOUTS = (
    ('/etc/sysconfig/nftables.conf', '/etc/nftables/lync-xmpp-federation.nft'),
    ('/etc/nftables.conf', '/etc/nftables.d/lync-xmpp-federation.nft'),
)
UNSAFE_PATH = re.compile(r'["\\*?\[\]\x00-\x1f\x7f]')
ERROR_LINE = re.compile(r'^(?:/dev/stdin|-):(\d+):[\d-]+: Error: (.*)$')


def table_text(table):
    """('inet', 'filter') -> 'inet filter', as nft commands name a table."""
    return '%s %s' % table


def parse_table_option(value):
    """'inet filter' -> ('inet', 'filter'); raises BackendError naming the option."""
    words = (value or '').split()
    if len(words) != 2 or words[0] not in TABLE_FAMILIES or not re.match(r'^[A-Za-z][A-Za-z0-9_.-]*$', words[1]):
        raise BackendError("nftables: nft_table: %r must be FAMILY NAME with FAMILY one of inet, ip, ip6 "
                           "(for example 'inet filter')" % (value,))
    return words[0], words[1]


# -- kernel rules: one model rule as the kernel holds it ------------------------

def network_text(network):
    """'198.51.100.7/32' -> '198.51.100.7'; networks keep their prefix length (as nft prints them)."""
    address, _slash, length = network.partition('/')
    return address if length == ('32' if family_of(network) == 4 else '128') else network


def addresses_text(addresses):
    """One network, or a tuple of them (an anonymous interval set), as nft takes it."""
    if isinstance(addresses, tuple):
        return '{ %s }' % ', '.join(network_text(network) for network in addresses)
    return network_text(addresses)


def addresses_family(addresses):
    """4 or 6: the family of one network or of a set's networks (a set holds one family)."""
    return family_of(addresses[0] if isinstance(addresses, tuple) else addresses)


def address_matches(networks):
    """What one kernel rule matches of a model rule's source or destination list, one item per kernel rule.

    A list of SET_MIN_ADDRESSES or more becomes one anonymous interval set (a tuple of its networks, merged as
    the kernel merges them), so that one rule matches the whole list by lookup; one network left after merging
    is matched as itself, since that is how nft lists it.  A shorter list gives one rule per network, and an
    empty one (any address) a rule without the match.
    """
    if not networks:
        return [None]
    if uses_set(networks):
        merged = collapse_networks(networks)
        return [tuple(merged) if len(merged) > 1 else merged[0]]
    return list(networks)


def ports_text(spans):
    texts = [port_span_text(span, '-') for span in spans]
    return texts[0] if len(texts) == 1 else '{ %s }' % ', '.join(texts)


class KernelRule(KeyedValue):
    """One nft rule of ours, in a form built from a model rule and read back from ``nft -j`` alike.

    ``nfproto`` is 4 or 6 only where an inet chain serves one family and the
    rule has no address that would say which; ``source`` and ``destination``
    are None, one canonical network, or a tuple of them (an anonymous set);
    ``verdict`` is 'accept', 'drop',
    'reject', ('dnat', address) or ('snat', address).
    """

    __slots__ = ('nfproto', 'source', 'destination', 'protocol', 'ports', 'verdict', 'comment')

    def __init__(self, nfproto, source, destination, protocol, ports, verdict, comment):
        self.nfproto, self.source, self.destination = nfproto, source, destination
        self.protocol, self.ports, self.verdict, self.comment = protocol, tuple(ports), verdict, comment

    def key(self):
        return (self.nfproto, self.source, self.destination, self.protocol, self.ports, self.verdict, self.comment)

    def text(self, table_family):
        """The rule's nft syntax, after ``add rule FAMILY TABLE CHAIN``."""
        words = []
        if self.nfproto:
            words.append('meta nfproto %s' % NFPROTO[self.nfproto])
        for field, network in (('saddr', self.source), ('daddr', self.destination)):
            if network:
                words.append('%s %s %s' % (ADDRESS_KEYWORD[addresses_family(network)], field,
                                           addresses_text(network)))
        words.append('%s dport %s' % (self.protocol, ports_text(self.ports)))
        words.append('counter')
        if isinstance(self.verdict, tuple):
            kind, address = self.verdict
            family = ADDRESS_KEYWORD[ipaddress.ip_address(address).version]
            # In an inet table nft must be told the family of the address; ip and ip6 tables know it.
            words.append('%s %sto %s' % (kind, family + ' ' if table_family == 'inet' else '', address))
        else:
            words.append(self.verdict)
        words.append('comment "%s"' % self.comment)
        return ' '.join(words)

    def families(self, table_family):
        """The address families this kernel rule applies to."""
        for network in (self.source, self.destination):
            if network:
                return (addresses_family(network),)
        if isinstance(self.verdict, tuple):
            return (ipaddress.ip_address(self.verdict[1]).version,)
        if self.nfproto:
            return (self.nfproto,)
        return TABLE_FAMILIES[table_family]


def kernel_rules(rule, table_family, families):
    """The kernel rules for one model rule in a chain of ``table_family`` serving ``families``.

    One kernel rule per (source, destination) pair of short lists: nft merges
    overlapping addresses in a set (a /32 inside a listed /24 vanishes), which
    would make the rules read back differ from the rules written.  A long list
    (SET_MIN_ADDRESSES) is one anonymous interval set, merged before it is
    written (see address_matches).  Ports stay together in one set; the model
    has already merged them.
    """
    family = rule_family(rule)
    here = sorted(set(families) & (set([family]) if family else set(TABLE_FAMILIES[table_family])))
    if not here:
        return []
    if rule.get('nat'):
        verdict = (rule['nat'], rule['nat_to'])
    else:
        verdict = rule['action']
    # An inet chain that serves one family only (the other family's rules live in another table) must not
    # let a rule without addresses match the other family too.
    nfprotos = here if family is None and table_family == 'inet' and len(here) == 1 else [None]
    spans = port_spans(rule['ports'])
    return [KernelRule(nfproto, source, destination, rule['protocol'], spans, verdict, kernel_comment(rule))
            for nfproto in nfprotos
            for source in address_matches(rule['source'])
            for destination in address_matches(rule['destination'])]


@functools.lru_cache(maxsize=65536)
def _canonical_network(text):
    """'198.51.100.7' -> '198.51.100.7/32', as the rule model writes it; None when it is no network."""
    try:
        return str(ipaddress.ip_network(text))
    except ValueError:
        return None


def _parse_set(items):
    """An anonymous set's elements -> a tuple of canonical networks merged as address_matches merges them, or one
    network when the set holds one; None when an element is no address, prefix or range, or families mix."""
    networks = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get('range'), list) and len(item['range']) == 2:
            try:
                low, high = (ipaddress.ip_address(end) for end in item['range'])
                networks += [str(network) for network in ipaddress.summarize_address_range(low, high)]
            except (TypeError, ValueError):
                return None
            continue
        network = _parse_network(item)
        if network is None:
            return None
        networks.append(network)
    if not networks or len(set(family_of(network) for network in networks)) != 1:
        return None
    merged = collapse_networks(networks)
    return tuple(merged) if len(merged) > 1 else merged[0]


def _parse_network(right):
    """A match's right-hand side -> a canonical network, a tuple of them (a set), or None when it is neither."""
    if isinstance(right, dict) and 'set' in right:
        if not isinstance(right['set'], list):
            return None
        return _parse_set(right['set'])
    if isinstance(right, str):
        return _canonical_network(right)
    if isinstance(right, dict) and isinstance(right.get('prefix'), dict):
        prefix = right['prefix']
        if isinstance(prefix.get('addr'), str) and isinstance(prefix.get('len'), int):
            return _canonical_network('%s/%d' % (prefix['addr'], prefix['len']))
    return None


def _parse_ports(right):
    """A dport match's right-hand side -> sorted spans, or None."""
    items = right['set'] if isinstance(right, dict) and 'set' in right else [right]
    spans = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            spans.append((item, item))
        elif isinstance(item, dict) and isinstance(item.get('range'), list) and len(item['range']) == 2:
            spans.append((int(item['range'][0]), int(item['range'][1])))
        else:
            return None
    return sorted(spans)


def parse_kernel_rule(rule):
    """A rule of ``nft -j list ruleset`` -> KernelRule, or None when it is not in a form we write."""
    fields = {'nfproto': None, 'saddr': None, 'daddr': None, 'protocol': None, 'ports': None, 'verdict': None}
    counter = False
    for expression in rule.get('expr', []):
        if not isinstance(expression, dict) or len(expression) != 1:
            return None
        kind, body = list(expression.items())[0]
        if kind == 'match':
            if body.get('op') not in ('==', 'in'):
                return None
            left, right = body.get('left') or {}, body.get('right')
            if isinstance(left, dict) and left.get('meta', {}).get('key') == 'nfproto':
                fields['nfproto'] = {'ipv4': 4, 'ipv6': 6}.get(right)
                if fields['nfproto'] is None:
                    return None
                continue
            payload = left.get('payload') if isinstance(left, dict) else None
            if not payload:
                return None
            protocol, field = payload.get('protocol'), payload.get('field')
            if protocol in ('ip', 'ip6') and field in ('saddr', 'daddr') and fields[field] is None:
                fields[field] = _parse_network(right)
                if fields[field] is None or ADDRESS_KEYWORD[addresses_family(fields[field])] != protocol:
                    return None
            elif protocol in ('tcp', 'udp') and field == 'dport' and fields['ports'] is None:
                fields['protocol'], fields['ports'] = protocol, _parse_ports(right)
                if fields['ports'] is None:
                    return None
            else:
                return None
        elif kind == 'counter':
            counter = True
        elif kind in ('accept', 'drop', 'reject') and fields['verdict'] is None:
            fields['verdict'] = kind
        elif kind in ('dnat', 'snat') and fields['verdict'] is None and isinstance(body, dict):
            if set(body) - set(['addr', 'family']) or not isinstance(body.get('addr'), str):
                return None
            fields['verdict'] = (kind, body['addr'])
        else:
            return None
    if not counter or fields['verdict'] is None or fields['ports'] is None:
        return None
    return KernelRule(fields['nfproto'], fields['saddr'], fields['daddr'], fields['protocol'], fields['ports'],
                      fields['verdict'], rule.get('comment') or '')


def _as_list(addresses):
    if isinstance(addresses, tuple):
        return list(addresses)
    return [addresses] if addresses else []


def kernel_rule_piece(kernel_rule, section, table_family):
    """One kernel rule of ours -> a piece for backend.group_kernel_rules; None when its comment is not ours."""
    name, comment = split_kernel_comment(kernel_rule.comment)
    if name is None:
        return None
    piece = {
        'name': name, 'comment': comment, 'protocol': kernel_rule.protocol,
        'direction': 'forward' if section in ('dnat', 'snat') else section,
        'action': 'accept' if isinstance(kernel_rule.verdict, tuple) else kernel_rule.verdict,
        'nat': None, 'nat_to': None,
        'families': kernel_rule.families(table_family),
        'source': _as_list(kernel_rule.source),
        'destination': _as_list(kernel_rule.destination),
        'ports': list(kernel_rule.ports),
    }
    if isinstance(kernel_rule.verdict, tuple):
        piece['nat'], piece['nat_to'] = kernel_rule.verdict
        if piece['nat'] != section:
            return None
    return piece


# -- the live ruleset -------------------------------------------------------------

LISTING_TABLE = re.compile(r'^table (\S+) (\S+) \{')
LISTING_CHAIN = re.compile(r'^\tchain (\S+) \{')
LISTING_COMMENT = re.compile(r'^\t{1,2}comment "(.*)"$')
LISTING_RULE = re.compile(r'^\t\t(.*\S) # handle (\d+)$')


def _unquote(name):
    return name[1:-1] if len(name) > 1 and name[0] == name[-1] == '"' else name


class Ruleset(object):
    """``nft -j list ruleset``, indexed: tables, chains (with their hook properties), rules in chain order.

    nft (1.0.6 at least) leaves table and chain comments, where our mark is,
    out of its JSON; ``add_listing`` takes them, and each rule's text for
    messages, from ``nft -a list ruleset``.
    """

    def __init__(self, document):
        self.tables = []
        self.chains = {}      # (family, table, chain) -> {'type', 'hook', 'prio', 'policy'} or None (regular)
        self.rules = {}       # (family, table, chain) -> [rule dicts, in order]
        self.objects = {}     # (family, table) -> [(kind, name)]: sets, maps, flowtables, stateful objects
        self.comments = {}    # (family, table) or (family, table, chain) -> comment, from add_listing
        self.rule_texts = {}  # (family, table, chain, handle) -> the rule as nft prints it
        for item in (document or {}).get('nftables', []):
            if 'table' in item:
                self.tables.append((item['table']['family'], item['table']['name']))
            elif 'chain' in item:
                chain = item['chain']
                key = (chain['family'], chain['table'], chain['name'])
                self.chains[key] = (dict((field, chain.get(field)) for field in ('type', 'hook', 'prio', 'policy'))
                                    if 'hook' in chain else None)
                self.rules.setdefault(key, [])
                if 'comment' in chain:
                    self.comments[key] = chain['comment']
            elif 'rule' in item:
                rule = item['rule']
                self.rules.setdefault((rule['family'], rule['table'], rule['chain']), []).append(rule)
            else:
                for kind, body in item.items():
                    if kind != 'metainfo' and isinstance(body, dict) and 'table' in body:
                        self.objects.setdefault((body.get('family'), body['table']), []).append(
                            (kind, body.get('name')))

    @classmethod
    def from_text(cls, text):
        try:
            return cls(json.loads(text or '{}'))
        except ValueError as error:
            raise BackendError('nftables: cannot read the output of nft -j list ruleset: %s' % error)

    def has_our_names(self):
        """True when a table or chain carries one of our names: only then do marks need reading."""
        if any(table == OUR_TABLE[1] for _family, table in self.tables):
            return True
        return any(chain in SECTION_OF_CHAIN for _family, _table, chain in self.chains)

    def add_listing(self, text):
        """Table and chain comments and rule texts from ``nft -a list ruleset``."""
        table = chain = None
        depth = 0
        for line in text.splitlines():
            code = re.sub(r' # handle \d+$', '', line)
            if code.strip() == '}':
                depth -= 1
                if depth == 1:
                    chain = None
                elif depth == 0:
                    table = None
                continue
            match = LISTING_TABLE.match(line) if depth == 0 else None
            if match:
                table, depth = (match.group(1), _unquote(match.group(2))), 1
                continue
            match = LISTING_CHAIN.match(line) if depth == 1 else None
            if match:
                chain, depth = _unquote(match.group(1)), 2
                continue
            if code.rstrip().endswith('{'):
                depth += 1
                continue
            if table is None:
                continue
            comment = LISTING_COMMENT.match(line)
            if comment and ' # handle ' not in line and depth == (2 if chain else 1):
                self.comments.setdefault(table + ((chain,) if chain else ()), comment.group(1))
                continue
            rule = LISTING_RULE.match(line) if chain and depth == 2 else None
            if rule:
                self.rule_texts[(table[0], table[1], chain, int(rule.group(2)))] = rule.group(1)

    def marked(self, key):
        """True when the table (family, name) or chain (family, table, name) carries our mark."""
        return self.comments.get(key) == OUR_MARK

    def rule_text(self, key, rule):
        return self.rule_texts.get(key + (rule.get('handle'),)) or 'handle %s' % rule.get('handle')

    def base_chains(self, chain_type, hook, family):
        """[(table, chain, properties)] of the given type at the given hook that can see ``family``'s packets."""
        def sees(properties, table_family):
            return all((properties, (properties or {}).get('type') == chain_type,
                        (properties or {}).get('hook') == hook, family in TABLE_FAMILIES.get(table_family, ())))
        return [((table_family, table), chain, properties)
                for (table_family, table, chain), properties in self.chains.items() if sees(properties, table_family)]


def _jump_targets(node):
    """Every chain a rule jumps or goes to, verdict maps included (a jump may sit deep inside an expression)."""
    if isinstance(node, dict):
        targets = []
        for kind, body in node.items():
            if kind in ('jump', 'goto') and isinstance(body, dict) and isinstance(body.get('target'), str):
                targets.append(body['target'])
            else:
                targets += _jump_targets(body)
        return targets
    if isinstance(node, list):
        return [target for item in node for target in _jump_targets(item)]
    return []


class Ownership(object):
    """What of a ruleset is ours, by our mark, and what only carries one of our names.

    ``chains``   {(table, chain): properties} our chains: named and marked as ours
    ``own_table``  True when our table exists and is marked
    ``jumps``    [(table, chain, index, target, exact, handle)] our marked jumps into our chains
    ``foreign``  {(table, chain or None): description} objects named like ours without our mark: never
                 touched, and in the way only where the run would put ours
    ``tainted``  descriptions of foreign content in or into what is ours (a rule without our mark in our
                 chain, a foreign jump into it, a foreign chain or set in our table): the run cannot change
                 ours without touching it, so it refuses
    """

    def __init__(self, ruleset):
        self.chains, self.own_table, self.jumps, self.foreign, self.tainted = {}, False, [], {}, []
        for table in ruleset.tables:
            if table[1] != OUR_TABLE[1]:
                continue
            if table == OUR_TABLE and ruleset.marked(table):
                self.own_table = True
            else:
                self.foreign[(table, None)] = ('table %s is named like ours but lacks our mark (comment "%s")'
                                               % (table_text(table), OUR_MARK))
        for (family, table_name, chain), properties in sorted(ruleset.chains.items(), key=str):
            table = (family, table_name)
            if (table, None) in self.foreign:
                continue
            where = 'table %s, chain %s' % (table_text(table), chain)
            if table == OUR_TABLE and self.own_table:
                if chain in SECTION_OF_CHAIN and ruleset.marked((family, table_name, chain)):
                    self.chains[(table, chain)] = properties
                else:
                    self.tainted.append('%s: our table holds a chain that is not ours' % where)
            elif chain in SECTION_OF_CHAIN:
                if ruleset.marked((family, table_name, chain)):
                    self.chains[(table, chain)] = properties
                else:
                    rules = ruleset.rules.get((family, table_name, chain), [])
                    held = '; its rules: %s' % '; '.join(
                        ruleset.rule_text((family, table_name, chain), rule) for rule in rules[:3]) if rules else ''
                    self.foreign[(table, chain)] = '%s is named like ours but lacks our mark (comment "%s")%s' % (
                        where, OUR_MARK, held)
        if self.own_table:
            for kind, name in ruleset.objects.get(OUR_TABLE, []):
                self.tainted.append('table %s: our table holds a %s %s that is not ours'
                                    % (table_text(OUR_TABLE), kind, name))
        for (table, chain) in sorted(self.chains, key=str):
            key = (table[0], table[1], chain)
            for rule in ruleset.rules.get(key, []):
                if split_kernel_comment(rule.get('comment'))[0] is None:
                    self.tainted.append('table %s, chain %s: holds a rule that is not ours (%s)'
                                        % (table_text(table), chain, ruleset.rule_text(key, rule)))
        for (family, table_name, chain), rules in sorted(ruleset.rules.items(), key=str):
            table = (family, table_name)
            if (table, chain) in self.chains or (table == OUR_TABLE and self.own_table):
                continue
            for index, rule in enumerate(rules):
                for target in _jump_targets(rule.get('expr', [])):
                    if (table, target) not in self.chains:
                        continue
                    if rule.get('comment') == OUR_MARK:
                        exact = rule.get('expr') == [{'jump': {'target': target}}]
                        self.jumps.append((table, chain, index, target, exact, rule.get('handle')))
                    else:
                        self.tainted.append('table %s, chain %s: a rule that is not ours jumps to our chain %s (%s)'
                                            % (table_text(table), chain, target,
                                               ruleset.rule_text((family, table_name, chain), rule)))


# -- the backend --------------------------------------------------------------------

class Placement(object):
    """Where one chain of ours goes: its table, whether it is a base chain of ours, the base chain that jumps to it."""

    def __init__(self, section, table, jump_from, own_base):
        self.section, self.table, self.jump_from, self.own_base = section, table, jump_from, own_base
        self.chain = OUR_CHAINS[section]
        self.families = set()

    @property
    def key(self):
        return (self.table, self.chain)

    def base_properties(self):
        if not self.own_base:
            return None
        return {'type': CHAIN_TYPES[self.section], 'hook': HOOKS[self.section],
                'prio': OWN_PRIORITIES[self.section], 'policy': 'accept'}

    def declaration(self):
        if not self.own_base:
            return 'add chain %s %s { comment "%s"; }' % (table_text(self.table), self.chain, OUR_MARK)
        return 'add chain %s %s { comment "%s"; type %s hook %s priority %d; policy accept; }' % (
            table_text(self.table), self.chain, OUR_MARK, CHAIN_TYPES[self.section], HOOKS[self.section],
            OWN_PRIORITIES[self.section])


def table_declaration(table):
    return 'add table %s { comment "%s"; }' % (table_text(table), OUR_MARK)


class NftablesBackend(Backend):
    """nftables through the ``nft`` command; ``ruleset_text`` is the JSON detection already read, if any."""

    name = 'nftables'
    comment_limit = NFTABLES_COMMENT_MAX_BYTES

    def __init__(self, run_command, get_bin_path, options, ruleset_text=None, lock=None):
        super(NftablesBackend, self).__init__(run_command, get_bin_path, options, lock=lock)
        self.nft = None
        self.ruleset = None
        self.ownership = None
        self._preloaded = ruleset_text
        self.live_chains = {}
        self._layouts = {}

    def check(self, rules, state):
        """Refuse paths that would not stand as themselves in an nft include line (quotes, control characters,
        glob characters that nft would expand) or that are relative, before anything is read."""
        for option in ('nft_persist_file', 'nft_main_config'):
            value = self.options.get(option)
            if value and (not value.startswith('/') or UNSAFE_PATH.search(value)):
                raise BackendError('nftables: %s: %r must be an absolute path without quotes, backslashes, control '
                                   'characters or the glob characters * ? [ ]' % (option, value))

    # -- reading ----------------------------------------------------------------
    def _nft(self):
        if self.nft is None:
            self.nft = self.get_bin_path('nft')
            if not self.nft:
                raise BackendError('nftables: the nft command was not found')
        return self.nft

    def _list(self, *args):
        argv = [self._nft()] + list(args) + ['list', 'ruleset']
        rc, out, err = self.run_command(argv)
        if rc != 0:
            raise BackendError('nftables: nft %s failed (%d): %s; nothing was changed'
                               % (' '.join(argv[1:]), rc, (err or out).strip()))
        return out

    def read(self):
        text = self._preloaded
        self._preloaded = None
        if text is None:
            text = self._list('-j')
        self.ruleset = Ruleset.from_text(text)
        if self.ruleset.has_our_names():
            self.ruleset.add_listing(self._list('-a'))
        self.ownership = Ownership(self.ruleset)
        self._layouts = {}
        # Each rule of ours is parsed once: the comparison and the grouping below both work from this.
        self.live_chains, self.pieces, self.parse_problems = {}, [], []
        for (table, chain), _properties in sorted(self.ownership.chains.items()):
            section = SECTION_OF_CHAIN[chain]
            parsed = self.live_chains[(table, chain)] = []
            for rule in self.ruleset.rules.get((table[0], table[1], chain), []):
                kernel_rule = parse_kernel_rule(rule)
                piece = kernel_rule_piece(kernel_rule, section, table[0]) if kernel_rule else None
                parsed.append(kernel_rule)
                if piece is None:
                    self.parse_problems.append("nftables: chain %s %s holds a rule not in a form we write (%s)"
                                               % (table_text(table), chain,
                                                  self.ruleset.rule_text((table[0], table[1], chain), rule)))
                else:
                    self.pieces.append(piece)
        self.live_rules, self.grouping_problems = None, []

    def foreign_objects(self, rules):
        ownership = self.ownership
        in_the_way = list(ownership.tainted)
        wanted = set()
        for placement in self.layout(rules):
            wanted.add((placement.table, placement.chain))
            if placement.table == OUR_TABLE:
                wanted.add((OUR_TABLE, None))
        for key, description in sorted(ownership.foreign.items(), key=str):
            if key in wanted:
                how = ('rename or delete that table' if key[1] is None else
                       'rename that chain, or point nft_table/base_chains at another table')
                in_the_way.append('%s, and the rules need that name there (%s)' % (description, how))
            else:
                self.notices.append('nftables: left alone: %s' % description)
        return in_the_way

    # -- placement ----------------------------------------------------------------
    def _option_table(self):
        value = self.options.get('nft_table')
        return parse_table_option(value) if value else None

    def _named_base(self, section):
        return (self.options.get('base_chains') or {}).get(section) if section in ('in', 'out', 'forward') else None

    def _choose_base(self, section, family):
        """(table, base chain) our chain for ``section`` hangs from for ``family``; (OUR_TABLE, None): our own."""
        chain_type, hook = CHAIN_TYPES[section], HOOKS[section]
        if chain_type == 'nat':
            # A translation needs no verdict of anyone else's table: ours are base chains of our own table, at the
            # dstnat and srcnat priorities, so no foreign nat table (Docker's, iptables-nft's) is ever written to.
            return OUR_TABLE, None
        wanted_table, wanted_chain = self._option_table(), self._named_base(section)
        candidates = [candidate for candidate in self.ruleset.base_chains(chain_type, hook, family)
                      if candidate[0] != OUR_TABLE and candidate[1] not in SECTION_OF_CHAIN]
        if wanted_table:
            if wanted_table not in self.ruleset.tables:
                raise BackendError('nftables: nft_table %r does not exist on this host' % table_text(wanted_table))
            if family not in TABLE_FAMILIES[wanted_table[0]]:
                raise BackendError("nftables: nft_table %r cannot hold %s rules, and the rules need them"
                                   % (table_text(wanted_table), FAMILY_LABEL[family]))
            candidates = [candidate for candidate in candidates if candidate[0] == wanted_table]
        if wanted_chain:
            named = [candidate for candidate in candidates if candidate[1] == wanted_chain]
            if not named:
                where = " in table %r" % table_text(wanted_table) if wanted_table else ''
                raise BackendError("nftables: base_chains.%s: no %s base chain %r at hook %s%s can see %s packets"
                                   % (section, chain_type, wanted_chain, hook, where, FAMILY_LABEL[family]))
            candidates = named
        if not candidates:
            if wanted_table and chain_type == 'filter':
                raise BackendError("nftables: nft_table %r has no filter base chain at hook %s; name an existing "
                                   "one with base_chains.%s" % (table_text(wanted_table), hook, section))
            return OUR_TABLE, None
        # The chain that decides the packet's fate: policy drop first, then inet, then the earliest priority;
        # names last, so that the choice is stable.
        best = min(candidates, key=lambda candidate: (
            candidate[2].get('policy') != 'drop', candidate[0][0] != 'inet', candidate[2].get('prio') or 0,
            candidate[0][1] != 'filter', candidate[0], candidate[1]))
        return best[0], best[1]

    def layout(self, rules):
        """[Placement] for ``rules``, in section order; raises BackendError when a placement is impossible."""
        cache_key = json.dumps(rules, sort_keys=True)
        if cache_key in self._layouts:
            return self._layouts[cache_key]
        placements = {}
        for section in SECTION_ORDER:
            in_section = [rule for rule in rules if (rule.get('nat') or rule['direction']) == section]
            families = set()
            for rule in in_section:
                family = rule_family(rule)
                families.update([family] if family else [4, 6])
            for family in sorted(families):
                table, base = self._choose_base(section, family)
                key = (table, OUR_CHAINS[section])
                placement = placements.get(key)
                if placement is None:
                    placement = placements[key] = Placement(section, table, base, base is None)
                elif placement.jump_from != base:
                    raise BackendError('nftables: %s rules of both families would need chain %s in table %r '
                                       'entered from two base chains (%s, %s)'
                                       % (section, placement.chain, table_text(table), placement.jump_from, base))
                placement.families.add(family)
        result = sorted(placements.values(), key=lambda item: (SECTION_ORDER.index(item.section), item.table))
        seen = {}
        for placement in result:
            if placement.jump_from:
                origin = (placement.table, placement.jump_from)
                if origin in seen:
                    raise BackendError("nftables: base chain %r of table %r would have to be first for both %s and "
                                       "%s; name distinct base chains with base_chains"
                                       % (placement.jump_from, table_text(placement.table), seen[origin],
                                          placement.section))
                seen[origin] = placement.section
        self._layouts[cache_key] = result
        return result

    def chain_contents(self, placement, rules):
        """The kernel rules of one chain of ours, in the order they must stand."""
        table_family = placement.table[0]
        return [kernel_rule for rule in rules if (rule.get('nat') or rule['direction']) == placement.section
                for kernel_rule in kernel_rules(rule, table_family, placement.families)]

    # -- comparing ----------------------------------------------------------------
    def _jumps_kept(self, placements):
        """The placements whose one jump is already in place: exactly one, exact, first in the right chain."""
        jumps = self.ownership.jumps
        kept = set()
        for placement in placements:
            if not placement.jump_from:
                continue
            to_it = [jump for jump in jumps if jump[0] == placement.table and jump[3] == placement.chain]
            if len(to_it) == 1 and to_it[0][1] == placement.jump_from and to_it[0][2] == 0 and to_it[0][4]:
                kept.add(placement.key)
        return kept

    def _chain_in_place(self, placement, rules):
        if placement.key not in self.ownership.chains:
            return False
        if self.ownership.chains[placement.key] != placement.base_properties():
            return False
        return self.live_chains.get(placement.key) == self.chain_contents(placement, rules)

    def in_place(self, rules):
        if self.parse_problems:
            return False
        placements = self.layout(rules)
        wanted = set(placement.key for placement in placements)
        if set(self.ownership.chains) != wanted:
            return False
        if self.ownership.own_table != any(placement.table == OUR_TABLE for placement in placements):
            return False
        if not all(self._chain_in_place(placement, rules) for placement in placements):
            return False
        kept = self._jumps_kept(placements)
        jumping = [placement for placement in placements if placement.jump_from]
        return len(kept) == len(jumping) and len(self.ownership.jumps) == len(jumping)

    def present_anywhere(self):
        return bool(self.ownership.chains or self.ownership.jumps or self.ownership.own_table)

    # -- writing ----------------------------------------------------------------
    def plan(self, rules):
        """One ``nft -f`` script naming only our table, our chains and our jumps (deleted by handle)."""
        placements = self.layout(rules)
        wanted = set(placement.key for placement in placements)
        kept = self._jumps_kept(placements)
        ours = self.ownership.chains
        own_table_wanted = any(placement.table == OUR_TABLE for placement in placements)
        lines = ['# lync-xmpp-federation: nft -f']
        if own_table_wanted:
            lines.append(table_declaration(OUR_TABLE))
        for placement in placements:
            live_properties = ours.get(placement.key, 'absent')
            if live_properties not in ('absent', placement.base_properties()):
                # A chain's hook cannot be changed in place: make it anew.
                lines += ['flush chain %s %s' % (table_text(placement.table), placement.chain),
                          'delete chain %s %s' % (table_text(placement.table), placement.chain)]
            lines.append(placement.declaration())
        # Jumps first: a chain cannot be deleted while a rule still jumps to it.
        for table, chain, _index, target, _exact, handle in sorted(self.ownership.jumps, key=str):
            if (table, target) not in kept:
                lines.append('delete rule %s %s handle %d' % (table_text(table), chain, handle))
        for placement in placements:
            lines.append('flush chain %s %s' % (table_text(placement.table), placement.chain))
            lines += ['add rule %s %s %s' % (table_text(placement.table), placement.chain,
                                             kernel_rule.text(placement.table[0]))
                      for kernel_rule in self.chain_contents(placement, rules)]
        for placement in placements:
            if placement.jump_from and placement.key not in kept:
                # insert without a position puts the rule first in the chain.
                lines.append('insert rule %s %s jump %s comment "%s"' % (
                    table_text(placement.table), placement.jump_from, placement.chain, OUR_MARK))
        for table, chain in sorted(ours):
            if (table, chain) in wanted or (table == OUR_TABLE and not own_table_wanted):
                continue
            lines += ['flush chain %s %s' % (table_text(table), chain),
                      'delete chain %s %s' % (table_text(table), chain)]
        if self.ownership.own_table and not own_table_wanted:
            lines.append('delete table %s' % table_text(OUR_TABLE))
        return Transaction([('nft -f', '\n'.join(lines) + '\n', None)])

    def _explain(self, script, out, err):
        """nft's message, with the script line it names and the rule of ours on it."""
        lines = script.splitlines()
        details = []
        for line in (err or out or '').splitlines():
            match = ERROR_LINE.match(line.strip())
            if not match:
                continue
            number = int(match.group(1))
            text = lines[number - 1] if 0 < number <= len(lines) else ''
            comment = re.search(r'comment "([^"]*)"\s*$', text)
            name = split_kernel_comment(comment.group(1))[0] if comment else None
            details.append('line %d%s: %s (%s)' % (number, " (rule '%s')" % name if name else '', match.group(2),
                                                   text))
        return '; '.join(details) or ' '.join((err or out or 'no message').split())

    def apply(self, transaction):
        nft = self._nft()
        for _label, script, _payload in transaction.steps:
            rc, out, err = self.run_command([nft, '-c', '-f', '-'], data=script, binary_data=True)
            if rc != 0:
                raise BackendError('nftables: the transaction was refused, %s; nothing was changed'
                                   % self._explain(script, out, err))
            # One nft -f is one kernel transaction: all of it is committed, or none.
            rc, out, err = self.run_command([nft, '-f', '-'], data=script, binary_data=True)
            if rc != 0:
                raise BackendError('nftables: the kernel refused the transaction, %s; the ruleset is as it was '
                                   'before this run' % self._explain(script, out, err))

    # -- persistence ----------------------------------------------------------------
    def persist_file(self):
        return self.options.get('nft_persist_file') or self.persistence_layout()[1]

    def main_config(self):
        return self.options.get('nft_main_config') or self.persistence_layout()[0]

    def persistence_layout(self, exists=os.path.exists):
        """(main configuration, our file) of this host's distribution family; see PERSISTENCE_LAYOUTS."""
        for layout in PERSISTENCE_LAYOUTS:
            if exists(layout[0]):
                return layout
        return PERSISTENCE_LAYOUTS[-1]

    def persisted_text(self, rules):
        """Our file: loaded after the admin's configuration (which flushes the ruleset), it rebuilds our part."""
        lines = ['#!/usr/sbin/nft -f',
                 '# Written by lync.xmpp_federation.firewall_ruleset: this host\'s XMPP federation rules.',
                 '# Included from %s; loading that file reproduces the live state. The next run' % self.main_config(),
                 '# rewrites this file: change the inventory, not this file.']
        placements = self.layout(rules)
        for placement in placements:
            table = table_text(placement.table)
            lines += ['', table_declaration(placement.table) if placement.table == OUR_TABLE else 'add table %s' % table,
                      placement.declaration(), 'flush chain %s %s' % (table, placement.chain)]
            lines += ['add rule %s %s %s' % (table, placement.chain, kernel_rule.text(placement.table[0]))
                      for kernel_rule in self.chain_contents(placement, rules)]
            if placement.jump_from:
                lines.append('insert rule %s %s jump %s comment "%s"' % (table, placement.jump_from, placement.chain,
                                                                         OUR_MARK))
        return '\n'.join(lines) + '\n'

    def _main_config_with_include(self, current, wanted):
        """``current`` (the main configuration) with our include line added or removed; None: unchanged."""
        path = self.persist_file()
        lines = current.splitlines()
        ours = [index for index, line in enumerate(lines)
                if INCLUDE_LINE.match(line) and INCLUDE_LINE.match(line).group(1) == path]
        if wanted:
            covered = any(fnmatch.fnmatch(path, INCLUDE_LINE.match(line).group(1))
                          for line in lines if INCLUDE_LINE.match(line))
            if covered:
                return None
            text = current if current.endswith('\n') or not current else current + '\n'
            if not text:
                text = '#!/usr/sbin/nft -f\n'
            return text + '\n%s\ninclude "%s"\n' % (INCLUDE_MARKER, path)
        if not ours:
            return None
        drop = set(ours)
        for index in ours:
            if index > 0 and lines[index - 1] == INCLUDE_MARKER:
                drop.add(index - 1)
                if index > 1 and not lines[index - 2].strip():
                    drop.add(index - 2)
        return ''.join(line + '\n' for index, line in enumerate(lines) if index not in drop)

    def persist(self, rules, check_mode):
        wanted = bool(rules)
        previous = dict((path, read_file_or_none(path)) for path in (self.persist_file(), self.main_config()))
        current = previous[self.main_config()]
        changed = False
        if wanted:
            changed = write_file_atomic(self.persist_file(), self.persisted_text(rules), check_mode, mode=0o644)
        if current is not None or wanted:
            updated = self._main_config_with_include(current or '', wanted)
            if updated is not None:
                changed = write_file_atomic(self.main_config(), updated, check_mode, mode=0o755) or changed
        if not wanted:
            changed = remove_file(self.persist_file(), check_mode) or changed
        if changed and wanted and not check_mode:
            self._check_configuration_loads(previous)
        return changed

    def _check_configuration_loads(self, previous):
        """``nft -c -f`` the main configuration as the service would load it; on failure put the files back.

        A configuration that does not load leaves a host without any firewall at its next boot or reload, so
        a file of ours that would break it is not left in place.
        """
        nft = self._nft()
        rc, out, err = self.run_command([nft, '-c', '-f', self.main_config()])
        if rc == 0:
            return
        problem = ' '.join((err or out or 'no message').split())
        for path, text in previous.items():
            if text is None:
                remove_file(path, False)
            else:
                write_file_atomic(path, text, False)
        rc, out, err = self.run_command([nft, '-c', '-f', self.main_config()]) if previous[self.main_config()] \
            is not None else (0, '', '')
        before = ('; it did not load before this run either: %s' % ' '.join((err or out).split())) if rc != 0 else ''
        raise BackendError('nftables: the rules are applied, but with them %s would not load (%s); %s and %s '
                           'are as they were, so the rules are not persisted%s'
                           % (self.main_config(), problem, self.main_config(), self.persist_file(), before))

    def persistence_files(self, rules):
        return [self.persist_file(), self.main_config()]
