# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""firewall_ruleset on nftables, and backend detection, against real kernels in throwaway namespaces.

Every namespace name starts with ``lxC``.  Each "host" first gets an admin
ruleset (inet filter with policy drop on input and forward, established, SSH
and neighbour discovery accepted) and a docker-like foreign table with a base
chain of its own, so that detection, placement and ownership are exercised
for real.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re

import pytest

from netlab import (APPLY_POISONED, NFT_ADMIN, NFT_FOREIGN, ROUTER4_A, ROUTER_RULES, SERVER4, SERVER6, SERVER_RULES,
                    Namespace, Topology, at_once, failed, ok, ruleset_module, run_driver)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='needs root for network namespaces')

PREFIX = 'lxC'

# The admin's table and Docker's, as the podman lab installs them (lab/baseline.py through netlab).
ADMIN = NFT_ADMIN
FOREIGN = NFT_FOREIGN


def ruleset(namespace):
    """``nft list ruleset`` with counters zeroed (they move with traffic; they are not configuration)."""
    return re.sub(r'counter packets \d+ bytes \d+', 'counter', namespace.run('nft', 'list', 'ruleset'))


def without_ours(text):
    """The ruleset with our chains, our jumps and our table taken out: what the admin and Docker own."""
    text = re.sub(r'\ntable inet lync_xmpp \{.*?\n\}\n', '\n', text, flags=re.S)
    text = re.sub(r'\n\tchain lync_xmpp_\w+ \{.*?\n\t\}\n', '\n', text, flags=re.S)
    lines = [line for line in text.splitlines() if 'lync_xmpp' not in line and 'lync-xmpp' not in line]
    # Taking a chain out leaves its blank separator line behind.
    return re.sub(r'\n{2,}', '\n\n', '\n'.join(lines).strip() + '\n').replace('\n\n\t}', '\n\t}').replace('\n\n}', '\n}')


def load_admin(namespace, foreign=True):
    namespace.run('nft', '-f', '-', input=ADMIN + (FOREIGN if foreign else ''))


def module(namespace, rules=None, **args):
    return ruleset_module(namespace, 'nftables', rules, **args)


@pytest.fixture
def host():
    namespaces = []

    def make(foreign=True, admin=True):
        namespace = Namespace(PREFIX)
        namespaces.append(namespace)
        if admin:
            load_admin(namespace, foreign)
        return namespace
    yield make
    for namespace in namespaces:
        namespace.delete()


def test_apply_is_effective_owns_only_its_rules_and_is_removed_exactly():
    lab = Topology(PREFIX)
    try:
        router, server, client = lab.router, lab.server, lab.client
        load_admin(router)
        load_admin(server, foreign=False)
        original = {'router': ruleset(router), 'server': ruleset(server)}
        server.listen(SERVER4, [5269, 5270, 5271], seconds=90)
        server.listen(SERVER6, [5269, 5270, 5271], seconds=90)
        assert not client.connects(SERVER4, 5269, 0.5), 'the admin ruleset should drop forwarding'

        # Check mode: reports the change, writes nothing.
        result = ok(module(router, ROUTER_RULES, _check=True))
        assert result['changed'] and result['script'] and result['backend'] == 'nftables'
        assert ruleset(router) == original['router']

        # Host firewall on the server: in and out chains, both families, entered from the admin's chains.
        result = ok(module(server, SERVER_RULES))
        assert result['changed']
        for address in (SERVER4, SERVER6):
            assert router.connects(address, 5269) and router.connects(address, 5270)
            assert not router.connects(address, 5271, 0.5), 'the server must still drop what is not ours'

        # Perimeter firewall on the router: forward and DNAT.
        result = ok(module(router, ROUTER_RULES))
        assert result['changed']
        assert client.connects(SERVER4, 5269) and client.connects(SERVER6, 5269)
        assert not client.connects(SERVER4, 5270, 0.5) and not client.connects(SERVER6, 5270, 0.5)
        assert client.connects(ROUTER4_A, 5269), 'DNAT of the public address to the server'
        live = ruleset(router)
        # Foreign tables, chains, rules, their order and the policies are byte for byte what they were.
        assert without_ours(live) == original['router']
        assert ('chain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n'
                '\t\tjump lync_xmpp_fwd comment "lync-xmpp-federation"\n\t\tct state') in live, \
            'our jump must be the first rule of the base chain with policy drop'
        assert 'jump lync_xmpp' not in live.split('table ip docker')[1], 'the docker-like table is not ours'
        assert 'type nat hook prerouting priority dstnat; policy accept;' in live, 'no nat chain: a table of ours'
        assert 'ip saddr 198.51.100.2 ip daddr 198.51.100.66 tcp dport 5269 counter accept' in live
        assert 'tcp dport { 6000-6010, 7000 } counter reject comment "lync-xmpp:fwd-reject: reject, both families"' in live
        assert live.count('jump lync_xmpp_fwd') == 1
        assert result['rules'] == sorted(result['rules'], key=lambda rule: rule['name'])

        # Second runs: nothing to do, nothing written.
        for namespace, rules in ((router, ROUTER_RULES), (server, SERVER_RULES)):
            result = ok(module(namespace, rules))
            assert not result['changed'] and result['script'] == ''

        # A rule of ours deleted by hand, and a jump moved down, are differences that are put back.
        handles = json.loads(router.run('nft', '-j', '-a', 'list', 'chain', 'inet', 'filter', 'lync_xmpp_fwd'))
        handle = [item['rule']['handle'] for item in handles['nftables'] if 'rule' in item][0]
        router.run('nft', 'delete', 'rule', 'inet', 'filter', 'lync_xmpp_fwd', 'handle', str(handle))
        result = ok(module(router, ROUTER_RULES))
        assert result['changed'] and ruleset(router) == live
        server.run('nft', 'insert', 'rule', 'inet', 'filter', 'input', 'tcp', 'dport', '1', 'drop')
        before_fix = ruleset(server)
        result = ok(module(server, SERVER_RULES))
        assert result['changed'] and 'delete rule inet filter input handle' in result['script']
        fixed = ruleset(server)
        assert fixed != before_fix and '\t\tjump lync_xmpp_in comment "lync-xmpp-federation"\n\t\ttcp dport 1 drop' in fixed
        server.run('nft', 'flush', 'ruleset')
        load_admin(server, foreign=False)
        ok(module(server, SERVER_RULES))

        # Absent: exactly the admin's ruleset again, and a second absent is unchanged.
        for name, namespace in (('router', router), ('server', server)):
            result = ok(module(namespace, state='absent'))
            assert result['changed']
            assert ruleset(namespace) == original[name]
        assert not ok(module(router, state='absent'))['changed']
        assert not client.connects(SERVER4, 5269, 0.5)
    finally:
        lab.delete()


