# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the collection will not do, on real kernels: each case a red team or a clumsy admin found.

Objects with our names that are not ours by mark, tools that cannot be read,
persistence that cannot be written, comments the kernel would cut, a
firewalld in someone else's network namespace, a kill between the iptables
families.  Every refusal must name what is in the way and change nothing.
Namespace names start with ``lxO``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import subprocess
import tempfile

import pytest

from netlab import (CLIENT4, IPTABLES_DRIVER_HEAD, ROUTER4_A, SERVER4, SERVER_RULES, Namespace, Topology, failed,
                    ok, ruleset_module, run_driver)
from test_iptables import load_admin as load_iptables_admin
from test_iptables import saves
from test_nftables import load_admin as load_nft_admin
from test_nftables import ruleset

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='needs root for network namespaces')

PREFIX = 'lxO'
VARIANTS = ('nft', 'legacy')
EDGE_TABLE = '''table inet edge {
    chain input {
        type filter hook input priority filter - 5; policy %s;
        ct state established,related accept
    }
}
'''
IN_RULES = [{'name': 'xmpp-in', 'direction': 'in', 'ports': [5269], 'comment': 'partners to the Edge'}]
OUT_RULES = [{'name': 'xmpp-out', 'direction': 'out', 'ports': [5269], 'comment': 'Edge to partners'}]


@pytest.fixture
def make_host():
    namespaces = []

    def make(kind, variant=None):
        namespace = Namespace(PREFIX)
        namespaces.append(namespace)
        if kind == 'nftables':
            load_nft_admin(namespace)
        else:
            load_iptables_admin(namespace, variant)
        return namespace
    yield make
    for namespace in namespaces:
        namespace.delete()


def nft_module(namespace, rules=None, **args):
    return ruleset_module(namespace, 'nftables', rules, **args)


def ipt_module(namespace, rules=None, **args):
    return ruleset_module(namespace, 'iptables', rules, **args)


def snapshot(namespace, variant):
    return ruleset(namespace) if variant is None else saves(namespace, variant)


def refused(result, *words):
    """The run failed, changed nothing it reports as changed, and its message names each of ``words``."""
    assert failed(result), result
    assert not result.get('changed'), result
    for word in words:
        assert word in result['msg'], (word, result['msg'])
    return result['msg']


# -- objects with our names that are not ours ----------------------------------------------------

def test_nftables_admin_chain_with_our_name_where_ours_would_go_is_refused(make_host):
    namespace = make_host('nftables')
    namespace.run('nft', '-f', '-', input='add chain inet filter lync_xmpp_in\n'
                                          'add rule inet filter lync_xmpp_in tcp dport 2222 accept comment "admin"\n'
                                          'insert rule inet filter input jump lync_xmpp_in\n')
    before = ruleset(namespace)
    message = refused(nft_module(namespace, SERVER_RULES), 'inet filter', 'lync_xmpp_in', 'tcp dport 2222 accept',
                      'nft_table')
    assert 'nothing was changed' in message
    assert ruleset(namespace) == before
    # Check mode and absent refuse or leave it alike: absent has nothing of ours to remove.
    refused(nft_module(namespace, SERVER_RULES, _check=True), 'lync_xmpp_in')
    result = ok(nft_module(namespace, state='absent'))
    assert not result['changed'] and ruleset(namespace) == before
    assert '[WARNING]' in result['_output'] and 'lync_xmpp_in' in result['_output'], result['_output']


def test_nftables_name_alike_in_another_table_is_left_alone(make_host):
    namespace = make_host('nftables')
    # The admin's egress drop in a chain that happens to carry one of our names, in a table of the admin's.
    namespace.run('nft', '-f', '-', input='''table inet egress {
    chain lync_xmpp_out {
        tcp dport 25 drop
    }
    chain output {
        type filter hook output priority filter + 5; policy accept;
        jump lync_xmpp_out
    }
}
''')
    egress = namespace.run('nft', 'list', 'table', 'inet', 'egress')
    result = ok(nft_module(namespace, SERVER_RULES))
    assert result['changed']
    assert namespace.run('nft', 'list', 'table', 'inet', 'egress') == egress
    assert '[WARNING]' in result['_output'] and 'inet egress' in result['_output'], result['_output']
    assert not ok(nft_module(namespace, SERVER_RULES))['changed']
    ok(nft_module(namespace, state='absent'))
    assert namespace.run('nft', 'list', 'table', 'inet', 'egress') == egress


