# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The iptables backend against iptables-save output recorded from real kernels.

The fixtures under fixtures/iptables/ were recorded by record.sh there: an
admin ruleset, then rules.json applied by this backend, then hand edits of
ours (messy) or foreign content in our chains (tainted), and an admin's chain
named like ours (namesake).  The only double is ``RecordedHost``: it serves
the recorded output for *-save and records every command, restore input
included.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os

import pytest

from ansible_collections.lync.xmpp_federation.plugins.module_utils import backend as backend_module
from ansible_collections.lync.xmpp_federation.plugins.module_utils.backend import (
    BackendError,
    OwnershipError,
    PersistenceError,
    converge,
    group_kernel_rules,
    hold_host_lock,
    port_span_text,
)
from ansible_collections.lync.xmpp_federation.plugins.module_utils.iptables import (
    IptablesBackend,
    KernelRule,
    format_kernel_rule,
    ipset_name,
    merge_ipset_file,
    merge_save_file,
    multiport_blocks,
    parse_kernel_rule,
    save_quote,
    split_words,
)
from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import OUR_MARK, RuleError, normalize_rules

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'iptables')
VARIANTS = ('nft', 'legacy')
TOOL = {4: 'iptables', 6: 'ip6tables'}


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


with open(os.path.join(FIXTURES, 'rules.json')) as _rules:
    RULES = normalize_rules(json.load(_rules))


def without_dated_comments(text):
    """iptables-save's '# Generated ... on <date>' lines differ between recordings."""
    return ''.join(line + '\n' for line in text.splitlines() if not line.startswith('# '))


class RecordedHost(object):
    """run_command/get_bin_path doubles for one host: recorded *-save output, every call recorded.

    ``restore_results`` maps (family, testing) to the (rc, out, err) the
    restore tool gives; by default it succeeds.  ``save_results`` maps a save
    tool's name to the (rc, out, err) it gives instead of the recording.
    """

    def __init__(self, variant, stage, restore_results=None, binaries=None, versions=None, saves=None,
                 save_results=None):
        self.variant = variant
        self.saves = saves or dict(('%s-%s-save' % (TOOL[family], variant),
                                    fixture('%s-%s.v%d.save' % (variant, stage, family))) for family in (4, 6))
        self.restore_results = restore_results or {}
        self.save_results = save_results or {}
        self.binaries = binaries if binaries is not None else set(
            '%s-%s-%s' % (TOOL[family], variant, kind) for family in (4, 6) for kind in ('save', 'restore'))
        self.versions = versions or {}
        self.calls = []

    def get_bin_path(self, name, required=False, opt_dirs=None):
        return '/usr/sbin/' + name if name in self.binaries else None

    def run_command(self, argv, data=None, binary_data=False):
        self.calls.append((argv, data))
        name = os.path.basename(argv[0])
        if name in self.saves:
            return self.save_results.get(name, (0, self.saves[name], ''))
        if argv[1:] == ['-V']:
            return 0, self.versions[name], ''
        if name.endswith('-restore'):
            family = 6 if name.startswith('ip6') else 4
            return self.restore_results.get((family, '--test' in argv), (0, '', ''))
        raise AssertionError('unexpected command %r' % (argv,))

    def restores(self):
        return [(os.path.basename(argv[0]), argv[1:], data) for argv, data in self.calls
                if argv[0].endswith('-restore')]


def backend_for(host, tmp_path, **options):
    backend = IptablesBackend(host.run_command, host.get_bin_path, options, host.variant)
    # A backend holds its lock until the process ends: each one here gets its own.
    backend.lock_path = str(tmp_path / ('lock-%d' % id(backend)))
    return backend


def planned(host, tmp_path, rules, **options):
    """{family: restore input} a run with ``rules`` would apply, from the host's recorded state."""
    backend = backend_for(host, tmp_path, **options)
    backend.read()
    return dict((family, text) for _label, text, family in backend.plan(rules).steps)


def only(rules, *names):
    return [rule for rule in rules if rule['name'] in names]


# -- the text format --------------------------------------------------------------

def test_words_are_split_and_quoted_as_iptables_does():
    assert split_words(r'-m comment --comment "partner\'s edge: a \"b\"" -j ACCEPT') == [
        '-m', 'comment', '--comment', 'partner\'s edge: a "b"', '-j', 'ACCEPT']
    assert split_words('-A  X   -j Y') == ['-A', 'X', '-j', 'Y']
    with pytest.raises(ValueError):
        split_words('--comment "open')
    assert save_quote('lync-xmpp-federation') == 'lync-xmpp-federation'
    # Our rule mark holds a colon: quoted, as iptables-save prints it (see the recordings).
    assert save_quote('lync-xmpp:edge-snat') == '"lync-xmpp:edge-snat"'
    assert '--comment "lync-xmpp:edge-snat" -j SNAT' in fixture('nft-applied.v4.save')
    assert save_quote('row 1') == '"row 1"'
    assert save_quote("partner's.edge") == '"partner\\\'s.edge"'


def test_multiport_takes_fifteen_ports_a_range_counting_two():
    spans = [(port, port) for port in range(1, 16)]
    assert multiport_blocks(spans) == [tuple(spans)]
    assert multiport_blocks(spans + [(20, 20)]) == [tuple(spans), ((20, 20),)]
    ranges = [(100 * index, 100 * index + 5) for index in range(1, 9)]
    assert [len(block) for block in multiport_blocks(ranges)] == [7, 1]
    assert port_span_text((5000, 5010), ':') == '5000:5010' and port_span_text((5269, 5269), '-') == '5269'


