# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""firewall_ruleset on iptables-nft and iptables-legacy, against real kernels in throwaway namespaces.

Every namespace name starts with ``lxB``.  Each "host" first gets an admin
ruleset (policy DROP on INPUT and FORWARD, established and SSH accepts, a
docker-like foreign chain with rules and jumps in filter and nat), loaded
with the variant under test, so that detection, ownership and placement are
all exercised for real.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re

import pytest

from netlab import (APPLY_POISONED, IPTABLES_DRIVER_HEAD, ROUTER4_A, ROUTER_RULES, SERVER4, SERVER6, SERVER_RULES,
                    Namespace, Topology, at_once, failed, iptables_admin, ok, ruleset_module, run_driver)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='needs root for network namespaces')

VARIANTS = ('nft', 'legacy')
PREFIX = 'lxB'

# The admin's filter table is the podman lab's (lab/baseline.py through netlab); a docker-like chain set with
# rules and jumps in filter and nat is loaded after it, appended as Docker would.
DOCKER_LIKE = '''*filter
:DOCKER-LIKE - [0:0]
-A FORWARD -j DOCKER-LIKE
-A DOCKER-LIKE -d {docker} -p tcp -m tcp --dport 8080 -j ACCEPT
-A DOCKER-LIKE -i docker0 -o docker0 -j DROP
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER-LIKE - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER-LIKE
-A POSTROUTING -s {docker_net} ! -o docker0 -j MASQUERADE
-A DOCKER-LIKE -p tcp -m tcp --dport 8080 -j DNAT --to-destination {docker_to}
COMMIT
'''
ADMIN = {4: iptables_admin(4), 6: iptables_admin(6)}
FOREIGN = {
    4: DOCKER_LIKE.format(docker='198.51.100.99/32', docker_net='198.51.100.96/28', docker_to='198.51.100.99:80'),
    6: DOCKER_LIKE.format(docker='2001:db8:d::99/128', docker_net='2001:db8:d::/64', docker_to='[2001:db8:d::99]:80'),
}
TOOL = {4: 'iptables', 6: 'ip6tables'}


def save(namespace, variant, family):
    """The family's ruleset as *-save prints it, without counters and the dated comment lines.

    Tables are put in name order: iptables-legacy lists them in the order the
    kernel registered them, which is not part of the ruleset.
    """
    text = namespace.run('%s-%s-save' % (TOOL[family], variant))
    tables, current = {}, None
    for line in text.splitlines():
        if line.startswith('#'):
            continue
        if line.startswith('*'):
            current = tables.setdefault(line[1:], [])
        current.append(re.sub(r'\[\d+:\d+\]$', '[0:0]', line) + '\n')
    return ''.join(''.join(tables[name]) for name in sorted(tables))


def saves(namespace, variant):
    return dict((family, save(namespace, variant, family)) for family in (4, 6))


def without_ours(text):
    return ''.join(line + '\n' for line in text.splitlines() if 'LYNC-XMPP' not in line)


def load_admin(namespace, variant):
    for family in (4, 6):
        namespace.run('%s-%s-restore' % (TOOL[family], variant), input=ADMIN[family])
        namespace.run('%s-%s-restore' % (TOOL[family], variant), '--noflush', input=FOREIGN[family])


def module(namespace, rules=None, **args):
    return ruleset_module(namespace, 'iptables', rules, **args)


def our_lines(text):
    return [line for line in text.splitlines() if 'LYNC-XMPP' in line]


def assert_no_duplicates(text):
    lines = our_lines(text)
    assert len(lines) == len(set(lines)), lines


@pytest.fixture
def host(request):
    namespaces = []

    def make(variant):
        namespace = Namespace(PREFIX)
        namespaces.append(namespace)
        load_admin(namespace, variant)
        return namespace
    yield make
    for namespace in namespaces:
        namespace.delete()