def test_bad_input_and_impossible_placement_change_nothing_and_say_why(host):
    namespace = host()
    ok(module(namespace, SERVER_RULES))
    before = ruleset(namespace)
    bad = SERVER_RULES + [{'name': 'bad-port', 'direction': 'in', 'ports': [70000]}]
    result = module(namespace, bad)
    assert failed(result) and 'ports' in result['msg'] and '70000' in result['msg'], result
    result = module(namespace, SERVER_RULES + [{'name': 'x', 'direction': 'in', 'ports': [1], 'colour': 'red'}])
    assert failed(result) and "'colour'" in result['msg'], result
    result = module(namespace, SERVER_RULES, base_chains={'in': 'no_such_chain'})
    assert failed(result) and 'base_chains.in' in result['msg'] and 'no_such_chain' in result['msg'], result
    result = module(namespace, SERVER_RULES, nft_table='inet nosuch')
    assert failed(result) and "'inet nosuch' does not exist" in result['msg'], result
    namespace.run('nft', '-f', '-', input='table ip v4only {\n\tchain input {\n\t\ttype filter hook input '
                  'priority 10; policy accept;\n\t}\n}\n')
    before = ruleset(namespace)
    result = module(namespace, SERVER_RULES, nft_table='ip v4only')
    assert failed(result) and "'ip v4only' cannot hold IPv6" in result['msg'], result
    ipv4_only = [dict(rule, destination=[SERVER4]) for rule in SERVER_RULES]
    result = module(namespace, ipv4_only, nft_table='ip v4only', base_chains={'in': 'input'})
    assert failed(result) and 'no filter base chain at hook output' in result['msg'], result
    result = module(namespace, SERVER_RULES, nft_table='filter')
    assert failed(result) and 'nft_table' in result['msg'], result
    assert ruleset(namespace) == before


def test_named_table_and_base_chains(host):
    namespace = host()
    namespace.run('nft', '-f', '-', input='table inet fw {\n\tchain inbound {\n\t\ttype filter hook input '
                  'priority 10; policy accept;\n\t}\n}\n')
    inbound = SERVER_RULES[:1]
    result = ok(module(namespace, inbound, nft_table='inet fw', base_chains={'in': 'inbound'}))
    live = ruleset(namespace)
    assert result['changed'] and 'chain lync_xmpp_in' in live.split('table inet fw')[1]
    assert 'jump lync_xmpp_in' in live.split('table inet fw')[1]
    assert 'jump lync_xmpp_in' not in live.split('table inet fw')[0], 'detection is off when a table is named'
    assert not ok(module(namespace, inbound, nft_table='inet fw', base_chains={'in': 'inbound'}))['changed']
    # Moving back to detection moves our chains and jumps, and leaves nothing behind.
    assert ok(module(namespace, inbound))['changed']
    moved = ruleset(namespace)
    assert 'lync_xmpp' not in moved.split('table inet fw')[1] and moved.count('jump lync_xmpp_in') == 1


