# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The nftables backend against ``nft`` output recorded from real kernels.

The fixtures under fixtures/nftables/ were recorded by record.sh there, each
stage as ``nft -j list ruleset`` (STAGE.json) and ``nft -a list ruleset``
(STAGE.txt, where table and chain comments, our mark, are): an admin ruleset
(with a foreign nat table), then rules.json applied by this backend, then hand
edits of ours (messy) or foreign content in ours (tainted), chains and a table
named like ours without our mark, and rules.json applied to a host with no
ruleset.  The only double is ``RecordedHost``: it serves the recordings and
records every command, the nft scripts included.
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
    Transaction,
    converge,
)
from ansible_collections.lync.xmpp_federation.plugins.module_utils.nftables import (
    INCLUDE_MARKER,
    KernelRule,
    NftablesBackend,
    Ruleset,
    kernel_rules,
    network_text,
    parse_kernel_rule,
    parse_table_option,
)
from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import RuleError, normalize_rules

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'nftables')
NFT = '/usr/sbin/nft'
LIST_JSON = [NFT, '-j', 'list', 'ruleset']
LIST_TEXT = [NFT, '-a', 'list', 'ruleset']


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


with open(os.path.join(FIXTURES, 'rules.json')) as _rules:
    RULES = normalize_rules(json.load(_rules))


class RecordedHost(object):
    """run_command/get_bin_path doubles: the recorded listings of one stage, every call recorded.

    ``results`` maps 'json' and 'text' (the two listings), 'check' and 'apply' (``nft -c -f -`` and
    ``nft -f -``) to the (rc, out, err) they give instead of the recording or success.
    """

    def __init__(self, stage, results=None):
        if stage:
            self.listings = {'json': fixture('%s.json' % stage), 'text': fixture('%s.txt' % stage)}
        else:
            self.listings = {'json': '{"nftables": []}', 'text': ''}
        self.results = results or {}
        self.calls = []

    def get_bin_path(self, name, required=False, opt_dirs=None):
        return NFT if name == 'nft' else None

    def run_command(self, argv, data=None, binary_data=False):
        self.calls.append((argv, data))
        for kind, listing in (('json', LIST_JSON), ('text', LIST_TEXT)):
            if argv == listing:
                return self.results.get(kind, (0, self.listings[kind], ''))
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

    def commands(self):
        return [argv for argv, _data in self.calls]


def backend_for(host, tmp_path, **options):
    backend = NftablesBackend(host.run_command, host.get_bin_path, options)
    # A backend holds its lock until the process ends: each one here gets its own.
    backend.lock_path = str(tmp_path / ('lock-%d' % id(backend)))
    return backend


def planned(host, tmp_path, rules, **options):
    """The script a run with ``rules`` would apply, from the host's recorded state."""
    backend = backend_for(host, tmp_path, **options)
    backend.read()
    return backend.plan(rules).text()


def script_lines(script):
    return [line for line in script.splitlines() if line and not line.startswith('#')]


def table_listing(text, table):
    """One table's block of ``nft -a list ruleset``, handles included."""
    lines = text.splitlines()
    start = lines.index('table %s { # handle %s' % (table, next(
        line.split('# handle ')[1] for line in lines if line.startswith('table %s {' % table))))
    return lines[start:lines.index('}', start) + 1]


def only(rules, *names):
    return [rule for rule in rules if rule['name'] in names]


# -- reading back -------------------------------------------------------------------

def test_rules_read_back_from_the_kernel_are_the_rules_written(tmp_path):
    host = RecordedHost('applied')
    backend = backend_for(host, tmp_path)
    backend.read()
    assert backend.current_rules() == RULES
    assert backend.problems() == []
    assert backend.in_place(RULES) and backend.present_anywhere()
    # Our table and chains are ours by the mark the text listing shows (nft's JSON leaves it out).
    assert sorted(backend.ownership.chains) == [
        (('inet', 'filter'), 'lync_xmpp_fwd'), (('inet', 'filter'), 'lync_xmpp_in'),
        (('inet', 'filter'), 'lync_xmpp_out'),
        (('inet', 'lync_xmpp'), 'lync_xmpp_dnat'), (('inet', 'lync_xmpp'), 'lync_xmpp_snat')]
    assert backend.ownership.own_table and len(backend.ownership.jumps) == 3
    assert backend.ownership.foreign == {} and backend.ownership.tainted == []