def test_nftables_collision_resolved_by_pointing_nft_table_elsewhere(make_host):
    namespace = make_host('nftables')
    # The admin's inet filter (policy drop) decides, so ours would go there by default.
    namespace.run('nft', '-f', '-', input='add chain inet filter lync_xmpp_in\n' + EDGE_TABLE % 'accept')
    refused(nft_module(namespace, IN_RULES), 'lync_xmpp_in')
    result = ok(nft_module(namespace, IN_RULES, nft_table='inet edge'))
    assert result['changed']
    assert 'lync_xmpp_in' in namespace.run('nft', 'list', 'table', 'inet', 'edge')
    assert 'chain lync_xmpp_in {\n\t}' in namespace.run('nft', 'list', 'table', 'inet', 'filter')


def test_nftables_foreign_rule_in_our_chain_or_foreign_jump_refuses(make_host):
    namespace = make_host('nftables')
    ok(nft_module(namespace, SERVER_RULES))
    namespace.run('nft', 'add', 'rule', 'inet', 'filter', 'lync_xmpp_in', 'tcp', 'dport', '2222', 'accept')
    before = ruleset(namespace)
    refused(nft_module(namespace, SERVER_RULES), 'inet filter', 'lync_xmpp_in', 'tcp dport 2222 accept')
    refused(nft_module(namespace, state='absent'), 'tcp dport 2222 accept')
    assert ruleset(namespace) == before

    other = make_host('nftables')
    ok(nft_module(other, SERVER_RULES))
    other.run('nft', 'add', 'rule', 'inet', 'filter', 'forward', 'tcp', 'dport', '9', 'jump', 'lync_xmpp_in')
    before = ruleset(other)
    refused(nft_module(other, state='absent'), 'jumps to our chain lync_xmpp_in', 'tcp dport 9 jump lync_xmpp_in')
    assert ruleset(other) == before


def test_nftables_unmarked_table_with_our_name_is_refused(make_host):
    namespace = Namespace(PREFIX)
    try:
        # No base chains of the admin's: our rules would need a table of our own, and the name is taken.
        namespace.run('nft', '-f', '-', input='table inet lync_xmpp {\n chain c {\n  tcp dport 1 accept\n }\n}\n')
        before = ruleset(namespace)
        refused(nft_module(namespace, IN_RULES), 'inet lync_xmpp', 'lacks our mark')
        assert ruleset(namespace) == before
        assert not ok(nft_module(namespace, state='absent'))['changed']
        assert ruleset(namespace) == before
    finally:
        namespace.delete()


def test_nftables_a_leftover_of_ours_from_an_earlier_placement_is_cleaned_up(make_host):
    namespace = make_host('nftables')
    namespace.run('nft', '-f', '-', input=EDGE_TABLE % 'accept')
    ok(nft_module(namespace, IN_RULES, nft_table='inet edge'))
    assert 'lync_xmpp_in' in namespace.run('nft', 'list', 'table', 'inet', 'edge')
    result = ok(nft_module(namespace, IN_RULES))
    assert result['changed']
    assert 'lync_xmpp' not in namespace.run('nft', 'list', 'table', 'inet', 'edge')
    assert 'jump lync_xmpp_in' in namespace.run('nft', 'list', 'table', 'inet', 'filter')