def test_a_host_without_base_chains_gets_a_table_of_ours_with_policy_accept(host):
    namespace = host(admin=False)
    result = ok(module(namespace, SERVER_RULES, backend='auto'))
    assert result['backend'] == 'nftables'
    live = ruleset(namespace)
    assert live.startswith('table inet lync_xmpp {') and live.count('table ') == 1
    assert 'type filter hook input priority filter; policy accept;' in live
    assert not ok(module(namespace, SERVER_RULES, backend='auto'))['changed']
    ok(module(namespace, state='absent', backend='auto'))
    assert ruleset(namespace) == ''


# A driver that runs the backend inside a namespace with the real nft, to make the kernel refuse a
# transaction that passed the check: as if the ruleset had changed between check and commit.
FAULT_DRIVER = r'''
import json, shutil, subprocess, sys
from ansible_collections.lync.xmpp_federation.plugins.module_utils.backend import BackendError, Transaction
from ansible_collections.lync.xmpp_federation.plugins.module_utils.nftables import NftablesBackend
from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import normalize_rules

mode, lock, rules = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])

def run_command(argv, data=None, binary_data=False):
    if mode == 'skip-check' and '-c' in argv:
        return 0, '', ''
    proc = subprocess.run(argv, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    return proc.returncode, proc.stdout, proc.stderr

backend = NftablesBackend(run_command, shutil.which, {})
backend.lock_path = lock
backend.read()
script = backend.plan(normalize_rules(rules)).text()
# The kernel refuses a translation in a filter chain; it is the last line, after everything else.
poisoned = Transaction([('nft -f', script + ('add rule inet filter lync_xmpp_in tcp dport 1 counter dnat ip to '
                                             '198.51.100.1 comment "lync-xmpp:poison: refused by the kernel"\n'),
                         None)])
''' + APPLY_POISONED


@pytest.mark.parametrize('mode', ['check', 'skip-check'])
def test_a_transaction_the_kernel_refuses_leaves_the_ruleset_as_it_was(mode, host, tmp_path):
    namespace = host()
    ok(module(namespace, SERVER_RULES))
    before = ruleset(namespace)
    changed = [dict(rule, ports=[5300]) for rule in SERVER_RULES] + ROUTER_RULES
    error = run_driver(namespace, FAULT_DRIVER, mode, str(tmp_path / 'lock'), json.dumps(changed))['error']
    assert error and "rule 'poison'" in error, error
    if mode == 'check':
        assert 'nothing was changed' in error
    else:
        assert 'as it was before this run' in error
    # Nothing of the transaction stayed: not the new ports, not the forward chain, not our nat table.
    assert ruleset(namespace) == before


ADMIN_CONFIG = '#!/usr/sbin/nft -f\n# The admin\'s own configuration.\nflush ruleset\n\n' + ADMIN


def test_persistence_reproduces_the_live_state_after_a_reload(host, tmp_path):
    namespace = host(foreign=False)
    main_config, our_file = str(tmp_path / 'nftables.conf'), str(tmp_path / 'nftables.d' / 'lync.nft')
    with open(main_config, 'w') as handle:
        handle.write(ADMIN_CONFIG)
    options = {'persist': True, 'nft_main_config': main_config, 'nft_persist_file': our_file}
    rules = SERVER_RULES + ROUTER_RULES

    result = ok(module(namespace, rules, _check=True, **options))
    assert result['changed'] and result['persisted'] and not os.path.exists(our_file)
    with open(main_config) as handle:
        assert handle.read() == ADMIN_CONFIG, 'check mode must write nothing'

    result = ok(module(namespace, rules, **options))
    assert result['changed'] and result['persisted'] and result['persistence_files'] == [our_file, main_config]
    live = ruleset(namespace)
    with open(main_config) as handle:
        config = handle.read()
    assert config.startswith(ADMIN_CONFIG) and config.endswith('include "%s"\n' % our_file), config
    # The service's reload: the admin's file, which flushes everything and includes ours.
    namespace.run('nft', 'flush', 'ruleset')
    namespace.run('nft', '-f', main_config)
    assert ruleset(namespace) == live
    # Loaded twice (a reload on a running firewall): still one copy of ours.
    namespace.run('nft', '-f', main_config)
    assert ruleset(namespace) == live
    assert not ok(module(namespace, rules, **options))['changed']

    # An include the admin already has (a glob) is used, not doubled.
    with open(main_config, 'w') as handle:
        handle.write(ADMIN_CONFIG + 'include "%s/nftables.d/*.nft"\n' % tmp_path)
    assert not ok(module(namespace, rules, **options))['changed']

    # Absent: the admin's configuration as it was (with their own glob), our file gone.
    with open(main_config, 'w') as handle:
        handle.write(config)
    result = ok(module(namespace, state='absent', **options))
    assert result['changed'] and result['persisted'] and not os.path.exists(our_file)
    with open(main_config) as handle:
        assert handle.read() == ADMIN_CONFIG
    assert not ok(module(namespace, state='absent', **options))['changed']


