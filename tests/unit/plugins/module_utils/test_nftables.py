# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The nftables backend against ``nft -j list ruleset`` output recorded from real kernels.

The fixtures under fixtures/nftables/ were recorded by record.sh there: an
admin ruleset, then rules.json applied by this backend, then hand edits, and
rules.json applied to a host with no ruleset.  The only double is
``RecordedHost``: it serves the recorded JSON for ``nft -j list ruleset`` and
records every command, the nft scripts included.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest

from ansible_collections.lync.xmpp_federation.plugins.module_utils.backend import BackendError, converge
from ansible_collections.lync.xmpp_federation.plugins.module_utils.nftables import (
    INCLUDE_MARKER,
    KernelRule,
    NftablesBackend,
    kernel_rules,
    network_text,
    parse_kernel_rule,
    parse_table_option,
)
from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import normalize_rules

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'nftables')
NFT = '/usr/sbin/nft'


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


with open(os.path.join(FIXTURES, 'rules.json')) as _rules:
    RULES = normalize_rules(json.load(_rules))


class RecordedHost(object):
    """run_command/get_bin_path doubles: the recorded ruleset for ``nft -j list ruleset``, every call recorded.

    ``results`` maps 'check' and 'apply' to the (rc, out, err) of ``nft -c -f -`` and ``nft -f -``.
    """

    def __init__(self, stage, results=None):
        self.ruleset = fixture('%s.json' % stage) if stage else '{"nftables": []}'
        self.results = results or {}
        self.calls = []

    def get_bin_path(self, name, required=False, opt_dirs=None):
        return NFT if name == 'nft' else None

    def run_command(self, argv, data=None, binary_data=False):
        self.calls.append((argv, data))
        if argv == [NFT, '-j', 'list', 'ruleset']:
            return 0, self.ruleset, ''
        if argv == [NFT, '-c', '-f', '-']:
            return self.results.get('check', (0, '', ''))
        if argv == [NFT, '-f', '-']:
            return self.results.get('apply', (0, '', ''))
        if argv[:3] == [NFT, '-c', '-f']:
            # The main configuration checked after persisting: a list of results, one a call.
            return self.results.get('config', [(0, '', '')]).pop(0)
        raise AssertionError('unexpected command %r' % (argv,))

    def scripts(self):
        return [(argv[1], data) for argv, data in self.calls if argv[-1] == '-']


def backend_for(host, tmp_path, **options):
    backend = NftablesBackend(host.run_command, host.get_bin_path, options)
    # A backend holds its lock until the process ends: each one here gets its own.
    backend.lock_path = str(tmp_path / ('lock-%d' % id(backend)))
    return backend


def script_lines(script):
    return [line for line in script.splitlines() if line and not line.startswith('#')]


# -- reading back -------------------------------------------------------------------

def test_rules_read_back_from_the_kernel_are_the_rules_written(tmp_path):
    backend = backend_for(RecordedHost('applied'), tmp_path)
    backend.read()
    assert backend.current_rules() == RULES
    assert backend.problems() == []
    assert backend.in_place(RULES) and backend.present_anywhere()


def test_a_second_run_reads_once_and_writes_nothing(tmp_path):
    host = RecordedHost('applied')
    result = converge(backend_for(host, tmp_path), RULES, 'present', False, False)
    assert not result['changed'] and result['script'] == '' and result['before'] == RULES
    assert [argv for argv, _data in host.calls] == [[NFT, '-j', 'list', 'ruleset']]


def test_the_same_rules_written_differently_are_no_change(tmp_path):
    # Another spelling of rules.json: host addresses without prefix, ports as strings and out of order,
    # ranges written with a colon, fields in another order.
    respelled = []
    for rule in json.loads(fixture('rules.json')):
        rule = dict(rule, ports=[str(port).replace('-', ':') for port in reversed(rule['ports'])])
        respelled.append(dict(reversed(list(rule.items()))))
    result = converge(backend_for(RecordedHost('applied'), tmp_path), respelled, 'present', False, False)
    assert not result['changed']


