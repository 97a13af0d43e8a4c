# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Property-based round trips of the kernel backends, against real kernels in throwaway namespaces.

Hypothesis draws random valid rule lists A and B: both address families, single ports and port ranges (that
overlap, touch, or are many enough for iptables' multiport to split them into blocks), address lists (hosts
and networks of any prefix length, sources and destinations, long enough to be kernel sets), every direction and action, names and comments
up to the limits with non-ASCII text, and translation rules.  B keeps some of A's rules, changes one field of
others, and adds new ones, some under A's names.  On each backend (nftables, iptables-nft, iptables-legacy),
starting from an admin's ruleset (nftables: four, which place our chains differently):

- check mode with A says changed exactly when the rules of ours differ, and runs no command that writes;
- A is applied (diff's ``before`` is what was live), and the rules of ours read back from the kernel are
  ``normalize_rules(A)``; a second run with A changes nothing and runs no command that writes or checks a
  transaction;
- then B, the same way;
- then ``state: absent``: no rule of ours is left, the ruleset is byte for byte the admin's, and a second
  absent changes nothing.

Each backend gets one fresh namespace (names start with ``lxP``) and one python process in it that runs all
of that backend's examples; this file is that process's program too (``python test_properties.py BACKEND
EXAMPLES SECONDS``).  The iptables variant is the one whose tables hold the admin's ruleset, as detection
finds it.  The driver uses only the library's public flow: ``select_backend``, ``converge``,
``current_rules`` and ``normalize_rules``.  A failure prints hypothesis' falsifying example, also as JSON.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import time
import traceback

import pytest

from netlab import COLLECTIONS, Namespace

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='needs root for network namespaces')
# Up to SET_MIN_ADDRESSES + 1 addresses a field: lists from one network per kernel rule to a kernel set (an nftables
# interval set, an ipset), overlapping ones often (short prefixes are drawn often).
ADDRESS_LIST_MAX = 5

PREFIX = 'lxP'
BACKENDS = ('nftables', 'iptables-nft', 'iptables-legacy')
# Examples per backend, and the seconds after which a backend stops drawing new ones (both bounded: a slow
# machine runs fewer examples, never longer). An example costs about 0.15 s on iptables-legacy, 0.25 s on
# nftables and 0.4 s on iptables-nft here (2 cores). LYNC_PROPERTIES_SEED=random (or a number) draws other
# examples than the fixed ones of a normal run; LYNC_PROPERTIES_SECONDS sets every backend's budget.
EXAMPLES = int(os.environ.get('LYNC_PROPERTIES_EXAMPLES', '300'))
SECONDS = dict((backend, float(os.environ.get('LYNC_PROPERTIES_SECONDS', seconds)))
               for backend, seconds in (('nftables', 60), ('iptables-nft', 80), ('iptables-legacy', 50)))
# After a failure hypothesis shrinks the example (its own bound is 300 seconds): here for at most
# SHRINK_SECONDS, and not past the budget plus SHRINK_MIN_SECONDS unless that leaves less than those.
SHRINK_SECONDS = 90
SHRINK_MIN_SECONDS = 30
# A driver process, whatever happens: its budget, shrinking, and set-up and drawing.
DRIVER_EXTRA_SECONDS = SHRINK_SECONDS + 60

# The kernel comment (RULE_MARK + name + ': ' + comment) must fit the backend's limit in UTF-8 bytes.
COMMENT_BYTES = {'nftables': 128, 'iptables-nft': 255, 'iptables-legacy': 255}

