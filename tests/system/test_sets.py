# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Long partner lists as kernel sets (nftables anonymous interval sets, ipsets), against real kernels.

Every namespace name starts with ``lxS``.  The router of a client - router -
server topology is the perimeter firewall: forwarding dropped by the admin's
ruleset, 5269 opened by one rule whose source list holds 5,000 partner
networks with the client's address last.  The networks of the list are rule
data only; traffic runs between the test's own namespaces on 198.51.100.0/24.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import tempfile
import time

import pytest

from netlab import CLIENT4, SERVER4, Namespace, Topology, failed, ok, ruleset_module

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='needs root for network namespaces')

PREFIX = 'lxS'
UNLISTED4 = '198.51.100.3'
PARTNERS = 5000
# Done-when: with 5,000 partner networks, the first apply and the no-op re-run each take under this long.
SECONDS_LIMIT = 10.0
BACKENDS = ('nftables', 'iptables-nft', 'iptables-legacy')

NFT_ADMIN = '''table inet filter {
    chain input {
        type filter hook input priority filter; policy drop;
        ct state established,related accept
        iif "lo" accept
    }
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        meta l4proto ipv6-icmp accept
    }
}
'''
IPT_ADMIN = '''*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -i lo -j ACCEPT
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -p tcp -m tcp --dport 22 -m comment --comment "admin: ssh" -j ACCEPT
COMMIT
'''


