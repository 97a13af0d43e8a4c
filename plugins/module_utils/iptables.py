# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The iptables backend (iptables-nft and iptables-legacy, IPv4 and IPv6).

Our rules live in chains of ours, each entered by one jump at the top of its
base chain::

    filter  LYNC-XMPP-IN   <- INPUT        (options base_chains.in)
            LYNC-XMPP-OUT  <- OUTPUT       (base_chains.out)
            LYNC-XMPP-FWD  <- FORWARD      (base_chains.forward)
    nat     LYNC-XMPP-DNAT <- PREROUTING
            LYNC-XMPP-SNAT <- POSTROUTING

The live state is read with one ``*-save`` call per address family; the
transaction is one ``*-restore --noflush`` input per family that declares our
chains (a declaration flushes an existing chain under ``--noflush``), fills
them, and fixes the jumps.  Nothing outside our chains and jumps is named in
it, so foreign rules, their order and the chain policies stay as they were.
Rules are written in the exact form ``iptables-save`` prints them, so the
restore input, the save output and the persisted files read alike.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import ipaddress
import os
import re
from collections import namedtuple

from ansible_collections.lync.xmpp_federation.plugins.module_utils.backend import (
    FAMILY_LABEL,
    SECTION_ORDER,
    Backend,
    BackendError,
    Transaction,
    port_span_text,
    read_file_or_none,
    remove_file,
    write_file_atomic,
)
from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import (
    IPTABLES_COMMENT_MAX_BYTES,
    OUR_MARK,
    collapse_networks,
    kernel_comment,
    port_spans,
    rule_family,
    sort_networks,
    split_kernel_comment,
    uses_set,
)

FAMILIES = (4, 6)
TOOL_PREFIX = {4: 'iptables', 6: 'ip6tables'}
TABLES = ('filter', 'nat')

# section (rule_model.sections) -> (table, our chain)
OUR_CHAINS = {
    'in': ('filter', 'LYNC-XMPP-IN'),
    'out': ('filter', 'LYNC-XMPP-OUT'),
    'forward': ('filter', 'LYNC-XMPP-FWD'),
    'dnat': ('nat', 'LYNC-XMPP-DNAT'),
    'snat': ('nat', 'LYNC-XMPP-SNAT'),
}
OUR_PREFIX = 'LYNC-XMPP-'
SECTION_OF_CHAIN = dict((chain, section) for section, (_table, chain) in OUR_CHAINS.items())
CHAIN_TABLES = dict((chain, table) for _section, (table, chain) in OUR_CHAINS.items())
DEFAULT_BASE_CHAINS = {'in': 'INPUT', 'out': 'OUTPUT', 'forward': 'FORWARD',
                       'dnat': 'PREROUTING', 'snat': 'POSTROUTING'}
BUILTIN_CHAINS = {
    'filter': ('INPUT', 'FORWARD', 'OUTPUT'),
    'nat': ('PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'),
}
# multiport takes at most 15 ports, a range counting as two.
MULTIPORT_MAX = 15
RESTORE_WAIT_SECONDS = 60

ACTION_TARGETS = {'accept': 'ACCEPT', 'drop': 'DROP', 'reject': 'REJECT'}
NAT_TARGETS = {'dnat': ('DNAT', '--to-destination'), 'snat': ('SNAT', '--to-source')}
TARGET_ACTIONS = {'ACCEPT': 'accept', 'DROP': 'drop', 'REJECT': 'reject'}

# One kernel rule in one of our chains, in the terms we compare it by.
# ``ports`` is a tuple of (low, high) spans; ``target_option`` is the REJECT
# type or the NAT address.  ``source`` and ``destination`` are None, one
# canonical network, or SET_REFERENCE + the name of an ipset of ours.
KernelRule = namedtuple('KernelRule', 'chain source destination protocol ports comment target target_option')


# -- the save/restore text format ---------------------------------------------

SAFE_WORD = re.compile(r'^[A-Za-z0-9_-]+$')

# -- ipsets: a long address list as one set of ours ----------------------------
#
# A source or destination list of SET_MIN_ADDRESSES or more is one ipset of ours (hash:net, one family) matched
# with ``-m set --match-set NAME src|dst`` in one rule, where the ipset tool exists.  ipset sets have no comment of
# their own: ours are named IPSET_PREFIX..., are created with the comment extension, and every entry carries
# OUR_MARK as its comment; a set with our prefix that is not so is foreign.  A set's name follows from its rule's
# name, the field and the family (hashed: ipset names take 31 characters), so a changed list refills the same set.
SET_REFERENCE = '@'
IPSET_PREFIX = 'lync-xmpp-'
IPSET_STAGING_SUFFIX = '-n'
IPSET_FAMILIES = {4: 'inet', 6: 'inet6'}
IPSET_FAMILY_NUMBERS = {'inet': 4, 'inet6': 6}
SET_DIRECTIONS = {'source': 'src', 'destination': 'dst'}
MARKED_ENTRY = re.compile(r'^add (%s\S*) (\S+) comment "%s"$' % (re.escape(IPSET_PREFIX), re.escape(OUR_MARK)))
# Where the distribution's boot-time loader restores ipsets from, before its iptables rules load: Debian's
# ipset-persistent (a netfilter-persistent plugin, /usr/share/netfilter-persistent/plugins.d/10-ipset, run before
# 15-ip4tables) and RHEL's ipset-service (ipset.service, ordered before iptables.service).
IPSET_SAVE_FILES = {'debian': '/etc/iptables/ipsets', 'redhat': '/etc/sysconfig/ipset'}
IPSET_LOADERS = {'debian': ('/usr/share/netfilter-persistent/plugins.d/10-ipset', 'ipset-persistent'),
                 'redhat': ('/usr/libexec/ipset/ipset.start-stop', 'ipset-service')}


def ipset_name(rule_name, field, family):
    """The name of the ipset of ours holding one rule's ``field`` list in ``family``."""
    digest = hashlib.sha1(rule_name.encode('utf-8')).hexdigest()[:10]
    return '%s%s-%s%d' % (IPSET_PREFIX, digest, SET_DIRECTIONS[field][0], family)


def ipset_entry_text(network):
    """'198.51.100.7/32' -> '198.51.100.7', as ipset save prints a host entry."""
    parsed = ipaddress.ip_network(network)
    return str(parsed.network_address) if parsed.prefixlen == parsed.max_prefixlen else network


def ipset_create_line(name, family, size):
    """The create line of a set of ours; room for ``size`` entries (the default maxelem 65536 at least)."""
    return 'create %s hash:net family %s hashsize 1024 maxelem %d comment' % (
        name, IPSET_FAMILIES[family], max(65536, size))