def test_a_kernel_rule_reads_back_as_it_was_written():
    rule = KernelRule('LYNC-XMPP-FWD', '198.51.100.2/32', None, 'udp', ((1, 1), (100, 110)), 'lync-xmpp:a: b',
                      'REJECT', 'icmp-port-unreachable')
    line = format_kernel_rule(rule)
    assert line == ('-A LYNC-XMPP-FWD -s 198.51.100.2/32 -p udp -m multiport --dports 1,100:110 '
                    '-m comment --comment "lync-xmpp:a: b" -j REJECT --reject-with icmp-port-unreachable')
    assert parse_kernel_rule('LYNC-XMPP-FWD', line.split(' ', 2)[2]) == rule
    # The shorter forms a person might type read the same.
    assert parse_kernel_rule('LYNC-XMPP-DNAT', '-d 2001:db8:a::1 -p tcp --dport 5269 -m comment --comment x '
                             '-j DNAT --to-destination [2001:db8:b::66]') == KernelRule(
        'LYNC-XMPP-DNAT', None, '2001:db8:a::1/128', 'tcp', ((5269, 5269),), 'x', 'DNAT', '2001:db8:b::66')
    for foreign in ('-i eth0 -p tcp --dport 1 -j ACCEPT', '-p tcp ! --dport 1 -j ACCEPT', '-j ACCEPT',
                    '-p tcp -m state --state NEW --dport 1 -j ACCEPT',
                    '-p tcp --dport 1 -j DNAT --to-destination 198.51.100.1:80'):
        with pytest.raises(ValueError):
            parse_kernel_rule('LYNC-XMPP-IN', foreign)


# -- reading ------------------------------------------------------------------------

@pytest.mark.parametrize('variant', VARIANTS)
def test_an_admin_ruleset_holds_nothing_of_ours_and_is_read_once_per_family(variant, tmp_path):
    host = RecordedHost(variant, 'admin')
    backend = backend_for(host, tmp_path)
    backend.read()
    assert backend.current_rules() == [] and not backend.present_anywhere() and backend.in_place([])
    # One *-save call per family, without -t: every table in one read.
    assert [argv for argv, _data in host.calls] == [['/usr/sbin/iptables-%s-save' % variant],
                                                    ['/usr/sbin/ip6tables-%s-save' % variant]]
    transaction = backend.plan([])
    assert not transaction and transaction.text() == ''


@pytest.mark.parametrize('variant', VARIANTS)
def test_applied_rules_read_back_as_the_rules_that_made_them(variant, tmp_path):
    host = RecordedHost(variant, 'applied')
    backend = backend_for(host, tmp_path)
    result = converge(backend, RULES, 'present', False, False)
    assert backend.problems() == [] and result['warnings'] == []
    assert result['before'] == RULES
    assert not result['changed'] and result['script'] == ''
    assert host.restores() == []
    assert backend.present_anywhere()


@pytest.mark.parametrize('variant', VARIANTS)
def test_a_different_desired_list_is_a_difference(variant, tmp_path):
    backend = backend_for(RecordedHost(variant, 'applied'), tmp_path)
    backend.read()
    fewer = [rule for rule in RULES if rule['name'] != 'edge-snat']
    assert not backend.in_place(fewer)
    # Only the IPv4 nat table changes: the SNAT chain and its jump go, nothing else is written.
    assert backend.plan(fewer).text() == (
        '# lync-xmpp-federation IPv4: iptables-%s-restore --noflush\n'
        '*nat\n'
        ':LYNC-XMPP-DNAT - [0:0]\n'
        ':LYNC-XMPP-SNAT - [0:0]\n'
        '-D POSTROUTING -m comment --comment lync-xmpp-federation -j LYNC-XMPP-SNAT\n'
        '-A LYNC-XMPP-DNAT -d 198.51.100.1/32 -p tcp -m tcp --dport 5269 -m comment --comment '
        '"lync-xmpp:edge-dnat: public to Edge" -j DNAT --to-destination 198.51.100.66\n'
        '-X LYNC-XMPP-SNAT\n'
        'COMMIT\n' % variant)


# -- hand edits of ours: repaired ----------------------------------------------------

@pytest.mark.parametrize('variant', VARIANTS)
def test_hand_edits_of_ours_are_seen_and_repaired(variant, tmp_path):
    backend = backend_for(RecordedHost(variant, 'messy'), tmp_path)
    backend.read()
    assert backend.problems() == [
        "IPv4 filter LYNC-XMPP-OUT: rule not in our form (unexpected '-o'): -o eth0 -p tcp -m tcp --dport 5269 "
        '-m comment --comment "lync-xmpp:xmpp-s2s-outbound: by hand" -j ACCEPT']
    by_name = dict((rule['name'], rule) for rule in backend.current_rules())
    # One source's kernel rule deleted: the rule reads back with the other source only; the edited port shows.
    assert by_name['xmpp-s2s-inbound']['source'] == ['198.51.100.7/32']
    assert by_name['xmpp-s2s-inbound-ipv6']['ports'] == [5270]
    assert not backend.in_place(RULES)
    host = RecordedHost(variant, 'messy')
    result = converge(backend_for(host, tmp_path), RULES, 'present', False, False)
    ipv4, ipv6 = [data for name, flags, data in host.restores() if '--test' not in flags]
    # Both jumps into LYNC-XMPP-IN go (one was not first) and one comes back, first.
    assert ipv4.count('-D INPUT -m comment --comment lync-xmpp-federation -j LYNC-XMPP-IN\n') == 2
    assert '-I INPUT 1 -m comment --comment lync-xmpp-federation -j LYNC-XMPP-IN\n' in ipv4
    # Foreign rules are never named; the IPv4 nat table, untouched by the edits, is not rewritten.
    assert [line for line in result['script'].splitlines() if line.startswith(('-D', '-I', '-A'))
            and 'LYNC-XMPP' not in line] == []
    assert '*nat' not in ipv4
    assert ('-A LYNC-XMPP-IN -d 2001:db8:b::66/128 -p tcp -m tcp --dport 5269 -m comment --comment '
            '"lync-xmpp:xmpp-s2s-inbound-ipv6: XMPP federation row 1" -j ACCEPT\n') in ipv6
    assert 'eth0' not in result['script']
    assert result['warnings'] == ['%s (rewritten by this run)' % backend.problems()[0]]