def test_marks_are_read_from_the_text_listing_and_only_there():
    ruleset = Ruleset.from_text(fixture('applied.json'))
    # nft -j leaves table and chain comments out (the recording shows it): the JSON alone marks nothing ours.
    assert not [item for item in json.loads(fixture('applied.json'))['nftables']
                if 'comment' in item.get('table', item.get('chain', {}))]
    assert not ruleset.marked(('inet', 'lync_xmpp')) and not ruleset.marked(('inet', 'filter', 'lync_xmpp_in'))
    ruleset.add_listing(fixture('applied.txt'))
    assert ruleset.marked(('inet', 'lync_xmpp')) and ruleset.marked(('inet', 'lync_xmpp', 'lync_xmpp_dnat'))
    assert ruleset.marked(('inet', 'filter', 'lync_xmpp_in'))
    assert not ruleset.marked(('inet', 'filter')) and not ruleset.marked(('inet', 'filter', 'input'))
    # A rule's text, by handle, for messages.
    rule = ruleset.rules[('ip', 'docker', 'DOCKER')][0]
    assert ruleset.rule_text(('ip', 'docker', 'DOCKER'), rule) == \
        'iifname != "docker0" oifname "docker0" tcp dport 8080 accept'


def test_a_second_run_reads_once_and_writes_nothing(tmp_path):
    host = RecordedHost('applied')
    result = converge(backend_for(host, tmp_path), RULES, 'present', False, False)
    assert not result['changed'] and result['script'] == '' and result['before'] == RULES
    assert result['warnings'] == []
    # One read: the JSON, and the text listing for the marks, since tables and chains carry our names.
    assert host.commands() == [LIST_JSON, LIST_TEXT]


def test_the_text_listing_is_not_read_where_nothing_carries_our_names(tmp_path):
    host = RecordedHost('admin')
    result = converge(backend_for(host, tmp_path), [], 'absent', False, False)
    assert not result['changed'] and host.commands() == [LIST_JSON]


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
    assert result['changed'] and result['before'] == [] and result['warnings'] == []
    script = result['script']
    lines = script_lines(script)
    # Filter chains, marked, in the admin's inet table, entered from its policy-drop chains by marked jumps;
    # the docker-like table (its own forward chain, policy accept, and its nat chains) is never named.
    for chain, base in (('lync_xmpp_in', 'input'), ('lync_xmpp_out', 'output'), ('lync_xmpp_fwd', 'forward')):
        assert 'add chain inet filter %s { comment "lync-xmpp-federation"; }' % chain in lines
        assert 'insert rule inet filter %s jump %s comment "lync-xmpp-federation"' % (base, chain) in lines
    assert 'docker' not in script
    # Translations go to base chains of a marked table of ours at the dstnat and srcnat priorities, though the
    # host has a nat table of its own (the docker-like one) at those hooks.
    assert 'add table inet lync_xmpp { comment "lync-xmpp-federation"; }' in lines
    assert ('add chain inet lync_xmpp lync_xmpp_dnat { comment "lync-xmpp-federation"; type nat hook prerouting '
            'priority -100; policy accept; }') in lines
    assert ('add chain inet lync_xmpp lync_xmpp_snat { comment "lync-xmpp-federation"; type nat hook postrouting '
            'priority 100; policy accept; }') in lines
    assert [line for line in lines if 'nat' in line.split(' comment ')[0] and 'inet lync_xmpp' not in line] == []
    # One kernel rule per (source, destination): nft would merge a /32 into a /31 listed beside it in a set.
    # Each carries our rule mark, then the rule's name.
    assert ('add rule inet filter lync_xmpp_in ip saddr 198.51.100.7 ip daddr 198.51.100.66 tcp dport 5269 counter '
            'accept comment "lync-xmpp:xmpp-s2s-inbound: XMPP federation row 1, partners to Access Edge"') in lines
    assert ('add rule inet filter lync_xmpp_in ip saddr 198.51.100.8/31 ip daddr 198.51.100.66 tcp dport 5269 '
            'counter accept comment "lync-xmpp:xmpp-s2s-inbound: XMPP federation row 1, partners to Access Edge"') \
        in lines
    assert ('add rule inet filter lync_xmpp_fwd udp dport { 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 100-110, 200-210, '
            '300-310, 400-410 } counter reject comment "lync-xmpp:many-ports"') in lines
    assert ('add rule inet lync_xmpp lync_xmpp_dnat ip6 daddr 2001:db8:a::1 tcp dport 5269 counter '
            'dnat ip6 to 2001:db8:b::66 comment "lync-xmpp:edge-dnat-ipv6"') in lines
    # Rules in name order within a chain; chains filled only after every stray jump went.
    fwd = [line for line in lines if line.startswith('add rule inet filter lync_xmpp_fwd')]
    assert [line.rsplit('comment ', 1)[1] for line in fwd] == [
        '"lync-xmpp:drop-v6"', '"lync-xmpp:many-ports"', '"lync-xmpp:xmpp-gateway: row 3"']
    assert ('add rule inet filter lync_xmpp_fwd ip saddr 198.51.100.2 ip daddr 198.51.100.66 tcp dport '
            '{ 5000-5010, 23456 } counter accept comment "lync-xmpp:xmpp-gateway: row 3"') in lines
    # Checked, then applied, the same script once each.
    assert host.scripts() == [('-c', script), ('-f', script)]


