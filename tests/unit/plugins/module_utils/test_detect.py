# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Backend detection against rulesets recorded from real kernels (fixtures/nftables/record.sh).

The host is the recorded ``nft -j list ruleset`` (and ``nft -a list ruleset``) output plus files standing in
for /proc/net/ip_tables_names, /etc/ufw/ufw.conf and /proc, whose processes have their network namespace as
the ``ns/net`` symbolic link the kernel gives them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest
import yaml

from ansible_collections.lync.xmpp_federation.plugins.module_utils import detect
from ansible_collections.lync.xmpp_federation.plugins.module_utils.backend import BackendError, hold_host_lock
from ansible_collections.lync.xmpp_federation.plugins.module_utils.firewalld import FirewalldBackend
from ansible_collections.lync.xmpp_federation.plugins.module_utils.ufw import UfwBackend
from ansible_collections.lync.xmpp_federation.plugins.module_utils.iptables import IptablesBackend
from ansible_collections.lync.xmpp_federation.plugins.module_utils.nftables import NftablesBackend
from ansible_collections.lync.xmpp_federation.plugins.modules import firewall_ruleset

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'nftables')
EMPTY = '{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}]}'
NFT = '/usr/sbin/nft'
# Network namespaces as /proc/PID/ns/net names them.
OURS = 'net:[4026531840]'
A_CONTAINERS = 'net:[4026532419]'


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


class Host(object):
    """A host for detection: which commands exist, what nft lists, what ``iptables -V`` says.

    ``processes`` are command lines, each run in our network namespace, or (command line, namespace); None as
    the namespace leaves its link out (a process whose namespace cannot be read). ``namespace`` is the module's
    own (None: /proc without namespace links, as in an old kernel).
    """

    def __init__(self, tmp_path, ruleset=EMPTY, binaries=('nft', 'iptables'), iptables_version='v1.8.9 (nf_tables)',
                 legacy_tables='', ufw_config='ENABLED=no\n', processes=(), namespace=OURS, listing=None,
                 nft_result=None):
        self.ruleset, self.binaries, self.iptables_version = ruleset, set(binaries), iptables_version
        self.listing, self.nft_result = listing, nft_result
        self.calls = []
        proc = tmp_path / 'proc'
        (proc / 'net').mkdir(parents=True)
        (proc / 'net' / 'ip_tables_names').write_text(legacy_tables)
        (proc / 'net' / 'ip6_tables_names').write_text('')
        for pid, process in enumerate(processes, 100):
            command, process_namespace = process if isinstance(process, tuple) else (process, namespace)
            (proc / str(pid)).mkdir()
            (proc / str(pid) / 'cmdline').write_text('\0'.join(command) + '\0')
            if process_namespace:
                (proc / str(pid) / 'ns').mkdir()
                os.symlink(process_namespace, str(proc / str(pid) / 'ns' / 'net'))
        (proc / 'self').mkdir()
        if namespace:
            (proc / 'self' / 'ns').mkdir()
            os.symlink(namespace, str(proc / 'self' / 'ns' / 'net'))
        (tmp_path / 'ufw.conf').write_text(ufw_config)
        # The host lock of this host's own: a backend holds it until it is dropped.
        self.lock = str(tmp_path / 'host.lock')
        self.paths = {
            'legacy_tables': (str(proc / 'net' / 'ip_tables_names'), str(proc / 'net' / 'ip6_tables_names')),
            'ufw_config': str(tmp_path / 'ufw.conf'),
            'proc': str(proc),
        }

    def get_bin_path(self, name, required=False, opt_dirs=None):
        return '/usr/sbin/' + name if name in self.binaries else None

    def run_command(self, argv, data=None, binary_data=False):
        self.calls.append(argv)
        if argv == [NFT, '-j', 'list', 'ruleset']:
            return self.nft_result or (0, self.ruleset, '')
        if argv == [NFT, '-a', 'list', 'ruleset'] and self.listing is not None:
            return 0, self.listing, ''
        if argv == ['/usr/sbin/iptables', '-V']:
            return 0, 'iptables %s\n' % self.iptables_version, ''
        raise AssertionError('unexpected command %r' % (argv,))

    def select(self, backend='auto'):
        saved, detect.HOST_LOCK_PATH = detect.HOST_LOCK_PATH, self.lock
        try:
            return detect.select_backend(self.run_command, self.get_bin_path, {'backend': backend}, self.paths)
        finally:
            detect.HOST_LOCK_PATH = saved


@pytest.mark.parametrize('ruleset, legacy, expected', [
    ('admin', '', 'nftables'),                 # the admin's own nftables tables
    ('applied', '', 'nftables'),
    ('own-table', '', 'nftables'),             # only a table of ours: keep using nftables
    ('iptables-nft', '', 'iptables-nft'),      # tables iptables-nft made
    (None, 'filter\n', 'iptables-legacy'),     # nothing in nftables, legacy tables in the kernel
    (None, '', 'nftables'),                    # nothing anywhere: nftables where nft exists
    ('admin', 'filter\n', 'nftables'),         # the admin's nftables ruleset is what decides
])
def test_auto_uses_what_the_kernel_shows(tmp_path, ruleset, legacy, expected):
    host = Host(tmp_path, fixture(ruleset + '.json') if ruleset else EMPTY, legacy_tables=legacy,
                listing=fixture(ruleset + '.txt') if ruleset else '')
    backend = host.select()
    assert backend.name == expected
    if isinstance(backend, NftablesBackend):
        # The ruleset read for detection is the one the backend works from: one read per run (with the text
        # listing for our marks where our names appear).
        backend.read()
        marks = [[NFT, '-a', 'list', 'ruleset']] if ruleset in ('applied', 'own-table') else []
        assert host.calls == [[NFT, '-j', 'list', 'ruleset']] + marks


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
    ({'processes': [['/usr/bin/python3', '/usr/sbin/firewalld', '--nofork']]},
     'managed by firewalld (firewalld is running)'),
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


