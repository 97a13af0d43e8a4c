# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The role and the playbooks through ansible-playbook, against network namespaces standing in for hosts.

A Linux Edge (a namespace whose base input chain drops everything it is not
told to accept, as a hardened host does) gets the role through import_role,
include_role and roles:, from plays with gather_facts: false; the kernel and
real TCP connections show what the role did. site, verify and remove run
through a perimeter firewall with NAT (verify itself: test_verify.py).

Needs root; every namespace is named lxD-*, and deleted at the end.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import textwrap

import pytest

from netlab import CLIENT4, CLIENT6, COLLECTIONS, SERVER4, SERVER6, VENV_BIN, Namespace, Topology, address, link, sh

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='network namespaces need root')


def role_namespaces():
    return set(line.split()[0] for line in sh('ip', 'netns', 'list').splitlines() if line.startswith('lxD-'))


# What an earlier, interrupted run may have left: not this run's to answer for.
NAMESPACES_BEFORE = role_namespaces() if os.geteuid() == 0 else set()

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))

EDGE_EXTERNAL4, EDGE_EXTERNAL6 = '198.51.100.10', '2001:db8:10::10'
EDGE_INTERNAL4 = '198.51.100.140'
PEER_EXTERNAL4, PEER_EXTERNAL6, PEER_INTERNAL4 = '198.51.100.20', '2001:db8:10::20', '198.51.100.150'
NOT_IN_MATRIX_PORT = 5270

FOREIGN_NFT = textwrap.dedent('''\
    table inet filter {
        chain input {
            type filter hook input priority filter; policy drop;
            ct state established,related accept
            iifname "lo" accept
            meta l4proto ipv6-icmp accept comment "neighbour discovery"
            tcp dport 22 accept comment "admin ssh"
        }
        chain output {
            type filter hook output priority filter; policy accept;
        }
    }
    ''')


def ansible_env():
    env = dict(os.environ)
    env.update({
        'ANSIBLE_COLLECTIONS_PATH': COLLECTIONS,
        'ANSIBLE_ROLES_PATH': os.path.join(REPO, 'roles'),
        'ANSIBLE_HOST_KEY_CHECKING': '0',
        'ANSIBLE_LOCALHOST_WARNING': '0',
        'ANSIBLE_INVENTORY_UNPARSED_WARNING': '0',
        'ANSIBLE_RETRY_FILES_ENABLED': '0',
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_FORCE_COLOR': '0',
        'ANSIBLE_STDOUT_CALLBACK': 'default',
    })
    return env


class Run(object):
    def __init__(self, proc):
        self.rc, self.out = proc.returncode, proc.stdout + proc.stderr

    def recap(self, host):
        """The host's PLAY RECAP counters, summed over plays: {'ok': n, 'changed': n, ...}."""
        counters = {}
        for match in re.finditer(r'^%s\s+:\s+(.*)$' % re.escape(host), self.out, re.M):
            for key, value in re.findall(r'(\w+)=(\d+)', match.group(1)):
                counters[key] = counters.get(key, 0) + int(value)
        assert counters, 'no PLAY RECAP for %s in:\n%s' % (host, self.out)
        return counters


def playbook(path, inventory, *args, **kwargs):
    expect_rc = kwargs.pop('expect_rc', 0)
    proc = subprocess.run([os.path.join(VENV_BIN, 'ansible-playbook'), '-i', inventory, path] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          env=ansible_env(), cwd=REPO, timeout=300, check=False)
    run = Run(proc)
    if expect_rc is not None:
        assert run.rc == expect_rc, 'ansible-playbook %s %s: rc %d\n%s' % (path, ' '.join(args), run.rc, run.out)
    return run