# The admin's rulesets each example starts from: the backend must put its rules beside them and, when
# absent, leave them byte for byte.
NFT_ADMIN = '''table inet filter {
    chain input {
        type filter hook input priority filter; policy accept;
        tcp dport 22 accept comment "admin ssh"
    }

    chain forward {
        type filter hook forward priority filter; policy accept;
        ct state established,related accept
    }

    chain output {
        type filter hook output priority filter; policy accept;
    }
}
'''
IPTABLES_ADMIN = '''*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 22 -m comment --comment "admin ssh" -j ACCEPT
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o eth9 -j MASQUERADE
COMMIT
'''
NFT_IPV6_DROP = '''table ip6 filter {
    chain input {
        type filter hook input priority filter; policy drop;
    }

    chain forward {
        type filter hook forward priority filter; policy drop;
    }

    chain output {
        type filter hook output priority filter; policy drop;
    }
}
'''
# nftables hosts, each placing our chains differently:
# - admin: the admin's inet filter holds our chains for both families, entered by jumps;
# - bare: no base chain at all, our chains are base chains in a table of ours;
# - split: IPv6 is decided in an ip6 table with policy drop, IPv4 in the inet table: a rule without addresses
#   is written to both, the inet copy restricted to IPv4 (meta nfproto);
# - ipv4-only: the admin's ip table holds IPv4, a table of ours (inet, restricted to IPv6) the rest.
NFT_BASELINES = {
    'admin': NFT_ADMIN,
    'bare': '',
    'split': NFT_ADMIN + '\n' + NFT_IPV6_DROP,
    'ipv4-only': NFT_IPV6_DROP.replace('table ip6 filter', 'table ip filter').replace('policy drop', 'policy accept'),
}
BASELINES = {'nftables': tuple(NFT_BASELINES), 'iptables-nft': ('admin',), 'iptables-legacy': ('admin',)}


# -- the driver: runs inside the namespace ----------------------------------------------------------------

class StepFailed(AssertionError):
    """A library call raised; the message is its traceback (text only, so that no frame keeps a backend alive)."""


class Kernel(object):
    """This namespace's firewall as one backend sees it, driven through the library's public flow only."""

    def __init__(self, backend):
        from ansible_collections.lync.xmpp_federation.plugins.module_utils import backend as flow
        from ansible_collections.lync.xmpp_federation.plugins.module_utils import detect

        self.flow, self.detect = flow, detect
        self.backend = backend
        self.variant = backend.split('-')[1] if backend.startswith('iptables-') else None
        self.options = {'backend': 'iptables' if self.variant else 'nftables', 'persist': False}
        self.commands = []

    # AnsibleModule.run_command and get_bin_path, outside Ansible.
    def run_command(self, argv, data=None, binary_data=False):
        self.commands.append([str(word) for word in argv])
        if data and not binary_data:
            data += '\n'
        proc = subprocess.run(argv, input=data.encode('utf-8') if data else None, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=120, check=False)
        return (proc.returncode, proc.stdout.decode('utf-8', 'surrogateescape'),
                proc.stderr.decode('utf-8', 'surrogateescape'))

    @staticmethod
    def get_bin_path(name):
        return shutil.which(name, path=os.pathsep.join([os.environ.get('PATH', ''), '/sbin', '/usr/sbin',
                                                        '/usr/local/sbin']))

    def _call(self, what, function):
        """``function()``'s value; a failure becomes StepFailed with the traceback as text.

        Nothing of the failed call is kept: a backend holds the host lock until it is freed, and hypothesis
        keeps a failure while it shrinks, so a kept traceback would hold the lock against the next example.
        """
        failure = None
        try:
            return function()
        except Exception:
            failure = traceback.format_exc()
        raise StepFailed('%s raised:\n%s' % (what, failure))

    def converge(self, rules, state='present', check_mode=False):
        """converge() on a backend chosen as the module chooses it -> (result, the commands it ran)."""
        self.commands = []

        def run():
            backend = self.detect.select_backend(self.run_command, self.get_bin_path, dict(self.options))
            return self.flow.converge(backend, rules, state, False, check_mode)
        return self._call('converge(%s%s)' % (state, ', check mode' if check_mode else ''), run), self.commands

    def live_rules(self):
        """The rules of ours read back from the kernel (canonical, sorted)."""
        def read():
            backend = self.detect.select_backend(self.run_command, self.get_bin_path, dict(self.options))
            backend.read()
            return backend.current_rules()
        return self._call('reading the rules back', read)

    # The namespace's ruleset, set and read with the firewall's own tools, not with the library.
    def tool(self, family):
        return '%s-%s' % ({4: 'iptables', 6: 'ip6tables'}[family], self.variant)

    def reset(self, baseline):
        if self.variant:
            for family in (4, 6):
                sh(self.tool(family) + '-restore', '-w', '60', data=IPTABLES_ADMIN)
            # The ipsets long lists became (an example that failed halfway leaves them), now that no rule
            # matches them: every set of this namespace.
            sh('ipset', 'destroy')
        else:
            sh('nft', '-f', '-', data='flush ruleset\n' + NFT_BASELINES[baseline])

    def snapshot(self):
        """The whole ruleset as the firewall's tools print it (counters zeroed, tables in name order)."""
        if not self.variant:
            return re.sub(r'counter packets \d+ bytes \d+', 'counter', sh('nft', 'list', 'ruleset'))
        texts = []
        for family in (4, 6):
            tables, current = {}, None
            for line in sh(self.tool(family) + '-save').splitlines():
                if line.startswith('#'):
                    continue
                if line.startswith('*'):
                    current = tables.setdefault(line[1:], [])
                current.append(re.sub(r'\[\d+:\d+\]$', '[0:0]', line))
            texts.append('\n'.join('\n'.join(tables[name]) for name in sorted(tables)))
        # The sets too (their hash seed and the order a hash lists its entries in are no content).
        sets = sorted(re.sub(r' initval 0x[0-9a-f]+', '', line) for line in sh('ipset', 'save').splitlines())
        return '\n# IPv6\n'.join(texts) + '\n# ipsets\n' + '\n'.join(sets) + '\n'


