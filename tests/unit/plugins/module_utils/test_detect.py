# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Backend detection against rulesets recorded from real kernels (fixtures/nftables/record.sh).

The host is the recorded ``nft -j list ruleset`` output plus files standing in
for /proc/net/ip_tables_names, /etc/ufw/ufw.conf and /proc.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.lync.xmpp_federation.plugins.module_utils import detect
from ansible_collections.lync.xmpp_federation.plugins.module_utils.backend import BackendError
from ansible_collections.lync.xmpp_federation.plugins.module_utils.firewalld import FirewalldBackend
from ansible_collections.lync.xmpp_federation.plugins.module_utils.ufw import UfwBackend
from ansible_collections.lync.xmpp_federation.plugins.module_utils.iptables import IptablesBackend
from ansible_collections.lync.xmpp_federation.plugins.module_utils.nftables import NftablesBackend

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'nftables')
EMPTY = '{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}]}'


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


class Host(object):
    """A host for detection: which commands exist, what nft lists, what ``iptables -V`` says."""

    def __init__(self, tmp_path, ruleset=EMPTY, binaries=('nft', 'iptables'), iptables_version='v1.8.9 (nf_tables)',
                 legacy_tables='', ufw_config='ENABLED=no\n', processes=()):
        self.ruleset, self.binaries, self.iptables_version = ruleset, set(binaries), iptables_version
        self.calls = []
        proc = tmp_path / 'proc'
        (proc / 'net').mkdir(parents=True)
        (proc / 'net' / 'ip_tables_names').write_text(legacy_tables)
        (proc / 'net' / 'ip6_tables_names').write_text('')
        for pid, command in enumerate(processes, 100):
            (proc / str(pid)).mkdir()
            (proc / str(pid) / 'cmdline').write_text('\0'.join(command) + '\0')
        (proc / 'self').mkdir()
        (tmp_path / 'ufw.conf').write_text(ufw_config)
        self.paths = {
            'legacy_tables': (str(proc / 'net' / 'ip_tables_names'), str(proc / 'net' / 'ip6_tables_names')),
            'ufw_config': str(tmp_path / 'ufw.conf'),
            'proc': str(proc),
        }

    def get_bin_path(self, name, required=False, opt_dirs=None):
        return '/usr/sbin/' + name if name in self.binaries else None

    def run_command(self, argv, data=None, binary_data=False):
        self.calls.append(argv)
        if argv == ['/usr/sbin/nft', '-j', 'list', 'ruleset']:
            return 0, self.ruleset, ''
        if argv == ['/usr/sbin/iptables', '-V']:
            return 0, 'iptables %s\n' % self.iptables_version, ''
        raise AssertionError('unexpected command %r' % (argv,))

    def select(self, backend='auto'):
        return detect.select_backend(self.run_command, self.get_bin_path, {'backend': backend}, self.paths)


@pytest.fixture(autouse=True)
def lock_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setattr(NftablesBackend, 'lock_path', str(tmp_path / 'nft.lock'))


@pytest.mark.parametrize('ruleset, legacy, expected', [
    ('admin.json', '', 'nftables'),                 # the admin's own nftables tables
    ('applied.json', '', 'nftables'),
    ('own-table.json', '', 'nftables'),             # only a table of ours: keep using nftables
    ('iptables-nft.json', '', 'iptables-nft'),      # tables iptables-nft made
    (None, 'filter\n', 'iptables-legacy'),          # nothing in nftables, legacy tables in the kernel
    (None, '', 'nftables'),                         # nothing anywhere: nftables where nft exists
    ('admin.json', 'filter\n', 'nftables'),         # the admin's nftables ruleset is what decides
])
def test_auto_uses_what_the_kernel_shows(tmp_path, ruleset, legacy, expected):
    host = Host(tmp_path, fixture(ruleset) if ruleset else EMPTY, legacy_tables=legacy)
    backend = host.select()
    assert backend.name == expected
    if isinstance(backend, NftablesBackend):
        # The ruleset read for detection is the one the backend works from: one read per run.
        backend.read()
        assert host.calls == [['/usr/sbin/nft', '-j', 'list', 'ruleset']]