# -- placement --------------------------------------------------------------------------

def test_first_apply_places_our_chains_where_they_take_effect(tmp_path):
    host = RecordedHost('admin')
    result = converge(backend_for(host, tmp_path), RULES, 'present', False, False)
    assert result['changed'] and result['before'] == []
    script = result['script']
    lines = script_lines(script)
    # Filter chains in the admin's inet table, entered from its policy-drop chains; the docker-like
    # table (its own forward chain, policy accept) is never named.
    for chain, base in (('lync_xmpp_in', 'input'), ('lync_xmpp_out', 'output'), ('lync_xmpp_fwd', 'forward')):
        assert 'add chain inet filter %s' % chain in lines
        assert 'insert rule inet filter %s jump %s comment "lync-xmpp-federation"' % (base, chain) in lines
    assert 'docker' not in script
    # No nat base chain on the host: translations go to base chains of a table of ours.
    assert 'add table inet lync_xmpp' in lines
    assert 'add chain inet lync_xmpp lync_xmpp_dnat { type nat hook prerouting priority -100; policy accept; }' in lines
    assert 'add chain inet lync_xmpp lync_xmpp_snat { type nat hook postrouting priority 100; policy accept; }' in lines
    # One kernel rule per (source, destination): nft would merge a /32 into a /31 listed beside it in a set.
    assert ('add rule inet filter lync_xmpp_in ip saddr 198.51.100.7 ip daddr 198.51.100.66 tcp dport 5269 counter '
            'accept comment "xmpp-s2s-inbound: XMPP federation row 1, partners to Access Edge"') in lines
    assert ('add rule inet filter lync_xmpp_in ip saddr 198.51.100.8/31 ip daddr 198.51.100.66 tcp dport 5269 '
            'counter accept comment "xmpp-s2s-inbound: XMPP federation row 1, partners to Access Edge"') in lines
    assert ('add rule inet filter lync_xmpp_fwd udp dport { 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 100-110, 200-210, '
            '300-310, 400-410 } counter reject comment "many-ports"') in lines
    assert ('add rule inet lync_xmpp lync_xmpp_dnat ip6 daddr 2001:db8:a::1 tcp dport 5269 counter '
            'dnat ip6 to 2001:db8:b::66 comment "edge-dnat-ipv6"') in lines
    # Rules in name order within a chain; chains filled only after every stray jump went.
    fwd = [line for line in lines if line.startswith('add rule inet filter lync_xmpp_fwd')]
    assert [line.rsplit('comment ', 1)[1] for line in fwd] == ['"drop-v6"', '"many-ports"', '"xmpp-gateway: row 3"']
    assert ('add rule inet filter lync_xmpp_fwd ip saddr 198.51.100.2 ip daddr 198.51.100.66 tcp dport '
            '{ 5000-5010, 23456 } counter accept comment "xmpp-gateway: row 3"') in lines
    # Checked, then applied, the same script once each.
    assert host.scripts() == [('-c', script), ('-f', script)]


def test_a_host_without_base_chains_gets_base_chains_of_ours_with_policy_accept(tmp_path):
    host = RecordedHost(None)
    result = converge(backend_for(host, tmp_path), RULES, 'present', False, False)
    lines = script_lines(result['script'])
    assert 'add chain inet lync_xmpp lync_xmpp_in { type filter hook input priority 0; policy accept; }' in lines
    assert not [line for line in lines if line.startswith('insert rule')], 'our own base chains need no jump'
    # Recorded after exactly that: nothing to do.
    assert not converge(backend_for(RecordedHost('own-table'), tmp_path), RULES, 'present', False, False)['changed']