def ipset_lines(name, family, networks):
    """``ipset restore`` input that creates set ``name`` holding ``networks``, each entry with our mark."""
    return [ipset_create_line(name, family, len(networks))] + [
        'add %s %s comment %s' % (name, ipset_entry_text(network), save_quote(OUR_MARK)) for network in networks]


class IpsetState(object):
    """What ``ipset save`` holds of ours, by our mark, and what only carries our prefix.

    ``ours``     {name: (family, sorted canonical networks)}: sets named IPSET_PREFIX..., hash:net with the
                 comment extension, holding at least one entry and only entries whose comment is OUR_MARK
    ``foreign``  {name: description}: sets with our prefix that are not so (an admin's): never touched
    """

    def __init__(self, text):
        self.text = text or ''
        headers, entries = {}, {}
        for line in self.text.splitlines():
            # Tens of thousands of entries: the form ipset save prints ours in is split without the quoting parser.
            marked_entry = MARKED_ENTRY.match(line)
            if marked_entry:
                entries.setdefault(marked_entry.group(1), []).append([marked_entry.group(2), 'comment', OUR_MARK])
                continue
            try:
                words = split_words(line)
            except ValueError:
                continue
            if len(words) < 2 or not words[1].startswith(IPSET_PREFIX):
                continue
            if words[0] == 'create':
                headers[words[1]] = words[2:]
                entries.setdefault(words[1], [])
            elif words[0] == 'add':
                entries.setdefault(words[1], []).append(words[2:])
        self.ours, self.foreign = {}, {}
        for name in sorted(headers):
            header, members = headers[name], entries.get(name, [])
            family = IPSET_FAMILY_NUMBERS.get(header[header.index('family') + 1]) if 'family' in header[:-1] else None
            networks = []
            marked = bool(members) and header[:1] == ['hash:net'] and 'comment' in header and family is not None
            for member in members:
                if not marked:
                    break
                if member[1:] != ['comment', OUR_MARK]:
                    marked = False
                    break
                try:
                    networks.append(str(ipaddress.ip_network(member[0])))
                except ValueError:
                    marked = False
            if marked:
                self.ours[name] = (family, sort_networks(networks))
            else:
                self.foreign[name] = ('ipset %s is named like ours but lacks our mark (%s, every entry with comment '
                                      '"%s"): %s' % (name, 'hash:net with the comment extension', OUR_MARK,
                                                     ' '.join(['create', name] + header)[:200]))


def save_quote(value):
    """A word as iptables-save prints it: bare when only [A-Za-z0-9_-], else in double quotes with \\ escapes."""
    if SAFE_WORD.match(value):
        return value
    return '"%s"' % re.sub(r'(["\\\'])', r'\\\1', value)


def split_words(text):
    """Split a rule line as iptables-restore does: double quotes group, a backslash escapes the next character."""
    if '"' not in text and '\\' not in text:
        return text.split()
    words, current, quoted, escaped, started = [], [], False, False, False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == '\\':
            escaped = started = True
        elif char == '"':
            quoted = not quoted
            started = True
        elif char in ' \t' and not quoted:
            if started:
                words.append(''.join(current))
            current, started = [], False
        else:
            current.append(char)
            started = True
    if quoted or escaped:
        raise ValueError('unbalanced quoting in %r' % text)
    if started:
        words.append(''.join(current))
    return words


class SavedTable(object):
    """One ``*table`` section of iptables-save output."""

    def __init__(self, name):
        self.name = name
        self.chains = []           # declared chain names, in order
        self.rules = {}            # chain -> [rule specification text after "-A CHAIN "]
        self.incompatible = False  # iptables-nft found nft objects it cannot show


def parse_save(text):
    """iptables-save output -> {table name: SavedTable}."""
    tables, table = {}, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith('*'):
            table = tables.setdefault(line[1:], SavedTable(line[1:]))
        elif line.startswith('# Table `'):
            # iptables-nft: "# Table `filter' is incompatible, use 'nft' tool."
            name = line[len('# Table `'):].split("'", 1)[0]
            tables.setdefault(name, SavedTable(name)).incompatible = True
        elif table is None or not line or line.startswith('#'):
            continue
        elif line == 'COMMIT':
            table = None
        elif line.startswith(':'):
            chain = line[1:].split()[0]
            table.chains.append(chain)
            table.rules.setdefault(chain, [])
        elif line.startswith('-A '):
            chain, _space, spec = line[3:].partition(' ')
            table.rules.setdefault(chain, []).append(spec.strip())
    return tables


def jump_target(words):
    """The chain a rule jumps or goes to, or None."""
    for index, word in enumerate(words[:-1]):
        if word in ('-j', '--jump', '-g', '--goto'):
            return words[index + 1]
    return None


def parse_kernel_rule(chain, spec):
    """A rule in one of our chains -> KernelRule; ValueError when it is not in the form we write."""
    words = split_words(spec)
    fields = {'source': None, 'destination': None, 'protocol': None, 'ports': None, 'comment': None,
              'target': None, 'target_option': None}
    modules = []
    index = 0

    def value():
        if index + 1 >= len(words):
            raise ValueError('%s without a value' % words[index])
        return words[index + 1]

    while index < len(words):
        word = words[index]
        if word in ('-s', '--source', '-d', '--destination'):
            key = 'source' if word in ('-s', '--source') else 'destination'
            fields[key] = str(ipaddress.ip_network(value(), strict=False))
        elif word in ('-p', '--protocol'):
            fields['protocol'] = value()
        elif word in ('-m', '--match'):
            modules.append(value())
        elif word == '--match-set':
            if index + 2 >= len(words) or words[index + 2] not in ('src', 'dst'):
                raise ValueError('--match-set without src or dst')
            key = 'source' if words[index + 2] == 'src' else 'destination'
            if fields[key] is not None:
                raise ValueError('two matches on the %s' % key)
            fields[key] = SET_REFERENCE + value()
            index += 1
        elif word in ('--dport', '--dports', '--destination-port', '--destination-ports'):
            spans = []
            for item in value().split(','):
                low, _colon, high = item.partition(':')
                spans.append((int(low), int(high or low)))
            fields['ports'] = tuple(spans)
        elif word == '--comment':
            fields['comment'] = value()
        elif word in ('-j', '--jump'):
            fields['target'] = value()
        elif word == '--reject-with' and fields['target'] == 'REJECT':
            fields['target_option'] = value()
        elif word in ('--to-destination', '--to-source') and fields['target'] in ('DNAT', 'SNAT'):
            address = value()
            if address.startswith('['):
                address = address[1:].split(']', 1)[0]
            fields['target_option'] = str(ipaddress.ip_address(address))
        else:
            raise ValueError('unexpected %r' % word)
        index += 2
    for module in modules:
        if module not in ('multiport', 'comment', 'set', fields['protocol']):
            raise ValueError('unexpected match %r' % module)
    if fields['protocol'] not in ('tcp', 'udp') or not fields['ports'] or fields['target'] is None:
        raise ValueError('protocol, ports or target missing')
    return KernelRule(chain, **fields)