class EdgeLab(object):
    """An Edge namespace (the host under test) and a peer namespace on one veth link."""

    def __init__(self, workdir, backend):
        self.workdir, self.backend = workdir, backend
        self.namespaces = []
        self.edge = self._add('lxD-e')
        self.peer = self._add('lxD-p')
        link(self.edge, 'eth0', self.peer, 'eth0')
        address(self.edge, 'eth0', EDGE_EXTERNAL4 + '/24', EDGE_INTERNAL4 + '/24', EDGE_EXTERNAL6 + '/64')
        address(self.peer, 'eth0', PEER_EXTERNAL4 + '/24', PEER_INTERNAL4 + '/24', PEER_EXTERNAL6 + '/64')
        # The Edge drops what it is not told to accept; the role's accept must take effect in spite of that.
        if backend == 'nftables':
            self.edge.run('nft', '-f', '-', input=FOREIGN_NFT)
        else:
            for tool in ('iptables', 'ip6tables'):
                self.edge.run(tool, '-A', 'INPUT', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT')
                self.edge.run(tool, '-A', 'INPUT', '-i', 'lo', '-j', 'ACCEPT')
                self.edge.run(tool, '-A', 'INPUT', '-p', 'tcp', '--dport', '22', '-j', 'ACCEPT')
            # Neighbour discovery, as any IPv6 host lets in.
            self.edge.run('ip6tables', '-A', 'INPUT', '-p', 'ipv6-icmp', '-j', 'ACCEPT')
            for tool in ('iptables', 'ip6tables'):
                self.edge.run(tool, '-P', 'INPUT', 'DROP')
        self.foreign = self.ruleset()
        self.edge.listen(EDGE_EXTERNAL4, [5269, NOT_IN_MATRIX_PORT], seconds=280)
        self.edge.listen(EDGE_EXTERNAL6, [5269], seconds=280)
        self.edge.listen(EDGE_INTERNAL4, [23456], seconds=280)
        # The admin's configuration holds the admin's ruleset: our file is checked to load after it.
        self.main_config = os.path.join(workdir, 'nftables.conf')
        with open(self.main_config, 'w') as handle:
            handle.write('#!/usr/sbin/nft -f\n\nflush ruleset\n\n' + FOREIGN_NFT)
        self.inventory = os.path.join(workdir, 'hosts.yml')
        with open(self.inventory, 'w') as handle:
            handle.write(textwrap.dedent('''\
                all:
                  children:
                    lync_edge:
                      hosts:
                        edge1:
                          ansible_connection: local
                          ansible_python_interpreter: {interpreter}
                          lync_edge_external_ip: [{ext4}, "{ext6}"]
                          lync_edge_internal_ip: {int4}
                  vars:
                    xmpp_firewall_backend: {backend}
                    xmpp_firewall_nft_persist_file: {workdir}/nftables.d/lync-xmpp-federation.nft
                    xmpp_firewall_nft_main_config: {workdir}/nftables.conf
                    xmpp_firewall_iptables_save_files:
                      ipv4: {workdir}/iptables/rules.v4
                      ipv6: {workdir}/iptables/rules.v6
                ''').format(interpreter=self.edge.interpreter, ext4=EDGE_EXTERNAL4, ext6=EDGE_EXTERNAL6,
                            int4=EDGE_INTERNAL4, backend=backend, workdir=workdir))

    def _add(self, prefix):
        namespace = Namespace(prefix)
        self.namespaces.append(namespace)
        return namespace

    def ruleset(self):
        if self.backend == 'nftables':
            return self.edge.run('nft', 'list', 'ruleset')
        return self.edge.run('iptables-save') + self.edge.run('ip6tables-save')

    def foreign_part(self):
        """The ruleset without anything of ours: must equal the ruleset before the role ever ran."""
        if self.backend == 'nftables':
            text = self.edge.run('nft', 'list', 'ruleset')
            text = re.sub(r'\n\s*chain lync_xmpp_\w+ \{.*?\n\s*\}', '', text, flags=re.S)
            return '\n'.join(line for line in text.splitlines() if 'lync_xmpp' not in line) + '\n'
        return self.without_counters(self.edge.run('iptables-save') + self.edge.run('ip6tables-save'), 'LYNC-XMPP')

    @staticmethod
    def without_counters(save_text, drop=None):
        """iptables-save output without comments, packet counters and (optionally) lines naming ``drop``."""
        return '\n'.join(re.sub(r' \[\d+:\d+\]$', '', line) for line in save_text.splitlines()
                         if not line.startswith('#') and not (drop and drop in line)) + '\n'

    def foreign_reference(self):
        if self.backend == 'nftables':
            return self.foreign
        return self.without_counters(self.foreign)

    def ours(self):
        text = self.ruleset()
        return 'lync_xmpp' in text or 'LYNC-XMPP' in text

    def open_from_peer(self, address, port):
        return self.peer.connects(address, port, timeout=1.0)

    def delete(self):
        for namespace in self.namespaces:
            namespace.delete()


def write_playbook(workdir, name, text):
    path = os.path.join(workdir, name)
    with open(path, 'w') as handle:
        handle.write(textwrap.dedent(text))
    return path


IMPORT_PLAY = '''\
- name: An edge build that imports the role
  hosts: lync_edge
  gather_facts: false
  tasks:
    - name: Something of the edge build before the firewall
      ansible.builtin.debug:
        msg: edge build step
    - name: Open the XMPP federation paths
      ansible.builtin.import_role:
        name: lync.xmpp_federation.xmpp_firewall
'''

INCLUDE_PLAY = '''\
- name: An edge build that includes the role
  hosts: lync_edge
  gather_facts: false
  tasks:
    - name: Open the XMPP federation paths
      ansible.builtin.include_role:
        name: lync.xmpp_federation.xmpp_firewall
        apply:
          tags: [xmpp_firewall]
      tags: [xmpp_firewall]
    - name: Nothing but xmpp_firewall_* variables were set by the role
      ansible.builtin.assert:
        that:
          - query('ansible.builtin.varnames', '^xmpp_firewall__') | length > 0
          # No facts were gathered: the connection told the platform.
          - ansible_facts.keys() | list | length == 0
'''

ABSENT_PLAY = '''\
- name: An edge build that takes the paths away again
  hosts: lync_edge
  gather_facts: false
  tasks:
    - name: Remove the XMPP federation paths
      ansible.builtin.import_role:
        name: lync.xmpp_federation.xmpp_firewall
      vars:
        xmpp_firewall_state: absent
'''


@pytest.fixture(params=['nftables', 'iptables'])
def edge_lab(request):
    workdir = tempfile.mkdtemp(prefix='lxD-role-')
    lab = None
    try:
        lab = EdgeLab(workdir, request.param)
        yield lab
    finally:
        if lab is not None:
            lab.delete()
        shutil.rmtree(workdir, ignore_errors=True)


def test_role_applies_idempotently_checks_and_removes(edge_lab):
    lab = edge_lab
    import_play = write_playbook(lab.workdir, 'import.yml', IMPORT_PLAY)
    include_play = write_playbook(lab.workdir, 'include.yml', INCLUDE_PLAY)
    absent_play = write_playbook(lab.workdir, 'absent.yml', ABSENT_PLAY)
    assert not lab.open_from_peer(EDGE_EXTERNAL4, 5269), 'the base policy must drop before the role runs'

    # Check mode on a bare host: shows what would change, changes nothing.
    run = playbook(import_play, lab.inventory, '--check', '--diff')
    assert run.recap('edge1')['changed'] == 1
    assert 'xmpp-s2s-inbound-ipv4' in run.out and 'xmpp-gateway-internal-ipv4' in run.out
    assert not lab.ours()

    # First run (import_role, gather_facts: false): changed, and the paths open for real.
    run = playbook(import_play, lab.inventory)
    assert run.recap('edge1')['changed'] == 1
    assert run.recap('edge1')['failed'] == 0
    assert lab.open_from_peer(EDGE_EXTERNAL4, 5269)
    assert lab.open_from_peer(EDGE_EXTERNAL6, 5269)
    assert lab.open_from_peer(EDGE_INTERNAL4, 23456)
    assert not lab.open_from_peer(EDGE_EXTERNAL4, NOT_IN_MATRIX_PORT)
    # 23456 is opened on the internal address only.
    assert not lab.open_from_peer(EDGE_EXTERNAL4, 23456)
    assert lab.foreign_part() == lab.foreign_reference()
    persisted = os.listdir(os.path.join(lab.workdir, 'nftables.d' if lab.backend == 'nftables' else 'iptables'))
    assert persisted

    # Second run, through include_role with the tag: nothing to change.
    run = playbook(include_play, lab.inventory, '--tags', 'xmpp_firewall')
    assert run.recap('edge1')['changed'] == 0
    assert run.recap('edge1')['failed'] == 0

    # Check and diff mode on the converged host: nothing to change, no diff.
    run = playbook(include_play, lab.inventory, '--check', '--diff')
    assert run.recap('edge1')['changed'] == 0
    assert '+++' not in run.out and '---' not in run.out.replace('PLAY RECAP', '')

    # A changed inventory (partner networks narrow 5269) is a change, applied in one step.
    run = playbook(import_play, lab.inventory, '-e', '{"xmpp_firewall_partner_networks": ["198.51.100.128/25"]}')
    assert run.recap('edge1')['changed'] == 1
    assert not lab.open_from_peer(EDGE_EXTERNAL4, 5269)
    assert not lab.open_from_peer(EDGE_EXTERNAL6, 5269)
    assert lab.open_from_peer(EDGE_INTERNAL4, 23456)

    # state absent removes everything of ours and nothing else; a second absent changes nothing.
    run = playbook(absent_play, lab.inventory)
    assert run.recap('edge1')['changed'] == 1
    assert not lab.ours()
    assert not lab.open_from_peer(EDGE_INTERNAL4, 23456)
    assert lab.foreign_part() == lab.foreign_reference()
    run = playbook(absent_play, lab.inventory)
    assert run.recap('edge1')['changed'] == 0


def test_site_and_remove_playbooks_and_bad_input(edge_lab):
    lab = edge_lab
    run = playbook('lync.xmpp_federation.site', lab.inventory)
    assert run.recap('edge1')['changed'] == 1
    assert lab.open_from_peer(EDGE_EXTERNAL4, 5269)
    run = playbook('lync.xmpp_federation.site', lab.inventory, '--check', '--diff')
    assert run.recap('edge1')['changed'] == 0

    # Bad input fails before anything is changed, naming host, variable and value.
    run = playbook('lync.xmpp_federation.site', lab.inventory, '-e',
                   '{"xmpp_firewall_partner_networks": ["198.51.100.300/24"]}', expect_rc=2)
    assert "host 'edge1'" in run.out and 'xmpp_firewall_partner_networks' in run.out
    assert '198.51.100.300/24' in run.out
    assert lab.open_from_peer(EDGE_EXTERNAL4, 5269)
    # The role's argument spec refuses a bad choice.
    run = playbook('lync.xmpp_federation.site', lab.inventory, '-e', 'xmpp_firewall_backend=pf', expect_rc=2)
    assert 'xmpp_firewall_backend' in run.out and 'pf' in run.out

    run = playbook('lync.xmpp_federation.remove', lab.inventory)
    assert run.recap('edge1')['changed'] == 1
    assert not lab.ours()
    assert not lab.open_from_peer(EDGE_EXTERNAL4, 5269)


# -- the verify playbook (more in test_verify.py) ------------------------------

def verify(inventory, workdir, *args, **kwargs):
    """Run verify with a JSON report: (the documented rows' checks as {(row, from, to, port): (expected, observed)},
    every check, the run)."""
    report = os.path.join(workdir, 'verify.json')
    if os.path.exists(report):
        os.unlink(report)
    run = playbook('lync.xmpp_federation.verify', inventory, '-e', 'xmpp_firewall_verify_report=' + report, *args,
                   **kwargs)
    with open(report) as handle:
        checks = json.load(handle)['checks']
    rows = dict(((check['row'], check['from'], check['to'], str(check['port'])), (check['expected'], check['observed']))
                for check in checks if check['kind'] == 'row')
    return rows, checks, run


# -- the whole chain: a Linux perimeter firewall with NAT in front of a Linux Edge ------

PUBLIC4 = '198.51.100.50'      # the Edge's public address, on the firewall's outside interface
EDGE_INTERNAL_ON_SERVER4 = '198.51.100.70'


@pytest.fixture(params=['nftables', 'iptables'])
def perimeter(request):
    workdir = tempfile.mkdtemp(prefix='lxD-perimeter-')
    topology = None
    try:
        topology = Topology(prefix='lxD-')
        router, server = topology.router, topology.server
        address(router, 'eth0', PUBLIC4 + '/26')
        address(server, 'eth0', EDGE_INTERNAL_ON_SERVER4 + '/26')
        # The firewall forwards nothing it is not told to (a foreign ruleset of its own).
        router_nft = textwrap.dedent('''\
            table inet filter {
                chain forward {
                    type filter hook forward priority filter; policy drop;
                    ct state established,related accept
                }
            }
            ''')
        if request.param == 'nftables':
            router.run('nft', '-f', '-', input=router_nft)
        else:
            router.run('iptables', '-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j',
                       'ACCEPT')
            router.run('iptables', '-P', 'FORWARD', 'DROP')
            router.run('ip6tables', '-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j',
                       'ACCEPT')
            router.run('ip6tables', '-P', 'FORWARD', 'DROP')
        inventory = os.path.join(workdir, 'hosts.yml')
        with open(inventory, 'w') as handle:
            handle.write(textwrap.dedent('''\
                all:
                  vars:
                    ansible_connection: local
                    xmpp_firewall_backend: {backend}
                    xmpp_firewall_nft_persist_file: "{workdir}/{{{{ inventory_hostname }}}}/lync.nft"
                    xmpp_firewall_nft_main_config: "{workdir}/{{{{ inventory_hostname }}}}/nftables.conf"
                    xmpp_firewall_iptables_save_files:
                      ipv4: "{workdir}/{{{{ inventory_hostname }}}}/rules.v4"
                      ipv6: "{workdir}/{{{{ inventory_hostname }}}}/rules.v6"
                  children:
                    lync_external_firewall:
                      hosts:
                        fw1: {{ansible_python_interpreter: {router}}}
                    lync_edge:
                      hosts:
                        edge1:
                          ansible_python_interpreter: {server}
                          lync_edge_external_ip: [{server4}, "{server6}"]
                          lync_edge_internal_ip: {internal4}
                          lync_edge_public_ip: {public4}
                    internet:
                      hosts:
                        probe1: {{ansible_python_interpreter: {client}}}
                ''').format(backend=request.param, workdir=workdir, router=router.interpreter,
                            server=server.interpreter, client=topology.client.interpreter, server4=SERVER4, server6=SERVER6,
                            internal4=EDGE_INTERNAL_ON_SERVER4, public4=PUBLIC4))
        for host, admin_ruleset in (('fw1', router_nft), ('edge1', '')):
            os.makedirs(os.path.join(workdir, host))
            with open(os.path.join(workdir, host, 'nftables.conf'), 'w') as handle:
                handle.write('#!/usr/sbin/nft -f\n\nflush ruleset\n\n' + admin_ruleset)
        topology.inventory = inventory
        topology.backend, topology.router_nft = request.param, router_nft
        yield topology
    finally:
        if topology is not None:
            topology.delete()
        shutil.rmtree(workdir, ignore_errors=True)


def delete_forward_accept(perimeter, row, address):
    """Delete, by hand, our forward accept of this row that names this address, on the perimeter firewall."""
    router = perimeter.router
    if perimeter.backend == 'nftables':
        family = table = chain = None
        for line in router.run('nft', '-a', 'list', 'ruleset').splitlines():
            words = line.split()
            if words[:1] == ['table']:
                family, table = words[1:3]
            elif words[:1] == ['chain']:
                chain = words[1]
            elif 'lync-xmpp:%s' % row in line and address in line and ' accept ' in line + ' ':
                router.run('nft', 'delete', 'rule', family, table, chain, 'handle', line.rsplit('# handle', 1)[1].strip())
                return
    else:
        for line in router.run('iptables', '-S').splitlines():
            if row in line and address in line and line.endswith('-j ACCEPT'):
                router.run('iptables', *(['-D'] + shlex.split(line)[1:]))
                return
    raise AssertionError('no forward accept of %s for %s on the firewall' % (row, address))


def test_site_verify_remove_through_a_perimeter_firewall_with_nat(perimeter):
    # A dual-stack Edge behind IPv4 NAT: IPv4 reaches it through its public address, IPv6 is routed to it.
    client, server, router = perimeter.client, perimeter.server, perimeter.router
    server.listen(SERVER4, [5269, NOT_IN_MATRIX_PORT], seconds=250)
    server.listen(SERVER6, [5269, NOT_IN_MATRIX_PORT], seconds=250)
    client.listen(CLIENT4, [5269], seconds=250)
    client.listen(CLIENT6, [5269], seconds=250)
    verify_args = ['-e', '{"xmpp_firewall_verify_partner": ["%s", "%s"]}' % (CLIENT4, CLIENT6),
                   '-e', 'xmpp_firewall_verify_vantage=probe1', '-e', 'xmpp_firewall_verify_timeout=2']

    def verify_run(topology, *args, **kwargs):
        return verify(topology.inventory, os.path.dirname(topology.inventory), *args, **kwargs)

    assert not client.connects(PUBLIC4, 5269)
    assert not client.connects(SERVER6, 5269)

    run = playbook('lync.xmpp_federation.site', perimeter.inventory, '--check', '--diff')
    assert run.recap('fw1')['changed'] == 1 and run.recap('edge1')['changed'] == 1
    assert 'dnat to %s' % SERVER4 in run.out
    run = playbook('lync.xmpp_federation.site', perimeter.inventory)
    assert run.recap('fw1')['changed'] == 1 and run.recap('edge1')['changed'] == 1
    run = playbook('lync.xmpp_federation.site', perimeter.inventory)
    assert run.recap('fw1')['changed'] == 0 and run.recap('edge1')['changed'] == 0

    # Row 1 through the DNAT of the public address, row 2 out through the SNAT back to it; over IPv6, which
    # has no public address, row 1 to the Edge's own external address.
    rows, _checks, run = verify_run(perimeter, *verify_args)
    assert rows == {
        ('xmpp-s2s-inbound', 'probe1', PUBLIC4, '5269'): ('open', 'open'),
        ('xmpp-s2s-inbound', 'probe1', SERVER6, '5269'): ('open', 'open'),
        ('xmpp-s2s-outbound', 'edge1', CLIENT4, '5269'): ('open', 'open'),
        ('xmpp-s2s-outbound', 'edge1', CLIENT6, '5269'): ('open', 'open'),
    }, run.out
    assert not client.connects(SERVER4, NOT_IN_MATRIX_PORT)
    assert not client.connects(SERVER6, NOT_IN_MATRIX_PORT)

    # A row broken by hand on the perimeter (row 2's IPv4 accept gone) fails verify, naming it, under any limit.
    for limit in ([], ['--limit', 'fw1'], ['--limit', 'probe1']):
        delete_forward_accept(perimeter, 'xmpp-s2s-outbound', SERVER4)
        rows, checks, run = verify_run(perimeter, *(verify_args + limit), expect_rc=2)
        assert [(check['row'], check['kind'], check['from'], check['to'], check['observed'])
                for check in checks if check['ok'] is False] == [
            ('xmpp-s2s-outbound', 'row', 'edge1', CLIENT4, 'timeout')], run.out
        playbook('lync.xmpp_federation.site', perimeter.inventory, '--limit', 'fw1')
    # A flow that must stay blocked, opened by hand on the perimeter: the port next to 5269, over IPv6.
    if perimeter.backend == 'nftables':
        router.run('nft', 'insert', 'rule', 'inet', 'filter', 'forward', 'tcp', 'dport', str(NOT_IN_MATRIX_PORT), 'accept')
    else:
        router.run('ip6tables', '-I', 'FORWARD', '-p', 'tcp', '--dport', str(NOT_IN_MATRIX_PORT), '-j', 'ACCEPT')
    rows, checks, run = verify_run(perimeter, *(verify_args + ['--limit', 'edge1']), expect_rc=2)
    assert [(check['row'], check['kind'], check['to'], check['port'], check['observed'])
            for check in checks if check['ok'] is False] == [
        ('xmpp-s2s-inbound', 'next-port', SERVER6, NOT_IN_MATRIX_PORT, 'open')], run.out
    if perimeter.backend == 'nftables':
        router.run('nft', 'flush', 'ruleset')
        router.run('nft', '-f', '-', input=perimeter.router_nft)
    else:
        router.run('ip6tables', '-D', 'FORWARD', '-p', 'tcp', '--dport', str(NOT_IN_MATRIX_PORT), '-j', 'ACCEPT')
    playbook('lync.xmpp_federation.site', perimeter.inventory, '--limit', 'fw1')
    verify_run(perimeter, *verify_args)

    run = playbook('lync.xmpp_federation.remove', perimeter.inventory)
    assert run.recap('fw1')['changed'] == 1 and run.recap('edge1')['changed'] == 1
    rows, _checks, run = verify_run(perimeter, *verify_args, expect_rc=2)
    # Without our DNAT the public address is the firewall's own, where nothing listens; IPv6 is dropped on the way.
    assert rows[('xmpp-s2s-inbound', 'probe1', PUBLIC4, '5269')] == ('open', 'refused')
    assert rows[('xmpp-s2s-inbound', 'probe1', SERVER6, '5269')] == ('open', 'timeout')


def test_namespaces_are_gone():
    # Runs last in this file: nothing named lxD-* may be left behind by the tests above.
    assert sorted(role_namespaces() - NAMESPACES_BEFORE) == []