def test_a_firewalld_in_another_network_namespace_does_not_run_this_hosts_firewall(tmp_path):
    firewalld = ['/usr/bin/python3', '/usr/sbin/firewalld', '--nofork']
    # A container's firewalld (its own network namespace) manages the container's firewall, not this one.
    host = Host(tmp_path, fixture('admin.json'), processes=[(firewalld, A_CONTAINERS)])
    assert host.select().name == 'nftables'
    assert not detect.firewalld_running(host.paths)
    with pytest.raises(BackendError, match='no firewalld process in this network namespace'):
        Host(tmp_path / 'b', fixture('admin.json'), processes=[(firewalld, A_CONTAINERS)]).select('firewalld')
    # One in ours does, beside the container's.
    host = Host(tmp_path / 'c', fixture('admin.json'), processes=[(firewalld, A_CONTAINERS), (firewalld, OURS)])
    assert isinstance(host.select(), FirewalldBackend) and detect.firewalld_running(host.paths)
    # A process whose namespace cannot be read (gone, or not ours to see) is not taken for ours.
    assert not detect.firewalld_running(Host(tmp_path / 'd', processes=[(firewalld, None)]).paths)
    # Without namespace links at all, every firewalld counts, as before.
    assert detect.firewalld_running(Host(tmp_path / 'e', processes=[firewalld], namespace=None).paths)


def test_the_network_namespace_is_read_from_the_ns_link(tmp_path):
    host = Host(tmp_path, processes=[['/usr/sbin/sshd']])
    proc = host.paths['proc']
    assert detect.network_namespace(proc, 'self') == OURS and detect.network_namespace(proc, '100') == OURS
    assert detect.network_namespace(proc, '4242') is None


@pytest.mark.parametrize('backend', ['auto', 'nftables', 'firewalld', 'ufw'])
def test_a_ruleset_that_cannot_be_listed_fails_detection_naming_the_tool(tmp_path, backend):
    host = Host(tmp_path, nft_result=(1, '', 'netlink: Error: cannot open socket: Operation not permitted\n'))
    with pytest.raises(BackendError) as error:
        host.select(backend)
    assert str(error.value) == ('nft -j list ruleset failed (1): netlink: Error: cannot open socket: Operation not '
                                "permitted; cannot tell what runs this host's firewall, nothing was changed")


def test_explicit_iptables_does_not_need_the_nftables_listing(tmp_path):
    # The iptables backend reads its own format, and fails itself if it cannot.
    host = Host(tmp_path, nft_result=(1, '', 'Error: no nf_tables\n'), legacy_tables='filter\n')
    assert host.select('iptables').name == 'iptables-legacy'


def test_detection_holds_the_host_lock_and_hands_it_to_the_backend(tmp_path):
    host = Host(tmp_path, fixture('admin.json'))
    backend = host.select()
    assert backend._lock is not None and backend._lock.name == host.lock
    # Taken once, before the first read: the backend does not take another.
    backend.hold_lock()
    assert backend._lock.name == host.lock
    with pytest.raises(BackendError, match='still holds'):
        hold_host_lock(host.lock, timeout=0.1)


@pytest.mark.parametrize('host_options, backend', [
    ({'ruleset': 'admin.json'}, 'ufw'),                                          # refused after the read
    ({'nft_result': (1, '', 'Error: no nf_tables\n')}, 'auto'),                  # the read fails
    ({'binaries': ('iptables',)}, 'nftables'),                                  # no nft
])
def test_a_detection_that_fails_lets_the_next_run_in(tmp_path, host_options, backend):
    host = host_with(tmp_path, host_options)
    with pytest.raises(BackendError) as error:
        host.select(backend)
    # The caller still holds the error (and with it the failed call's frames); the lock is free all the same.
    assert error.value is not None
    hold_host_lock(host.lock, timeout=0.1).close()


def test_the_registry_is_what_the_module_offers_and_documents():
    assert list(detect.BACKENDS) == ['nftables', 'iptables', 'firewalld', 'ufw']
    assert detect.BACKEND_CHOICES == ('auto',) + tuple(detect.BACKENDS)
    documented = yaml.safe_load(firewall_ruleset.DOCUMENTATION)['options']['backend']
    assert tuple(documented['choices']) == detect.BACKEND_CHOICES and documented['default'] == 'auto'
    # The module's own fallback list (used only to report an import failure) is the same.
    assert tuple(firewall_ruleset.BACKEND_CHOICES) == detect.BACKEND_CHOICES
    assert [cls.__name__ for cls in detect.BACKENDS.values()] == [
        'NftablesBackend', 'IptablesBackend', 'FirewalldBackend', 'UfwBackend']