def format_kernel_rule(rule):
    """KernelRule -> '-A CHAIN ...' exactly as iptables-save prints it."""
    words = ['-A', rule.chain]
    for option, network in (('-s', rule.source), ('-d', rule.destination)):
        if network and not network.startswith(SET_REFERENCE):
            words += [option, network]
    words += ['-p', rule.protocol]
    # iptables-save prints matches in the order they were given: the set matches, then the port match.
    for field, network in (('source', rule.source), ('destination', rule.destination)):
        if network and network.startswith(SET_REFERENCE):
            words += ['-m', 'set', '--match-set', network[len(SET_REFERENCE):], SET_DIRECTIONS[field]]
    if len(rule.ports) == 1:
        words += ['-m', rule.protocol, '--dport', port_span_text(rule.ports[0], ':')]
    else:
        words += ['-m', 'multiport', '--dports', ','.join(port_span_text(span, ':') for span in rule.ports)]
    words += ['-m', 'comment', '--comment', save_quote(rule.comment), '-j', rule.target]
    if rule.target == 'REJECT':
        words += ['--reject-with', rule.target_option]
    elif rule.target in ('DNAT', 'SNAT'):
        words += [NAT_TARGETS['dnat' if rule.target == 'DNAT' else 'snat'][1], rule.target_option]
    return ' '.join(words)


def jump_spec(chain):
    """Our jump rule's specification (what follows '-A BASE ')."""
    return '-m comment --comment %s -j %s' % (save_quote(OUR_MARK), chain)


def multiport_blocks(spans):
    """Split port spans into blocks multiport accepts (15 ports, a range counting as two)."""
    blocks, block, used = [], [], 0
    for span in spans:
        cost = 1 if span[0] == span[1] else 2
        if block and used + cost > MULTIPORT_MAX:
            blocks.append(tuple(block))
            block, used = [], 0
        block.append(span)
        used += cost
    if block:
        blocks.append(tuple(block))
    return blocks


def address_matches(rule, field, family, use_sets):
    """What the kernel rules of one model rule match of its ``field`` list: one item per kernel rule.

    With ``use_sets``, a list of SET_MIN_ADDRESSES or more is one reference to the ipset of ours that holds it;
    else one rule per network, and None (any) for an empty list.
    """
    networks = rule[field]
    if not networks:
        return [None]
    if use_sets and uses_set(networks):
        return [SET_REFERENCE + ipset_name(rule['name'], field, family)]
    return list(networks)


def desired_sets(rules, family):
    """{ipset name: merged networks} of ``family`` for the lists of ``rules`` that are matched through a set."""
    sets = {}
    for rule in rules:
        rule_fam = rule_family(rule)
        if rule_fam != family:
            continue
        for field in SET_DIRECTIONS:
            if uses_set(rule[field]):
                sets[ipset_name(rule['name'], field, family)] = collapse_networks(rule[field])
    return sets


def kernel_rules(rule, family, use_sets=False):
    """The kernel rules one model rule becomes in one address family (none when its addresses are the other's)."""
    rule_fam = rule_family(rule)
    if rule_fam is not None and rule_fam != family:
        return []
    section = rule.get('nat') or rule['direction']
    chain = OUR_CHAINS[section][1]
    if rule.get('nat'):
        # An IPv6 address needs brackets only when a port follows; nat_to has none, and
        # ip6tables-save prints the bare address, so the bare form reads back unchanged.
        target, option = NAT_TARGETS[rule['nat']][0], rule['nat_to']
    elif rule['action'] == 'reject':
        # tcp-reset closes a TCP connection at once; UDP gets the family's port-unreachable.
        target = 'REJECT'
        option = 'tcp-reset' if rule['protocol'] == 'tcp' else (
            'icmp-port-unreachable' if family == 4 else 'icmp6-port-unreachable')
    else:
        target, option = ACTION_TARGETS[rule['action']], None
    comment = kernel_comment(rule)
    return [KernelRule(chain, source, destination, rule['protocol'], block, comment, target, option)
            for source in address_matches(rule, 'source', family, use_sets)
            for destination in address_matches(rule, 'destination', family, use_sets)
            for block in multiport_blocks(port_spans(rule['ports']))]


def desired_chains(rules, family, use_sets=False):
    """{table: {our chain: [KernelRule, ...]}} for one family; only chains that get rules."""
    tables = {}
    for rule in rules:
        for kernel_rule in kernel_rules(rule, family, use_sets):
            table = OUR_CHAINS[SECTION_OF_CHAIN[kernel_rule.chain]][0]
            tables.setdefault(table, {}).setdefault(kernel_rule.chain, []).append(kernel_rule)
    return tables


def _piece_networks(network, sets):
    """A kernel rule's source or destination -> the networks it matches; a set of ours gives its entries."""
    if not network:
        return []
    if not network.startswith(SET_REFERENCE):
        return [network]
    name = network[len(SET_REFERENCE):]
    if name not in sets:
        raise ValueError('it matches ipset %s, which is not a set of ours' % name)
    return list(sets[name][1])


def kernel_rule_piece(kernel_rule, family, sets=None):
    """KernelRule -> a piece for backend.group_kernel_rules; ValueError when not one of ours.

    ``sets`` are the ipsets of ours ({name: (family, networks)}) a rule may match through.
    """
    name, comment = split_kernel_comment(kernel_rule.comment or '')
    if name is None:
        raise ValueError('no rule name in its comment')
    section = SECTION_OF_CHAIN[kernel_rule.chain]
    if section in NAT_TARGETS:
        if kernel_rule.target != NAT_TARGETS[section][0]:
            raise ValueError('target %s in %s' % (kernel_rule.target, kernel_rule.chain))
        direction, action, nat, nat_to = 'forward', 'accept', section, kernel_rule.target_option
    else:
        if kernel_rule.target not in TARGET_ACTIONS:
            raise ValueError('target %s in %s' % (kernel_rule.target, kernel_rule.chain))
        direction, action, nat, nat_to = section, TARGET_ACTIONS[kernel_rule.target], None, None
    return {
        'name': name, 'comment': comment, 'direction': direction, 'protocol': kernel_rule.protocol,
        'action': action, 'nat': nat, 'nat_to': nat_to, 'families': (family,),
        'source': _piece_networks(kernel_rule.source, sets or {}),
        'destination': _piece_networks(kernel_rule.destination, sets or {}),
        'ports': list(kernel_rule.ports),
    }