# -- foreign content, chains named like ours: refused or left alone -------------------

def reads_only(host, variant):
    return [argv for argv, _data in host.calls] == [['/usr/sbin/iptables-%s-save' % variant],
                                                    ['/usr/sbin/ip6tables-%s-save' % variant]]


@pytest.mark.parametrize('variant', VARIANTS)
@pytest.mark.parametrize('rules, state', [(RULES, 'present'), ([], 'present'), ([], 'absent')])
def test_foreign_content_in_or_into_our_chains_refuses_every_run_naming_it(variant, rules, state, tmp_path):
    host = RecordedHost(variant, 'tainted')
    with pytest.raises(OwnershipError) as caught:
        converge(backend_for(host, tmp_path), rules, state, False, False)
    text = str(caught.value)
    assert text.startswith('iptables-%s: refusing to run, nothing was changed: ' % variant)
    assert ('IPv4 filter table, chain LYNC-XMPP-OUT: holds a rule that is not ours: '
            '-A LYNC-XMPP-OUT -i eth0 -j ACCEPT') in text
    assert ('IPv4 filter table, chain DOCKER-LIKE: a rule that is not ours jumps to our chain LYNC-XMPP-FWD: '
            '-A DOCKER-LIKE -j LYNC-XMPP-FWD') in text
    assert reads_only(host, variant)


@pytest.mark.parametrize('variant', VARIANTS)
def test_a_chain_named_like_ours_without_our_marks_where_the_rules_need_it_is_refused(variant, tmp_path):
    host = RecordedHost(variant, 'namesake')
    with pytest.raises(OwnershipError) as caught:
        converge(backend_for(host, tmp_path), RULES, 'present', False, False)
    assert str(caught.value) == (
        'iptables-%s: refusing to run, nothing was changed: IPv4 filter table, chain LYNC-XMPP-OUT is named like '
        'ours but carries none of our marks (no rule of ours in it, no jump of ours to it): -A LYNC-XMPP-OUT -p tcp '
        '-m tcp --dport 25 -m comment --comment "admin: no direct mail" -j DROP; -A OUTPUT -j LYNC-XMPP-OUT, and '
        'the rules need that chain (rename it; our chain names are fixed)' % variant)
    assert reads_only(host, variant)


@pytest.mark.parametrize('variant', VARIANTS)
def test_a_chain_named_like_ours_the_rules_do_not_need_is_left_alone_and_said(variant, tmp_path):
    host = RecordedHost(variant, 'namesake')
    without_out = [rule for rule in RULES if rule['direction'] != 'out']
    result = converge(backend_for(host, tmp_path), without_out, 'present', False, False)
    assert result['changed'] and 'LYNC-XMPP-OUT' not in result['script']
    assert '-I INPUT 1 -m comment --comment lync-xmpp-federation -j LYNC-XMPP-IN' in result['script']
    assert result['warnings'] == [
        'iptables-%s: left alone: IPv4 filter table, chain LYNC-XMPP-OUT is named like ours but carries none of our '
        'marks (no rule of ours in it, no jump of ours to it): -A LYNC-XMPP-OUT -p tcp -m tcp --dport 25 -m comment '
        '--comment "admin: no direct mail" -j DROP; -A OUTPUT -j LYNC-XMPP-OUT' % variant]
    # Removing what is ours never removes a chain for its name.
    host = RecordedHost(variant, 'namesake')
    result = converge(backend_for(host, tmp_path), [], 'absent', False, False)
    assert not result['changed'] and result['script'] == '' and len(result['warnings']) == 1
    assert reads_only(host, variant)


def test_a_chain_named_like_ours_stays_in_the_save_file(tmp_path):
    saved = {'ipv4': tmp_path / 'rules.v4', 'ipv6': tmp_path / 'rules.v6'}
    saved['ipv4'].write_text(fixture('nft-namesake.v4.save'))
    saved['ipv6'].write_text(fixture('nft-namesake.v6.save'))
    files = dict((key, str(path)) for key, path in saved.items())
    without_out = [rule for rule in RULES if rule['direction'] != 'out']
    result = converge(backend_for(RecordedHost('nft', 'namesake'), tmp_path, iptables_save_files=files),
                      without_out, 'present', True, False)
    assert result['persisted'] and result['persistence_files'] == [files['ipv4'], files['ipv6']]
    text = saved['ipv4'].read_text()
    for line in (':LYNC-XMPP-OUT - [0:0]', '-A OUTPUT -j LYNC-XMPP-OUT',
                 '-A LYNC-XMPP-OUT -p tcp -m tcp --dport 25 -m comment --comment "admin: no direct mail" -j DROP',
                 '-A INPUT -m comment --comment lync-xmpp-federation -j LYNC-XMPP-IN'):
        assert text.splitlines().count(line) == 1, line
    # Removing ours gives the admin's file back, its chain included.
    converge(backend_for(RecordedHost('nft', 'namesake'), tmp_path, iptables_save_files=files), [], 'absent', True,
             False)
    assert saved['ipv4'].read_text() == fixture('nft-namesake.v4.save')


@pytest.mark.parametrize('variant', VARIANTS)
def test_our_chains_are_ours_by_their_marks(variant, tmp_path):
    backend = backend_for(RecordedHost(variant, 'applied'), tmp_path)
    backend.read()
    state = backend.states[4]
    assert sorted(state.chains['filter']) == ['LYNC-XMPP-FWD', 'LYNC-XMPP-IN', 'LYNC-XMPP-OUT']
    assert sorted(state.chains['nat']) == ['LYNC-XMPP-DNAT', 'LYNC-XMPP-SNAT']
    assert state.foreign == {} and state.tainted == []
    assert sorted(jump[:3] for jump in state.jumps['filter']) == [
        ('FORWARD', 0, 'LYNC-XMPP-FWD'), ('INPUT', 0, 'LYNC-XMPP-IN'), ('OUTPUT', 0, 'LYNC-XMPP-OUT')]