def test_the_recorded_apply_left_the_foreign_nat_table_byte_for_byte():
    # record.sh applied this very plan to a real kernel: the docker-like table, nat chains and handles
    # included, is as the admin left it, and our translations are in our own table.
    assert table_listing(fixture('applied.txt'), 'ip docker') == table_listing(fixture('admin.txt'), 'ip docker')
    ours = '\n'.join(table_listing(fixture('applied.txt'), 'inet lync_xmpp'))
    assert 'type nat hook prerouting priority dstnat; policy accept;' in ours
    assert 'type nat hook postrouting priority srcnat; policy accept;' in ours
    assert 'dnat ip to 198.51.100.66 comment "lync-xmpp:edge-dnat: public to Edge"' in ours


def test_a_host_without_base_chains_gets_base_chains_of_ours_with_policy_accept(tmp_path):
    host = RecordedHost(None)
    result = converge(backend_for(host, tmp_path), RULES, 'present', False, False)
    lines = script_lines(result['script'])
    assert ('add chain inet lync_xmpp lync_xmpp_in { comment "lync-xmpp-federation"; type filter hook input '
            'priority 0; policy accept; }') in lines
    assert not [line for line in lines if line.startswith('insert rule')], 'our own base chains need no jump'
    # Recorded after exactly that: nothing to do.
    assert not converge(backend_for(RecordedHost('own-table'), tmp_path), RULES, 'present', False, False)['changed']


def test_named_table_and_chains_and_impossible_placements(tmp_path):
    host = RecordedHost('admin')
    ipv4_in = only(RULES, 'xmpp-s2s-inbound')
    script = planned(host, tmp_path, ipv4_in, nft_table='inet filter', base_chains={'in': 'input'})
    assert 'insert rule inet filter input jump lync_xmpp_in' in script
    errors = {
        'nft_table': ({'nft_table': 'ip docker'}, [rule for rule in RULES if rule['direction'] == 'forward'],
                      "nft_table 'ip docker' cannot hold IPv6 rules"),
        'missing table': ({'nft_table': 'inet nosuch'}, ipv4_in, "nft_table 'inet nosuch' does not exist"),
        'missing chain': ({'base_chains': {'in': 'inbound'}}, ipv4_in,
                          "base_chains.in: no filter base chain 'inbound'"),
        'one chain twice': ({'base_chains': {'in': 'input', 'out': 'input'}},
                            [rule for rule in RULES if rule['direction'] in ('in', 'out')], "'input'"),
        'no hook in table': ({'nft_table': 'ip docker'}, [dict(ipv4_in[0], direction='out')],
                             "nft_table 'ip docker' has no filter base chain at hook output"),
    }
    for label, (options, rules, message) in errors.items():
        with pytest.raises(BackendError) as error:
            planned(host, tmp_path, rules, **options)
        assert message in str(error.value), (label, str(error.value))
    with pytest.raises(BackendError, match='FAMILY NAME'):
        parse_table_option('filter')
    assert parse_table_option('ip6 my-table') == ('ip6', 'my-table')


def test_a_named_table_does_not_bring_translations_into_it(tmp_path):
    # Translations never go into a table of anyone else's, even the one named for our chains.
    script = planned(RecordedHost('admin'), tmp_path, only(RULES, 'edge-dnat', 'edge-snat'), nft_table='ip docker')
    assert 'docker' not in script and 'add chain inet lync_xmpp lync_xmpp_dnat' in script


# -- hand edits of ours: repaired --------------------------------------------------------