def comment_of(words):
    """The value of a rule's ``--comment``, or None."""
    return words[words.index('--comment') + 1] if '--comment' in words[:-1] else None


def describe_spec(chain, spec):
    """A rule as iptables-save prints it, for messages."""
    return '-A %s %s' % (chain, spec)


class FamilyState(object):
    """What one family's save output holds of ours, by our mark, and what only carries our names.

    ``chains``   {table: {our chain: [KernelRule or None (not in a form we write)]}}: chains with our name
                 that carry our mark (a rule of theirs starts its comment with RULE_MARK, or a jump into them
                 has OUR_MARK as its comment) and nothing unmarked
    ``jumps``    {table: [(chain, index in chain, our chain, spec)]}: our marked jumps into our chains
    ``foreign``  {(table, chain): description}: chains with our names and none of our marks (an admin's):
                 never touched, in the way only where the rules need that chain
    ``tainted``  descriptions of unmarked rules in our chains and unmarked jumps into them: the run cannot
                 change ours without touching them, so it refuses
    """

    def __init__(self, family, text, sets=None):
        self.family = family
        self.text = text
        self.tables = parse_save(text)
        self.chains, self.jumps, self.foreign, self.tainted = {}, {}, {}, []
        self.pieces = []
        self.problems = []
        label = FAMILY_LABEL[family]
        for table_name in TABLES:
            table = self.tables.get(table_name)
            if table is None:
                continue
            names = [chain for chain in table.chains if CHAIN_TABLES.get(chain) == table_name]
            into = dict((name, []) for name in names)
            for chain, specs in table.rules.items():
                if chain in into:
                    continue
                for index, spec in enumerate(specs):
                    if OUR_PREFIX not in spec:
                        continue
                    try:
                        words = split_words(spec)
                    except ValueError:
                        continue
                    target = jump_target(words)
                    if target in into:
                        into[target].append((chain, index, spec, comment_of(words) == OUR_MARK))
            for name in names:
                specs = table.rules.get(name, [])
                marked = [spec for spec in specs if self._marked_rule(spec)]
                unmarked = [spec for spec in specs if spec not in marked]
                marked_jumps = [jump for jump in into[name] if jump[3]]
                if not marked and not marked_jumps:
                    held = [describe_spec(name, spec) for spec in specs[:3]]
                    held += [describe_spec(jump[0], jump[2]) for jump in into[name][:3]]
                    listing = ': ' + '; '.join(held) if held else ''
                    self.foreign[(table_name, name)] = (
                        '%s %s table, chain %s is named like ours but carries none of our marks (no rule of ours '
                        'in it, no jump of ours to it)%s' % (label, table_name, name, listing))
                    continue
                for spec in unmarked:
                    self.tainted.append('%s %s table, chain %s: holds a rule that is not ours: %s'
                                        % (label, table_name, name, describe_spec(name, spec)))
                for jump in into[name]:
                    if not jump[3]:
                        self.tainted.append('%s %s table, chain %s: a rule that is not ours jumps to our chain %s: %s'
                                            % (label, table_name, jump[0], name, describe_spec(jump[0], jump[2])))
                self.jumps.setdefault(table_name, []).extend(
                    (jump[0], jump[1], name, jump[2]) for jump in marked_jumps)
                parsed = self.chains.setdefault(table_name, {}).setdefault(name, [])
                for spec in marked:
                    try:
                        kernel_rule = parse_kernel_rule(name, spec)
                        self.pieces.append(kernel_rule_piece(kernel_rule, family, sets))
                    except ValueError as error:
                        kernel_rule = None
                        self.problems.append('%s %s %s: rule not in our form (%s): %s'
                                             % (label, table_name, name, error, spec))
                    parsed.append(kernel_rule)

    @staticmethod
    def _marked_rule(spec):
        try:
            return split_kernel_comment(comment_of(split_words(spec)))[0] is not None
        except ValueError:
            return False

    def ours_anywhere(self):
        return bool(self.chains or self.jumps)


def merge_save_file(text, ours, keep=None):
    """A save file's text with our lines replaced by ``ours``; every other line kept as it was.

    ``ours`` is {table: [{'chain', 'declaration', 'base', 'jump', 'rules'}, ...]}
    (see ``IptablesBackend.persisted_lines``).  Our lines are recognised by
    chain name: our chains' declarations and rules, and any rule jumping to
    one of our chains, except for the chains ``keep`` names ({table: {chain}}:
    chains with our names that are not ours by mark).  They are put where ``iptables-save`` would print them
    (see ``place_ours``), so that ``iptables-restore`` of the file gives the
    live state, and a file written by ``netfilter-persistent save`` is
    already in that form.  Returns None when nothing is left in the file (it
    is to be removed).
    """
    lines = text.splitlines()
    output, table, seen = [], None, set()
    section = []

    keep = keep or {}

    def ours_line(line, table_name):
        if OUR_PREFIX not in line:
            return False
        theirs = keep.get(table_name, ())

        def our_chain(chain):
            return CHAIN_TABLES.get(chain) == table_name and chain not in theirs
        if line.startswith(':'):
            return our_chain(line[1:].split()[0]) if len(line) > 1 else False
        if line.startswith('-A ') or line.startswith('-I '):
            chain = line[3:].split(' ', 1)[0]
            if our_chain(chain):
                return True
            try:
                return our_chain(jump_target(split_words(line)))
            except ValueError:
                return False
        return False

    def flush_section(name, body, commit_line):
        mine = ours.get(name)
        kept = [line for line in body if not ours_line(line.strip(), name)]
        removed_any = len(kept) != len(body)
        if mine:
            kept = place_ours(kept, mine, name)
        elif removed_any and not any(line.strip() and not line.strip().startswith('#') for line in kept):
            # An empty section without even a chain declaration was created by us: drop it.
            return []
        return ['*' + name] + kept + [commit_line]

    for line in lines:
        stripped = line.strip()
        if table is None:
            if stripped.startswith('*'):
                table, section = stripped[1:], []
                seen.add(table)
            else:
                output.append(line)
        elif stripped == 'COMMIT':
            output.extend(flush_section(table, section, line))
            table = None
        else:
            section.append(line)
    if table is not None:
        # An unterminated last section: keep it as found, with ours merged.
        output.extend(flush_section(table, section, 'COMMIT')[:-1])
    for name in TABLES:
        if name in ours and name not in seen:
            output.extend(['*' + name] + place_ours([], ours[name], name) + ['COMMIT'])
    if not any(line.strip() for line in output):
        return None
    return '\n'.join(output) + '\n'