# -- first apply, removal --------------------------------------------------------------

@pytest.mark.parametrize('variant', VARIANTS)
def test_first_apply_script_per_family(variant, tmp_path):
    backend = backend_for(RecordedHost(variant, 'admin'), tmp_path)
    backend.read()
    transaction = backend.plan(RULES)
    assert [(label, family) for label, _text, family in transaction.steps] == [
        ('IPv4 iptables-%s-restore --noflush' % variant, 4), ('IPv6 ip6tables-%s-restore --noflush' % variant, 6)]
    ipv4, ipv6 = [text for _label, text, _family in transaction.steps]
    assert transaction.text() == ipv4 + ipv6
    assert ipv6 == (
        '# lync-xmpp-federation IPv6: ip6tables-%s-restore --noflush\n'
        '*filter\n'
        ':LYNC-XMPP-IN - [0:0]\n'
        ':LYNC-XMPP-OUT - [0:0]\n'
        ':LYNC-XMPP-FWD - [0:0]\n'
        '-A LYNC-XMPP-IN -d 2001:db8:b::66/128 -p tcp -m tcp --dport 5269 -m comment --comment '
        '"lync-xmpp:xmpp-s2s-inbound-ipv6: XMPP federation row 1" -j ACCEPT\n'
        '-A LYNC-XMPP-OUT -p tcp -m tcp --dport 5269 -m comment --comment '
        '"lync-xmpp:xmpp-s2s-outbound: partner\\\'s edge, both families" -j ACCEPT\n'
        '-A LYNC-XMPP-FWD -s 2001:db8:a::/64 -p udp -m udp --dport 5269 -m comment --comment "lync-xmpp:drop-v6" '
        '-j DROP\n'
        '-A LYNC-XMPP-FWD -p udp -m multiport --dports 1,3,5,7,9,11,13,15,17,19,100:110,200:210 '
        '-m comment --comment "lync-xmpp:many-ports" -j REJECT --reject-with icmp6-port-unreachable\n'
        '-A LYNC-XMPP-FWD -p udp -m multiport --dports 300:310,400:410 '
        '-m comment --comment "lync-xmpp:many-ports" -j REJECT --reject-with icmp6-port-unreachable\n'
        '-I INPUT 1 -m comment --comment lync-xmpp-federation -j LYNC-XMPP-IN\n'
        '-I OUTPUT 1 -m comment --comment lync-xmpp-federation -j LYNC-XMPP-OUT\n'
        '-I FORWARD 1 -m comment --comment lync-xmpp-federation -j LYNC-XMPP-FWD\n'
        'COMMIT\n'
        '*nat\n'
        ':LYNC-XMPP-DNAT - [0:0]\n'
        '-A LYNC-XMPP-DNAT -d 2001:db8:a::1/128 -p tcp -m tcp --dport 5269 -m comment --comment '
        '"lync-xmpp:edge-dnat-ipv6" -j DNAT --to-destination 2001:db8:b::66\n'
        '-I PREROUTING 1 -m comment --comment lync-xmpp-federation -j LYNC-XMPP-DNAT\n'
        'COMMIT\n' % variant)
    # Each address of a multi-address rule is its own kernel rule; IPv4 rules only in IPv4.
    assert ipv4.count('"lync-xmpp:xmpp-s2s-inbound: XMPP federation row 1, partners to Access Edge"') == 2
    assert '-s 198.51.100.8/31 -d 198.51.100.66/32' in ipv4 and '2001:db8' not in ipv4
    assert '-j SNAT --to-source 198.51.100.1' in ipv4 and 'SNAT' not in ipv6
    # Translations in chains of ours in the nat table, each entered by one marked jump; the docker-like
    # chain (a foreign nat chain) is never named.
    assert '-I POSTROUTING 1 -m comment --comment lync-xmpp-federation -j LYNC-XMPP-SNAT\n' in ipv4
    assert 'DOCKER' not in transaction.text()


@pytest.mark.parametrize('variant', VARIANTS)
def test_absent_names_only_our_chains_and_jumps(variant, tmp_path):
    host = RecordedHost(variant, 'messy')
    result = converge(backend_for(host, tmp_path), [], 'absent', False, False)
    lines = [line for line in result['script'].splitlines() if not line.startswith('#')]
    assert all('LYNC-XMPP' in line for line in lines if line not in ('*filter', '*nat', 'COMMIT'))
    # Both IPv4 jumps into LYNC-XMPP-IN (one of them not first), and IPv6's one.
    assert lines.count('-D INPUT -m comment --comment lync-xmpp-federation -j LYNC-XMPP-IN') == 3
    assert lines.count('-X LYNC-XMPP-SNAT') == 1 and '-A' not in ' '.join(lines).split()
    assert result['changed'] and result['rules'] == []


# -- applying -------------------------------------------------------------------------

@pytest.mark.parametrize('variant', VARIANTS)
def test_every_family_is_validated_before_any_is_applied(variant, tmp_path):
    host = RecordedHost(variant, 'admin')
    backend = backend_for(host, tmp_path)
    result = converge(backend, RULES, 'present', False, False)
    assert result['changed']
    restores = host.restores()
    restore = {4: 'iptables-%s-restore' % variant, 6: 'ip6tables-%s-restore' % variant}
    assert [(name, flags) for name, flags, _data in restores] == [
        (restore[4], ['--test', '--noflush']), (restore[6], ['--test', '--noflush']),
        (restore[4], ['--noflush', '--wait=60']), (restore[6], ['--noflush', '--wait=60'])]
    blocks = planned(RecordedHost(variant, 'admin'), tmp_path, RULES)
    assert [data for _name, _flags, data in restores] == [blocks[4], blocks[6], blocks[4], blocks[6]]
    assert result['script'] == blocks[4] + blocks[6]