def sh(*argv, **kwargs):
    data = kwargs.get('data')
    proc = subprocess.run(argv, input=data.encode('utf-8') if data else None, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=120, check=False)
    if proc.returncode != 0:
        error = proc.stderr.decode('utf-8', 'replace')
        raise RuntimeError('%s failed (%d): %s' % (' '.join(argv), proc.returncode, error))
    return proc.stdout.decode('utf-8', 'surrogateescape')


def writes(commands):
    """The commands that write (or check) a transaction: anything but listing and saving the ruleset."""
    def reads(argv):
        program = os.path.basename(argv[0])
        # ipset save: the iptables backends' one read of the sets (sets of ours hold long address lists).
        saves_sets = program == 'ipset' and argv[1:] == ['save']
        return ((program == 'nft' and 'list' in argv) or program.endswith('-save') or saves_sets
                or '-V' in argv or '--version' in argv)
    return [argv for argv in commands if not reads(argv)]


def rules_diff(expected, live):
    """What differs between two rule lists, rule by rule (by name), for a failure message."""
    expected_by_name = dict((rule['name'], rule) for rule in expected)
    live_by_name = dict((rule['name'], rule) for rule in live)
    lines = []
    for name in sorted(set(expected_by_name) | set(live_by_name)):
        want, got = expected_by_name.get(name), live_by_name.get(name)
        if want == got:
            continue
        if got is None:
            lines.append('rule %r: missing from the kernel' % name)
        elif want is None:
            lines.append('rule %r: in the kernel, not in the list: %r' % (name, got))
        else:
            for field in sorted(set(want) | set(got)):
                if want.get(field) != got.get(field):
                    lines.append('rule %r, %s: expected %r, read back %r'
                                 % (name, field, want.get(field), got.get(field)))
    if not lines and expected != live:
        lines.append('same rules, another order: %r vs %r' % ([rule['name'] for rule in expected],
                                                              [rule['name'] for rule in live]))
    return '\n'.join(lines)