def place_ours(body, mine, table_name):
    """Insert our chains into a section body that holds none of our lines, where iptables-save puts them.

    iptables-save prints the built-in chains' declarations, then the user
    chains' in name order, then every chain's rules in that order.  So our
    declaration goes before the first user chain named after it, our jump
    before the first rule of its base chain (or of a chain printed after it),
    and our rules before the rules of the chains printed after ours.  Nothing
    is ever placed before the declaration it refers to.
    """
    builtin = BUILTIN_CHAINS.get(table_name, ())
    lines = list(body)

    def declared():
        return [(index, line.strip()[1:].split()[0]) for index, line in enumerate(lines)
                if line.strip().startswith(':') and len(line.strip()) > 1]

    for entry in sorted(mine, key=lambda entry: entry['chain']):
        declarations = declared()
        later = [index for index, name in declarations if name not in builtin and name > entry['chain']]
        position = later[0] if later else (declarations[-1][0] + 1 if declarations else 0)
        lines.insert(position, entry['declaration'])

    def rank(chain, order):
        if chain in order:
            return order.index(chain)
        return builtin.index(chain) - len(builtin) if chain in builtin else len(order)

    def insert(chain, new_lines, with_own_rules, floor):
        order = [name for _index, name in declared()]
        position = len(lines)
        for index, line in enumerate(lines):
            words = line.strip().split()
            if len(words) > 1 and words[0] == '-A' and (
                    rank(words[1], order) > rank(chain, order) or (with_own_rules and words[1] == chain)):
                position = index
                break
        position = max(position, floor())
        lines[position:position] = new_lines

    for entry in sorted(mine, key=lambda entry: entry['chain']):
        def after_declaration(chain=entry['chain']):
            return [index for index, name in declared() if name == chain][0] + 1
        if entry['jump']:
            insert(entry['base'], [entry['jump']], True, after_declaration)
        insert(entry['chain'], list(entry['rules']), False, after_declaration)
    return lines