@pytest.mark.parametrize('variant', VARIANTS)
def test_iptables_admin_chain_with_our_name_is_refused_where_needed(variant, make_host):
    namespace = make_host('iptables', variant)
    tool = 'iptables-%s' % variant
    namespace.run(tool, '-N', 'LYNC-XMPP-IN')
    namespace.run(tool, '-A', 'LYNC-XMPP-IN', '-p', 'tcp', '--dport', '2222', '-j', 'ACCEPT')
    namespace.run(tool, '-I', 'INPUT', '1', '-j', 'LYNC-XMPP-IN')
    # An admin's chain named like our OUT chain, which the first run does not need.
    namespace.run(tool, '-N', 'LYNC-XMPP-OUT')
    namespace.run(tool, '-A', 'LYNC-XMPP-OUT', '-p', 'tcp', '--dport', '25', '-j', 'DROP')
    namespace.run(tool, '-A', 'OUTPUT', '-j', 'LYNC-XMPP-OUT')
    before = saves(namespace, variant)
    message = refused(ipt_module(namespace, IN_RULES), 'LYNC-XMPP-IN', '--dport 2222')
    assert 'nothing was changed' in message
    assert saves(namespace, variant) == before
    # Absent: nothing of ours, both admin chains stay.
    result = ok(ipt_module(namespace, state='absent'))
    assert not result['changed'] and saves(namespace, variant) == before
    # IPv6 only needs the in chain there: the admin's IPv4 chains are left alone, with a warning.
    rules6 = [dict(IN_RULES[0], destination=['2001:db8:b::66'])]
    result = ok(ipt_module(namespace, rules6))
    assert result['changed'] and saves(namespace, variant)[4] == before[4]
    assert '[WARNING]' in result['_output'] and 'LYNC-XMPP-IN' in result['_output'], result['_output']
    refused(ipt_module(namespace, OUT_RULES), 'LYNC-XMPP-OUT', '--dport 25')


@pytest.mark.parametrize('variant', VARIANTS)
def test_iptables_foreign_rule_in_our_chain_or_foreign_jump_refuses(variant, make_host):
    namespace = make_host('iptables', variant)
    ok(ipt_module(namespace, SERVER_RULES))
    namespace.run('iptables-%s' % variant, '-A', 'LYNC-XMPP-IN', '-p', 'tcp', '--dport', '2222', '-j', 'ACCEPT')
    before = saves(namespace, variant)
    refused(ipt_module(namespace, SERVER_RULES), 'LYNC-XMPP-IN', '--dport 2222')
    refused(ipt_module(namespace, state='absent'), '--dport 2222')
    assert saves(namespace, variant) == before

    other = make_host('iptables', variant)
    ok(ipt_module(other, SERVER_RULES))
    other.run('ip6tables-%s' % variant, '-A', 'DOCKER-LIKE', '-j', 'LYNC-XMPP-IN')
    before = saves(other, variant)
    refused(ipt_module(other, state='absent'), 'DOCKER-LIKE', 'LYNC-XMPP-IN')
    assert saves(other, variant) == before


# -- fail closed ----------------------------------------------------------------------------------

def failing_tools(directory, *names, **only_when):
    """Shadow ``names`` in ``directory`` with scripts that fail (only for calls whose arguments contain
    ``only_when['argument']``, else they run the real tool)."""
    argument = only_when.get('argument')
    for name in names:
        real = shutil.which(name)
        path = os.path.join(directory, name)
        with open(path, 'w') as script:
            if argument:
                script.write('#!/bin/sh\ncase " $* " in *" %s "*) echo "%s: simulated failure" >&2; exit 3;; esac\n'
                             'exec %s "$@"\n' % (argument, name, real))
            else:
                script.write('#!/bin/sh\necho "%s: simulated failure" >&2\nexit 3\n' % name)
        os.chmod(path, 0o755)


@pytest.mark.parametrize('variant', VARIANTS)
def test_iptables_unreadable_ruleset_fails_every_run(variant, make_host, tmp_path):
    namespace = make_host('iptables', variant)
    ok(ipt_module(namespace, SERVER_RULES))
    before = saves(namespace, variant)
    failing_tools(str(tmp_path), 'ip6tables-%s-save' % variant)
    interpreter = namespace.interpreter_with_path(str(tmp_path))
    for args in ({'state': 'absent'}, {'rules': []}, {'rules': SERVER_RULES}, {'rules': IN_RULES}):
        result = ipt_module(namespace, _interpreter=interpreter, **args)
        refused(result, 'ip6tables-%s-save' % variant, 'simulated failure')
    assert saves(namespace, variant) == before