def check_round_trip(kernel, normalize_rules, baseline, rules_a, rules_b):
    """The property: A, then B, are applied exactly and idempotently; absent leaves the admin's ruleset."""
    kernel.reset(baseline)
    admin = kernel.snapshot()
    previous = []
    for label, rules in (('A', rules_a), ('B', rules_b)):
        expected = normalize_rules(rules)
        differs = expected != previous
        # Check mode: the same verdict, and nothing written (nor checked: nothing is applied).
        result, commands = kernel.converge(rules, check_mode=True)
        assert result['changed'] == differs and not writes(commands), \
            'check mode with %s: changed=%s (the rules of ours %s), commands %s' % (
                label, result['changed'], 'differ' if differs else 'are already these', writes(commands))
        result, _commands = kernel.converge(rules)
        assert result['backend'] == kernel.backend, result['backend']
        assert result['changed'] == differs, 'applying %s: changed=%s, but the rules of ours %s' % (
            label, result['changed'], 'differed' if differs else 'were already these')
        # What diff mode shows as before: the rules of ours that were live.
        assert not differs or result['before'] == previous, 'applying %s: before is not what was live:\n%s' % (
            label, rules_diff(previous, result['before']))
        live = kernel.live_rules()
        assert live == expected, 'rules %s read back differ from the normalised input:\n%s\nscript:\n%s' % (
            label, rules_diff(expected, live), result['script'])
        again, commands = kernel.converge(rules)
        assert not again['changed'] and again['script'] == '' and not writes(commands), \
            're-running %s is not a no-op: changed=%s, commands %s, script:\n%s' % (
                label, again['changed'], writes(commands), again['script'])
        previous = expected
    result, _commands = kernel.converge(None, 'absent')
    assert result['changed'] == bool(previous), 'absent: changed=%s with %d rules of ours' % (
        result['changed'], len(previous))
    live = kernel.live_rules()
    assert live == [], 'absent left rules of ours: %r' % live
    after = kernel.snapshot()
    assert after == admin, 'absent did not leave the admin\'s ruleset byte for byte:\n%s' % ''.join(
        difflib.unified_diff(admin.splitlines(True), after.splitlines(True), 'admin', 'after absent'))
    again, commands = kernel.converge(None, 'absent')
    assert not again['changed'] and not writes(commands), 'a second absent is not a no-op: %s' % writes(commands)


# -- the strategies -------------------------------------------------------------------------------------------

