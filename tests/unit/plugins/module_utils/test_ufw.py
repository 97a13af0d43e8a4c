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
import subprocess

import pytest

from ansible_collections.lync.xmpp_federation.plugins.module_utils.backend import (
    BackendError,
    OwnershipError,
    converge,
)
from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import normalize_rules
from ansible_collections.lync.xmpp_federation.plugins.module_utils.ufw import UfwBackend, init_block

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


def test_what_ufw_cannot_do_is_refused_before_anything_is_read(tmp_path):
    host = RecordedUfwHost('admin')
    with pytest.raises(BackendError, match='ufw: base_chains does not apply'):
        converge(backend_for(host, tmp_path, ufw_files(tmp_path, 'admin'), base_chains={'in': 'INPUT'}), [],
                 'present', True, False)
    assert host.calls == []


# -- translations: our nat chains in before.rules, their jumps hung by our block in before.init ----------------

NAT_RULES = normalize_rules([
    {'name': 'edge-in-dnat', 'direction': 'forward', 'ports': [5269], 'destination': ['198.51.100.62'],
     'nat': 'dnat', 'nat_to': '198.51.100.10'},
    {'name': 'edge-out-snat', 'direction': 'forward', 'ports': [5269], 'source': ['198.51.100.10'],
     'nat': 'snat', 'nat_to': '198.51.100.62'},
])
STOCK_BEFORE_INIT = '''#!/bin/sh
#
# before.init: if executable, called by ufw-init. See 'man ufw-framework' for
#              details.
set -e

case "$1" in
start)
    # typically required
    ;;
stop)
    # typically required
    ;;
status)
    # optional
    ;;
flush-all)
    # optional
    ;;
*)
    echo "'$1' not supported"
    echo "Usage: before.init {start|stop|flush-all|status}"
    ;;
esac
'''


def nat_backend(host, tmp_path, files, init_text=STOCK_BEFORE_INIT, mode=0o640):
    backend = backend_for(host, tmp_path, files, ipset_save_file=str(tmp_path / 'ipsets'))
    backend.before_init_path = str(tmp_path / 'before.init')
    if init_text is not None:
        (tmp_path / 'before.init').write_text(init_text)
        os.chmod(backend.before_init_path, mode)
    return backend


def persist_fresh(tmp_path, files, rules, **init):
    """Persist ``rules`` with a backend of a new run (before.init as found: ``init`` writes it first)."""
    backend = nat_backend(RecordedUfwHost('admin'), tmp_path, files, **dict({'init_text': None}, **init))
    backend.before_init = None
    return backend.persist(rules, False)


def init_runs_clean(path):
    """sh parses the file (ufw runs it with the shell of its #! line)."""
    assert subprocess.call(['sh', '-n', path]) == 0


def test_translations_go_live_at_the_top_of_the_nat_chains_and_persist_in_before_rules_and_before_init(tmp_path):
    host = RecordedUfwHost('admin')
    files = ufw_files(tmp_path, 'admin')
    result = converge(nat_backend(host, tmp_path, files), NAT_RULES, 'present', True, False)
    assert result['changed'] and result['persisted']
    script = result['script']
    assert '-I PREROUTING 1 -m comment --comment lync-xmpp-federation -j LYNC-XMPP-DNAT' in script
    assert '-I POSTROUTING 1 -m comment --comment lync-xmpp-federation -j LYNC-XMPP-SNAT' in script
    # before.rules declares and fills our nat chains (ufw's start flushes and refills them) but holds no jump
    # into a built-in chain, which every reload would add again.
    rules = files['ipv4'].read_text()
    nat = rules[rules.index('*nat'):]
    assert ':LYNC-XMPP-DNAT - [0:0]' in nat and '-A LYNC-XMPP-DNAT -d 198.51.100.62/32 -p tcp' in nat
    assert '-j DNAT --to-destination 198.51.100.10' in nat and 'PREROUTING' not in nat
    assert rules.startswith(fixture('admin-before.rules')), "ufw's own lines stay as they were"
    init = (tmp_path / 'before.init').read_text()
    assert init.startswith('#!/bin/sh\n# >>> lync-xmpp-federation') and init.endswith(STOCK_BEFORE_INIT[10:])
    assert ('iptables -w -t nat -C PREROUTING -m comment --comment lync-xmpp-federation -j LYNC-XMPP-DNAT '
            '2>/dev/null || iptables -w -t nat -I PREROUTING 1 -m comment --comment lync-xmpp-federation '
            '-j LYNC-XMPP-DNAT || return 1') in init
    assert 'while iptables -w -t nat -D POSTROUTING -m comment --comment lync-xmpp-federation -j LYNC-XMPP-SNAT' \
        in init and 'ip6tables ' not in init and 'ipset -exist' not in init
    # The stock file does nothing else, so it is made executable for ufw to run it; its mode is kept in the block.
    assert os.stat(str(tmp_path / 'before.init')).st_mode & 0o777 == 0o750 and '# lync-xmpp-federation: mode before 0640' in init
    init_runs_clean(str(tmp_path / 'before.init'))
    assert str(tmp_path / 'before.init') in result['persistence_files']