@pytest.mark.parametrize('variant', VARIANTS)
def test_a_refused_validation_changes_nothing_and_names_the_rule(variant, tmp_path):
    message = ('ip6tables-restore v1.8.9: invalid port/service `70000\' specified\nError occurred at line: 6\n')
    host = RecordedHost(variant, 'admin', restore_results={(6, True): (2, '', message)})
    backend = backend_for(host, tmp_path)
    with pytest.raises(BackendError) as caught:
        converge(backend, RULES, 'present', False, False)
    text = str(caught.value)
    assert "IPv6 at line 6 (rule 'xmpp-s2s-inbound-ipv6')" in text and '70000' in text
    assert 'nothing was changed' in text
    assert all('--test' in flags for _name, flags, _data in host.restores())


@pytest.mark.parametrize('variant', VARIANTS)
def test_a_kernel_refusal_in_the_second_family_puts_the_first_back(variant, tmp_path):
    refusal = 'ip6tables-restore v1.8.9: line 8: RULE_APPEND failed (Invalid argument): rule in chain LYNC-XMPP-FWD\n'
    host = RecordedHost(variant, 'admin', restore_results={(6, False): (4, '', refusal)})
    backend = backend_for(host, tmp_path)
    with pytest.raises(BackendError) as caught:
        converge(backend, RULES, 'present', False, False)
    text = str(caught.value)
    assert "IPv6 at line 8 (rule 'drop-v6')" in text and 'as it was before this run' in text
    name, flags, data = host.restores()[-1]
    assert (name, flags) == ('iptables-%s-restore' % variant, ['--counters', '--wait=60'])
    # IPv4's filter and nat tables, exactly as they were read (the IPv6 commit failed in its first table).
    admin = fixture('%s-admin.v4.save' % variant)
    for table in ('filter', 'nat'):
        start = admin.index('*%s\n' % table)
        assert admin[start:admin.index('COMMIT\n', start) + len('COMMIT\n')] in data
    assert 'LYNC-XMPP' not in data
    assert len([1 for name, flags, _data in host.restores() if name.startswith('ip6') and '--counters' in flags]) == 0


def test_a_refused_legacy_commit_names_the_table(tmp_path):
    first_commit = planned(RecordedHost('legacy', 'admin'), tmp_path, RULES)[4].splitlines().index('COMMIT') + 1
    # iptables-legacy reports a rule the kernel refuses at the COMMIT line of its table.
    refusal = (1, '', 'iptables-restore: line %d failed\n' % first_commit)
    host = RecordedHost('legacy', 'admin', restore_results={(4, False): refusal})
    backend = backend_for(host, tmp_path)
    backend.read()
    with pytest.raises(BackendError) as caught:
        backend.apply(backend.plan(RULES))
    assert "IPv4 at the commit of table 'filter' (the kernel refused one of its rules)" in str(caught.value)
    # Nothing was committed before that line, so nothing is rolled back, and IPv6 was never applied.
    assert [(name, flags) for name, flags, _data in host.restores()][-1] == (
        'iptables-legacy-restore', ['--noflush', '--wait=60'])


# -- fail closed: tools and families that cannot be read ----------------------------------

@pytest.mark.parametrize('rules, state', [(RULES, 'present'), ([], 'present'), ([], 'absent')])
@pytest.mark.parametrize('family', (4, 6))
def test_a_save_that_fails_fails_every_run_naming_the_tool(rules, state, family, tmp_path):
    tool = '%s-nft-save' % TOOL[family]
    failure = (4, '', 'Fatal: can\'t open lock file: Permission denied\n')
    host = RecordedHost('nft', 'applied', save_results={tool: failure})
    with pytest.raises(BackendError) as caught:
        converge(backend_for(host, tmp_path), rules, state, False, False)
    assert str(caught.value) == ("iptables-nft: /usr/sbin/%s failed (4): Fatal: can't open lock file: Permission "
                                 'denied; nothing was changed' % tool)
    assert host.restores() == []


@pytest.mark.parametrize('rules', [only(RULES, 'xmpp-s2s-inbound', 'edge-dnat'), []])
def test_a_family_whose_tools_are_missing_fails_every_run(rules, tmp_path):
    # Even rules of the other family only: the missing family may hold rules of ours the run could not see.
    host = RecordedHost('nft', 'applied')
    host.binaries -= set(['ip6tables-nft-save', 'ip6tables-nft-restore'])
    for state in ('present', 'absent'):
        with pytest.raises(BackendError) as caught:
            converge(backend_for(host, tmp_path), rules, state, False, False)
        assert 'neither ip6tables-nft-save/-restore nor ip6tables-save/-restore of the nft variant were found' \
            in str(caught.value)
    assert host.restores() == []


def test_plain_tool_names_are_used_when_they_are_the_wanted_variant(tmp_path):
    saves = {'iptables-save': fixture('nft-admin.v4.save'), 'ip6tables-save': fixture('nft-admin.v6.save')}
    binaries = set(['iptables', 'ip6tables', 'iptables-save', 'ip6tables-save', 'iptables-restore',
                    'ip6tables-restore'])
    versions = {'iptables': 'iptables v1.8.9 (nf_tables)\n', 'ip6tables': 'ip6tables v1.8.9 (nf_tables)\n'}
    host = RecordedHost('nft', 'admin', binaries=binaries, versions=versions, saves=saves)
    backend = backend_for(host, tmp_path)
    backend.read()
    assert backend.tools[4] == ('/usr/sbin/iptables-save', '/usr/sbin/iptables-restore')
    assert backend.tools[6] == ('/usr/sbin/ip6tables-save', '/usr/sbin/ip6tables-restore')
    # The plain tools of the other variant are not used: legacy wanted, nft found, the run fails.
    legacy = RecordedHost('legacy', 'admin', binaries=binaries, versions=versions, saves=saves)
    with pytest.raises(BackendError) as caught:
        converge(backend_for(legacy, tmp_path), [], 'absent', False, False)
    assert 'legacy variant were found' in str(caught.value)
    assert [os.path.basename(argv[0]) for argv, _data in legacy.calls] == ['iptables']


