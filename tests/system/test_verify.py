# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""lync.xmpp_federation.verify against an estate of network namespaces with real host firewalls.

A Front End, an Edge, a partner and an Internet vantage point share one bridge; the Edge and the Front End
drop whatever they are not told to accept (nftables, input policy drop), and the site playbook gives them our
rules. Then verify must pass; and it must fail, naming the row, each time a row is broken or a flow that must
stay blocked is opened by hand, with and without --limit; its JSON and JUnit reports must say the same. The
protocol probe must tell an XMPP server and a TLS endpoint that asks for a client certificate from a bare
listener.

Needs root; every namespace is named lxV-*, and deleted at the end.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from xml.etree import ElementTree

import pytest

from netlab import VENV_BIN, Namespace, address, link, sh

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='network namespaces need root')

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
sys.path.insert(0, os.path.dirname(__file__))
from test_role_netns import ansible_env  # noqa: E402  (one environment for every ansible-playbook run here)

FE4, FE6 = '198.51.100.200', '2001:db8:20::200'
EDGE_EXT4, EDGE_EXT6, EDGE_INT4 = '198.51.100.10', '2001:db8:20::10', '198.51.100.140'
PARTNER4, PARTNER6 = '198.51.100.30', '2001:db8:20::30'
VANTAGE4, VANTAGE6 = '198.51.100.40', '2001:db8:20::40'

HARDENED = textwrap.dedent('''\
    table inet filter {
        chain input {
            type filter hook input priority filter; policy drop;
            ct state established,related accept
            iifname "lo" accept
            meta l4proto ipv6-icmp accept comment "neighbour discovery"
        }
        chain output {
            type filter hook output priority filter; policy accept;
        }
    }
    ''')

# What any XMPP server answers to an s2s stream header: one of its own.
XMPP_HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
               b"xmlns:stream='http://etherx.jabber.org/streams' id='t' version='1.0'>")