def test_named_table_and_chains_and_impossible_placements(tmp_path):
    host = RecordedHost('admin')
    ipv4_in = [rule for rule in RULES if rule['name'] == 'xmpp-s2s-inbound']
    backend = backend_for(host, tmp_path, nft_table='inet filter', base_chains={'in': 'input'})
    backend.read()
    assert 'insert rule inet filter input jump lync_xmpp_in' in backend.render_present(ipv4_in)
    errors = {
        'nft_table': ({'nft_table': 'ip docker'}, [rule for rule in RULES if rule['direction'] == 'forward'],
                      "nft_table 'ip docker' cannot hold IPv6 rules"),
        'missing table': ({'nft_table': 'inet nosuch'}, ipv4_in, "nft_table 'inet nosuch' does not exist"),
        'missing chain': ({'base_chains': {'in': 'inbound'}}, ipv4_in, "base_chains.in: no filter base chain 'inbound'"),
        'one chain twice': ({'base_chains': {'in': 'input', 'out': 'input'}},
                            [rule for rule in RULES if rule['direction'] in ('in', 'out')], "'input'"),
        'no hook in table': ({'nft_table': 'ip docker'}, [dict(ipv4_in[0], direction='out')],
                             "nft_table 'ip docker' has no filter base chain at hook output"),
    }
    for label, (options, rules, message) in errors.items():
        backend = backend_for(host, tmp_path, **options)
        backend.read()
        with pytest.raises(BackendError) as error:
            backend.render_present(rules)
        assert message in str(error.value), (label, str(error.value))
    with pytest.raises(BackendError, match='FAMILY NAME'):
        parse_table_option('filter')
    assert parse_table_option('ip6 my-table') == ('ip6', 'my-table')


# -- hand edits, removal -------------------------------------------------------------------

def test_hand_edits_are_found_and_repaired_with_nothing_else_named(tmp_path):
    backend = backend_for(RecordedHost('messy'), tmp_path)
    backend.read()
    problems = '\n'.join(backend.problems())
    assert 'lync_xmpp_out holds a rule not in a form we write' in problems
    # The kernel rule deleted by hand shows in the rule read back (and so in diff mode).
    live = dict((rule['name'], rule) for rule in backend.current_rules())
    assert live['xmpp-s2s-inbound']['source'] == ['198.51.100.8/31']
    assert not backend.in_place(RULES)
    script = backend.render_present(RULES)
    lines = script_lines(script)
    # Both jumps to lync_xmpp_in go (one is not first, and there must be one), by handle; one comes back first.
    deletes = [line for line in lines if line.startswith('delete rule')]
    assert len(deletes) == 2 and all(line.startswith('delete rule inet filter input handle ') for line in deletes)
    assert lines.count('insert rule inet filter input jump lync_xmpp_in comment "lync-xmpp-federation"') == 1
    assert 'insert rule inet filter forward jump' not in script, 'a jump in place stays'
    assert 'flush chain inet filter lync_xmpp_out' in lines and 'docker' not in script


def test_absent_removes_only_our_chains_jumps_and_table(tmp_path):
    host = RecordedHost('applied')
    result = converge(backend_for(host, tmp_path), [], 'absent', False, False)
    lines = script_lines(result['script'])
    assert result['changed'] and result['before'] == RULES
    assert sorted(line.split(' handle ')[0] for line in lines if line.startswith('delete rule')) == [
        'delete rule inet filter forward', 'delete rule inet filter input', 'delete rule inet filter output']
    for chain in ('lync_xmpp_in', 'lync_xmpp_out', 'lync_xmpp_fwd'):
        assert lines.index('flush chain inet filter %s' % chain) < lines.index('delete chain inet filter %s' % chain)
    assert lines[-1] == 'delete table inet lync_xmpp'
    assert len(lines) == 3 + 6 + 1, lines
    # Nothing of ours on the admin's host: nothing to do.
    assert not converge(backend_for(RecordedHost('admin'), tmp_path), [], 'absent', False, False)['changed']


def test_check_mode_compares_and_writes_nothing(tmp_path):
    host = RecordedHost('admin')
    result = converge(backend_for(host, tmp_path), RULES, 'present', False, True)
    assert result['changed'] and result['script'] and host.scripts() == []