def test_hand_edits_of_ours_are_found_and_repaired_with_nothing_else_named(tmp_path):
    host = RecordedHost('messy')
    backend = backend_for(host, tmp_path)
    backend.read()
    assert backend.ownership.tainted == [] and backend.ownership.foreign == {}
    # A marked rule in a form we never write is named, with its text.
    assert backend.problems() == [
        'nftables: chain inet filter lync_xmpp_out holds a rule not in a form we write (oifname "eth0" counter '
        'packets 0 bytes 0 accept comment "lync-xmpp:xmpp-s2s-outbound: by hand")']
    # The kernel rule deleted by hand, and the one edited, show in the rules read back (and so in diff mode).
    live = dict((rule['name'], rule) for rule in backend.current_rules())
    assert live['xmpp-s2s-inbound']['source'] == ['198.51.100.8/31']
    assert live['xmpp-s2s-inbound-ipv6']['ports'] == [5270]
    assert not backend.in_place(RULES)
    result = converge(backend_for(host, tmp_path), RULES, 'present', False, False)
    lines = script_lines(result['script'])
    # Both jumps to lync_xmpp_in go (one is not first, and there must be one), by handle; one comes back first.
    assert [line for line in lines if line.startswith('delete')] == [
        'delete rule inet filter input handle 36', 'delete rule inet filter input handle 39']
    assert lines.count('insert rule inet filter input jump lync_xmpp_in comment "lync-xmpp-federation"') == 1
    assert 'insert rule inet filter forward jump' not in result['script'], 'a jump in place stays'
    assert 'flush chain inet filter lync_xmpp_out' in lines and 'flush chain inet filter lync_xmpp_in' in lines
    assert 'docker' not in result['script']
    # What was rewritten is said; in check mode, what would be.
    assert result['warnings'] == ['%s (rewritten by this run)' % backend.problems()[0]]
    host = RecordedHost('messy')
    result = converge(backend_for(host, tmp_path), RULES, 'present', False, True)
    assert result['warnings'] == ['%s (a run without check mode would rewrite it)' % backend.problems()[0]]
    assert host.scripts() == []


# -- foreign content, names without our mark: refused or left alone ---------------------

def assert_nothing_written(host):
    assert host.commands() == [LIST_JSON, LIST_TEXT]


@pytest.mark.parametrize('rules, state', [(RULES, 'present'), ([], 'present'), ([], 'absent')])
def test_foreign_content_in_or_into_ours_refuses_every_run_naming_it(tmp_path, rules, state):
    host = RecordedHost('tainted')
    with pytest.raises(OwnershipError) as error:
        converge(backend_for(host, tmp_path), rules, state, False, False)
    text = str(error.value)
    assert text.startswith('nftables: refusing to run, nothing was changed: ')
    # The table, the chain and the foreign rule, each as the kernel lists it.
    assert ('table inet filter, chain lync_xmpp_out: holds a rule that is not ours (oifname "eth0" accept)'
            in text)
    assert ('table inet filter, chain forward: a rule that is not ours jumps to our chain lync_xmpp_fwd '
            '(ip saddr 198.51.100.0/24 jump lync_xmpp_fwd)') in text
    assert 'table inet lync_xmpp, chain admin_counters: our table holds a chain that is not ours' in text
    assert_nothing_written(host)


def test_check_mode_refuses_foreign_content_too(tmp_path):
    host = RecordedHost('tainted')
    with pytest.raises(OwnershipError):
        converge(backend_for(host, tmp_path), RULES, 'present', False, True)
    assert_nothing_written(host)


def test_a_chain_named_like_ours_without_our_mark_where_the_rules_need_it_is_refused(tmp_path):
    host = RecordedHost('namesake')
    with pytest.raises(OwnershipError) as error:
        converge(backend_for(host, tmp_path), RULES, 'present', False, False)
    text = str(error.value)
    assert ('table inet filter, chain lync_xmpp_in is named like ours but lacks our mark (comment '
            '"lync-xmpp-federation"); its rules: tcp dport 8443 accept comment "admin: web console"') in text
    assert 'rename that chain, or point nft_table/base_chains at another table' in text
    # The admin's chain in a table of its own is not in the way.
    assert 'egress' not in text
    assert_nothing_written(host)


def test_chains_named_like_ours_elsewhere_are_left_alone_and_said(tmp_path):
    host = RecordedHost('namesake')
    without_in = [rule for rule in RULES if rule['direction'] != 'in']
    result = converge(backend_for(host, tmp_path), without_in, 'present', False, False)
    assert result['changed']
    script = result['script']
    assert 'egress' not in script and 'lync_xmpp_in' not in script
    assert 'insert rule inet filter output jump lync_xmpp_out comment "lync-xmpp-federation"' in script
    assert result['warnings'] == [
        'nftables: left alone: table inet filter, chain lync_xmpp_in is named like ours but lacks our mark '
        '(comment "lync-xmpp-federation"); its rules: tcp dport 8443 accept comment "admin: web console"',
        'nftables: left alone: table ip egress, chain lync_xmpp_out is named like ours but lacks our mark '
        '(comment "lync-xmpp-federation"); its rules: tcp dport 25 drop comment "admin: no direct mail"']
    # Removing what is ours never touches a chain for its name: there is nothing of ours here.
    host = RecordedHost('namesake')
    result = converge(backend_for(host, tmp_path), [], 'absent', False, False)
    assert not result['changed'] and result['script'] == '' and len(result['warnings']) == 2
    assert_nothing_written(host)