class VerifyEstate(object):
    HOSTS = {
        'fe1': [FE4 + '/24', FE6 + '/64'],
        'edge1': [EDGE_EXT4 + '/24', EDGE_EXT6 + '/64', EDGE_INT4 + '/24'],
        'partner1': [PARTNER4 + '/24', PARTNER6 + '/64'],
        'vantage1': [VANTAGE4 + '/24', VANTAGE6 + '/64'],
    }

    def __init__(self, workdir):
        self.workdir = workdir
        self.ns = {}
        self.hub = Namespace('lxV-h')
        self.hub.run('ip', 'link', 'add', 'br0', 'type', 'bridge')
        self.hub.run('ip', 'link', 'set', 'br0', 'up')
        for name, cidrs in sorted(self.HOSTS.items()):
            namespace = self.ns[name] = Namespace('lxV-' + name[0])
            link(namespace, 'eth0', self.hub, 'p' + name)
            self.hub.run('ip', 'link', 'set', 'p' + name, 'master', 'br0')
            address(namespace, 'eth0', *cidrs)
            namespace.sysctl('net.ipv6.conf.eth0.accept_dad', 0)
        for name in ('fe1', 'edge1'):
            self.ns[name].run('nft', '-f', '-', input=HARDENED)
            os.makedirs(os.path.join(workdir, name))
        self.inventory = os.path.join(workdir, 'estate.yml')
        with open(self.inventory, 'w') as handle:
            handle.write(textwrap.dedent('''\
                all:
                  vars:
                    ansible_connection: local
                    xmpp_firewall_backend: nftables
                    xmpp_firewall_restrict_internal_sources: true
                    xmpp_firewall_nft_persist_file: "{w}/{{{{ inventory_hostname }}}}/lync.nft"
                    xmpp_firewall_nft_main_config: "{w}/{{{{ inventory_hostname }}}}/nftables.conf"
                  children:
                    lync_front_end:
                      hosts:
                        fe1: {{ansible_python_interpreter: {fe}, lync_internal_ip: [{fe4}, "{fe6}"]}}
                    lync_edge:
                      hosts:
                        edge1:
                          ansible_python_interpreter: {edge}
                          lync_edge_external_ip: [{ext4}, "{ext6}"]
                          lync_edge_internal_ip: {int4}
                    internet:
                      hosts:
                        partner1: {{ansible_python_interpreter: {partner}}}
                        vantage1: {{ansible_python_interpreter: {vantage}, ansible_host: {vantage4}}}
                ''').format(w=workdir, fe=self.ns['fe1'].interpreter, edge=self.ns['edge1'].interpreter,
                            partner=self.ns['partner1'].interpreter, vantage=self.ns['vantage1'].interpreter,
                            fe4=FE4, fe6=FE6, ext4=EDGE_EXT4, ext6=EDGE_EXT6, int4=EDGE_INT4, vantage4=VANTAGE4))
        for name in ('fe1', 'edge1'):
            with open(os.path.join(workdir, name, 'nftables.conf'), 'w') as handle:
                handle.write('#!/usr/sbin/nft -f\n\nflush ruleset\n\n' + HARDENED)
        self.cert, self.key = os.path.join(workdir, 'cert.pem'), os.path.join(workdir, 'key.pem')
        sh('openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=edge1.example',
           '-keyout', self.key, '-out', self.cert)
        self.mtls = None
        self.start_services()

    def start_services(self):
        edge, partner, fe = self.ns['edge1'], self.ns['partner1'], self.ns['fe1']
        for namespace, addresses in ((edge, (EDGE_EXT4, EDGE_EXT6)), (partner, (PARTNER4, PARTNER6))):
            for address_ in addresses:
                namespace.listen(address_, [5269], seconds=400, answer=XMPP_HEADER)
        # Behind each port that must stay blocked, something that would answer: a block is then a real one.
        edge.listen(EDGE_EXT4, [5270, 23456], seconds=400)
        edge.listen(EDGE_EXT6, [5270, 23456], seconds=400)
        edge.listen(EDGE_INT4, [23457], seconds=400)
        fe.listen(FE4, [23456], seconds=400)
        fe.listen(FE6, [23456], seconds=400)
        self.start_mtls()

    def start_mtls(self):
        """openssl s_server on the Edge internal address, requiring a client certificate (row 3 as mutual TLS)."""
        # ip netns exec execs openssl itself, so the process killed at the end is the server (no wrapper to orphan it).
        proc = subprocess.Popen(['ip', 'netns', 'exec', self.ns['edge1'].name, 'openssl', 's_server',
                                 '-accept', '%s:23456' % EDGE_INT4, '-cert', self.cert, '-key', self.key,
                                 '-Verify', '1', '-verify_return_error', '-naccept', '1000', '-quiet'],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ns['edge1']._processes.append(proc)
        self.mtls = proc
        for _attempt in range(50):
            if self.ns['edge1'].connects(EDGE_INT4, 23456, timeout=0.2):
                return
        raise RuntimeError('openssl s_server did not start')

    def stop_mtls(self):
        self.mtls.kill()
        self.mtls.wait()
        self.ns['edge1']._processes.remove(self.mtls)

    def playbook(self, name, *args, **kwargs):
        expect_rc = kwargs.pop('expect_rc', 0)
        proc = subprocess.run([os.path.join(VENV_BIN, 'ansible-playbook'), '-i', self.inventory,
                               'lync.xmpp_federation.' + name] + list(args),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                              env=ansible_env(), cwd=REPO, timeout=300, check=False)
        command = ' '.join([name] + list(args))
        assert proc.returncode == expect_rc, 'ansible-playbook %s: rc %d\n%s' % (command, proc.returncode, proc.stdout)
        return proc.stdout

    def verify(self, *args, **kwargs):
        """(checks by (row, kind, from, to, port), the JSON report, the JUnit document, the output)."""
        report, junit = os.path.join(self.workdir, 'verify.json'), os.path.join(self.workdir, 'verify.xml')
        for path in (report, junit):
            if os.path.exists(path):
                os.unlink(path)
        defaults = ['-e', 'xmpp_firewall_verify_vantage=vantage1',
                    '-e', '{"xmpp_firewall_verify_partner": ["%s", "%s"]}' % (PARTNER4, PARTNER6),
                    '-e', 'xmpp_firewall_verify_timeout=2']
        out = self.playbook('verify', *(defaults + list(args) + ['-e', 'xmpp_firewall_verify_report=' + report,
                                                                 '-e', 'xmpp_firewall_verify_junit=' + junit]),
                            **kwargs)
        with open(report) as handle:
            document = json.load(handle)
        checks = dict(((check['row'], check['kind'], check['from'], check['to'], check['port']), check)
                      for check in document['checks'])
        return checks, document, ElementTree.parse(junit).getroot(), out

    def nft(self, host, *argv):
        return self.ns[host].run('nft', *argv)

    def delete(self):
        for namespace in self.ns.values():
            namespace.delete()
        self.hub.delete()


@pytest.fixture(scope='module')
def estate():
    workdir = tempfile.mkdtemp(prefix='lxV-verify-')
    lab = None
    try:
        lab = VerifyEstate(workdir)
        lab.playbook('site')
        yield lab
    finally:
        if lab is not None:
            lab.delete()
        shutil.rmtree(workdir, ignore_errors=True)


def failed_checks(checks):
    return sorted(key for key, check in checks.items() if check['ok'] is False)


def our_rule_handle(estate, host, port):
    """The handle of our rule for this port in the host's chain of ours (nft -a)."""
    listing = estate.nft(host, '-a', 'list', 'ruleset')
    for line in listing.splitlines():
        if 'dport %d ' % port in line and 'lync-xmpp:' in line and '# handle' in line:
            return line.rsplit('# handle', 1)[1].strip()
    raise AssertionError('no rule of ours for port %d on %s:\n%s' % (port, host, listing))


def our_chain(estate, host, port):
    """(family, table, chain) of our rule for this port."""
    table = chain = None
    for line in estate.nft(host, '-a', 'list', 'ruleset').splitlines():
        words = line.split()
        if words[:1] == ['table']:
            table = words[1:3]
        elif words[:1] == ['chain']:
            chain = words[1]
        elif 'dport %d ' % port in line and 'lync-xmpp:' in line:
            return table[0], table[1], chain
    raise AssertionError('no chain of ours holds port %d on %s' % (port, host))


def test_every_check_passes_and_both_reports_say_so(estate):
    checks, document, junit, out = estate.verify()
    assert failed_checks(checks) == [], out
    # Every documented row is proven open from where it starts, over both families.
    assert checks[('xmpp-s2s-inbound', 'row', 'vantage1', EDGE_EXT4, 5269)]['observed'] == 'open'
    assert checks[('xmpp-s2s-inbound', 'row', 'vantage1', EDGE_EXT6, 5269)]['observed'] == 'open'
    assert checks[('xmpp-s2s-outbound', 'row', 'edge1', PARTNER6, 5269)]['observed'] == 'open'
    assert checks[('xmpp-gateway-internal', 'row', 'fe1', EDGE_INT4, 23456)]['observed'] == 'open'
    # What must stay blocked is checked too, and is really blocked (something listens behind each port).
    blocked = dict((key, check['observed']) for key, check in checks.items() if check['expected'] == 'blocked')
    assert blocked[('xmpp-s2s-inbound', 'next-port', 'vantage1', EDGE_EXT4, 5270)] == 'timeout'
    assert blocked[('xmpp-gateway-internal', 'internal-port-from-internet', 'vantage1', EDGE_INT4, 23456)] == 'timeout'
    assert blocked[('xmpp-gateway-internal', 'internal-port-from-internet', 'vantage1', EDGE_EXT4, 23456)] == 'timeout'
    assert blocked[('xmpp-gateway-internal', 'next-port', 'fe1', EDGE_INT4, 23457)] == 'timeout'
    assert blocked[('xmpp-gateway-internal', 'reverse', 'edge1', FE4, 23456)] == 'timeout'
    for check in document['checks']:
        assert set(['row', 'from', 'to', 'port', 'transport', 'expected', 'observed', 'ok']) <= set(check)
        assert check['expected'] in ('open', 'blocked') and check['ok'] is True
    assert document['summary'] == {'total': len(checks), 'passed': len(checks), 'failed': 0, 'unproven': 0}
    cases = junit.findall('./testsuite/testcase')
    assert len(cases) == len(checks) and junit.get('failures') == '0'
    assert '%d of %d checks passed' % (len(checks), len(checks)) in out


@pytest.mark.parametrize('limit', [None, 'vantage1', 'fe1'])
def test_a_broken_row_fails_verify_naming_it_under_any_limit(estate, limit):
    handle = our_rule_handle(estate, 'edge1', 23456)
    family, table, chain = our_chain(estate, 'edge1', 23456)
    estate.nft('edge1', 'delete', 'rule', family, table, chain, 'handle', handle)
    try:
        args = ['--limit', limit] if limit else []
        checks, document, junit, out = estate.verify(*args, expect_rc=2)
        assert failed_checks(checks) == [('xmpp-gateway-internal', 'row', 'fe1', EDGE_INT4, 23456)], out
        assert checks[('xmpp-gateway-internal', 'row', 'fe1', EDGE_INT4, 23456)]['observed'] == 'timeout'
        assert 'xmpp-gateway-internal: fe1 -> %s tcp/23456 expected open, observed timeout' % EDGE_INT4 in out
        assert document['summary']['failed'] == 1
        failures = [case for case in junit.findall('./testsuite/testcase') if case.find('failure') is not None]
        assert [(case.get('classname'), case.find('failure').get('type')) for case in failures] == [
            ('xmpp-gateway-internal', 'timeout')]
    finally:
        estate.playbook('site', '--limit', 'edge1')


@pytest.mark.parametrize('limit', [None, 'edge1'])
def test_a_flow_that_must_stay_blocked_but_is_open_fails_verify(estate, limit):
    # A clumsy admin opens the port next to 5269 in the Edge's own input chain.
    estate.nft('edge1', 'insert', 'rule', 'inet', 'filter', 'input', 'tcp', 'dport', '5270', 'accept')
    try:
        args = ['--limit', limit] if limit else []
        checks, document, junit, out = estate.verify(*args, expect_rc=2)
        assert failed_checks(checks) == [
            ('xmpp-s2s-inbound', 'next-port', 'vantage1', EDGE_EXT6, 5270),
            ('xmpp-s2s-inbound', 'next-port', 'vantage1', EDGE_EXT4, 5270),
        ] or failed_checks(checks) == sorted([
            ('xmpp-s2s-inbound', 'next-port', 'vantage1', EDGE_EXT6, 5270),
            ('xmpp-s2s-inbound', 'next-port', 'vantage1', EDGE_EXT4, 5270)]), out
        assert 'expected blocked, observed open' in out
        assert document['summary']['failed'] == 2
    finally:
        handle = [line for line in estate.nft('edge1', '-a', 'list', 'chain', 'inet', 'filter', 'input').splitlines()
                  if 'dport 5270 accept' in line][0].rsplit('# handle', 1)[1].strip()
        estate.nft('edge1', 'delete', 'rule', 'inet', 'filter', 'input', 'handle', handle)


def test_checks_that_cannot_run_fail_unless_allowed(estate):
    out = estate.playbook('verify', '-e', 'xmpp_firewall_verify_timeout=2', expect_rc=2)
    assert 'no vantage point: set xmpp_firewall_verify_vantage' in out
    assert 'no partner: set xmpp_firewall_verify_partner' in out
    out = estate.playbook('verify', '-e', 'xmpp_firewall_verify_timeout=2',
                          '-e', 'xmpp_firewall_verify_allow_not_run=true')
    assert 'proved nothing' in out


def test_protocol_probe_sees_the_xmpp_servers_and_the_client_certificate_request(estate):
    checks, _document, _junit, out = estate.verify('-e', 'xmpp_firewall_verify_probe=protocol')
    assert failed_checks(checks) == [], out
    assert checks[('xmpp-s2s-inbound', 'row', 'vantage1', EDGE_EXT6, 5269)]['service'] == 'xmpp-stream'
    assert checks[('xmpp-s2s-outbound', 'row', 'edge1', PARTNER4, 5269)]['service'] == 'xmpp-stream'
    assert checks[('xmpp-gateway-internal', 'row', 'fe1', EDGE_INT4, 23456)]['service'] == 'client-certificate-requested'

    # A bare TCP listener instead of the MTLS endpoint: the port is open, but the protocol probe fails it.
    estate.stop_mtls()
    try:
        estate.ns['edge1'].listen(EDGE_INT4, [23456], seconds=60)
        checks, _document, _junit, out = estate.verify('-e', 'xmpp_firewall_verify_probe=protocol', expect_rc=2)
        check = checks[('xmpp-gateway-internal', 'row', 'fe1', EDGE_INT4, 23456)]
        assert (check['observed'], check['service'], check['ok']) == ('open', 'no-client-certificate-request', False)
        assert failed_checks(checks) == [('xmpp-gateway-internal', 'row', 'fe1', EDGE_INT4, 23456)], out
        # The TCP probe is content with the bare listener.
        checks, _document, _junit, out = estate.verify()
        assert failed_checks(checks) == [], out
    finally:
        for proc in list(estate.ns['edge1']._processes[-1:]):
            proc.kill()
            proc.wait()
            estate.ns['edge1']._processes.remove(proc)
        estate.start_mtls()


def test_an_unreachable_source_fails_its_checks(estate):
    # The Front End's interpreter is gone: its checks are not run, and verify fails naming them.
    out = estate.playbook('verify', '-e', 'xmpp_firewall_verify_vantage=vantage1',
                          '-e', '{"xmpp_firewall_verify_partner": ["%s", "%s"]}' % (PARTNER4, PARTNER6),
                          '-e', 'xmpp_firewall_verify_timeout=2', '-e', 'ansible_python_interpreter=/nonexistent/python3',
                          expect_rc=2)
    assert 'not-run' in out and 'the probe on' in out


def test_a_windows_source_that_fails_reports_its_checks_as_not_run(estate):
    # A Windows Front End beside the Linux one (its probe is PowerShell, which cannot run here): verify goes on
    # with every other source and fails, naming the Windows host's checks as not run.
    inventory = os.path.join(estate.workdir, 'with-windows.yml')
    with open(estate.inventory) as handle:
        text = handle.read()
    indent = re.search(r'\n( +)fe1:', text).group(1)
    text = text.replace('\n%sfe1:' % indent, '\n%swin1: {xmpp_firewall_platform: windows, lync_internal_ip: 198.51.100.201}'
                        '\n%sfe1:' % (indent, indent))
    assert 'win1' in text
    with open(inventory, 'w') as handle:
        handle.write(text)
    report = os.path.join(estate.workdir, 'with-windows.json')
    proc = subprocess.run([os.path.join(VENV_BIN, 'ansible-playbook'), '-i', inventory, 'lync.xmpp_federation.verify',
                           '-e', 'xmpp_firewall_verify_vantage=vantage1', '-e', 'xmpp_firewall_verify_timeout=2',
                           '-e', '{"xmpp_firewall_verify_partner": ["%s", "%s"]}' % (PARTNER4, PARTNER6),
                           '-e', 'xmpp_firewall_verify_report=' + report],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          env=ansible_env(), cwd=REPO, timeout=300, check=False)
    assert proc.returncode == 2, proc.stdout
    with open(report) as handle:
        checks = json.load(handle)['checks']
    failed = [(check['from'], check['observed']) for check in checks if check['ok'] is False]
    assert failed and set(failed) == set([('win1', 'not-run')]), proc.stdout
    assert all(check['detail'].startswith('the probe on win1 failed') for check in checks if check['from'] == 'win1')
    assert [check['observed'] for check in checks if check['from'] == 'fe1' and check['kind'] == 'row'] == ['open']


def test_hosts_that_disagree_on_the_estate_s_settings_fail_verify_before_any_probe(estate):
    # Partner networks set on the Edge only: the flows of the estate would depend on which host verify read them
    # from, so it refuses, naming the variable and the host, as plan does.
    inventory = os.path.join(estate.workdir, 'disagreeing.yml')
    with open(estate.inventory) as handle:
        text = handle.read()
    indent = re.search(r'\n( +)ansible_python_interpreter: .*\n( +)lync_edge_external_ip', text).group(2)
    text = text.replace('\n%slync_edge_external_ip' % indent,
                        '\n%sxmpp_firewall_partner_networks: [%s/32]\n%slync_edge_external_ip' % (indent, VANTAGE4, indent))
    with open(inventory, 'w') as handle:
        handle.write(text)
    proc = subprocess.run([os.path.join(VENV_BIN, 'ansible-playbook'), '-i', inventory, 'lync.xmpp_federation.verify',
                           '-e', 'xmpp_firewall_verify_vantage=vantage1'],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          env=ansible_env(), cwd=REPO, timeout=300, check=False)
    assert proc.returncode == 2, proc.stdout
    assert 'must agree on the settings' in proc.stdout and 'Differing from edge1: xmpp_firewall_partner_networks on fe1' in proc.stdout, proc.stdout
    assert 'flow_probe' not in proc.stdout