def test_nftables_unreadable_listing_fails_every_run(make_host, tmp_path):
    namespace = make_host('nftables')
    ok(nft_module(namespace, SERVER_RULES))
    before = ruleset(namespace)
    failing_tools(str(tmp_path), 'nft', argument='-a')
    interpreter = namespace.interpreter_with_path(str(tmp_path))
    for args in ({'state': 'absent'}, {'rules': []}, {'rules': SERVER_RULES}):
        refused(nft_module(namespace, _interpreter=interpreter, **args), 'nft -a list ruleset', 'simulated failure')
    failing_tools(str(tmp_path), 'nft')
    refused(ruleset_module(namespace, 'auto', None, state='absent', _interpreter=interpreter), 'nft -j list ruleset')
    assert ruleset(namespace) == before


@pytest.mark.parametrize('kind', ['nftables', 'iptables'])
def test_rules_left_out_with_state_present_is_an_error(kind, make_host):
    namespace = make_host(kind, 'nft' if kind == 'iptables' else None)
    ok(ruleset_module(namespace, kind, SERVER_RULES))
    before = snapshot(namespace, 'nft' if kind == 'iptables' else None)
    refused(ruleset_module(namespace, kind, None), 'rules')
    assert snapshot(namespace, 'nft' if kind == 'iptables' else None) == before
    # An explicit empty list keeps its meaning: nothing of ours.
    assert ok(ruleset_module(namespace, kind, []))['changed']


# -- persistence that cannot be written --------------------------------------------------------------

@pytest.fixture
def read_only_directory():
    directory = tempfile.mkdtemp(prefix='lxO-ro-')
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'ro,size=1m', 'lxO-ro', directory], check=True)
    try:
        yield directory
    finally:
        subprocess.run(['umount', directory], check=False)
        os.rmdir(directory)


def test_nftables_persistence_failing_after_apply_is_failed_and_changed(make_host, read_only_directory, tmp_path):
    namespace = make_host('nftables')
    main_config = tmp_path / 'nftables.conf'
    main_config.write_text('#!/usr/sbin/nft -f\nflush ruleset\n')
    result = nft_module(namespace, SERVER_RULES, persist=True, nft_main_config=str(main_config),
                        nft_persist_file=os.path.join(read_only_directory, 'lync.nft'))
    assert failed(result) and result['changed'], result
    assert 'in force now' in result['msg'] and 'will not survive' in result['msg'], result['msg']
    assert os.path.join(read_only_directory, 'lync.nft') in result['msg'] and 'Read-only' in result['msg']
    assert '.lync-xmpp-' not in result['msg'] and 'Traceback' not in result['msg']
    assert 'lync_xmpp_in' in ruleset(namespace)
    # Once in force, a re-run changes nothing live, and still says persisting failed.
    result = nft_module(namespace, SERVER_RULES, persist=True, nft_main_config=str(main_config),
                        nft_persist_file=os.path.join(read_only_directory, 'lync.nft'))
    assert failed(result) and not result['changed'] and 'were not changed' in result['msg'], result


@pytest.mark.parametrize('variant', VARIANTS)
def test_iptables_persistence_failing_after_apply_is_failed_and_changed(variant, make_host, read_only_directory,
                                                                        tmp_path):
    namespace = make_host('iptables', variant)
    files = {'ipv4': os.path.join(read_only_directory, 'rules.v4'), 'ipv6': str(tmp_path / 'rules.v6')}
    result = ipt_module(namespace, SERVER_RULES, persist=True, iptables_save_files=files)
    assert failed(result) and result['changed'], result
    assert 'in force now' in result['msg'] and files['ipv4'] in result['msg'], result['msg']
    assert 'Traceback' not in result['msg']


# -- kernel limits are bytes ----------------------------------------------------------------------