def test_a_table_named_like_ours_without_our_mark(tmp_path):
    host = RecordedHost('foreign-table')
    # Translations need our own table: refused, naming it.
    with pytest.raises(OwnershipError) as error:
        converge(backend_for(host, tmp_path), RULES, 'present', False, False)
    assert ('table inet lync_xmpp is named like ours but lacks our mark (comment "lync-xmpp-federation"), and the '
            'rules need that name there (rename or delete that table)') in str(error.value)
    assert_nothing_written(host)
    # Rules that live in the admin's table leave it alone, and say so.
    filtering = [rule for rule in RULES if not rule.get('nat')]
    result = converge(backend_for(RecordedHost('foreign-table'), tmp_path), filtering, 'present', False, False)
    assert result['changed'] and 'inet lync_xmpp ' not in result['script']
    assert 'insert rule inet filter input jump lync_xmpp_in comment "lync-xmpp-federation"' in result['script']
    assert result['warnings'] == ['nftables: left alone: table inet lync_xmpp is named like ours but lacks our '
                                  'mark (comment "lync-xmpp-federation")']
    assert not converge(backend_for(RecordedHost('foreign-table'), tmp_path), [], 'absent', False, False)['changed']


def test_a_leftover_of_ours_from_an_earlier_placement_is_cleaned_up(tmp_path):
    # Recorded after xmpp-gateway was placed with nft_table 'ip docker': our marked chain and jump there.
    host = RecordedHost('leftover')
    backend = backend_for(host, tmp_path, nft_table='ip docker')
    gateway = only(RULES, 'xmpp-gateway')
    assert not converge(backend, gateway, 'present', False, False)['changed'], 'where it was told to be'
    host = RecordedHost('leftover')
    result = converge(backend_for(host, tmp_path), RULES, 'present', False, False)
    assert result['before'] == gateway and result['warnings'] == []
    docker = [line for line in script_lines(result['script']) if 'docker' in line]
    # Only what is ours in that table goes: our jump (by handle), then our chain.
    assert docker == ['delete rule ip docker FORWARD handle 18', 'flush chain ip docker lync_xmpp_fwd',
                      'delete chain ip docker lync_xmpp_fwd']
    assert 'insert rule inet filter forward jump lync_xmpp_fwd comment "lync-xmpp-federation"' in result['script']


# -- removal ---------------------------------------------------------------------------------

def test_absent_removes_only_our_chains_jumps_and_table(tmp_path):
    host = RecordedHost('applied')
    result = converge(backend_for(host, tmp_path), [], 'absent', False, False)
    lines = script_lines(result['script'])
    assert result['changed'] and result['before'] == RULES
    assert sorted(lines[:3]) == ['delete rule inet filter forward handle 38', 'delete rule inet filter input handle 36',
                                 'delete rule inet filter output handle 37']
    for chain in ('lync_xmpp_in', 'lync_xmpp_out', 'lync_xmpp_fwd'):
        assert lines.index('flush chain inet filter %s' % chain) < lines.index('delete chain inet filter %s' % chain)
    assert lines[-1] == 'delete table inet lync_xmpp'
    assert len(lines) == 3 + 6 + 1, lines
    # An empty list means the same as absent.
    assert converge(backend_for(RecordedHost('applied'), tmp_path), [], 'present', False, False)['script'] == \
        result['script']
    # Nothing of ours on the admin's host: nothing to do.
    assert not converge(backend_for(RecordedHost('admin'), tmp_path), [], 'absent', False, False)['changed']


def test_check_mode_compares_and_writes_nothing(tmp_path):
    host = RecordedHost('admin')
    result = converge(backend_for(host, tmp_path), RULES, 'present', False, True)
    assert result['changed'] and result['script'] and host.scripts() == []


# -- failures ---------------------------------------------------------------------------------

@pytest.mark.parametrize('rules, state', [(RULES, 'present'), ([], 'present'), ([], 'absent')])
@pytest.mark.parametrize('stage, listing, command', [
    ('applied', 'json', 'nft -j list ruleset'),
    ('admin', 'json', 'nft -j list ruleset'),
    ('applied', 'text', 'nft -a list ruleset'),
])
def test_a_ruleset_that_cannot_be_read_fails_every_run_naming_the_tool(tmp_path, rules, state, stage, listing,
                                                                       command):
    failure = (1, '', 'Error: cannot open socket: Operation not permitted\n')
    host = RecordedHost(stage, results={listing: failure})
    with pytest.raises(BackendError) as error:
        converge(backend_for(host, tmp_path), rules, state, False, False)
    assert str(error.value) == ('nftables: %s failed (1): Error: cannot open socket: Operation not permitted; '
                                'nothing was changed' % command)
    assert host.scripts() == []