def test_two_runs_at_once_leave_one_copy_of_everything(host):
    namespace = host()
    results = at_once(2, lambda: module(namespace, SERVER_RULES + ROUTER_RULES))
    assert sorted(ok(result)['changed'] for result in results) == [False, True]
    live = ruleset(namespace)
    assert live.count('jump lync_xmpp_in') == 1 and live.count('jump lync_xmpp_fwd') == 1
    assert live.count('chain lync_xmpp_in {') == 1
    assert not ok(module(namespace, SERVER_RULES + ROUTER_RULES))['changed']


IPTABLES_ADMIN = '*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n' \
                 '-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n'


@pytest.mark.parametrize('setup, expected', [
    ('nftables', 'nftables'),
    ('iptables-nft', 'iptables-nft'),
    ('iptables-legacy', 'iptables-legacy'),
    ('nothing', 'nftables'),
])
def test_auto_detects_what_the_host_really_uses(setup, expected, host):
    namespace = host(admin=setup == 'nftables')
    if setup.startswith('iptables-'):
        namespace.run('%s-restore' % setup, input=IPTABLES_ADMIN)
    result = ok(module(namespace, SERVER_RULES, backend='auto'))
    assert result['backend'] == expected and result['changed']
    assert not ok(module(namespace, SERVER_RULES, backend='auto'))['changed']
    assert ok(module(namespace, state='absent', backend='auto'))['changed']


@pytest.mark.parametrize('manager, script', [
    ('firewalld', 'table inet firewalld {\n\tchain filter_INPUT {\n\t\ttype filter hook input priority filter + 10; '
                  'policy accept;\n\t}\n}\n'),
    ('ufw', 'table ip filter {\n\tchain ufw-before-input {\n\t}\n\n\tchain INPUT {\n\t\ttype filter hook input '
            'priority filter; policy drop;\n\t\tjump ufw-before-input\n\t}\n}\n'),
])
def test_a_host_run_by_firewalld_or_ufw_is_refused_and_left_alone(manager, script, host):
    # The tables of a firewalld or ufw host, without the daemon: nftables is refused, naming the manager; auto
    # hands the host to that manager's backend, which fails here before writing (no firewall-cmd; no IPv6
    # chain of ufw's). Nothing is written either way.
    namespace = host(admin=False)
    namespace.run('nft', '-f', '-', input=script)
    before = ruleset(namespace)
    result = module(namespace, SERVER_RULES, backend='nftables', persist=True)
    assert failed(result) and 'managed by %s' % manager in result['msg'] and 'use backend %s' % manager in \
        result['msg'], result
    result = module(namespace, SERVER_RULES, backend='auto', persist=True)
    expected = {'firewalld': r'firewall-cmd command was not found',
                'ufw': r"is ufw enabled\?\): chain 'ufw6?-before-\w+' does not exist"}[manager]
    assert failed(result) and re.search(expected, result['msg']), result
    assert ruleset(namespace) == before


def test_a_file_of_ours_that_would_break_the_configuration_is_not_left(host, tmp_path):
    # The admin's configuration does not create the table whose chains we jump from (it is made at
    # run time by something else): with our include, the service could not load it at all.
    namespace = host(foreign=False)
    main_config, our_file = str(tmp_path / 'nftables.conf'), str(tmp_path / 'lync.nft')
    with open(main_config, 'w') as handle:
        handle.write('#!/usr/sbin/nft -f\nflush ruleset\n')
    result = module(namespace, SERVER_RULES, persist=True, nft_main_config=main_config, nft_persist_file=our_file)
    assert failed(result) and 'would not load' in result['msg'] and 'not persisted' in result['msg'], result
    with open(main_config) as handle:
        assert handle.read() == '#!/usr/sbin/nft -f\nflush ruleset\n'
    assert not os.path.exists(our_file)
    # The live rules were applied (one transaction, whole); only persistence was refused.
    assert 'jump lync_xmpp_in' in ruleset(namespace)