@pytest.mark.parametrize('variant', VARIANTS)
def test_apply_is_effective_owns_only_its_rules_and_is_removed_exactly(variant):
    lab = Topology(PREFIX)
    try:
        router, server, client = lab.router, lab.server, lab.client
        load_admin(router, variant)
        load_admin(server, variant)
        original = {'router': saves(router, variant), 'server': saves(server, variant)}
        server.listen(SERVER4, [5269, 5270, 5271], seconds=90)
        server.listen(SERVER6, [5269, 5270, 5271], seconds=90)
        assert not client.connects(SERVER4, 5269, 0.5), 'the admin ruleset should drop forwarding'

        # Check mode: reports the change, writes nothing.
        result = ok(module(router, ROUTER_RULES, _check=True))
        assert result['changed'] and result['script']
        assert saves(router, variant) == original['router']

        # Host firewall on the server: in and out chains, both families.
        result = ok(module(server, SERVER_RULES))
        assert result['changed'] and result['backend'] == 'iptables-%s' % variant
        for address in (SERVER4, SERVER6):
            assert router.connects(address, 5269) and router.connects(address, 5270)
            assert not router.connects(address, 5271, 0.5), 'the server must still drop what is not ours'

        # Perimeter firewall on the router: forward and DNAT.
        result = ok(module(router, ROUTER_RULES))
        assert result['changed'] and result['backend'] == 'iptables-%s' % variant
        assert client.connects(SERVER4, 5269) and client.connects(SERVER6, 5269)
        assert not client.connects(SERVER4, 5270, 0.5) and not client.connects(SERVER6, 5270, 0.5)
        assert client.connects(ROUTER4_A, 5269), 'DNAT of the public address to the server'
        live = saves(router, variant)
        for family in (4, 6):
            # Foreign rules, their order and the policies are byte for byte what the admin had.
            assert without_ours(live[family]) == original['router'][family]
            assert_no_duplicates(live[family])
        assert '-A FORWARD -m comment --comment lync-xmpp-federation -j LYNC-XMPP-FWD\n' \
               '-A FORWARD -m conntrack' in live[4], 'our jump must be the first rule of FORWARD'
        assert '-A PREROUTING -m comment --comment lync-xmpp-federation -j LYNC-XMPP-DNAT\n' in live[4]
        assert 'LYNC-XMPP-DNAT' not in live[6], 'an IPv4-only translation lands only in IPv4'
        assert '-s 198.51.100.2/32 -d 198.51.100.66/32' in live[4] and '2001:db8:b::66' not in live[4]
        assert '--dports 6000:6010,7000' in live[4] and '--dports 6000:6010,7000' in live[6]
        assert result['rules'] == sorted(result['rules'], key=lambda rule: rule['name'])

        # Second runs: nothing to do.
        for namespace, rules in ((router, ROUTER_RULES), (server, SERVER_RULES)):
            result = ok(module(namespace, rules))
            assert not result['changed'] and result['script'] == ''

        # A rule of ours edited by hand is a difference and is put back.
        router.run('%s-%s' % (TOOL[4], variant), '-D', 'LYNC-XMPP-FWD', '1')
        result = ok(module(router, ROUTER_RULES))
        assert result['changed'] and saves(router, variant) == live

        # Absent: exactly the admin's ruleset again, and a second absent is unchanged.
        for name, namespace in (('router', router), ('server', server)):
            result = ok(module(namespace, state='absent'))
            assert result['changed']
            assert saves(namespace, variant) == original[name]
        assert not ok(module(router, state='absent'))['changed']
        assert not client.connects(SERVER4, 5269, 0.5)
    finally:
        lab.delete()


@pytest.mark.parametrize('variant', VARIANTS)
def test_bad_input_changes_nothing_and_names_the_field(variant, host):
    namespace = host(variant)
    ok(module(namespace, SERVER_RULES))
    before = saves(namespace, variant)
    bad = SERVER_RULES + [{'name': 'bad-port', 'direction': 'in', 'ports': [70000]}]
    result = module(namespace, bad)
    assert failed(result) and 'ports' in result['msg'] and '70000' in result['msg'], result
    result = module(namespace, SERVER_RULES + [{'name': 'x', 'direction': 'in', 'ports': [1], 'colour': 'red'}])
    assert failed(result) and "'colour'" in result['msg'], result
    # A base chain that does not exist: iptables-nft's --test would not notice, so we check before writing.
    other = [{'name': 'other', 'direction': 'in', 'ports': [5299]}]
    result = module(namespace, other, base_chains={'in': 'NO-SUCH-CHAIN'})
    assert failed(result) and 'base_chains.in' in result['msg'] and 'NO-SUCH-CHAIN' in result['msg'], result
    assert saves(namespace, variant) == before