def test_unreadable_json_fails(tmp_path):
    host = RecordedHost('applied', results={'json': (0, '{"nftables": [', '')})
    with pytest.raises(BackendError, match='cannot read the output of nft -j list ruleset'):
        converge(backend_for(host, tmp_path), [], 'absent', False, False)


def test_a_refused_check_names_the_rule_and_applies_nothing(tmp_path):
    script = planned(RecordedHost('admin'), tmp_path, RULES)
    lines = script_lines(script)
    number = lines.index(next(line for line in lines if '"lync-xmpp:many-ports"' in line)) + 2
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


def test_apply_commits_the_transaction_it_is_given(tmp_path):
    host = RecordedHost('admin')
    backend = backend_for(host, tmp_path)
    backend.read()
    transaction = backend.plan(RULES)
    assert [label for label, _text, _payload in transaction.steps] == ['nft -f']
    backend.apply(Transaction([('nft -f', 'add table inet lync_xmpp { comment "lync-xmpp-federation"; }\n', None)]))
    assert host.scripts() == [('-c', 'add table inet lync_xmpp { comment "lync-xmpp-federation"; }\n'),
                              ('-f', 'add table inet lync_xmpp { comment "lync-xmpp-federation"; }\n')]


# -- comments in bytes --------------------------------------------------------------------------

def commented(comment, name='r'):
    return normalize_rules([{'name': name, 'direction': 'in', 'ports': [5269], 'comment': comment}])


def test_kernel_comments_are_limited_in_bytes_before_anything_is_read(tmp_path):
    # 'lync-xmpp:r: ' takes 13 bytes; nft keeps 128.
    fits = commented(u'\u00e9' * 57 + 'a')
    host = RecordedHost('admin')
    assert converge(backend_for(host, tmp_path), fits, 'present', False, True)['changed']
    # 100 characters, 200 bytes: within the model's characters, not within nft's bytes.
    too_long = commented(u'\u00e9' * 100)
    host = RecordedHost('admin')
    with pytest.raises(RuleError) as error:
        converge(backend_for(host, tmp_path), too_long, 'present', False, False)
    assert ("rule 'r': field 'comment': '%s' is 200 bytes in UTF-8" % (u'\u00e9' * 100)) in str(error.value)
    assert str(error.value).endswith("makes the rule's kernel comment ('lync-xmpp:', the name, ': ', the comment) "
                                     '213 bytes, more than the 128 bytes nftables takes: shorten it by 85 bytes')
    assert host.calls == []
    one_over = commented(u'\u00e9' * 58)
    with pytest.raises(RuleError, match='129 bytes, more than the 128 bytes nftables takes: shorten it by 1 byte$'):
        converge(backend_for(RecordedHost('admin'), tmp_path), one_over, 'present', False, False)


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
    [match('ip', 'saddr', {'set': ['198.51.100.1', '2001:db8::2']}), match('tcp', 'dport', 1), COUNTER,
     {'accept': None}],                                                                   # two families in one set
    [match('ip', 'saddr', {'set': ['198.51.100.1', 'lync']}), match('tcp', 'dport', 1), COUNTER,
     {'accept': None}],                                                                   # no address in a set
    [match('ip6', 'saddr', '198.51.100.1'), match('tcp', 'dport', 1), COUNTER, {'accept': None}],  # wrong family
    [match('tcp', 'dport', 1), COUNTER, {'dnat': {'addr': '198.51.100.1', 'port': 80}}],  # translation with a port
    [match('tcp', 'dport', 1), COUNTER, {'accept': None}, {'drop': None}],                # two verdicts
    [match('tcp', 'dport', 1), COUNTER, {'jump': {'target': 'elsewhere'}}],               # a jump
    [COUNTER, {'accept': None}],                                                          # no port
])
def test_other_shapes_are_not_ours(expr):
    assert parse_kernel_rule({'expr': expr, 'comment': 'x'}) is None