# -- base chains ------------------------------------------------------------------------

@pytest.mark.parametrize('base_chains, message', [
    ({'in': 'NO-SUCH-CHAIN'}, "base_chains.in: chain 'NO-SUCH-CHAIN' does not exist in the IPv4 filter table"),
    ({'in': 'FORWARD'}, 'name the same chain'),
    ({'out': 'LYNC-XMPP-IN'}, 'is one of our own chains'),
])
def test_base_chains_are_checked_before_anything_is_written(base_chains, message, tmp_path):
    host = RecordedHost('nft', 'admin')
    with pytest.raises(BackendError) as caught:
        converge(backend_for(host, tmp_path, base_chains=base_chains), RULES, 'present', False, False)
    assert message in str(caught.value)
    assert host.restores() == []


def test_a_foreign_chain_can_be_the_base_chain(tmp_path):
    blocks = planned(RecordedHost('legacy', 'admin'), tmp_path, RULES, base_chains={'forward': 'DOCKER-LIKE'})
    assert '-I DOCKER-LIKE 1 -m comment --comment lync-xmpp-federation -j LYNC-XMPP-FWD' in blocks[4]


# -- comments in bytes --------------------------------------------------------------------

def commented(comment, name='r'):
    return [{'name': name, 'direction': 'in', 'ports': [5269], 'comment': comment}]


def test_kernel_comments_are_limited_to_255_bytes_before_anything_is_read(tmp_path):
    # 'lync-xmpp:r: ' takes 13 bytes. 100 characters of 2 bytes (refused by nftables) fit iptables' 255.
    host = RecordedHost('nft', 'admin')
    assert converge(backend_for(host, tmp_path), commented(u'\u00e9' * 100), 'present', False, True)['changed']
    # Exactly 255 bytes fit; one more does not, with 3-byte characters (85 of them).
    assert converge(backend_for(RecordedHost('nft', 'admin'), tmp_path), commented(u'\u20ac' * 80 + 'ab'),
                    'present', False, True)['changed']
    host = RecordedHost('nft', 'admin')
    with pytest.raises(RuleError) as caught:
        converge(backend_for(host, tmp_path), commented(u'\u20ac' * 80 + 'abc'), 'present', False, False)
    assert "rules[0] (r): field 'comment'" in str(caught.value)
    assert str(caught.value).endswith('256 bytes, more than the 255 bytes any firewall backend takes: shorten it by '
                                      '1 byte')
    assert host.calls == []


def read_only_file_system(monkeypatch):
    """Every new file fails as on a file system mounted read-only (the tests run as root, whom a directory's
    mode does not stop)."""
    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    monkeypatch.setattr(backend_module.tempfile, 'mkstemp', refuse)


@pytest.mark.parametrize('variant', VARIANTS)
def test_persistence_failing_after_the_apply_fails_saying_the_rules_are_in_force(variant, tmp_path, monkeypatch):
    files = {'ipv4': str(tmp_path / 'rules.v4'), 'ipv6': str(tmp_path / 'rules.v6')}
    read_only_file_system(monkeypatch)
    host = RecordedHost(variant, 'admin')
    with pytest.raises(PersistenceError) as caught:
        converge(backend_for(host, tmp_path, iptables_save_files=files), RULES, 'present', True, False)
    assert caught.value.applied is True
    assert str(caught.value) == ('iptables-%s: the new rules are in force now, but will not survive a reboot or a '
                                 'reload of the firewall: persisting them failed: cannot write %s: Read-only file '
                                 'system' % (variant, files['ipv4']))
    assert len([1 for _name, flags, _data in host.restores() if '--test' not in flags]) == 2
    assert not os.path.exists(files['ipv4']) and not os.path.exists(files['ipv6'])


# -- persistence ----------------------------------------------------------------------

@pytest.mark.parametrize('variant', VARIANTS)
@pytest.mark.parametrize('family', (4, 6))
def test_save_files_merge_to_what_iptables_save_prints(variant, family, tmp_path):
    backend = backend_for(RecordedHost(variant, 'applied'), tmp_path)
    ours = backend.persisted_lines(RULES, family)
    admin = fixture('%s-admin.v%d.save' % (variant, family))
    applied = fixture('%s-applied.v%d.save' % (variant, family))
    # A file netfilter-persistent saved from the live state is already right: nothing to rewrite.
    assert merge_save_file(applied, ours) == applied
    # Into the admin's saved file, our lines go exactly where iptables-save prints them.
    merged = merge_save_file(admin, ours)
    assert without_dated_comments(merged) == without_dated_comments(applied)
    assert [line for line in merged.splitlines() if 'LYNC-XMPP' not in line] == admin.splitlines()
    # And they come out again, leaving the admin's file byte for byte.
    assert merge_save_file(merged, {}) == admin