# -- failures ---------------------------------------------------------------------------------

def test_a_refused_check_names_the_rule_and_applies_nothing(tmp_path):
    backend = backend_for(RecordedHost('admin'), tmp_path)
    backend.read()
    script = backend.render_present(RULES)
    number = script_lines(script).index(next(line for line in script_lines(script) if '"many-ports"' in line)) + 2
    message = ('/dev/stdin:%d:39-44: Error: Could not process rule: Numerical result out of range\n'
               'add rule inet filter lync_xmpp_fwd udp dport ...\n' % number)
    host = RecordedHost('admin', results={'check': (1, '', message)})
    with pytest.raises(BackendError) as error:
        converge(backend_for(host, tmp_path), RULES, 'present', False, False)
    text = str(error.value)
    assert "line %d (rule 'many-ports'): Could not process rule" % number in text and 'nothing was changed' in text
    assert [flag for flag, _script in host.scripts()] == ['-c']


def test_a_refused_commit_says_the_ruleset_is_as_it_was(tmp_path):
    host = RecordedHost('admin', results={'apply': (1, '', 'Error: Could not process rule: No buffer space\n')})
    with pytest.raises(BackendError) as error:
        converge(backend_for(host, tmp_path), RULES, 'present', False, False)
    assert 'No buffer space' in str(error.value) and 'as it was before this run' in str(error.value)


# -- kernel rules -------------------------------------------------------------------------------

def match(protocol, field, right):
    return {'match': {'op': '==', 'left': {'payload': {'protocol': protocol, 'field': field}}, 'right': right}}


COUNTER = {'counter': {'packets': 3, 'bytes': 180}}


@pytest.mark.parametrize('expr, expected', [
    ([match('ip', 'saddr', '198.51.100.7'), match('tcp', 'dport', 5269), COUNTER, {'accept': None}],
     KernelRule(None, '198.51.100.7/32', None, 'tcp', [(5269, 5269)], 'accept', 'x')),
    ([match('ip6', 'daddr', {'prefix': {'addr': '2001:db8::', 'len': 32}}),
      match('udp', 'dport', {'set': [1, {'range': [5, 9]}]}), COUNTER, {'reject': {'type': 'icmpx'}}],
     KernelRule(None, None, '2001:db8::/32', 'udp', [(1, 1), (5, 9)], 'reject', 'x')),
    ([{'match': {'op': '==', 'left': {'meta': {'key': 'nfproto'}}, 'right': 'ipv6'}},
      match('tcp', 'dport', {'range': [1000, 2000]}), COUNTER, {'drop': None}],
     KernelRule(6, None, None, 'tcp', [(1000, 2000)], 'drop', 'x')),
    ([match('ip', 'daddr', {'set': ['198.51.100.1']}), match('tcp', 'dport', 5269), COUNTER,
      {'dnat': {'family': 'ip', 'addr': '198.51.100.66'}}],
     KernelRule(None, None, '198.51.100.1/32', 'tcp', [(5269, 5269)], ('dnat', '198.51.100.66'), 'x')),
])
def test_kernel_rules_in_our_forms_parse(expr, expected):
    assert parse_kernel_rule({'expr': expr, 'comment': 'x'}) == expected