class IptablesBackend(Backend):
    """iptables-nft or iptables-legacy (``variant`` 'nft' or 'legacy'), IPv4 and IPv6."""

    comment_limit = IPTABLES_COMMENT_MAX_BYTES
    # Where a base chain comes from, for messages about it.
    base_chain_origin = 'base_chains.%s'

    def __init__(self, run_command, get_bin_path, options, variant, lock=None):
        super(IptablesBackend, self).__init__(run_command, get_bin_path, options, lock=lock)
        if variant not in ('nft', 'legacy'):
            raise BackendError("iptables variant must be 'nft' or 'legacy', not %r" % (variant,))
        self.variant = variant
        self.name = 'iptables-%s' % variant
        self.states = {}         # family -> FamilyState
        self.tools = {}          # family -> (save, restore)
        self.ipset = None        # the ipset command, where sets are used (see find_ipset)
        self._ipset_found = False
        self.ipsets = IpsetState('')
        self._wanted_sets = None

    # Long address lists as ipsets, where the ipset command is.
    @property
    def use_sets(self):
        return bool(self.find_ipset())

    def find_ipset(self):
        """The ipset command (None without it: long lists then stay one rule per address), looked up once."""
        if not self._ipset_found:
            self.ipset = self.get_bin_path('ipset')
            self._ipset_found = True
        return self.ipset

    def check(self, rules, state):
        """Without the ipset command, long lists stay one rule per address, and the run says so."""
        if self.find_ipset():
            return
        for rule in rules:
            for field in SET_DIRECTIONS:
                if uses_set(rule[field]):
                    self.notices.append("%s: the ipset command was not found, so rule '%s' matches its %d %s "
                                        "networks with one kernel rule each instead of one set lookup; install "
                                        "ipset for that" % (self.name, rule['name'], len(rule[field]), field))

    # -- tools ------------------------------------------------------------------
    def _variant_of(self, binary):
        rc, out, err = self.run_command([binary, '-V'])
        text = out + err
        if rc != 0:
            return None
        return 'nft' if '(nf_tables)' in text else 'legacy'

    def _find_tools(self, family):
        """(save, restore) binaries for one family, or raise BackendError saying what is missing."""
        prefix = TOOL_PREFIX[family]
        save = self.get_bin_path('%s-%s-save' % (prefix, self.variant))
        restore = self.get_bin_path('%s-%s-restore' % (prefix, self.variant))
        if save and restore:
            return save, restore
        # Older or minimal installs have only the plain names; use them when they are the wanted variant.
        plain = self.get_bin_path(prefix)
        save = self.get_bin_path('%s-save' % prefix)
        restore = self.get_bin_path('%s-restore' % prefix)
        if plain and save and restore and self._variant_of(plain) == self.variant:
            return save, restore
        raise BackendError('%s: neither %s-%s-save/-restore nor %s-save/-restore of the %s variant were found'
                           % (self.name, prefix, self.variant, prefix, self.variant))

    # -- reading ----------------------------------------------------------------
    def _read_ipsets(self):
        """``ipset save`` once: every set, so that ours and the ones with our prefix are known."""
        self.ipsets = IpsetState('')
        if not self.find_ipset():
            return
        rc, out, err = self.run_command([self.ipset, 'save'])
        if rc != 0:
            raise BackendError('%s: ipset save failed (%d): %s; nothing was changed'
                               % (self.name, rc, (err or out).strip() or 'no message'))
        self.ipsets = IpsetState(out)

    def read(self):
        self.states, self.tools = {}, {}
        self._read_ipsets()
        for family in FAMILIES:
            self.tools[family] = self._find_tools(family)
            # One call per family: without -t, *-save prints every table it has.
            rc, out, err = self.run_command([self.tools[family][0]])
            if rc != 0:
                # Fail closed: a family we cannot read may hold rules of ours that this run would then neither
                # compare nor remove.
                raise BackendError('%s: %s failed (%d): %s; nothing was changed'
                                   % (self.name, self.tools[family][0], rc, (err or out).strip() or 'no message'))
            self.states[family] = FamilyState(family, out, self.ipsets.ours)
        # Both families' rules of ours, for the shared grouping (Backend.current_rules), and those in our chains
        # that are not in a form we write (the kernel rules compared one by one catch the rest).
        self.pieces = [piece for state in self.states.values() for piece in state.pieces]
        self.parse_problems = [problem for state in self.states.values() for problem in state.problems]
        self.live_rules, self.grouping_problems = None, []

    def foreign_objects(self, rules):
        in_the_way = []
        for family in FAMILIES:
            state = self.states[family]
            in_the_way += state.tainted
            wanted = desired_chains(rules, family, self.use_sets)
            for (table_name, chain), description in sorted(state.foreign.items()):
                if chain in wanted.get(table_name, {}):
                    in_the_way.append('%s, and the rules need that chain (rename it; our chain names are fixed)'
                                      % description)
                else:
                    self.notices.append('%s: left alone: %s' % (self.name, description))
        needed = set()
        for name in self.wanted_sets(rules):
            needed.update((name, name + IPSET_STAGING_SUFFIX))
        for name, description in sorted(self.ipsets.foreign.items()):
            if name in needed:
                in_the_way.append('%s, and the rules need that name (rename or destroy that set)' % description)
            else:
                self.notices.append('%s: left alone: %s' % (self.name, description))
        return in_the_way

    def wanted_sets(self, rules):
        """{ipset name: (family, networks)}: the sets of ours ``rules`` match through (none without ipset).

        Asked by every step of a run with the same list, and merging a long list is not free: kept for that list.
        """
        if not self.use_sets:
            return {}
        if self._wanted_sets is None or self._wanted_sets[0] is not rules:
            self._wanted_sets = (rules, dict((name, (family, networks)) for family in FAMILIES
                                             for name, networks in desired_sets(rules, family).items()))
        return self._wanted_sets[1]

    def base_chain(self, section, family):
        """The chain our jump for ``section`` goes into, in ``family``'s table."""
        if section in ('dnat', 'snat'):
            return DEFAULT_BASE_CHAINS[section]
        return (self.options.get('base_chains') or {}).get(section) or DEFAULT_BASE_CHAINS[section]

    def _check_base_chains(self, family, table_name, sections_used):
        """Fail before anything is written when a base chain does not exist (iptables-nft --test misses it)."""
        table = self.states[family].tables.get(table_name)
        bases = {}
        for section in sections_used:
            base = self.base_chain(section, family)
            option = self.base_chain_origin % section
            if base in SECTION_OF_CHAIN:
                raise BackendError('%s: %s: %r is one of our own chains' % (self.name, option, base))
            if base in bases:
                raise BackendError("%s: base_chains.%s and base_chains.%s name the same chain %r; each of our "
                                   "chains needs its own base chain to be first in" % (self.name, bases[base],
                                                                                       section, base))
            bases[base] = section
            exists = base in BUILTIN_CHAINS[table_name] or (table is not None and base in table.chains)
            if not exists:
                raise BackendError("%s: %s: chain %r does not exist in the %s %s table"
                                   % (self.name, option, base, FAMILY_LABEL[family], table_name))
            if table is not None and table.incompatible:
                raise BackendError('%s: the %s %s table holds nftables objects iptables cannot show; '
                                   'use the nftables backend' % (self.name, FAMILY_LABEL[family], table_name))

    def _table_in_place(self, family, table_name, wanted):
        """True when our chains in one table hold exactly ``wanted`` and each has its one jump, first."""
        state = self.states[family]
        live = state.chains.get(table_name, {})
        if set(live) != set(wanted):
            return False
        if any(live[chain] != wanted[chain] for chain in wanted):
            return False
        jumps = state.jumps.get(table_name, [])
        if len(jumps) != len(wanted):
            return False
        for base_name, index, target, spec in jumps:
            if target not in wanted or index != 0 or spec != jump_spec(target):
                return False
            if base_name != self.base_chain(SECTION_OF_CHAIN[target], family):
                return False
        return True

    def in_place(self, rules):
        if self.parse_problems:
            return False
        if self.ipsets.ours != self.wanted_sets(rules):
            return False
        for family in FAMILIES:
            wanted = desired_chains(rules, family, self.use_sets)
            if family not in self.states:
                if wanted:
                    return False
                continue
            for table_name in TABLES:
                if not self._table_in_place(family, table_name, wanted.get(table_name, {})):
                    return False
        return True

    def present_anywhere(self):
        return bool(self.ipsets.ours) or any(state.ours_anywhere() for state in self.states.values())

    # -- writing ----------------------------------------------------------------
    def _header(self, family):
        restore = os.path.basename(self.tools[family][1])
        return '# lync-xmpp-federation %s: %s --noflush' % (FAMILY_LABEL[family], restore)

    def _render_table(self, family, table_name, wanted):
        """One table's block: declare (flush) our chains, fix jumps, fill, delete chains no longer needed."""
        state = self.states[family]
        live = state.chains.get(table_name, {})
        jumps = state.jumps.get(table_name, [])
        ordered = [chain for section in SECTION_ORDER for chain in [OUR_CHAINS[section][1]]
                   if chain in wanted or chain in live]
        lines = ['*' + table_name]
        lines += [':%s - [0:0]' % chain for chain in ordered]
        keep_jump = set()
        for chain in wanted:
            base = self.base_chain(SECTION_OF_CHAIN[chain], family)
            to_chain = [jump for jump in jumps if jump[2] == chain]
            if len(to_chain) == 1 and to_chain[0][:2] == (base, 0) and to_chain[0][3] == jump_spec(chain):
                keep_jump.add(chain)
        # Every other jump to our chains goes (misplaced, duplicated, or to a chain no longer needed);
        # '-D' by full specification removes the first match, once per copy.
        for base_name, _index, target, spec in jumps:
            if target not in keep_jump:
                lines.append('-D %s %s' % (base_name, spec))
        for chain in ordered:
            lines += [format_kernel_rule(kernel_rule) for kernel_rule in wanted.get(chain, [])]
        for chain in ordered:
            if chain in wanted and chain not in keep_jump:
                lines.append('-I %s 1 %s' % (self.base_chain(SECTION_OF_CHAIN[chain], family), jump_spec(chain)))
        lines += ['-X %s' % chain for chain in ordered if chain not in wanted]
        lines.append('COMMIT')
        return lines

    def plan(self, rules):
        """One ``*-restore --noflush`` input per family that needs a change, each a step of the transaction."""
        transaction = Transaction()
        for family in FAMILIES:
            wanted = desired_chains(rules, family, self.use_sets)
            lines = []
            for table_name in TABLES:
                table_wanted = wanted.get(table_name, {})
                if self._table_in_place(family, table_name, table_wanted):
                    continue
                if table_wanted:
                    self._check_base_chains(family, table_name,
                                            [SECTION_OF_CHAIN[chain] for chain in table_wanted])
                lines += self._render_table(family, table_name, table_wanted)
            if lines:
                transaction.add('%s %s --noflush' % (FAMILY_LABEL[family], os.path.basename(self.tools[family][1])),
                                '\n'.join([self._header(family)] + lines) + '\n', family)
        return self._with_sets(transaction, rules)

    def _with_sets(self, transaction, rules):
        """The rules' transaction between the ipset steps: sets are built under staging names first, swapped in
        (or renamed into place) before the rules that match them, and the old contents and the sets no longer
        needed are destroyed after the rules stopped matching them."""
        wanted, live = self.wanted_sets(rules), self.ipsets.ours
        stage, stage_undo, switch, switch_undo, cleanup, summary = [], [], [], [], [], []
        staging_names = set()
        for name in sorted(wanted):
            family, networks = wanted[name]
            if live.get(name) == (family, networks):
                continue
            staging = name + IPSET_STAGING_SUFFIX
            staging_names.add(staging)
            if staging in live:
                # Left by a run that was cut short: ours by mark, and in the way of this run's staging set.
                stage.append('destroy %s' % staging)
            stage += ipset_lines(staging, family, networks)
            stage_undo.append('destroy %s' % staging)
            if name in live:
                before = set(live[name][1])
                switch.append('swap %s %s' % (staging, name))
                switch_undo.append('swap %s %s' % (staging, name))
                cleanup.append('destroy %s' % staging)
                summary.append('# ipset %s (%s): %d networks, %d added, %d removed; built as %s, then swapped in'
                               % (name, FAMILY_LABEL[family], len(networks), len(set(networks) - before),
                                  len(before - set(networks)), staging))
            else:
                switch.append('rename %s %s' % (staging, name))
                switch_undo.append('rename %s %s' % (name, staging))
                summary.append('# ipset %s (%s): new, %d networks; built as %s, then renamed'
                               % (name, FAMILY_LABEL[family], len(networks), staging))
        for name in sorted(live):
            if name not in wanted and name not in staging_names:
                cleanup.append('destroy %s' % name)
                summary.append('# ipset %s: no longer needed, destroyed after the rules' % name)
        if not stage and not cleanup:
            return transaction
        steps = []
        if stage:
            steps.append(('ipset restore (staging sets)', '\n'.join(summary) + '\n', ('stage', stage, stage_undo)))
            steps.append(('ipset restore (swap)', '# ipset: %s\n' % '; '.join(switch), ('switch', switch, switch_undo)))
        steps += transaction.steps
        if cleanup:
            text = '# ipset: %s\n' % '; '.join(cleanup)
            if not stage:
                text = '\n'.join(summary) + '\n' + text
            steps.append(('ipset restore (cleanup)', text, ('cleanup', cleanup, [])))
        return Transaction(steps)

    def _ipset_restore(self, lines):
        """-> None, or the ipset tool's message when it refused."""
        rc, out, err = self.run_command([self.ipset, 'restore'], data='\n'.join(lines) + '\n', binary_data=True)
        return None if rc == 0 else ' '.join((err or out or 'no message').split())

    def _ipset_undo(self, lines):
        """Undo ipset steps, one command at a time (a set an interrupted step never made is skipped)."""
        errors = []
        for line in lines:
            rc, out, err = self.run_command([self.ipset] + line.split())
            message = ' '.join((err or out or '').split())
            if rc != 0 and 'does not exist' not in message:
                errors.append('%s: %s' % (line, message))
        return errors

    def _restore(self, family, text, *flags):
        return self.run_command([self.tools[family][1]] + list(flags), data=text, binary_data=True)

    def _explain(self, family, block, out, err):
        """The tool's message, with the line it names and the rule of ours on it."""
        message = ' '.join((err or out or '').split()) or 'no message'
        lines = block.splitlines()
        match = re.search(r'line:? (\d+)', err or out or '')
        where = ''
        if match:
            number = int(match.group(1))
            text = lines[number - 1] if 0 < number <= len(lines) else ''
            if text == 'COMMIT':
                table = [line for line in lines[:number] if line.startswith('*')]
                where = " at the commit of table '%s' (the kernel refused one of its rules)" % (
                    table[-1][1:] if table else '?')
            elif text:
                try:
                    words = split_words(text)
                    comment = words[words.index('--comment') + 1] if '--comment' in words else ''
                except ValueError:
                    comment = ''
                name = split_kernel_comment(comment)[0] if comment and comment != OUR_MARK else None
                where = ' at line %d%s: %s' % (number, " (rule '%s')" % name if name else '', text)
        return '%s %s%s: %s' % (self.name, FAMILY_LABEL[family], where, message), match

    def apply(self, transaction):
        ipset_steps = dict((payload[0], payload[1:]) for _label, _text, payload in transaction.steps
                           if isinstance(payload, tuple))
        blocks = [(family, block) for _label, block, family in transaction.steps if not isinstance(family, tuple)]
        # Sets first: built under staging names in one ipset restore, then swapped in (or renamed into place) one
        # by one, so that the rules can match them.  Each step done is undone when a later one fails: the host
        # keeps the sets and rules it had.
        undo = []
        if 'stage' in ipset_steps:
            lines, reverse = ipset_steps['stage']
            problem = self._ipset_restore(lines)
            if problem is not None:
                self._refuse_sets('ipset restore refused the staging sets (%s)' % problem, reverse)
            undo = list(reverse)
            for line, line_undo in zip(*ipset_steps['switch']):
                rc, out, err = self.run_command([self.ipset] + line.split())
                if rc != 0:
                    self._refuse_sets('ipset %s failed (%s)' % (line, ' '.join((err or out).split())), undo)
                undo.insert(0, line_undo)
        try:
            self._apply_rules(blocks)
        except BackendError as error:
            errors = self._ipset_undo(undo)
            if errors:
                raise BackendError('%s; putting the ipsets back failed: %s' % (error, '; '.join(errors)))
            raise
        if 'cleanup' in ipset_steps:
            problem = self._ipset_restore(ipset_steps['cleanup'][0])
            if problem is not None:
                raise BackendError('%s: the new rules and sets are in force, but destroying the ipsets of ours no '
                                   'longer needed failed (%s); the next run destroys them' % (self.name, problem))

    def _refuse_sets(self, problem, undo):
        errors = self._ipset_undo(undo)
        raise BackendError('%s: %s; %s' % (self.name, problem, 'undoing the steps before failed too: %s'
                                           % '; '.join(errors) if errors else 'nothing was changed'))

    def _apply_rules(self, blocks):
        # 1. Validate every family before applying any, so a parse error anywhere changes nothing.
        for family, block in blocks:
            rc, out, err = self._restore(family, block, '--test', '--noflush')
            if rc != 0:
                explanation = self._explain(family, block, out, err)[0]
                raise BackendError('%s; nothing was changed' % explanation)
        # 2. Apply.  IPv4 and IPv6 (and each table within a family: one COMMIT each) are separate kernel
        # transactions, and --test does not show what only the kernel checks.  So when a later commit
        # fails, every table already committed in this run is put back from the save output read at
        # the start: the host never keeps half of a run.
        applied = []
        for family, block in blocks:
            rc, out, err = self._restore(family, block, '--noflush', '--wait=%d' % RESTORE_WAIT_SECONDS)
            if rc == 0:
                applied.append((family, self._block_tables(block)))
                continue
            explanation, line_match = self._explain(family, block, out, err)
            committed = self._block_tables(block, before_line=int(line_match.group(1)) if line_match else None)
            rollback_errors = self._roll_back(applied + [(family, committed)])
            if rollback_errors:
                raise BackendError('%s; rolling back failed too: %s' % (explanation, '; '.join(rollback_errors)))
            raise BackendError('%s; the ruleset is as it was before this run' % explanation)

    @staticmethod
    def _block_tables(block, before_line=None):
        """The tables a block commits; with ``before_line``, only those committed before that line."""
        tables, current = [], None
        for number, line in enumerate(block.splitlines(), 1):
            if line.startswith('*'):
                current = line[1:]
            elif line == 'COMMIT' and current:
                if before_line is None or number < before_line:
                    tables.append(current)
        return tables

    def _roll_back(self, committed):
        """Put the given (family, tables) back as the save output read at the start had them."""
        errors = []
        for family, tables in committed:
            if not tables:
                continue
            text = saved_sections(self.states[family].text, tables)
            rc, out, err = self._restore(family, text, '--counters', '--wait=%d' % RESTORE_WAIT_SECONDS)
            if rc != 0:
                errors.append('%s %s: %s' % (FAMILY_LABEL[family], ','.join(tables), (err or out).strip()))
        return errors

    # -- persistence ------------------------------------------------------------
    def save_files(self):
        configured = self.options.get('iptables_save_files') or {}
        if os.path.isdir('/etc/sysconfig'):
            defaults = {4: '/etc/sysconfig/iptables', 6: '/etc/sysconfig/ip6tables'}
        else:
            defaults = {4: '/etc/iptables/rules.v4', 6: '/etc/iptables/rules.v6'}
        return {4: configured.get('ipv4') or defaults[4], 6: configured.get('ipv6') or defaults[6]}

    def persisted_lines(self, rules, family):
        """{table: [{'chain', 'declaration', 'base', 'jump', 'rules'}]}: our lines in a save file, as live."""
        ours = {}
        for table_name, chains in desired_chains(rules or [], family, self.use_sets).items():
            ours[table_name] = []
            for chain in sorted(chains):
                base = self.base_chain(SECTION_OF_CHAIN[chain], family)
                ours[table_name].append({
                    'chain': chain,
                    'declaration': ':%s - [0:0]' % chain,
                    'base': base,
                    'jump': '-A %s %s' % (base, jump_spec(chain)),
                    'rules': [format_kernel_rule(kernel_rule) for kernel_rule in chains[chain]],
                })
        return ours

    def _ipset_layout(self):
        return 'redhat' if os.path.isdir('/etc/sysconfig') else 'debian'

    def ipset_save_file(self):
        return self.options.get('ipset_save_file') or IPSET_SAVE_FILES[self._ipset_layout()]

    def _persist_sets(self, rules, check_mode):
        """Our sets in the distribution's ipset file (loaded at boot before the iptables rules that match them),
        every other line of it kept; True when the file changed."""
        wanted = self.wanted_sets(rules or [])
        path = self.ipset_save_file()
        current = read_file_or_none(path)
        if current is None and not wanted:
            return False
        merged = merge_ipset_file(current or '', wanted, set(self.ipsets.foreign))
        if wanted and not self.options.get('ipset_save_file'):
            self._check_ipset_loader(path)
        if merged is None:
            return remove_file(path, check_mode)
        return write_file_atomic(path, merged, check_mode, mode=0o600)

    def _check_ipset_loader(self, path):
        """Warn when nothing loads ``path`` at boot before the iptables rules that match its sets."""
        loader, package = IPSET_LOADERS[self._ipset_layout()]
        if not os.path.exists(loader):
            self.notices.append('%s: the rules match ipsets, which %s keeps for the next boot, but %s (%s) is '
                                'not installed to load them before the iptables rules: install %s, or the '
                                'saved rules will not load at boot' % (self.name, path, package, loader, package))

    def persist(self, rules, check_mode):
        changed = self._persist_sets(rules, check_mode)
        return self._persist_rule_files(rules, check_mode) or changed

    def _persist_rule_files(self, rules, check_mode):
        """Our lines in each family's save file, every other line kept; True when a file changed."""
        changed = False
        for family, path in sorted(self.save_files().items()):
            ours = self.persisted_lines(rules, family)
            current = read_file_or_none(path)
            if current is None and not ours:
                continue
            # Chains with our names that are not ours stay in the file as they are, like in the kernel.
            keep = {}
            for table_name, chain in self.states[family].foreign if family in self.states else ():
                keep.setdefault(table_name, set()).add(chain)
            merged = merge_save_file(current or '', ours, keep)
            if merged is None:
                changed = remove_file(path, check_mode) or changed
            else:
                changed = write_file_atomic(path, merged, check_mode, mode=0o600) or changed
        return changed

    def persistence_files(self, rules):
        files = [path for _family, path in sorted(self.save_files().items())]
        if self.wanted_sets(rules or []):
            files.append(self.ipset_save_file())
        return files


def merge_ipset_file(text, wanted, foreign=()):
    """An ``ipset save`` file's text with the lines of our sets replaced by ``wanted`` ({name: (family,
    networks)}); lines of other sets, and of sets with our prefix that are not ours (``foreign``), kept as they
    were.  None when nothing is left (the file is to be removed)."""
    kept = []
    for line in text.splitlines():
        words = line.split()
        if len(words) > 1 and words[1].startswith(IPSET_PREFIX) and words[1] not in foreign:
            continue
        kept.append(line)
    for name in sorted(wanted):
        family, networks = wanted[name]
        kept += ipset_lines(name, family, networks)
    if not any(line.strip() for line in kept):
        return None
    return '\n'.join(kept) + '\n'


def saved_sections(text, tables):
    """Restore input that puts ``tables`` back as ``text`` (save output) had them; empty when absent there."""
    sections, current = {}, None
    for line in text.splitlines():
        if line.startswith('*'):
            current = line[1:].strip()
            sections[current] = [line]
        elif current is not None:
            sections[current].append(line)
            if line.strip() == 'COMMIT':
                current = None
    output = []
    for table in tables:
        output += sections.get(table, ['*' + table, 'COMMIT'])
    return '\n'.join(output) + '\n'