def test_one_model_rule_becomes_kernel_rules_per_family_and_address_pair():
    rule = normalize_rules([{'name': 'r', 'direction': 'in', 'ports': [1, 3],
                             'source': ['198.51.100.0/30', '198.51.100.9'],
                             'destination': ['198.51.100.66']}])[0]
    made = kernel_rules(rule, 'inet', {4, 6})
    assert [(each.source, each.destination) for each in made] == [
        ('198.51.100.0/30', '198.51.100.66/32'), ('198.51.100.9/32', '198.51.100.66/32')]
    assert made[0].text('inet') == ('ip saddr 198.51.100.0/30 ip daddr 198.51.100.66 tcp dport { 1, 3 } counter '
                                    'accept comment "lync-xmpp:r"')
    neutral = normalize_rules([{'name': 'n', 'direction': 'out', 'ports': [5269]}])[0]
    assert [each.nfproto for each in kernel_rules(neutral, 'inet', {4, 6})] == [None]
    # An inet chain that serves one family only must not let a neutral rule match the other.
    assert [each.text('inet') for each in kernel_rules(neutral, 'inet', {6})] == [
        'meta nfproto ipv6 tcp dport 5269 counter accept comment "lync-xmpp:n"']
    assert [each.text('ip') for each in kernel_rules(neutral, 'ip', {4})] == [
        'tcp dport 5269 counter accept comment "lync-xmpp:n"']
    assert kernel_rules(rule, 'ip6', {6}) == []
    dnat = normalize_rules([{'name': 'd', 'direction': 'forward', 'ports': [5269], 'destination': ['198.51.100.1'],
                             'nat': 'dnat', 'nat_to': '198.51.100.66'}])[0]
    assert kernel_rules(dnat, 'ip', {4})[0].text('ip').endswith('counter dnat to 198.51.100.66 comment "lync-xmpp:d"')
    assert network_text('2001:db8::1/128') == '2001:db8::1' and network_text('2001:db8::/32') == '2001:db8::/32'


# -- persistence ------------------------------------------------------------------------------

ADMIN_CONFIG = '#!/usr/sbin/nft -f\nflush ruleset\n\ninclude "/etc/nftables.d/admin-*.nft"\n'


def persistence(tmp_path, stage, main_text=ADMIN_CONFIG):
    main_config, our_file = tmp_path / 'nftables.conf', tmp_path / 'd' / 'lync.nft'
    if main_text is not None:
        main_config.write_text(main_text)
    backend = backend_for(RecordedHost(stage), tmp_path, nft_main_config=str(main_config),
                          nft_persist_file=str(our_file))
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
    for line in ('add table inet lync_xmpp { comment "lync-xmpp-federation"; }',
                 'add chain inet filter lync_xmpp_in { comment "lync-xmpp-federation"; }',
                 'flush chain inet filter lync_xmpp_in',
                 'insert rule inet filter input jump lync_xmpp_in comment "lync-xmpp-federation"',
                 'add chain inet lync_xmpp lync_xmpp_snat { comment "lync-xmpp-federation"; type nat hook postrouting '
                 'priority 100; policy accept; }'):
        assert line + '\n' in text
    assert not backend.persist(RULES, False), 'a second run changes nothing'
    assert backend.persistence_files(RULES) == [str(our_file), str(main_config)]
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
    told = backend_for(RecordedHost('applied'), tmp_path, nft_main_config='/srv/nft.conf',
                       nft_persist_file='/srv/x.nft')
    assert told.persistence_files(RULES) == ['/srv/x.nft', '/srv/nft.conf']


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


def read_only_file_system(monkeypatch):
    """Every new file fails as on a file system mounted read-only (the tests run as root, whom a directory's
    mode does not stop)."""
    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    monkeypatch.setattr(backend_module.tempfile, 'mkstemp', refuse)


def test_persistence_failing_after_the_apply_fails_saying_the_rules_are_in_force(tmp_path, monkeypatch):
    main_config, our_file = tmp_path / 'nftables.conf', tmp_path / 'd' / 'lync.nft'
    main_config.write_text(ADMIN_CONFIG)
    read_only_file_system(monkeypatch)
    host = RecordedHost('admin')
    backend = backend_for(host, tmp_path, nft_main_config=str(main_config), nft_persist_file=str(our_file))
    with pytest.raises(PersistenceError) as error:
        converge(backend, RULES, 'present', True, False)
    assert error.value.applied is True
    assert str(error.value) == ('nftables: the new rules are in force now, but will not survive a reboot or a reload '
                                'of the firewall: persisting them failed: cannot write %s: Read-only file system'
                                % our_file)
    assert [flag for flag, _script in host.scripts()] == ['-c', '-f']
    assert main_config.read_text() == ADMIN_CONFIG and not our_file.exists()


