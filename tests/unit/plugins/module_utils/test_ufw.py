# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The ufw backend against iptables-save output and ufw rule files recorded from a real ufw host (fixtures/ufw/).

The only double is ``RecordedUfwHost``: it serves the recorded *-save output and records every command.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

import pytest

from ansible_collections.lync.xmpp_federation.plugins.module_utils.backend import (
    BackendError,
    OwnershipError,
    converge,
)
from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import normalize_rules
from ansible_collections.lync.xmpp_federation.plugins.module_utils.ufw import UfwBackend

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'ufw')
TOOLS = ('iptables-nft-save', 'ip6tables-nft-save', 'iptables-nft-restore', 'ip6tables-nft-restore')


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


with open(os.path.join(FIXTURES, 'rules.json')) as _rules:
    RULES = normalize_rules(json.load(_rules))


class RecordedUfwHost(object):
    def __init__(self, stage):
        self.saves = {'iptables-nft-save': fixture('%s.v4.save' % stage),
                      'ip6tables-nft-save': fixture('%s.v6.save' % stage)}
        self.calls = []

    def get_bin_path(self, name, required=False, opt_dirs=None):
        return '/usr/sbin/' + name if name in TOOLS else None

    def run_command(self, argv, data=None, binary_data=False):
        self.calls.append((os.path.basename(argv[0]), argv[1:], data))
        name = os.path.basename(argv[0])
        if name in self.saves:
            return 0, self.saves[name], ''
        if name.endswith('-restore'):
            return 0, '', ''
        raise AssertionError('unexpected command %r' % (argv,))

    def restores(self):
        return [(name, args, data) for name, args, data in self.calls if name.endswith('-restore')]


def ufw_files(tmp_path, stage):
    files = {'ipv4': tmp_path / 'before.rules', 'ipv6': tmp_path / 'before6.rules'}
    files['ipv4'].write_text(fixture('%s-before.rules' % stage))
    files['ipv6'].write_text(fixture('%s-before6.rules' % stage))
    return files


def backend_for(host, tmp_path, files, **options):
    backend = UfwBackend(host.run_command, host.get_bin_path,
                         dict({'iptables_save_files': dict((key, str(path)) for key, path in files.items())},
                              **options), 'nft')
    backend.lock_path = str(tmp_path / ('lock-%d' % id(backend)))
    return backend


def test_a_converged_ufw_host_is_read_once_and_left_alone(tmp_path):
    host = RecordedUfwHost('applied')
    files = ufw_files(tmp_path, 'applied')
    result = converge(backend_for(host, tmp_path, files), RULES, 'present', True, False)
    assert not result['changed'] and result['backend'] == 'ufw' and result['before'] == RULES
    assert host.restores() == [] and [name for name, _args, _data in host.calls] == list(TOOLS[:2])
    assert result['persistence_files'] == [str(files['ipv4']), str(files['ipv6'])]


def test_our_jumps_go_first_into_ufws_before_chains_of_each_family(tmp_path):
    host = RecordedUfwHost('admin')
    files = ufw_files(tmp_path, 'admin')
    result = converge(backend_for(host, tmp_path, files), RULES, 'present', False, False)
    assert result['changed']
    script = result['script']
    assert '-I ufw-before-input 1 -m comment --comment lync-xmpp-federation -j LYNC-XMPP-IN' in script
    assert '-I ufw6-before-output 1 -m comment --comment lync-xmpp-federation -j LYNC-XMPP-OUT' in script
    assert ' INPUT ' not in script and ' OUTPUT ' not in script, 'nothing of ours hangs from the built-in chains'
    # Without persistence, ufw's files are not touched.
    assert files['ipv4'].read_text() == fixture('admin-before.rules')


def test_persisting_writes_exactly_the_before_rules_the_real_run_left_and_removal_gives_them_back(tmp_path):
    files = ufw_files(tmp_path, 'admin')
    backend = backend_for(RecordedUfwHost('admin'), tmp_path, files)
    assert backend.persist(RULES, False)
    assert files['ipv4'].read_text() == fixture('applied-before.rules')
    assert files['ipv6'].read_text() == fixture('applied-before6.rules')
    assert not backend.persist(RULES, False), 'a second run changes nothing'
    assert backend.persist(None, False)
    assert files['ipv4'].read_text() == fixture('admin-before.rules')
    assert files['ipv6'].read_text() == fixture('admin-before6.rules')


def test_absent_removes_our_chains_and_jumps_and_our_lines_only(tmp_path):
    host = RecordedUfwHost('applied')
    files = ufw_files(tmp_path, 'applied')
    result = converge(backend_for(host, tmp_path, files), [], 'absent', True, False)
    assert result['changed'] and '-D ufw-before-input -m comment --comment lync-xmpp-federation -j LYNC-XMPP-IN' \
        in result['script'] and '-X LYNC-XMPP-IN' in result['script']
    assert files['ipv4'].read_text() == fixture('admin-before.rules')


@pytest.mark.parametrize('options, rules, message', [
    ({}, [{'name': 'dnat', 'direction': 'forward', 'ports': [5269], 'destination': ['198.51.100.62'], 'nat': 'dnat',
           'nat_to': '198.51.100.10'}], "ufw: rule 'dnat' translates addresses"),
    ({'base_chains': {'in': 'INPUT'}}, [], 'ufw: base_chains does not apply'),
])
def test_what_ufw_cannot_do_is_refused_before_anything_is_read(tmp_path, options, rules, message):
    host = RecordedUfwHost('admin')
    with pytest.raises(BackendError, match=message):
        converge(backend_for(host, tmp_path, ufw_files(tmp_path, 'admin'), **options), normalize_rules(rules),
                 'present', True, False)
    assert host.calls == []


def test_our_rules_are_recognised_by_their_mark_on_ufw_too(tmp_path):
    # The recording's rules of ours, without the lync-xmpp: mark on their comments, are someone else's: our
    # chains then hold foreign rules, and the run refuses, changing nothing.
    host = RecordedUfwHost('applied')
    host.saves['iptables-nft-save'] = host.saves['iptables-nft-save'].replace('--comment "lync-xmpp:', '--comment "')
    with pytest.raises(OwnershipError) as error:
        converge(backend_for(host, tmp_path, ufw_files(tmp_path, 'applied')), RULES, 'present', True, False)
    assert ('ufw: refusing to run, nothing was changed: IPv4 filter table, chain LYNC-XMPP-IN: holds a rule that is '
            'not ours: -A LYNC-XMPP-IN -d 198.51.100.34/32 -p tcp -m tcp --dport 23456 -m comment --comment '
            '"xmpp-gateway-internal-ipv4: XMPP federation row 3, Front End XMPP gateway to Edge internal" -j ACCEPT'
            ) in str(error.value)
    assert host.restores() == []
    assert (tmp_path / 'before.rules').read_text() == fixture('applied-before.rules')