def strategies(st, kernel_comment, comment_bytes):
    """-> (baselines -> strategy of one, strategy of rule lists A, function A -> strategy of rule lists B)."""
    name_pattern = r'\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z'
    names = st.one_of(st.from_regex(name_pattern), st.from_regex(r'\A[A-Za-z0-9][A-Za-z0-9_.-]{56,63}\Z'))

    # Comments: text without quotes, backslashes, control characters (Cc) or the line and paragraph separators
    # (Zl, Zp), as the rule model says; some characters that are likely to trouble a parser are drawn on
    # purpose (4-byte UTF-8, non-breaking and ideographic spaces, zero-width and bidi characters, a byte order
    # mark, the single quote that iptables-save escapes, shell and nft punctuation).
    excluded = ('Cc', 'Cs', 'Zl', 'Zp')
    special = st.sampled_from(['\u00e9', '\u00fc', '\u4e2d', '\U0001f600', '\U00010348', '\u00a0', '\u3000',
                               '\u200b', '\ufeff', '\u202e', "'", '#', ';', '{', '}', '$', '`', ' ', '-', ':', '/',
                               ',', '*', '!'])
    characters = st.one_of(special, st.characters(codec='utf-8', exclude_categories=excluded,
                                                  exclude_characters='"\\'))
    # Wide text (3 and 4 bytes a character), so that the byte limit binds with fewer characters.
    wide = st.characters(codec='utf-8', min_codepoint=0x800, exclude_categories=excluded)
    texts = st.one_of(st.text(characters, max_size=12), st.text(characters, min_size=40, max_size=260),
                      st.text(wide, min_size=40, max_size=130))

    def fit(name, text):
        """``text`` cut (at a character boundary) so that the kernel comment fits the backend's limit."""
        overhead = kernel_comment({'name': name, 'comment': 'x'})
        byte_budget = comment_bytes - len(overhead.encode('utf-8')) + 1
        used, kept = 0, []
        for character in text:
            size = len(character.encode('utf-8'))
            if used + size > byte_budget:
                break
            kept.append(character)
            used += size
        return ''.join(kept)

    def ipv4():
        return st.integers(0, 255).map(lambda host: '198.51.100.%d' % host)

    def ipv6_value():
        groups = st.lists(st.one_of(st.just(0), st.integers(0, 0xffff)), min_size=6, max_size=6)
        return groups.map(lambda values: ipaddress.IPv6Address(
            (0x20010db8 << 96) | sum(value << (16 * (5 - index)) for index, value in enumerate(values))))

    def ipv6():
        """An address of 2001:db8::/32 as a user may write it: compressed, exploded or upper case."""
        return st.tuples(ipv6_value(), st.sampled_from(('compressed', 'exploded', 'upper'))).map(
            lambda pair: pair[0].exploded if pair[1] == 'exploded' else (
                str(pair[0]).upper() if pair[1] == 'upper' else str(pair[0])))

    def address_items(family):
        """A host (bare or with a full prefix) or a network of any length, host bits possibly set."""
        host = ipv4() if family == 4 else ipv6()
        size = 32 if family == 4 else 128
        lengths = st.one_of(st.integers(0, size), st.sampled_from((0, 1, size // 4, size // 2, size - 1, size)))
        return st.one_of(host, host.map(lambda text: '%s/%d' % (text, size)),
                         st.tuples(host, lengths).map(lambda pair: '%s/%d' % pair))

    def nat_targets(family):
        return ipv4() if family == 4 else ipv6_value().map(str)

    port_numbers = st.one_of(st.integers(1, 65535), st.integers(5260, 5300), st.sampled_from((1, 2, 65534, 65535)))

    @st.composite
    def port_items(draw, widths):
        low = draw(port_numbers)
        kind = draw(st.sampled_from(('int', 'text', 'range', 'colon-range')))
        if kind == 'int':
            return low
        if kind == 'text':
            return str(low)
        high = min(65535, low + draw(widths))
        return '%d%s%d' % (low, '-' if kind == 'range' else ':', high)

    # A few items of any width, or many narrow ones: after merging, often more than multiport's 15 (a range
    # counting as two), so that iptables splits them into blocks.
    port_lists = st.one_of(st.lists(port_items(st.one_of(st.integers(0, 12), st.integers(0, 65535))),
                                    min_size=1, max_size=4),
                           st.lists(port_items(st.integers(0, 3)), min_size=8, max_size=40))

    @st.composite
    def rules(draw, name_choices):
        name = draw(name_choices)
        kind = draw(st.sampled_from(('filter', 'filter', 'filter', 'dnat', 'snat')))
        family = draw(st.sampled_from((4, 6) if kind != 'filter' else (None, 4, 6)))
        rule = {'name': name}
        if kind == 'filter':
            rule['direction'] = draw(st.sampled_from(('in', 'out', 'forward')))
            action = draw(st.sampled_from((None, 'accept', 'drop', 'reject')))
        else:
            rule.update(direction='forward', nat=kind, nat_to=draw(nat_targets(family)))
            action = draw(st.sampled_from((None, 'accept')))
        if action:
            rule['action'] = action
        protocol = draw(st.sampled_from((None, 'tcp', 'udp')))
        if protocol:
            rule['protocol'] = protocol
        rule['ports'] = draw(port_lists)
        if family:
            for field in ('source', 'destination'):
                # A translation matches the address it rewrites: a dnat needs a destination, a snat a source.
                needed = (kind, field) in (('dnat', 'destination'), ('snat', 'source'))
                addresses = draw(st.lists(address_items(family), min_size=1 if needed else 0, max_size=ADDRESS_LIST_MAX))
                if addresses:
                    rule[field] = addresses
        comment = draw(st.one_of(st.none(), texts))
        if comment is not None:
            rule['comment'] = fit(name, comment)
        return rule

    def rule_lists(name_choices):
        return st.lists(rules(name_choices), max_size=6, unique_by=lambda rule: rule['name'])

    @st.composite
    def one_change(draw, rule):
        """``rule`` with one field changed (the change may happen to give the same value)."""
        rule = dict(rule)
        addresses = rule.get('source', []) + rule.get('destination', []) + [rule.get('nat_to')]
        addresses = [address for address in addresses if address]
        family = ipaddress.ip_network(addresses[0], strict=False).version if addresses else None
        fields = ['comment', 'ports', 'protocol'] + (['action', 'direction'] if 'nat' not in rule else ['nat_to'])
        fields += ['source', 'destination'] if family else []
        field = draw(st.sampled_from(fields))
        if field == 'comment':
            rule['comment'] = fit(rule['name'], draw(texts))
        elif field == 'ports':
            rule['ports'] = draw(port_lists)
        elif field == 'protocol':
            rule['protocol'] = 'udp' if rule.get('protocol') in (None, 'tcp') else 'tcp'
        elif field == 'action':
            rule['action'] = draw(st.sampled_from(('accept', 'drop', 'reject')))
        elif field == 'direction':
            rule['direction'] = draw(st.sampled_from(('in', 'out', 'forward')))
        elif field == 'nat_to':
            rule['nat_to'] = draw(nat_targets(family))
        else:
            needed = (rule.get('nat'), field) in (('dnat', 'destination'), ('snat', 'source'))
            rule[field] = draw(st.lists(address_items(family), min_size=1 if needed else 0, max_size=ADDRESS_LIST_MAX))
        return rule

    def lists_after(rules_a):
        """B: rules of A kept as they were, rules of A with one field changed, and new rules (some under A's
        names: a rule replaced by another of the same name)."""
        known = [rule['name'] for rule in rules_a]
        if not rules_a:
            return rule_lists(names)
        keep = st.lists(st.sampled_from(rules_a), max_size=len(rules_a))
        changed = st.lists(st.sampled_from(rules_a).flatmap(one_change), max_size=len(rules_a))
        new = rule_lists(st.one_of(st.sampled_from(known), names))
        return st.tuples(changed, new, keep).map(lambda lists: unique_names(lists[0] + lists[1] + lists[2]))

    return st.sampled_from, rule_lists(names), lists_after


def unique_names(rules):
    """The first rule of each name."""
    seen, kept = set(), []
    for rule in rules:
        if rule['name'] not in seen:
            seen.add(rule['name'])
            kept.append(rule)
    return kept


def main(argv):
    """Run ``examples`` round trips (at most ``seconds`` of drawing new ones) on ``backend``; print a summary."""
    from hypothesis import HealthCheck, given, note, seed as fixed_seed, settings
    from hypothesis import strategies as st
    from hypothesis.internal.conjecture import engine
    from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import (
        RuleError,
        kernel_comment,
        normalize_rules,
    )

    def valid(rules):
        """The model refuses a few drawn lists on purpose (a /0 as a rule's only address would open both
        families): those are not round trips to try."""
        try:
            normalize_rules(rules)
        except RuleError:
            return False
        return True

    backend, examples, seconds = argv[1], int(argv[2]), float(argv[3])
    kernel = Kernel(backend)
    baselines, lists_a, lists_after = strategies(st, kernel_comment, COMMENT_BYTES[backend])
    stats = {'backend': backend, 'examples': 0, 'rules': 0, 'skipped': 0, 'failed': False}
    started = time.monotonic()
    seed_text = os.environ.get('LYNC_PROPERTIES_SEED', 'derandomize')

    @settings(max_examples=examples, deadline=None, derandomize=seed_text == 'derandomize', database=None,
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False, print_blob=False)
    @given(st.data())
    def round_trips(data):
        baseline = data.draw(baselines(BASELINES[backend]), label='baseline')
        rules_a = data.draw(lists_a.filter(valid), label='rules A')
        rules_b = data.draw(lists_after(rules_a).filter(valid), label='rules B')
        # A time budget: once it is spent, the examples still drawn do not go to the kernel (drawing them is
        # cheap). A failure found before is still shrunk on the kernel. Rejecting instead, or drawing less,
        # would make the same draws end differently, which hypothesis rightly calls flaky.
        if not stats['failed'] and time.monotonic() - started > seconds:
            stats['skipped'] += 1
            return
        note('as JSON: %s' % json.dumps({'baseline': baseline, 'rules_a': rules_a, 'rules_b': rules_b},
                                        ensure_ascii=True))
        try:
            check_round_trip(kernel, normalize_rules, baseline, rules_a, rules_b)
        except BaseException:
            if not stats['failed']:
                stats['failed'] = True
                elapsed = time.monotonic() - started
                # Bound the shrinking (an internal of hypothesis, read when shrinking starts; without it,
                # hypothesis' own bound applies).
                shrink = max(SHRINK_MIN_SECONDS, min(SHRINK_SECONDS, seconds + SHRINK_MIN_SECONDS - elapsed))
                if hasattr(engine, 'MAX_SHRINKING_SECONDS'):
                    engine.MAX_SHRINKING_SECONDS = shrink
                print('first failure after %.0f s (%d examples passed); shrinking it for at most %d s (where '
                      'hypothesis says "five minutes" below, it means these)' % (elapsed, stats['examples'], shrink),
                      flush=True)
            raise
        stats['examples'] += 1
        stats['rules'] += len(rules_a) + len(rules_b)

    if seed_text not in ('derandomize', 'random'):
        round_trips = fixed_seed(int(seed_text))(round_trips)
    round_trips()
    stats['seconds'] = round(time.monotonic() - started, 1)
    print(json.dumps(stats))


# -- the tests: run by pytest on the machine -----------------------------------------------------------------

def run_properties(backend):
    """Run this file's driver for ``backend`` in a fresh namespace -> (returncode, stdout, stderr, seconds)."""
    namespace = Namespace(PREFIX)
    started = time.monotonic()
    try:
        env = dict(os.environ, PYTHONPATH=COLLECTIONS, PYTHONIOENCODING='utf-8')
        # A PID namespace of its own as well: backend detection counts a firewalld process anywhere in /proc
        # (issue 8), so another test's firewalld on this machine would make every run here refuse.
        argv = ['ip', 'netns', 'exec', namespace.name, 'unshare', '--pid', '--kill-child', '--mount-proc',
                sys.executable, os.path.abspath(__file__), backend, str(EXAMPLES), str(SECONDS[backend])]
        try:
            proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                  timeout=SECONDS[backend] + DRIVER_EXTRA_SECONDS, check=False)
        except subprocess.TimeoutExpired as error:
            return None, (error.stdout or b'').decode('utf-8', 'replace'), \
                (error.stderr or b'').decode('utf-8', 'replace'), time.monotonic() - started
        return (proc.returncode, proc.stdout.decode('utf-8', 'replace'), proc.stderr.decode('utf-8', 'replace'),
                time.monotonic() - started)
    finally:
        namespace.delete()


def tail(text, size=20000):
    return text if len(text) <= size else '[...]\n' + text[-size:]


@pytest.mark.parametrize('backend', BACKENDS)
def test_random_rule_lists_round_trip_and_rerun_as_no_op(backend, capsys):
    returncode, out, err, seconds = run_properties(backend)
    assert returncode == 0, 'round trips on %s %s after %.0f s:\n%s\n%s' % (
        backend, 'timed out' if returncode is None else 'failed', seconds, tail(out), tail(err))
    summary = json.loads(out.strip().splitlines()[-1])
    with capsys.disabled():
        print('\nproperties: %s: %d examples (%d rules) on the kernel in %.1f s%s' % (
            backend, summary['examples'], summary['rules'], summary['seconds'],
            ', %d more drawn after the time budget' % summary['skipped'] if summary['skipped'] else ''))
    # A run that checked next to nothing proves nothing.
    assert summary['examples'] >= min(25, EXAMPLES), summary


if __name__ == '__main__':
    main(sys.argv)
