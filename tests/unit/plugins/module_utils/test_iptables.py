# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The iptables backend against iptables-save output recorded from real kernels.

The fixtures under fixtures/iptables/ were recorded by record.sh there: an
admin ruleset, then rules.json applied by this backend, then hand edits.  The
only double is ``RecordedHost``: it serves the recorded output for *-save and
records every command, restore input included.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest

from ansible_collections.lync.xmpp_federation.plugins.module_utils.backend import (
    BackendError,
    converge,
    group_kernel_rules,
    hold_host_lock,
    port_span_text,
)
from ansible_collections.lync.xmpp_federation.plugins.module_utils.iptables import (
    IptablesBackend,
    KernelRule,
    format_kernel_rule,
    merge_save_file,
    multiport_blocks,
    parse_kernel_rule,
    save_quote,
    split_words,
)
from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import normalize_rules

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
    restore tool gives; by default it succeeds.
    """

    def __init__(self, variant, stage, restore_results=None, binaries=None, versions=None, saves=None):
        self.variant = variant
        self.saves = saves or dict(('%s-%s-save' % (TOOL[family], variant),
                                    fixture('%s-%s.v%d.save' % (variant, stage, family))) for family in (4, 6))
        self.restore_results = restore_results or {}
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
            return 0, self.saves[name], ''
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


# -- the text format --------------------------------------------------------------

def test_words_are_split_and_quoted_as_iptables_does():
    assert split_words(r'-m comment --comment "partner\'s edge: a \"b\"" -j ACCEPT') == [
        '-m', 'comment', '--comment', 'partner\'s edge: a "b"', '-j', 'ACCEPT']
    assert split_words('-A  X   -j Y') == ['-A', 'X', '-j', 'Y']
    with pytest.raises(ValueError):
        split_words('--comment "open')
    assert save_quote('lync-xmpp-federation') == 'lync-xmpp-federation'
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
    rule = KernelRule('LYNC-XMPP-FWD', '198.51.100.2/32', None, 'udp', ((1, 1), (100, 110)), 'a: b', 'REJECT',
                      'icmp-port-unreachable')
    line = format_kernel_rule(rule)
    assert line == ('-A LYNC-XMPP-FWD -s 198.51.100.2/32 -p udp -m multiport --dports 1,100:110 '
                    '-m comment --comment "a: b" -j REJECT --reject-with icmp-port-unreachable')
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
    assert backend.render_absent() == ''


@pytest.mark.parametrize('variant', VARIANTS)
def test_applied_rules_read_back_as_the_rules_that_made_them(variant, tmp_path):
    host = RecordedHost(variant, 'applied')
    backend = backend_for(host, tmp_path)
    result = converge(backend, RULES, 'present', False, False)
    assert backend.problems() == []
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
    script = backend.render_present(fewer)
    # Only the IPv4 nat table changes: the SNAT chain and its jump go, nothing else is written.
    assert script == (
        '# lync-xmpp-federation IPv4: iptables-%s-restore --noflush\n'
        '*nat\n'
        ':LYNC-XMPP-DNAT - [0:0]\n'
        ':LYNC-XMPP-SNAT - [0:0]\n'
        '-D POSTROUTING -m comment --comment lync-xmpp-federation -j LYNC-XMPP-SNAT\n'
        '-A LYNC-XMPP-DNAT -d 198.51.100.1/32 -p tcp -m tcp --dport 5269 -m comment --comment '
        '"edge-dnat: public to Edge" -j DNAT --to-destination 198.51.100.66\n'
        '-X LYNC-XMPP-SNAT\n'
        'COMMIT\n' % variant)


@pytest.mark.parametrize('variant', VARIANTS)
def test_hand_edits_are_seen_and_repaired(variant, tmp_path):
    backend = backend_for(RecordedHost(variant, 'messy'), tmp_path)
    backend.read()
    problems = '\n'.join(backend.problems())
    assert "unexpected '-i'" in problems
    by_name = dict((rule['name'], rule) for rule in backend.current_rules())
    # One source's kernel rule deleted: the rule reads back with the other source only.
    assert by_name['xmpp-s2s-inbound']['source'] == ['198.51.100.7/32']
    assert by_name['xmpp-s2s-inbound-ipv6']['ports'] == [5270]
    assert not backend.in_place(RULES)
    script = backend.render_present(RULES)
    ipv4 = script.split('# lync-xmpp-federation IPv6', 1)[0]
    # Both jumps into LYNC-XMPP-IN go (one was not first) and one comes back, first.
    assert ipv4.count('-D INPUT -m comment --comment lync-xmpp-federation -j LYNC-XMPP-IN\n') == 2
    assert '-I INPUT 1 -m comment --comment lync-xmpp-federation -j LYNC-XMPP-IN\n' in ipv4
    # The jump from a foreign chain goes; foreign rules are never named otherwise.
    assert '-D DOCKER-LIKE -j LYNC-XMPP-FWD\n' in ipv4
    assert [line for line in script.splitlines() if line.startswith(('-D', '-I', '-A'))
            and 'LYNC-XMPP' not in line] == []
    # The IPv4 nat table was left alone by the edits: it is not rewritten.
    assert '*nat' not in ipv4
    assert '--dport 5269 -m comment --comment "xmpp-s2s-inbound-ipv6' in script


@pytest.mark.parametrize('variant', VARIANTS)
def test_first_apply_script_per_family(variant, tmp_path):
    backend = backend_for(RecordedHost(variant, 'admin'), tmp_path)
    backend.read()
    script = backend.render_present(RULES)
    blocks = backend.split_script(script)
    assert [family for family, _block in blocks] == [4, 6]
    ipv6 = blocks[1][1]
    assert ipv6 == (
        '# lync-xmpp-federation IPv6: ip6tables-%s-restore --noflush\n'
        '*filter\n'
        ':LYNC-XMPP-IN - [0:0]\n'
        ':LYNC-XMPP-OUT - [0:0]\n'
        ':LYNC-XMPP-FWD - [0:0]\n'
        '-A LYNC-XMPP-IN -d 2001:db8:b::66/128 -p tcp -m tcp --dport 5269 -m comment --comment '
        '"xmpp-s2s-inbound-ipv6: XMPP federation row 1" -j ACCEPT\n'
        '-A LYNC-XMPP-OUT -p tcp -m tcp --dport 5269 -m comment --comment '
        '"xmpp-s2s-outbound: partner\\\'s edge, both families" -j ACCEPT\n'
        '-A LYNC-XMPP-FWD -s 2001:db8:a::/64 -p udp -m udp --dport 5269 -m comment --comment drop-v6 -j DROP\n'
        '-A LYNC-XMPP-FWD -p udp -m multiport --dports 1,3,5,7,9,11,13,15,17,19,100:110,200:210 '
        '-m comment --comment many-ports -j REJECT --reject-with icmp6-port-unreachable\n'
        '-A LYNC-XMPP-FWD -p udp -m multiport --dports 300:310,400:410 '
        '-m comment --comment many-ports -j REJECT --reject-with icmp6-port-unreachable\n'
        '-I INPUT 1 -m comment --comment lync-xmpp-federation -j LYNC-XMPP-IN\n'
        '-I OUTPUT 1 -m comment --comment lync-xmpp-federation -j LYNC-XMPP-OUT\n'
        '-I FORWARD 1 -m comment --comment lync-xmpp-federation -j LYNC-XMPP-FWD\n'
        'COMMIT\n'
        '*nat\n'
        ':LYNC-XMPP-DNAT - [0:0]\n'
        '-A LYNC-XMPP-DNAT -d 2001:db8:a::1/128 -p tcp -m tcp --dport 5269 -m comment --comment edge-dnat-ipv6 '
        '-j DNAT --to-destination 2001:db8:b::66\n'
        '-I PREROUTING 1 -m comment --comment lync-xmpp-federation -j LYNC-XMPP-DNAT\n'
        'COMMIT\n' % variant)
    # Each address of a multi-address rule is its own kernel rule; IPv4 rules only in IPv4.
    ipv4 = blocks[0][1]
    assert ipv4.count('"xmpp-s2s-inbound: XMPP federation row 1, partners to Access Edge"') == 2
    assert '-s 198.51.100.8/31 -d 198.51.100.66/32' in ipv4 and '2001:db8' not in ipv4
    assert '-j SNAT --to-source 198.51.100.1' in ipv4 and 'SNAT' not in ipv6


@pytest.mark.parametrize('variant', VARIANTS)
def test_absent_names_only_our_chains_and_jumps(variant, tmp_path):
    backend = backend_for(RecordedHost(variant, 'messy'), tmp_path)
    backend.read()
    script = backend.render_absent()
    lines = [line for line in script.splitlines() if not line.startswith('#')]
    assert all('LYNC-XMPP' in line for line in lines if line not in ('*filter', '*nat', 'COMMIT'))
    assert '-D DOCKER-LIKE -j LYNC-XMPP-FWD' in lines
    assert lines.count('-X LYNC-XMPP-SNAT') == 1 and '-A' not in ' '.join(lines).split()


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
    blocks = dict(backend.split_script(result['script']))
    assert [data for _name, _flags, data in restores] == [blocks[4], blocks[6], blocks[4], blocks[6]]


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
    probe = backend_for(RecordedHost('legacy', 'admin'), tmp_path)
    probe.read()
    first_commit = probe.split_script(probe.render_present(RULES))[0][1].splitlines().index('COMMIT') + 1
    # iptables-legacy reports a rule the kernel refuses at the COMMIT line of its table.
    refusal = (1, '', 'iptables-restore: line %d failed\n' % first_commit)
    host = RecordedHost('legacy', 'admin', restore_results={(4, False): refusal})
    backend = backend_for(host, tmp_path)
    backend.read()
    with pytest.raises(BackendError) as caught:
        backend.apply(backend.render_present(RULES))
    assert "IPv4 at the commit of table 'filter' (the kernel refused one of its rules)" in str(caught.value)
    # Nothing was committed before that line, so nothing is rolled back, and IPv6 was never applied.
    assert [(name, flags) for name, flags, _data in host.restores()][-1] == (
        'iptables-legacy-restore', ['--noflush', '--wait=60'])


# -- tools, base chains, families -----------------------------------------------------

def test_plain_tool_names_are_used_when_they_are_the_wanted_variant(tmp_path):
    saves = {'iptables-save': fixture('nft-admin.v4.save'), 'ip6tables-save': fixture('nft-admin.v6.save')}
    binaries = set(['iptables', 'ip6tables', 'iptables-save', 'ip6tables-save', 'iptables-restore',
                    'ip6tables-restore'])
    versions = {'iptables': 'iptables v1.8.9 (nf_tables)\n', 'ip6tables': 'ip6tables v1.8.9 (nf_tables)\n'}
    host = RecordedHost('nft', 'admin', binaries=binaries, versions=versions, saves=saves)
    backend = backend_for(host, tmp_path)
    backend.read()
    assert backend.tools[4] == ('/usr/sbin/iptables-save', '/usr/sbin/iptables-restore')
    legacy = RecordedHost('legacy', 'admin', binaries=binaries, versions=versions, saves=saves)
    backend = backend_for(legacy, tmp_path)
    backend.read()
    assert backend.tools == {} and 'legacy variant were found' in backend.unavailable[4]
    with pytest.raises(BackendError) as caught:
        backend.render_present(RULES)
    assert 'the rules need IPv4' in str(caught.value)


def test_a_family_that_cannot_be_read_is_needed_only_by_its_rules(tmp_path):
    host = RecordedHost('nft', 'admin')
    host.binaries -= set(['ip6tables-nft-save', 'ip6tables-nft-restore'])
    backend = backend_for(host, tmp_path)
    backend.read()
    ipv4_only = [rule for rule in RULES if rule['name'] in ('xmpp-s2s-inbound', 'edge-dnat')]
    assert 'IPv6' not in backend.render_present(ipv4_only)
    with pytest.raises(BackendError) as caught:
        backend.render_present(RULES)
    assert 'the rules need IPv6' in str(caught.value)


@pytest.mark.parametrize('base_chains, message', [
    ({'in': 'NO-SUCH-CHAIN'}, "base_chains.in: chain 'NO-SUCH-CHAIN' does not exist in the IPv4 filter table"),
    ({'in': 'FORWARD'}, 'name the same chain'),
    ({'out': 'LYNC-XMPP-IN'}, 'is one of our own chains'),
])
def test_base_chains_are_checked_before_anything_is_written(base_chains, message, tmp_path):
    host = RecordedHost('nft', 'admin')
    backend = backend_for(host, tmp_path, base_chains=base_chains)
    backend.read()
    with pytest.raises(BackendError) as caught:
        backend.render_present(RULES)
    assert message in str(caught.value)


def test_a_foreign_chain_can_be_the_base_chain(tmp_path):
    backend = backend_for(RecordedHost('legacy', 'admin'), tmp_path, base_chains={'forward': 'DOCKER-LIKE'})
    backend.read()
    assert '-I DOCKER-LIKE 1 -m comment --comment lync-xmpp-federation -j LYNC-XMPP-FWD' in \
        backend.render_present(RULES)


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
                         '"edge-dnat: public to Edge" -j DNAT --to-destination 198.51.100.66\nCOMMIT\n')
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