# A driver that runs our backend inside a namespace with the real tools, to inject a fault
# that only the kernel notices, in the second family, after the first was applied.
FAULT_DRIVER = IPTABLES_DRIVER_HEAD + r'''
# The kernel refuses DNAT in the filter table; iptables-restore --test does not know that.
(label4, block4, family4), (label6, block6, family6) = transaction.steps
assert (family4, family6) == (4, 6), transaction.text()
poisoned = Transaction([(label4, block4, family4), (label6, block6.replace(
    'COMMIT', '-A LYNC-XMPP-IN -p tcp -m tcp --dport 1 -j DNAT --to-destination 2001:db8::1\nCOMMIT', 1), family6)])
''' + APPLY_POISONED


@pytest.mark.parametrize('variant', VARIANTS)
def test_a_transaction_the_kernel_rejects_leaves_the_ruleset_as_it_was(variant, host, tmp_path):
    namespace = host(variant)
    ok(module(namespace, SERVER_RULES))
    before = saves(namespace, variant)
    changed = [dict(rule, ports=[5300]) for rule in SERVER_RULES]
    outcome = run_driver(namespace, FAULT_DRIVER, variant, str(tmp_path / 'lock'), json.dumps(changed))
    error = outcome['error']
    assert error and 'IPv6' in error and 'as it was before this run' in error, error
    # IPv4 had been applied in full before IPv6 failed; it was put back.
    assert saves(namespace, variant) == before


@pytest.mark.parametrize('variant', VARIANTS)
def test_persistence_reproduces_the_live_state_in_a_fresh_kernel(variant, host, tmp_path):
    namespace = host(variant)
    files = {4: str(tmp_path / 'rules.v4'), 6: str(tmp_path / 'rules.v6')}
    admin_files = {}
    for family in (4, 6):
        # What netfilter-persistent save would have written before us.
        admin_files[family] = namespace.run('%s-%s-save' % (TOOL[family], variant))
        with open(files[family], 'w') as handle:
            handle.write(admin_files[family])
    options = {'persist': True, 'iptables_save_files': {'ipv4': files[4], 'ipv6': files[6]}}
    rules = SERVER_RULES + ROUTER_RULES

    result = ok(module(namespace, rules, _check=True, **options))
    assert result['changed'] and result['persisted']
    for family in (4, 6):
        with open(files[family]) as handle:
            assert handle.read() == admin_files[family], 'check mode must write nothing'

    result = ok(module(namespace, rules, **options))
    assert result['changed'] and result['persisted']
    assert result['persistence_files'] == [files[4], files[6]]
    live = saves(namespace, variant)
    for family in (4, 6):
        with open(files[family]) as handle:
            persisted = handle.read()
        # Every line of the admin's file is still there, in order.
        assert [line for line in persisted.splitlines() if 'LYNC-XMPP' not in line] == \
            admin_files[family].splitlines()
    # A fresh kernel, as after a reboot: restoring the files gives exactly the live state.
    fresh = Namespace(PREFIX)
    try:
        for family in (4, 6):
            with open(files[family]) as handle:
                fresh.run('%s-%s-restore' % (TOOL[family], variant), input=handle.read())
        assert saves(fresh, variant) == live
    finally:
        fresh.delete()
    assert not ok(module(namespace, rules, **options))['changed']

    # Absent: the admin's files as they were.
    result = ok(module(namespace, state='absent', **options))
    assert result['changed'] and result['persisted']
    for family in (4, 6):
        with open(files[family]) as handle:
            assert handle.read() == admin_files[family]


@pytest.mark.parametrize('variant', VARIANTS)
def test_two_runs_at_once_leave_one_copy_of_everything(variant, host):
    namespace = host(variant)
    results = at_once(2, lambda: module(namespace, SERVER_RULES + ROUTER_RULES))
    assert sorted(ok(result)['changed'] for result in results) == [False, True]
    live = saves(namespace, variant)
    for family in (4, 6):
        assert_no_duplicates(live[family])
        assert live[family].count('-j LYNC-XMPP-IN') == 1
    assert not ok(module(namespace, SERVER_RULES + ROUTER_RULES))['changed']