def test_a_missing_file_or_section_is_created_and_removed_again(tmp_path):
    files = {'ipv4': str(tmp_path / 'iptables' / 'rules.v4'), 'ipv6': str(tmp_path / 'iptables' / 'rules.v6')}
    backend = backend_for(RecordedHost('nft', 'admin'), tmp_path, iptables_save_files=files)
    ipv4_only = [rule for rule in RULES if rule['name'] in ('xmpp-s2s-inbound', 'edge-dnat')]
    assert backend.persist(ipv4_only, check_mode=True)
    assert not os.path.exists(files['ipv4'])
    assert backend.persist(ipv4_only, check_mode=False)
    assert not os.path.exists(files['ipv6']), 'no IPv6 rules, no IPv6 file'
    with open(files['ipv4']) as handle:
        text = handle.read()
    assert text.startswith('*filter\n:LYNC-XMPP-IN - [0:0]\n'
                           '-A INPUT -m comment --comment lync-xmpp-federation -j LYNC-XMPP-IN\n')
    assert '*nat\n:LYNC-XMPP-DNAT - [0:0]\n' in text and oct(os.stat(files['ipv4']).st_mode & 0o777) == '0o600'
    assert not backend.persist(ipv4_only, check_mode=False)
    assert backend.persist(None, check_mode=False)
    assert not os.path.exists(files['ipv4'])
    # A file with only a filter section gets a nat section; other lines stay.
    with open(files['ipv4'], 'w') as handle:
        handle.write('# admin\n*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n')
    assert backend.persist(ipv4_only, check_mode=False)
    with open(files['ipv4']) as handle:
        text = handle.read()
    assert text.startswith('# admin\n*filter\n:INPUT ACCEPT [0:0]\n:LYNC-XMPP-IN - [0:0]\n'
                           '-A INPUT -m comment --comment lync-xmpp-federation -j LYNC-XMPP-IN\n'
                           '-A INPUT -i lo -j ACCEPT\n')
    assert text.endswith('COMMIT\n*nat\n:LYNC-XMPP-DNAT - [0:0]\n'
                         '-A PREROUTING -m comment --comment lync-xmpp-federation -j LYNC-XMPP-DNAT\n'
                         '-A LYNC-XMPP-DNAT -d 198.51.100.1/32 -p tcp -m tcp --dport 5269 -m comment --comment '
                         '"lync-xmpp:edge-dnat: public to Edge" -j DNAT --to-destination 198.51.100.66\nCOMMIT\n')
    assert backend.persist(None, check_mode=False)
    with open(files['ipv4']) as handle:
        assert handle.read() == '# admin\n*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n'


# -- grouping kernel rules back (backend.group_kernel_rules) ----------------------------

def piece(**fields):
    base = {'name': 'r', 'comment': '', 'direction': 'in', 'protocol': 'tcp', 'action': 'accept', 'nat': None,
            'nat_to': None, 'families': (4,), 'source': [], 'destination': [], 'ports': [(5269, 5269)]}
    base.update(fields)
    return base


def test_grouping_rebuilds_address_lists_and_finds_gaps_and_copies():
    whole = [piece(source=['198.51.100.7/32'], destination=[destination], ports=ports)
             for destination in ('198.51.100.66/32', '198.51.100.67/32') for ports in ([(1, 1)], [(2, 5)])]
    rules, problems = group_kernel_rules(whole)
    assert problems == [] and rules[0]['destination'] == ['198.51.100.66/32', '198.51.100.67/32']
    assert rules[0]['ports'] == ['1-5']
    assert 'incomplete or duplicated' in group_kernel_rules(whole[:-1])[1][0]
    assert 'incomplete or duplicated' in group_kernel_rules(whole + whole[:1])[1][0]
    # A rule without addresses belongs in both families.
    rules, problems = group_kernel_rules([piece(families=(4,))])
    assert 'incomplete' in problems[0]
    assert group_kernel_rules([piece(families=(4,)), piece(families=(6,))])[1] == []
    assert 'differ in action' in group_kernel_rules([piece(families=(4,)), piece(families=(6,), action='drop')])[1][0]


def test_the_host_lock_serialises_runs(tmp_path):
    path = str(tmp_path / 'run' / 'lync.lock')
    first = hold_host_lock(path)
    with pytest.raises(BackendError) as caught:
        hold_host_lock(path, timeout=0.2)
    assert 'still holds' in str(caught.value)
    first.close()
    hold_host_lock(path, timeout=0.2).close()


# -- long address lists as ipsets (fixtures/iptables/<variant>-sets.*, sets-rules.json) ---------------------

with open(os.path.join(FIXTURES, 'sets-rules.json')) as _rules:
    SET_RULES = normalize_rules(json.load(_rules))
SET_V4 = ipset_name('partners-v4', 'source', 4)
SET_V6 = ipset_name('partners-v6', 'source', 6)


class RecordedSetHost(RecordedHost):
    """RecordedHost with the ipset tool: ``ipset save`` gives the recording (or ``ipset_text``); every other ipset
    command succeeds unless ``ipset_results`` maps its first word ('restore', 'swap', ...) to another result."""

    def __init__(self, variant, stage='sets', ipset_text=None, ipset_results=None, **kwargs):
        super(RecordedSetHost, self).__init__(variant, stage, **kwargs)
        self.binaries.add('ipset')
        self.ipset_text = fixture('%s-sets.ipset' % variant) if ipset_text is None else ipset_text
        self.ipset_results = ipset_results or {}

    def run_command(self, argv, data=None, binary_data=False):
        if os.path.basename(argv[0]) != 'ipset':
            return super(RecordedSetHost, self).run_command(argv, data, binary_data)
        self.calls.append((argv, data))
        if argv[1:] == ['save']:
            return 0, self.ipset_text, ''
        return self.ipset_results.get(argv[1], (0, '', ''))

    def ipset_calls(self):
        return [(argv[1:], data) for argv, data in self.calls if os.path.basename(argv[0]) == 'ipset']