def test_a_second_run_leaves_before_init_alone_and_removal_gives_it_back_byte_for_byte_with_its_mode(tmp_path):
    files = ufw_files(tmp_path, 'admin')
    assert persist_fresh(tmp_path, files, NAT_RULES, init_text=STOCK_BEFORE_INIT, mode=0o640)
    applied = (tmp_path / 'before.init').read_text()
    assert not persist_fresh(tmp_path, files, NAT_RULES)
    assert (tmp_path / 'before.init').read_text() == applied
    # Rules without translations need no block: it goes, and so does the executable bit it brought.
    assert persist_fresh(tmp_path, files, RULES)
    assert (tmp_path / 'before.init').read_text() == STOCK_BEFORE_INIT
    assert os.stat(str(tmp_path / 'before.init')).st_mode & 0o777 == 0o640
    assert files['ipv4'].read_text() == fixture('applied-before.rules')
    assert persist_fresh(tmp_path, files, None)
    assert files['ipv4'].read_text() == fixture('admin-before.rules')


def test_an_executable_before_init_of_the_admins_keeps_its_commands_and_mode_and_a_missing_one_is_ours(tmp_path):
    files = ufw_files(tmp_path, 'admin')
    own = '#!/bin/sh\nlogger ufw "$1"\n'
    assert persist_fresh(tmp_path, files, NAT_RULES, init_text=own, mode=0o700)
    text = (tmp_path / 'before.init').read_text()
    assert text.endswith('# <<< lync-xmpp-federation\nlogger ufw "$1"\n') and 'mode before' not in text
    assert os.stat(str(tmp_path / 'before.init')).st_mode & 0o777 == 0o700
    assert persist_fresh(tmp_path, files, None)
    assert (tmp_path / 'before.init').read_text() == own
    os.unlink(str(tmp_path / 'before.init'))
    assert persist_fresh(tmp_path, files, NAT_RULES)
    assert os.stat(str(tmp_path / 'before.init')).st_mode & 0o777 == 0o750
    init_runs_clean(str(tmp_path / 'before.init'))
    assert persist_fresh(tmp_path, files, None)
    assert not (tmp_path / 'before.init').exists()


@pytest.mark.parametrize('init_text, mode, message', [
    ('#!/bin/sh\nmodprobe nf_conntrack_ftp\n', 0o640,
     r'before.init is not executable, so ufw does not run it, and it holds commands of its own \(modprobe '),
    (STOCK_BEFORE_INIT + '# >>> lync-xmpp-federation: managed by lync.xmpp_federation.firewall_ruleset; do not '
     'edit this block\nlync_xmpp_federation "$1"\n', 0o750, 'holds 1 begin and 0 end lines of our block'),
])
def test_a_before_init_our_block_cannot_go_into_safely_is_refused_and_nothing_changes(
        tmp_path, init_text, mode, message):
    host = RecordedUfwHost('admin')
    files = ufw_files(tmp_path, 'admin')
    with pytest.raises(OwnershipError, match='ufw: refusing to run, nothing was changed: .*' + message):
        converge(nat_backend(host, tmp_path, files, init_text=init_text, mode=mode), NAT_RULES, 'present', True,
                 False)
    assert host.restores() == [] and (tmp_path / 'before.init').read_text() == init_text
    assert files['ipv4'].read_text() == fixture('admin-before.rules')


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