def test_comments_are_limited_in_bytes_and_never_cut(make_host):
    nft_host = make_host('nftables')
    # 70 characters, 140 bytes: under nftables' 128 only when counted in characters.
    long_comment = [dict(IN_RULES[0], comment=u'\u00fc' * 70)]
    before = ruleset(nft_host)
    refused(nft_module(nft_host, long_comment), "'comment'", '128', 'bytes')
    assert ruleset(nft_host) == before
    for variant in VARIANTS:
        ipt_host = make_host('iptables', variant)
        # 110 characters, 220 bytes (237 with our mark and the name): fits iptables' 255; the kernel keeps it
        # whole, so the re-run is a no-op.
        fits = [dict(IN_RULES[0], comment=u'\u00e9t\u00e9 ' * 27 + u'\u00fc\u00fc')]
        assert ok(ipt_module(ipt_host, fits))['changed']
        assert not ok(ipt_module(ipt_host, fits))['changed']
        too_long = [dict(IN_RULES[0], comment=u'\u00fc' * 125)]
        refused(ipt_module(ipt_host, too_long), '255', 'bytes')


# -- NAT lives in a table of ours ------------------------------------------------------------------

PEER_LOGGER = r'''
import socket, sys, time
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((sys.argv[1], int(sys.argv[2])))
listener.listen(4)
listener.settimeout(float(sys.argv[3]))
print('ready', flush=True)
try:
    connection, peer = listener.accept()
    print(peer[0], flush=True)
    connection.close()
except socket.timeout:
    print('timeout', flush=True)
'''

FOREIGN_NAT = '''table ip nat {
    chain PREROUTING {
        type nat hook prerouting priority dstnat; policy accept;
        tcp dport 8080 dnat to 198.51.100.99:80
    }
    chain POSTROUTING {
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr 198.51.100.96/28 masquerade
    }
}
'''


def test_nftables_nat_in_a_table_of_ours_takes_effect_beside_a_foreign_nat_table():
    lab = Topology(PREFIX)
    try:
        router, server, client = lab.router, lab.server, lab.client
        load_nft_admin(router)
        router.run('nft', '-f', '-', input=FOREIGN_NAT)
        foreign = router.run('nft', 'list', 'table', 'ip', 'nat')
        rules = [
            {'name': 'dnat-edge', 'direction': 'forward', 'ports': [5269], 'destination': [ROUTER4_A], 'nat': 'dnat',
             'nat_to': SERVER4, 'comment': 'public address to the Edge'},
            {'name': 'fwd-in', 'direction': 'forward', 'ports': [5269], 'destination': [SERVER4]},
            {'name': 'fwd-out', 'direction': 'forward', 'ports': [5269], 'source': [SERVER4]},
            {'name': 'snat-edge', 'direction': 'forward', 'ports': [5269], 'source': [SERVER4], 'nat': 'snat',
             'nat_to': ROUTER4_A, 'comment': 'the Edge leaves as its public address'},
        ]
        assert ok(nft_module(router, rules))['changed']
        live = ruleset(router)
        assert router.run('nft', 'list', 'table', 'ip', 'nat') == foreign, 'the foreign nat table is not ours'
        assert 'lync_xmpp' not in live.split('table ip nat')[1].split('\ntable ')[0]
        own = router.run('nft', 'list', 'table', 'inet', 'lync_xmpp')
        assert 'type nat hook prerouting priority dstnat; policy accept;' in own
        assert 'type nat hook postrouting priority srcnat; policy accept;' in own
        # DNAT: the client reaches the server through the public address.
        server.listen(SERVER4, [5269], seconds=30)
        assert client.connects(ROUTER4_A, 5269)
        # SNAT: the server's outbound 5269 arrives from the public address.
        logger = subprocess.Popen(['ip', 'netns', 'exec', client.name, 'python3', '-c', PEER_LOGGER, CLIENT4, '5269',
                                   '10'], stdout=subprocess.PIPE, universal_newlines=True)
        try:
            assert logger.stdout.readline().strip() == 'ready'
            assert server.connects(CLIENT4, 5269)
            assert logger.stdout.readline().strip() == ROUTER4_A
        finally:
            logger.kill()
            logger.wait()
        assert not ok(nft_module(router, rules))['changed']
        ok(nft_module(router, state='absent'))
        assert router.run('nft', 'list', 'table', 'ip', 'nat') == foreign
        assert 'lync_xmpp' not in ruleset(router)
    finally:
        lab.delete()