@pytest.mark.parametrize('expr', [
    [match('tcp', 'dport', 1), {'accept': None}],                                         # no counter
    [{'match': {'op': '==', 'left': {'meta': {'key': 'iifname'}}, 'right': 'eth0'}}, match('tcp', 'dport', 1),
     COUNTER, {'accept': None}],                                                          # an interface
    [{'match': {'op': '!=', 'left': {'payload': {'protocol': 'tcp', 'field': 'dport'}}, 'right': 1}}, COUNTER,
     {'accept': None}],                                                                   # a negation
    [match('ip', 'saddr', {'set': ['198.51.100.1', '198.51.100.2']}), match('tcp', 'dport', 1), COUNTER,
     {'accept': None}],                                                                   # two addresses in a set
    [match('ip6', 'saddr', '198.51.100.1'), match('tcp', 'dport', 1), COUNTER, {'accept': None}],  # wrong family
    [match('tcp', 'dport', 1), COUNTER, {'dnat': {'addr': '198.51.100.1', 'port': 80}}],  # translation with a port
    [match('tcp', 'dport', 1), COUNTER, {'accept': None}, {'drop': None}],                # two verdicts
    [match('tcp', 'dport', 1), COUNTER, {'jump': {'target': 'elsewhere'}}],               # a jump
    [COUNTER, {'accept': None}],                                                          # no port
])
def test_other_shapes_are_not_ours(expr):
    assert parse_kernel_rule({'expr': expr, 'comment': 'x'}) is None


def test_one_model_rule_becomes_kernel_rules_per_family_and_address_pair():
    rule = normalize_rules([{'name': 'r', 'direction': 'in', 'ports': [1, 3], 'source': ['198.51.100.0/30', '198.51.100.9'],
                             'destination': ['198.51.100.66']}])[0]
    made = kernel_rules(rule, 'inet', {4, 6})
    assert [(each.source, each.destination) for each in made] == [
        ('198.51.100.0/30', '198.51.100.66/32'), ('198.51.100.9/32', '198.51.100.66/32')]
    assert made[0].text('inet') == 'ip saddr 198.51.100.0/30 ip daddr 198.51.100.66 tcp dport { 1, 3 } counter accept comment "r"'
    neutral = normalize_rules([{'name': 'n', 'direction': 'out', 'ports': [5269]}])[0]
    assert [each.nfproto for each in kernel_rules(neutral, 'inet', {4, 6})] == [None]
    # An inet chain that serves one family only must not let a neutral rule match the other.
    assert [each.text('inet') for each in kernel_rules(neutral, 'inet', {6})] == [
        'meta nfproto ipv6 tcp dport 5269 counter accept comment "n"']
    assert [each.text('ip') for each in kernel_rules(neutral, 'ip', {4})] == ['tcp dport 5269 counter accept comment "n"']
    assert kernel_rules(rule, 'ip6', {6}) == []
    dnat = normalize_rules([{'name': 'd', 'direction': 'forward', 'ports': [5269], 'destination': ['198.51.100.1'],
                             'nat': 'dnat', 'nat_to': '198.51.100.66'}])[0]
    assert kernel_rules(dnat, 'ip', {4})[0].text('ip').endswith('counter dnat to 198.51.100.66 comment "d"')
    assert network_text('2001:db8::1/128') == '2001:db8::1' and network_text('2001:db8::/32') == '2001:db8::/32'


# -- persistence ------------------------------------------------------------------------------

ADMIN_CONFIG = '#!/usr/sbin/nft -f\nflush ruleset\n\ninclude "/etc/nftables.d/admin-*.nft"\n'


def persistence(tmp_path, stage, main_text=ADMIN_CONFIG):
    main_config, our_file = tmp_path / 'nftables.conf', tmp_path / 'd' / 'lync.nft'
    if main_text is not None:
        main_config.write_text(main_text)
    backend = backend_for(RecordedHost(stage), tmp_path, nft_main_config=str(main_config), nft_persist_file=str(our_file))
    backend.read()
    return backend, main_config, our_file