def test_an_admins_own_nat_section_in_before_rules_keeps_its_lines_and_gets_ours_beside_them(tmp_path):
    # The masquerade recipe ufw's documentation gives: a *nat section at the top of before.rules.
    masquerade = ('# NAT of the admin\n*nat\n:POSTROUTING ACCEPT [0:0]\n'
                  '-A POSTROUTING -s 198.51.100.192/26 -o eth0 -j MASQUERADE\nCOMMIT\n\n')
    files = ufw_files(tmp_path, 'admin')
    files['ipv4'].write_text(masquerade + fixture('admin-before.rules'))
    assert persist_fresh(tmp_path, files, NAT_RULES, init_text=STOCK_BEFORE_INIT, mode=0o640)
    text = files['ipv4'].read_text()
    nat = text[:text.index('COMMIT')]
    assert nat.index(':POSTROUTING ACCEPT') < nat.index(':LYNC-XMPP-DNAT - [0:0]') < nat.index(
        '-A POSTROUTING -s 198.51.100.192/26 -o eth0 -j MASQUERADE') < nat.index('-A LYNC-XMPP-DNAT ')
    assert text.count('*nat') == 1 and '-j LYNC-XMPP-SNAT' not in text
    assert persist_fresh(tmp_path, files, None)
    assert files['ipv4'].read_text() == masquerade + fixture('admin-before.rules')


def test_a_before_init_without_a_last_newline_is_given_back_as_it_was(tmp_path):
    files = ufw_files(tmp_path, 'admin')
    own = '#!/bin/sh\nlogger ufw "$1"'
    assert persist_fresh(tmp_path, files, NAT_RULES, init_text=own, mode=0o750)
    init_runs_clean(str(tmp_path / 'before.init'))
    assert persist_fresh(tmp_path, files, None)
    assert (tmp_path / 'before.init').read_text() == own


def test_the_ipset_file_named_in_before_init_is_one_shell_word_whatever_its_name():
    block = init_block([], '/etc/ufw/x $(touch /tmp/owned) `id`;.ipsets', None)
    assert "ipset -exist restore < '/etc/ufw/x $(touch /tmp/owned) `id`;.ipsets' || return 1" in block


def test_a_before_init_that_lost_its_executable_bit_gets_it_back_only_where_nothing_else_would_run(tmp_path):
    files = ufw_files(tmp_path, 'admin')
    path = str(tmp_path / 'before.init')
    assert persist_fresh(tmp_path, files, NAT_RULES, init_text=STOCK_BEFORE_INIT, mode=0o640)
    applied = (tmp_path / 'before.init').read_text()
    os.chmod(path, 0o640)
    assert persist_fresh(tmp_path, files, NAT_RULES)
    assert os.stat(path).st_mode & 0o777 == 0o750 and (tmp_path / 'before.init').read_text() == applied
    assert persist_fresh(tmp_path, files, None)
    assert (tmp_path / 'before.init').read_text() == STOCK_BEFORE_INIT and os.stat(path).st_mode & 0o777 == 0o640
    # The admin's own commands beside our block, the file no longer executable: refused, nothing changed.
    own = '#!/bin/sh\nmodprobe nf_conntrack_ftp\n'
    assert persist_fresh(tmp_path, files, NAT_RULES, init_text=own, mode=0o750)
    with_block = (tmp_path / 'before.init').read_text()
    os.chmod(path, 0o640)
    host = RecordedUfwHost('admin')
    with pytest.raises(OwnershipError, match='before.init is not executable, so ufw does not run it'):
        converge(nat_backend(host, tmp_path, files, init_text=None), NAT_RULES, 'present', True, False)
    assert host.restores() == [] and (tmp_path / 'before.init').read_text() == with_block