def partner_networks(count):
    """``count`` /24s of 10.0.0.0/8, none adjacent to another (so none merge), then the client's address last."""
    return ['10.%d.%d.0/24' % (index // 128, (index % 128) * 2) for index in range(count)] + [CLIENT4 + '/32']


def partner_rules(networks):
    return [{'name': 'partners-in', 'direction': 'forward', 'protocol': 'tcp', 'ports': [5269],
             'source': networks, 'destination': [SERVER4], 'comment': 'row 1, partner networks'}]


def variant_of(backend):
    return backend.split('-', 1)[1] if backend.startswith('iptables-') else None


def load_admin(namespace, backend):
    if backend == 'nftables':
        namespace.run('nft', '-f', '-', input=NFT_ADMIN)
    else:
        namespace.run('iptables-%s-restore' % variant_of(backend), input=IPT_ADMIN)


def module(namespace, backend, rules=None, **args):
    return ruleset_module(namespace, 'nftables' if backend == 'nftables' else 'iptables', rules, **args)


def timed(call):
    started = time.time()
    result = call()
    return result, time.time() - started


def kernel_state(namespace, backend):
    """What the kernel holds, counters taken out: the ruleset text, and for iptables ``ipset save`` too."""
    if backend == 'nftables':
        return re.sub(r'counter packets \d+ bytes \d+', 'counter', namespace.run('nft', 'list', 'ruleset')), ''
    rules = namespace.run('iptables-%s-save' % variant_of(backend))
    rules = '\n'.join(re.sub(r'\[\d+:\d+\]$', '[0:0]', line) for line in rules.splitlines() if not line.startswith('#'))
    sets = namespace.run('ipset', 'save')
    # The hash's random seed is no content, nor is the order a hash lists its entries in.
    return rules, '\n'.join(sorted(re.sub(r' initval 0x[0-9a-f]+', '', sets).splitlines()))


def our_kernel_rules(namespace, backend):
    """The kernel rules in our forward chain."""
    if backend == 'nftables':
        document = json.loads(namespace.run('nft', '-j', 'list', 'ruleset'))
        return [item['rule'] for item in document['nftables']
                if 'rule' in item and item['rule']['chain'] == 'lync_xmpp_fwd']
    return [line for line in namespace.run('iptables-%s-save' % variant_of(backend)).splitlines()
            if line.startswith('-A LYNC-XMPP-FWD ')]


def our_ipsets(namespace):
    return [line.split()[1] for line in namespace.run('ipset', 'save').splitlines()
            if line.startswith('create lync-xmpp-')]


def connects_from(namespace, source, address, port, timeout=1.0):
    """True when a TCP connection from ``source`` (an address of ``namespace``) to address:port completes."""
    code = ('import socket,sys\n'
            's=socket.socket()\n'
            's.settimeout(float(sys.argv[4]))\n'
            's.bind((sys.argv[1], 0))\n'
            'try:\n s.connect((sys.argv[2], int(sys.argv[3]))); print("open")\n'
            'except OSError as e:\n print("closed", e)\n')
    return namespace.run('python3', '-c', code, source, address, str(port), str(timeout)).startswith('open')


@pytest.fixture
def lab():
    topology = Topology(PREFIX)
    topology.client.run('ip', 'addr', 'add', UNLISTED4 + '/26', 'dev', 'eth0')
    yield topology
    topology.delete()


@pytest.mark.parametrize('backend', BACKENDS)
def test_a_long_partner_list_is_one_set_lookup_effective_idempotent_and_removed(backend, lab, tmp_path):
    router, server, client = lab.router, lab.server, lab.client
    load_admin(router, backend)
    server.listen(SERVER4, [5269], seconds=120)
    assert not connects_from(client, CLIENT4, SERVER4, 5269, 0.5), 'the admin ruleset should drop forwarding'
    networks = partner_networks(PARTNERS)
    persist = {'persist': True, 'nft_persist_file': str(tmp_path / 'lync.nft'),
               'nft_main_config': str(tmp_path / 'nftables.conf'),
               'iptables_save_files': {'ipv4': str(tmp_path / 'rules.v4'), 'ipv6': str(tmp_path / 'rules.v6')},
               'ipset_save_file': str(tmp_path / 'ipsets')}

    # Check mode first: a change reported, nothing written.
    before = kernel_state(router, backend)
    result = ok(module(router, backend, partner_rules(networks), _check=True, **persist))
    assert result['changed']
    assert kernel_state(router, backend) == before
    assert not os.path.exists(str(tmp_path / 'ipsets'))

    result, seconds = timed(lambda: ok(module(router, backend, partner_rules(networks), **persist)))
    assert result['changed'] and seconds < SECONDS_LIMIT, seconds
    ours = our_kernel_rules(router, backend)
    # One kernel rule for the 5,001 networks (a handful at most: the done-when check).
    assert len(ours) == 1, ours
    if backend == 'nftables':
        assert 'set' in json.dumps(ours[0])
    else:
        assert '--match-set lync-xmpp-' in ours[0]
        assert len(our_ipsets(router)) == 1
        assert router.run('ipset', 'list', '-t', our_ipsets(router)[0]).count('Number of entries: %d' % len(networks))
        saved = open(str(tmp_path / 'ipsets')).read()
        assert saved.count('\nadd ') == len(networks) and 'comment' in saved.splitlines()[0]

    # The listed address (the last one of the list) passes, an unlisted one of the same subnet does not.
    assert connects_from(client, CLIENT4, SERVER4, 5269)
    assert not connects_from(client, UNLISTED4, SERVER4, 5269, 0.5)

    # No-op: unchanged, and quick.
    result, seconds = timed(lambda: ok(module(router, backend, partner_rules(networks), **persist)))
    assert not result['changed'] and seconds < SECONDS_LIMIT, (result, seconds)

    # One network changed: changed, and only the set's contents differ.
    rules_before, sets_before = kernel_state(router, backend)
    changed = ['10.250.0.0/24'] + networks[1:]
    result = ok(module(router, backend, partner_rules(changed), **persist))
    assert result['changed']
    rules_after, sets_after = kernel_state(router, backend)
    assert len(our_kernel_rules(router, backend)) == 1
    if backend == 'nftables':
        differing = [(old, new) for old, new in zip(rules_before.splitlines(), rules_after.splitlines()) if old != new]
        assert len(rules_before.splitlines()) == len(rules_after.splitlines())
        assert len(differing) == 1 and '10.0.0.0/24' in differing[0][0] and '10.250.0.0/24' in differing[0][1]
        assert differing[0][0].replace('10.0.0.0/24, ', '') == differing[0][1].replace('10.250.0.0/24, ', '')
    else:
        assert rules_after == rules_before, 'the rules stay, only the set changes'
        # The entries; the header's hash size is the kernel's (it grows a hash as it fills).
        entries_before = set(line for line in sets_before.splitlines() if line.startswith('add '))
        entries_after = set(line for line in sets_after.splitlines() if line.startswith('add '))
        removed, added = entries_before - entries_after, entries_after - entries_before
        assert [line.split()[2] for line in removed] == ['10.0.0.0/24'], removed
        assert [line.split()[2] for line in added] == ['10.250.0.0/24'], added
        assert len(our_ipsets(router)) == 1, 'the staging set is gone'
    assert not ok(module(router, backend, partner_rules(changed), **persist))['changed']
    assert connects_from(client, CLIENT4, SERVER4, 5269)

    # Absent removes the rule, the chain, the set and the persisted set lines.
    result = ok(module(router, backend, state='absent', **persist))
    assert result['changed']
    assert our_kernel_rules(router, backend) == []
    if backend != 'nftables':
        assert our_ipsets(router) == []
        assert not os.path.exists(str(tmp_path / 'ipsets'))
    assert not connects_from(client, CLIENT4, SERVER4, 5269, 0.5)
    assert not ok(module(router, backend, state='absent', **persist))['changed']


@pytest.mark.parametrize('backend', ('iptables-nft', 'iptables-legacy'))
def test_persisted_sets_load_before_the_rules_in_a_fresh_kernel(backend, lab, tmp_path):
    """What boot does (ipset-persistent's plugin, then netfilter-persistent's iptables): the files give the state."""
    router = lab.router
    load_admin(router, backend)
    files = {'ipv4': str(tmp_path / 'rules.v4'), 'ipv6': str(tmp_path / 'rules.v6')}
    # The admin's saved ruleset, as netfilter-persistent save wrote it.
    with open(files['ipv4'], 'w') as saved:
        saved.write(IPT_ADMIN)
    ok(module(router, backend, partner_rules(partner_networks(50)), persist=True, iptables_save_files=files,
              ipset_save_file=str(tmp_path / 'ipsets')))
    live = kernel_state(router, backend)
    fresh = Namespace(PREFIX)
    try:
        fresh.run('ipset', 'restore', input=open(str(tmp_path / 'ipsets')).read())
        fresh.run('iptables-%s-restore' % variant_of(backend), input=open(files['ipv4']).read())
        assert kernel_state(fresh, backend) == live
    finally:
        fresh.delete()


@pytest.mark.parametrize('backend', ('iptables-nft', 'iptables-legacy'))
def test_a_foreign_ipset_with_our_name_is_refused_and_left_byte_for_byte(backend, lab):
    router = lab.router
    load_admin(router, backend)
    rules = partner_rules(partner_networks(10))
    # Learn the set's name from a run, then put an admin's set of that name in its place.
    ok(module(router, backend, rules))
    name = our_ipsets(router)[0]
    ok(module(router, backend, state='absent'))
    router.run('ipset', 'create', name, 'hash:net')
    router.run('ipset', 'add', name, '198.51.100.77')
    before = kernel_state(router, backend)
    result = module(router, backend, rules)
    assert failed(result) and name in result['msg'] and 'nothing was changed' in result['msg'], result
    assert kernel_state(router, backend) == before
    # A set of ours whose entry an admin added without our mark is not ours any more either.
    router.run('ipset', 'destroy', name)
    ok(module(router, backend, rules))
    router.run('ipset', 'add', name, '198.51.100.78')
    before = kernel_state(router, backend)
    result = module(router, backend, rules)
    assert failed(result) and name in result['msg'], result
    assert kernel_state(router, backend) == before


@pytest.mark.parametrize('backend', ('iptables-nft', 'iptables-legacy'))
def test_without_the_ipset_tool_the_list_stays_rules_with_a_warning(backend, lab):
    router, server, client = lab.router, lab.server, lab.client
    load_admin(router, backend)
    server.listen(SERVER4, [5269], seconds=60)
    # The module's view of the host without ipset: a mount namespace in which /usr/sbin/ipset is not executable.
    handle, blank = tempfile.mkstemp(prefix='%s-no-ipset-' % PREFIX)
    os.close(handle)
    os.chmod(blank, 0o644)
    handle, wrapper = tempfile.mkstemp(prefix='%s-python-' % PREFIX)
    with os.fdopen(handle, 'w') as script:
        script.write('#!/bin/sh\nexec ip netns exec %s unshare --mount --propagation private sh -c '
                     '\'for tool in /usr/sbin/ipset /sbin/ipset; do [ -e "$tool" ] && mount --bind %s "$tool"; '
                     'done; exec /usr/bin/python3 "$@"\' sh "$@"\n' % (router.name, blank))
    os.chmod(wrapper, 0o755)
    try:
        rules = partner_rules(partner_networks(20))
        result = ok(module(router, backend, rules, _interpreter=wrapper))
        assert result['changed']
        assert 'ipset command was not found' in result['_output'], result['_output']
        assert len(our_kernel_rules(router, backend)) == 21
        assert our_ipsets(router) == []
        assert connects_from(client, CLIENT4, SERVER4, 5269)
        assert not connects_from(client, UNLISTED4, SERVER4, 5269, 0.5)
        assert not ok(module(router, backend, rules, _interpreter=wrapper))['changed']
        # With the tool back, the same list becomes one set.
        assert ok(module(router, backend, rules))['changed']
        assert len(our_kernel_rules(router, backend)) == 1 and len(our_ipsets(router)) == 1
    finally:
        os.unlink(wrapper)
        os.unlink(blank)