def test_persistence_writes_our_file_and_one_include_line(tmp_path):
    backend, main_config, our_file = persistence(tmp_path, 'applied')
    assert backend.persist(RULES, True) and not our_file.exists(), 'check mode writes nothing'
    assert main_config.read_text() == ADMIN_CONFIG
    assert backend.persist(RULES, False)
    assert main_config.read_text() == ADMIN_CONFIG + '\n%s\ninclude "%s"\n' % (INCLUDE_MARKER, our_file)
    text = our_file.read_text()
    # What the transaction did, as commands that rebuild it after the admin's configuration.
    for line in ('add chain inet filter lync_xmpp_in', 'flush chain inet filter lync_xmpp_in',
                 'insert rule inet filter input jump lync_xmpp_in comment "lync-xmpp-federation"',
                 'add chain inet lync_xmpp lync_xmpp_snat { type nat hook postrouting priority 100; policy accept; }'):
        assert line + '\n' in text
    assert not backend.persist(RULES, False), 'a second run changes nothing'
    assert backend.persistence_files() == [str(our_file), str(main_config)]
    # Absent: our file goes, and so does our include line with its comment, and nothing else.
    assert backend.persist(None, False)
    assert not our_file.exists() and main_config.read_text() == ADMIN_CONFIG
    assert not backend.persist(None, False)


def test_persistence_follows_the_distribution_unless_told(tmp_path):
    backend = backend_for(RecordedHost('applied'), tmp_path)
    rhel = backend.persistence_layout(exists=lambda path: path == '/etc/sysconfig/nftables.conf')
    assert rhel == ('/etc/sysconfig/nftables.conf', '/etc/nftables/lync-xmpp-federation.nft')
    debian = backend.persistence_layout(exists=lambda path: path == '/etc/nftables.conf')
    assert debian == ('/etc/nftables.conf', '/etc/nftables.d/lync-xmpp-federation.nft')
    # A host with neither file yet gets the Debian layout, which is created with the include line.
    assert backend.persistence_layout(exists=lambda path: False) == debian
    told = backend_for(RecordedHost('applied'), tmp_path, nft_main_config='/srv/nft.conf', nft_persist_file='/srv/x.nft')
    assert told.persistence_files() == ['/srv/x.nft', '/srv/nft.conf']


def test_an_include_the_admin_already_has_is_used(tmp_path):
    config = ADMIN_CONFIG + 'include "%s/d/*.nft"  # everything of d\n' % tmp_path
    backend, main_config, our_file = persistence(tmp_path, 'applied', config)
    assert backend.persist(RULES, False) and our_file.exists()
    assert main_config.read_text() == config
    assert backend.persist(None, False) and main_config.read_text() == config


def test_a_missing_main_configuration_is_created_with_the_include(tmp_path):
    backend, main_config, our_file = persistence(tmp_path, 'applied', None)
    assert backend.persist(RULES, False)
    assert main_config.read_text() == '#!/usr/sbin/nft -f\n\n%s\ninclude "%s"\n' % (INCLUDE_MARKER, our_file)


def test_a_configuration_that_would_not_load_is_put_back_and_said(tmp_path):
    main_config, our_file = tmp_path / 'nftables.conf', tmp_path / 'd' / 'lync.nft'
    main_config.write_text(ADMIN_CONFIG)
    refused = (1, '', '/tmp/d/lync.nft:7:1-60: Error: Could not process rule: No such file or directory\n')
    host = RecordedHost('applied', results={'config': [refused, (0, '', '')]})
    backend = backend_for(host, tmp_path, nft_main_config=str(main_config), nft_persist_file=str(our_file))
    backend.read()
    with pytest.raises(BackendError) as error:
        backend.persist(RULES, False)
    text = str(error.value)
    assert 'would not load' in text and 'No such file or directory' in text and 'not persisted' in text
    assert 'did not load before' not in text
    # The files as they were: the admin's configuration untouched, no file of ours.
    assert main_config.read_text() == ADMIN_CONFIG and not our_file.exists()
    assert [argv for argv, _data in host.calls if argv[:2] == [NFT, '-c']] == [[NFT, '-c', '-f', str(main_config)]] * 2
    # A configuration that was already broken is said to be so.
    host = RecordedHost('applied', results={'config': [refused, (1, '', 'Error: syntax error\n')]})
    backend = backend_for(host, tmp_path, nft_main_config=str(main_config), nft_persist_file=str(our_file))
    backend.read()
    with pytest.raises(BackendError, match='did not load before this run either: Error: syntax error'):
        backend.persist(RULES, False)