@pytest.mark.parametrize('variant', VARIANTS)
def test_long_lists_read_back_from_their_ipsets_and_a_rerun_writes_nothing(variant, tmp_path):
    host = RecordedSetHost(variant)
    # The recording: one rule per long list, matching its set; the short list stays three rules.
    saved = fixture('%s-sets.v4.save' % variant)
    assert saved.count('--match-set %s src' % SET_V4) == 1 and saved.count('-A LYNC-XMPP-OUT') == 3
    backend = backend_for(host, tmp_path)
    result = converge(backend, SET_RULES, 'present', False, False)
    assert not result['changed'] and result['script'] == '' and result['warnings'] == []
    live = dict((rule['name'], rule) for rule in backend.current_rules())
    assert live['partners-v4']['source'] == ['198.51.100.0/25', '198.51.100.132/30', '198.51.100.136/29',
                                             '198.51.100.200/29']
    assert backend.problems() == []
    # One read: ipset save once, then one save per family.
    assert [os.path.basename(argv[0]) + ' ' + ' '.join(argv[1:]) for argv, _data in host.calls] == [
        'ipset save', '%s-%s-save ' % ('iptables', variant), '%s-%s-save ' % ('ip6tables', variant)]


@pytest.mark.parametrize('variant', VARIANTS)
def test_one_network_changed_refills_only_its_set_by_staging_and_swapping(variant, tmp_path):
    host = RecordedSetHost(variant)
    rules = json.loads(fixture('sets-rules.json'))
    rules[1]['source'][-1] = '198.51.100.248/29'
    result = converge(backend_for(host, tmp_path), normalize_rules(rules), 'present', False, False)
    assert result['changed']
    assert host.restores() == [], 'the rules stay as they are'
    calls = host.ipset_calls()
    assert [argv for argv, _data in calls] == [['save'], ['restore'], ['swap', SET_V4 + '-n', SET_V4], ['restore']]
    staged = calls[1][1].splitlines()
    assert staged[0].startswith('create %s-n hash:net family inet ' % SET_V4) and staged[0].endswith(' comment')
    assert staged[1:] == ['add %s-n %s comment %s' % (SET_V4, network, OUR_MARK) for network in (
        '198.51.100.0/25', '198.51.100.132/30', '198.51.100.136/29', '198.51.100.248/29')]
    assert calls[3][1] == 'destroy %s-n\n' % SET_V4
    assert '1 added, 1 removed' in result['script']


@pytest.mark.parametrize('variant', VARIANTS)
def test_a_refused_rule_restore_puts_the_sets_back(variant, tmp_path):
    host = RecordedSetHost(variant, 'admin', ipset_text='',
                           restore_results={(4, False): (1, '', 'iptables-restore: line 4 failed')})
    with pytest.raises(BackendError) as error:
        converge(backend_for(host, tmp_path), SET_RULES, 'present', False, False)
    assert 'as it was before this run' in str(error.value)
    commands = [argv for argv, _data in host.ipset_calls()]
    assert commands[:2] == [['save'], ['restore']]
    # New sets were renamed into place, then back, then the staging sets destroyed: nothing of ours is left.
    renames = [argv for argv in commands if argv[0] == 'rename']
    assert sorted(renames) == sorted([['rename', SET_V4 + '-n', SET_V4], ['rename', SET_V6 + '-n', SET_V6],
                                      ['rename', SET_V4, SET_V4 + '-n'], ['rename', SET_V6, SET_V6 + '-n']])
    assert commands[-2:] == [['destroy', SET_V4 + '-n'], ['destroy', SET_V6 + '-n']]


@pytest.mark.parametrize('variant', VARIANTS)
def test_a_foreign_ipset_with_our_name_is_refused_before_anything_is_written(variant, tmp_path):
    foreign = 'create %s hash:net family inet hashsize 1024 maxelem 65536\nadd %s 198.51.100.77\n' % (SET_V4, SET_V4)
    host = RecordedSetHost(variant, 'admin', ipset_text=foreign)
    with pytest.raises(OwnershipError) as error:
        converge(backend_for(host, tmp_path), SET_RULES, 'present', False, False)
    assert SET_V4 in str(error.value) and 'nothing was changed' in str(error.value)
    assert host.restores() == [] and [argv for argv, _data in host.ipset_calls()] == [['save']]
    # One entry without our mark in a set of ours makes it foreign too.
    marked = fixture('%s-sets.ipset' % variant) + 'add %s 198.51.100.99\n' % SET_V4
    host = RecordedSetHost(variant, ipset_text=marked)
    with pytest.raises(OwnershipError):
        converge(backend_for(host, tmp_path), SET_RULES, 'present', False, False)


def test_without_the_ipset_tool_long_lists_stay_rules_and_the_run_says_so(tmp_path):
    host = RecordedHost('nft', 'admin')
    result = converge(backend_for(host, tmp_path), SET_RULES, 'present', False, False)
    assert any('ipset command was not found' in warning and "'partners-v4'" in warning
               for warning in result['warnings'])
    assert '--match-set' not in result['script'] and result['script'].count('-A LYNC-XMPP-FWD -s ') == 8


def test_the_ipset_file_keeps_every_other_set():
    theirs = 'create admin-block hash:ip family inet hashsize 1024 maxelem 65536\nadd admin-block 198.51.100.5\n'
    wanted = {SET_V4: (4, ['198.51.100.0/25', '198.51.100.7/32'])}
    merged = merge_ipset_file(theirs + 'create %s hash:net family inet\n' % SET_V4, wanted)
    assert merged.startswith(theirs)
    assert merged[len(theirs):].splitlines()[1:] == ['add %s 198.51.100.0/25 comment %s' % (SET_V4, OUR_MARK),
                                                     'add %s 198.51.100.7 comment %s' % (SET_V4, OUR_MARK)]
    assert merge_ipset_file(merged, {}) == theirs
    assert merge_ipset_file('create %s hash:net\n' % SET_V4, {}) is None
    # A set with our prefix that is not ours stays in the file.
    assert merge_ipset_file('create %s hash:net\n' % SET_V4, {}, foreign={SET_V4}) == 'create %s hash:net\n' % SET_V4