# -- detection ------------------------------------------------------------------------------------

def test_a_firewalld_in_another_network_namespace_does_not_claim_this_host(make_host):
    container = Namespace(PREFIX)
    namespace = make_host('nftables')
    fake = None
    try:
        # A process called firewalld, in its own network namespace, like a container's.
        fake = subprocess.Popen(['ip', 'netns', 'exec', container.name, 'bash', '-c', 'exec -a firewalld sleep 60'])
        result = ok(ruleset_module(namespace, 'auto', SERVER_RULES))
        assert result['backend'] == 'nftables'
        same = subprocess.Popen(['ip', 'netns', 'exec', namespace.name, 'bash', '-c', 'exec -a firewalld sleep 60'])
        try:
            refused(ruleset_module(namespace, 'nftables', SERVER_RULES), 'firewalld is running')
        finally:
            same.kill()
            same.wait()
    finally:
        if fake:
            fake.kill()
            fake.wait()
        container.delete()


# -- a kill between the iptables families --------------------------------------------------------

HALF_APPLY = IPTABLES_DRIVER_HEAD + r'''
# The run is killed after the IPv4 commit: only the first step reaches the kernel.
backend.apply(Transaction(transaction.steps[:1]))
print(json.dumps([family for _label, _text, family in transaction.steps]))
'''


@pytest.mark.parametrize('variant', VARIANTS)
def test_iptables_a_kill_between_the_families_is_repaired_by_the_next_run(variant, make_host, tmp_path):
    namespace = make_host('iptables', variant)
    ok(ipt_module(namespace, SERVER_RULES))
    old = saves(namespace, variant)
    changed = [dict(rule, ports=[5300]) for rule in SERVER_RULES]
    families = run_driver(namespace, HALF_APPLY, variant, str(tmp_path / 'lock'), json.dumps(changed))
    assert families == [4, 6]
    half = saves(namespace, variant)
    # Each family is wholly old or wholly new: IPv4 new, IPv6 untouched.
    assert half[6] == old[6] and half[4] != old[4] and '--dport 5300' in half[4]
    result = ok(ipt_module(namespace, changed))
    assert result['changed'] and result['script'].startswith('# lync-xmpp-federation IPv6')
    assert not ok(ipt_module(namespace, changed))['changed']
    assert '--dport 5300' in saves(namespace, variant)[6]


# -- injection through an option ------------------------------------------------------------------

@pytest.mark.parametrize('persist_file', ['/tmp/lxO-x.nft"\nflush ruleset\ninclude "/tmp/lxO-y.nft',
                                          '/etc/nftables.d/*.nft', 'relative/lync.nft'])
def test_nftables_persist_path_cannot_inject_into_the_main_configuration(persist_file, make_host, tmp_path):
    namespace = make_host('nftables')
    main_config = tmp_path / 'nftables.conf'
    main_config.write_text('#!/usr/sbin/nft -f\nflush ruleset\n')
    before = ruleset(namespace)
    refused(nft_module(namespace, SERVER_RULES, persist=True, nft_main_config=str(main_config),
                       nft_persist_file=persist_file), 'nft_persist_file')
    assert main_config.read_text() == '#!/usr/sbin/nft -f\nflush ruleset\n'
    assert ruleset(namespace) == before


def test_nftables_a_verdict_map_jumping_into_our_chain_refuses(make_host):
    namespace = make_host('nftables')
    ok(nft_module(namespace, SERVER_RULES))
    namespace.run('nft', 'add', 'rule', 'inet', 'filter', 'forward', 'tcp', 'dport', 'vmap', '{ 9 : jump lync_xmpp_in }')
    before = ruleset(namespace)
    refused(nft_module(namespace, state='absent'), 'jumps to our chain lync_xmpp_in', 'vmap')
    assert ruleset(namespace) == before