def test_without_nft_auto_takes_iptables_in_the_variant_of_the_command(tmp_path):
    host = Host(tmp_path, binaries=('iptables',), iptables_version='v1.8.9 (legacy)')
    backend = host.select()
    assert isinstance(backend, IptablesBackend) and backend.name == 'iptables-legacy'
    with pytest.raises(BackendError, match='nft command was not found'):
        Host(tmp_path / 'b', binaries=('iptables',)).select('nftables')
    with pytest.raises(BackendError, match='neither nft nor iptables'):
        Host(tmp_path / 'c', binaries=()).select()


def test_explicit_iptables_follows_the_tables_in_the_kernel(tmp_path):
    assert Host(tmp_path / 'a', fixture('iptables-nft.json'), iptables_version='v1.8.9 (legacy)').select(
        'iptables').name == 'iptables-nft'
    assert Host(tmp_path / 'b', legacy_tables='filter\nnat\n').select('iptables').name == 'iptables-legacy'
    assert Host(tmp_path / 'c').select('iptables').name == 'iptables-nft'
    assert Host(tmp_path / 'd', fixture('admin.json')).select('nftables').name == 'nftables'


FIREWALLD_HOSTS = [
    ({'ruleset': 'firewalld.json'}, 'managed by firewalld (table firewalld in the ruleset)'),
    ({'processes': [['/usr/bin/python3', '/usr/sbin/firewalld', '--nofork']]}, 'managed by firewalld (firewalld is running)'),
]


def host_with(tmp_path, host_options):
    options = dict(host_options)
    if 'ruleset' in options:
        options['ruleset'] = fixture(options['ruleset'])
    return Host(tmp_path, **options)


@pytest.mark.parametrize('host_options, message', FIREWALLD_HOSTS)
def test_a_host_run_by_firewalld_gets_the_firewalld_backend_and_no_other(tmp_path, host_options, message):
    for backend in ('auto', 'firewalld'):
        assert isinstance(host_with(tmp_path / backend, host_options).select(backend), FirewalldBackend)
    for backend in ('nftables', 'iptables'):
        with pytest.raises(BackendError) as error:
            host_with(tmp_path / backend, host_options).select(backend)
        assert message in str(error.value) and 'use backend firewalld' in str(error.value)


def test_firewalld_where_it_does_not_run_is_refused(tmp_path):
    with pytest.raises(BackendError, match='firewalld does not run this host'):
        Host(tmp_path, fixture('admin.json')).select('firewalld')


@pytest.mark.parametrize('host_options, message, variant', [
    ({'ruleset': 'ufw.json'}, 'managed by ufw (ufw chains in the ruleset)', 'iptables-nft'),
    ({'ufw_config': '# /etc/ufw/ufw.conf\nENABLED=yes\nLOGLEVEL=low\n', 'legacy_tables': 'filter\n'},
     'managed by ufw (ENABLED=yes in', 'iptables-legacy'),
])
def test_a_host_run_by_ufw_gets_the_ufw_backend_and_no_other(tmp_path, host_options, message, variant):
    for backend in ('auto', 'ufw'):
        chosen = host_with(tmp_path / backend, host_options).select(backend)
        # ufw drives iptables: the variant is the one whose tables are in the kernel.
        assert isinstance(chosen, UfwBackend) and chosen.name == 'ufw' and 'iptables-' + chosen.variant == variant
    for backend in ('nftables', 'iptables', 'firewalld'):
        with pytest.raises(BackendError) as error:
            host_with(tmp_path / backend, host_options).select(backend)
        assert message in str(error.value) and 'use backend ufw' in str(error.value)


def test_ufw_where_it_does_not_run_is_refused(tmp_path):
    with pytest.raises(BackendError, match='ufw does not run this host'):
        Host(tmp_path, fixture('admin.json'), ufw_config='ENABLED=no\n').select('ufw')


def test_an_idle_firewalld_or_ufw_install_is_no_reason_to_refuse(tmp_path):
    host = Host(tmp_path, fixture('admin.json'), processes=[['/usr/bin/python3', '/usr/bin/firewall-cmd', '--state']],
                ufw_config='ENABLED=no\n')
    assert host.select().name == 'nftables'