def test_persistence_failing_on_a_host_already_right_says_nothing_was_changed(tmp_path, monkeypatch):
    read_only_file_system(monkeypatch)
    host = RecordedHost('applied')
    backend = backend_for(host, tmp_path, nft_main_config=str(tmp_path / 'nftables.conf'),
                          nft_persist_file=str(tmp_path / 'lync.nft'))
    with pytest.raises(PersistenceError) as error:
        converge(backend, RULES, 'present', True, False)
    assert error.value.applied is False
    assert 'the live rules are as wanted and were not changed, but persisting them failed: cannot write' in \
        str(error.value)
    assert host.scripts() == []


def test_an_os_error_on_a_persistence_path_is_a_message_naming_it(tmp_path):
    # A path under a regular file: no directory can be made there, whoever runs the module.
    blocker = tmp_path / 'not-a-directory'
    blocker.write_text('')
    backend, _main_config, _our_file = persistence(tmp_path, 'applied')
    backend.options['nft_persist_file'] = str(blocker / 'lync.nft')
    with pytest.raises(BackendError) as error:
        backend.persist(RULES, False)
    assert str(error.value).startswith('cannot write %s: ' % (blocker / 'lync.nft'))
    # The main configuration is a directory: it cannot be read, and that is said too.
    backend.options['nft_main_config'] = str(tmp_path)
    with pytest.raises(BackendError, match='cannot read %s: Is a directory' % tmp_path):
        backend.persist(RULES, False)


# -- long address lists as anonymous interval sets (fixtures/nftables/sets.*, sets-rules.json) ----------------

with open(os.path.join(FIXTURES, 'sets-rules.json')) as _rules:
    SET_RULES = normalize_rules(json.load(_rules))


def test_long_lists_read_back_as_one_set_rule_each_merged_as_the_kernel_merges_them(tmp_path):
    host = RecordedHost('sets')
    backend = backend_for(host, tmp_path)
    backend.read()
    assert backend.problems() == []
    assert backend.in_place(SET_RULES)
    chains = dict((chain, rules) for (_table, chain), rules in backend.live_chains.items())
    # Three destinations (below SET_MIN_ADDRESSES) stay three rules; each long list is one rule with a set.
    assert len(chains['lync_xmpp_out']) == 3 and len(chains['lync_xmpp_fwd']) == 2
    live = dict((rule['name'], rule) for rule in backend.current_rules())
    # Adjacent /26s merged, the /32 inside one gone, two adjacent prefixes nft lists as one range read back.
    assert live['partners-v4']['source'] == ['198.51.100.0/25', '198.51.100.132/30', '198.51.100.136/29',
                                             '198.51.100.200/29']
    assert live['partners-v6']['source'] == ['2001:db8:1::/48', '2001:db8:2::/47', '2001:db8:5::/48',
                                             '2001:db8:8::1/128']
    assert '198.51.100.132-198.51.100.143' in fixture('sets.txt')


def test_a_no_op_with_sets_reads_once_and_writes_nothing(tmp_path):
    host = RecordedHost('sets')
    result = converge(backend_for(host, tmp_path), SET_RULES, 'present', False, False)
    assert not result['changed'] and result['script'] == ''
    assert host.commands() == [LIST_JSON, LIST_TEXT]


def test_one_network_changed_rewrites_only_that_set_rule(tmp_path):
    host = RecordedHost('sets')
    rules = json.loads(fixture('sets-rules.json'))
    rules[1]['source'][-1] = '198.51.100.248/29'
    script = planned(host, tmp_path, normalize_rules(rules))
    added = [line for line in script_lines(script) if line.startswith('add rule')]
    forward = [line for line in added if 'lync_xmpp_fwd' in line and 'ip saddr' in line]
    assert len(forward) == 1
    assert '198.51.100.248/29' in forward[0] and '198.51.100.200/29' not in forward[0]
    assert '{ 198.51.100.0/25, 198.51.100.132/30, 198.51.100.136/29, 198.51.100.248/29 }' in forward[0]


def test_a_set_rule_parses_addresses_prefixes_and_ranges():
    rule = parse_kernel_rule({'expr': [
        match('ip', 'saddr', {'set': ['198.51.100.9', {'prefix': {'addr': '198.51.100.0', 'len': 29}},
                                      {'range': ['198.51.100.16', '198.51.100.31']}]}),
        match('tcp', 'dport', 5269), COUNTER, {'accept': None}], 'comment': 'lync-xmpp:x'})
    assert rule.source == ('198.51.100.0/29', '198.51.100.9/32', '198.51.100.16/28')
    assert parse_kernel_rule({'expr': [
        match('ip', 'saddr', {'set': [{'range': ['198.51.100.10', '198.51.100.0']}]}), match('tcp', 'dport', 1),
        COUNTER, {'accept': None}]}) is None
