# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The module's main(), the way ansible runs it, on a host served from recorded nftables output.

The host answers ``nft -j list ruleset`` and ``nft -a list ruleset`` with one recorded stage of
module_utils/fixtures/nftables (record.sh there), and accepts every transaction.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import errno
import json
import os

import pytest

from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core before 2.19 reads the arguments from basic._ANSIBLE_ARGS
    @contextlib.contextmanager
    def patch_module_args(args):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(basic, '_ANSIBLE_ARGS', to_bytes(json.dumps({'ANSIBLE_MODULE_ARGS': args})))
            yield

from ansible_collections.lync.xmpp_federation.plugins.module_utils import backend as backend_module
from ansible_collections.lync.xmpp_federation.plugins.module_utils import detect
from ansible_collections.lync.xmpp_federation.plugins.module_utils.backend import hold_host_lock
from ansible_collections.lync.xmpp_federation.plugins.modules import firewall_ruleset

FIXTURES = os.path.join(os.path.dirname(__file__), '..', 'module_utils', 'fixtures', 'nftables')
NFT = '/usr/sbin/nft'
LIST_JSON = [NFT, '-j', 'list', 'ruleset']
LIST_TEXT = [NFT, '-a', 'list', 'ruleset']


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


RULES = json.loads(fixture('rules.json'))


class Finished(Exception):
    def __init__(self, result):
        super(Finished, self).__init__(result.get('msg'))
        self.result = result


@pytest.fixture
def host(tmp_path, monkeypatch):
    """Patch AnsibleModule onto a recorded host: state['stage'] says which, state['calls'] gets the commands run,
    state['warnings'] what the module warned, and state['failing'] maps a listing command (as a tuple) to the
    (rc, out, err) it gives instead."""
    state = {'stage': 'applied', 'calls': [], 'warnings': [], 'failing': {}}

    def run_command(self, argv, data=None, binary_data=False, **kwargs):
        state['calls'].append(argv)
        if tuple(argv) in state['failing']:
            return state['failing'][tuple(argv)]
        if argv == LIST_JSON:
            return 0, fixture(state['stage'] + '.json'), ''
        if argv == LIST_TEXT:
            return 0, fixture(state['stage'] + '.txt'), ''
        if argv[:2] in ([NFT, '-c'], [NFT, '-f']):
            return 0, '', ''
        raise AssertionError('unexpected command %r' % (argv,))

    def warn(self, warning):
        state['warnings'].append(warning)

    def get_bin_path(self, name, required=False, opt_dirs=None):
        return NFT if name == 'nft' else None

    def exit_json(self, **result):
        raise Finished(dict(result, failed=False))

    def fail_json(self, **result):
        raise Finished(dict(result, failed=True))

    monkeypatch.setattr(basic.AnsibleModule, 'run_command', run_command)
    monkeypatch.setattr(basic.AnsibleModule, 'get_bin_path', get_bin_path)
    monkeypatch.setattr(basic.AnsibleModule, 'exit_json', exit_json)
    monkeypatch.setattr(basic.AnsibleModule, 'fail_json', fail_json)
    monkeypatch.setattr(basic.AnsibleModule, 'warn', warn)
    proc = tmp_path / 'proc'
    (proc / 'net').mkdir(parents=True)
    monkeypatch.setattr(detect, 'PATHS', {'legacy_tables': (str(proc / 'net' / 'ip_tables_names'),),
                                          'ufw_config': str(tmp_path / 'ufw.conf'), 'proc': str(proc)})
    return state


def run(args, check=False, diff=False):
    args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    with patch_module_args(args):
        with pytest.raises(Finished) as finished:
            firewall_ruleset.main()
    return finished.value.result


def test_a_converged_host_is_unchanged(host):
    result = run({'rules': RULES, 'persist': False}, diff=True)
    assert not result['failed'] and not result['changed'] and result['script'] == ''
    assert result['backend'] == 'nftables' and [rule['name'] for rule in result['rules']] == sorted(
        rule['name'] for rule in RULES)
    assert result['diff']['before'] == result['diff']['after']
    # One read: the JSON for detection and the backend, the text listing for our marks.
    assert host['calls'] == [LIST_JSON, LIST_TEXT] and host['warnings'] == []


def test_diff_mode_shows_before_and_after_one_rule_a_line(host):
    changed = [dict(rule, ports=[5270]) if rule['name'] == 'xmpp-s2s-outbound' else rule for rule in RULES]
    result = run({'rules': changed, 'persist': False}, diff=True)
    assert result['changed'] and 'flush chain inet filter lync_xmpp_out' in result['script']
    before, after = result['diff']['before'].splitlines(), result['diff']['after'].splitlines()
    assert 'xmpp-s2s-outbound: out tcp 5269 from any to any accept' in before
    assert 'xmpp-s2s-outbound: out tcp 5270 from any to any accept' in after
    assert 'edge-dnat: forward tcp 5269 from any to 198.51.100.1/32 accept dnat to 198.51.100.66' in after
    assert set(before) ^ set(after) == set(['xmpp-s2s-outbound: out tcp 5269 from any to any accept',
                                            'xmpp-s2s-outbound: out tcp 5270 from any to any accept'])
    assert [call[:2] for call in host['calls']] == [[NFT, '-j'], [NFT, '-a'], [NFT, '-c'], [NFT, '-f']]


def test_check_mode_reports_the_change_and_runs_nothing_that_writes(host):
    host['stage'] = 'admin'
    result = run({'rules': RULES, 'persist': False}, check=True)
    assert result['changed'] and result['script']
    assert host['calls'] == [LIST_JSON]


def test_bad_input_fails_naming_the_rule_and_field_before_the_host_is_read(host):
    bad = RULES + [{'name': 'bad-port', 'direction': 'in', 'ports': [70000]}]
    result = run({'rules': bad})
    assert result['failed'] and "rules[9] (bad-port): field 'ports'" in result['msg'] and '70000' in result['msg']
    assert host['calls'] == []


def test_a_backend_error_is_a_failure_with_its_message(host):
    host['stage'] = 'admin'
    result = run({'rules': RULES, 'persist': False, 'backend': 'ufw'})
    assert result['failed'] and 'ufw does not run this host' in result['msg']


def test_absent_with_persistence_names_the_files(host, tmp_path):
    main_config, our_file = tmp_path / 'nftables.conf', tmp_path / 'lync.nft'
    main_config.write_text('flush ruleset\n')
    result = run({'state': 'absent', 'nft_main_config': str(main_config), 'nft_persist_file': str(our_file)})
    assert result['changed'] and result['rules'] == []
    assert result['persistence_files'] == [str(our_file), str(main_config)]
    assert main_config.read_text() == 'flush ruleset\n' and not result['persisted']


def test_rules_are_required_with_state_present(host):
    result = run({'persist': False})
    assert result['failed'] and 'state is present but all of the following are missing: rules' in result['msg']
    assert host['calls'] == [], 'a forgotten variable never removes rules'
    # rules: null (left empty, or a variable that is null) is no list either.
    result = run({'rules': None, 'persist': False})
    assert result['failed'] and not result['changed']
    assert result['msg'] == ("rules: null with state=present; give the host's rules, or rules: [] to remove "
                             'everything of ours')
    assert host['calls'] == []


def test_an_explicit_empty_list_removes_everything_of_ours(host):
    result = run({'rules': [], 'persist': False})
    assert not result['failed'] and result['changed'] and result['rules'] == []
    assert 'delete table inet lync_xmpp' in result['script']
    assert [call[:2] for call in host['calls']] == [[NFT, '-j'], [NFT, '-a'], [NFT, '-c'], [NFT, '-f']]
    # Absent needs no rules.
    host['calls'][:] = []
    assert run({'state': 'absent', 'persist': False})['changed']


@pytest.mark.parametrize('args', [{'rules': RULES}, {'rules': []}, {'state': 'absent'}])
def test_a_host_that_cannot_be_read_fails_every_run_never_ok(host, args):
    host['failing'][tuple(LIST_JSON)] = (1, '', 'netlink: Error: cannot open socket: Operation not permitted\n')
    result = run(dict(args, persist=False))
    assert result['failed'] and not result['changed']
    assert result['msg'].startswith('nft -j list ruleset failed (1): netlink: Error: cannot open socket')
    assert host['calls'] == [LIST_JSON]
    # The same when only the text listing (our marks) cannot be read.
    host['failing'] = {tuple(LIST_TEXT): (1, '', 'Error: out of memory\n')}
    host['calls'][:] = []
    result = run(dict(args, persist=False))
    assert result['failed'] and not result['changed']
    assert result['msg'] == 'nftables: nft -a list ruleset failed (1): Error: out of memory; nothing was changed'
    assert host['calls'] == [LIST_JSON, LIST_TEXT]


def test_foreign_content_in_ours_fails_naming_it_and_changes_nothing(host):
    host['stage'] = 'tainted'
    result = run({'rules': RULES, 'persist': False})
    assert result['failed'] and not result['changed']
    assert result['msg'].startswith('nftables: refusing to run, nothing was changed: ')
    assert 'table inet filter, chain lync_xmpp_out: holds a rule that is not ours (oifname "eth0" accept)' \
        in result['msg']
    assert host['calls'] == [LIST_JSON, LIST_TEXT]


def test_warnings_reach_the_user(host):
    # Chains named like ours that the rules do not need are left alone, and said.
    host['stage'] = 'namesake'
    without_in = [rule for rule in RULES if rule['direction'] != 'in']
    result = run({'rules': without_in, 'persist': False})
    assert not result['failed'] and result['changed']
    assert host['warnings'] == [
        'nftables: left alone: table inet filter, chain lync_xmpp_in is named like ours but lacks our mark '
        '(comment "lync-xmpp-federation"); its rules: tcp dport 8443 accept comment "admin: web console"',
        'nftables: left alone: table ip egress, chain lync_xmpp_out is named like ours but lacks our mark '
        '(comment "lync-xmpp-federation"); its rules: tcp dport 25 drop comment "admin: no direct mail"']
    # A rule of ours edited by hand into a form we never write is rewritten, and said.
    host['stage'], host['warnings'][:] = 'messy', []
    result = run({'rules': RULES, 'persist': False})
    assert result['changed'] and host['warnings'] == [
        'nftables: chain inet filter lync_xmpp_out holds a rule not in a form we write (oifname "eth0" counter '
        'packets 0 bytes 0 accept comment "lync-xmpp:xmpp-s2s-outbound: by hand") (rewritten by this run)']


def test_persistence_failing_after_the_apply_is_failed_and_changed(host, tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    monkeypatch.setattr(backend_module.tempfile, 'mkstemp', read_only)
    host['stage'] = 'admin'
    main_config, our_file = tmp_path / 'nftables.conf', tmp_path / 'lync.nft'
    result = run({'rules': RULES, 'nft_main_config': str(main_config), 'nft_persist_file': str(our_file)})
    assert result['failed'] and result['changed'] is True
    assert result['msg'] == ('nftables: the new rules are in force now, but will not survive a reboot or a reload of '
                             'the firewall: persisting them failed: cannot write %s: Read-only file system' % our_file)
    assert [call[:2] for call in host['calls']] == [[NFT, '-j'], [NFT, '-c'], [NFT, '-f']]
    # Nothing applied, persistence failing: failed, and not changed.
    host['stage'] = 'applied'
    result = run({'rules': RULES, 'nft_main_config': str(main_config), 'nft_persist_file': str(our_file)})
    assert result['failed'] and result['changed'] is False
    assert 'the live rules are as wanted and were not changed' in result['msg']


def test_a_comment_too_long_in_bytes_fails_before_the_host_is_read(host):
    long_comment = [{'name': 'r', 'direction': 'in', 'ports': [5269], 'comment': u'\u00e9' * 100}]
    result = run({'rules': long_comment, 'persist': False})
    assert result['failed'] and not result['changed']
    assert "rule 'r': field 'comment'" in result['msg']
    assert 'more than the 128 bytes nftables takes: shorten it by 85 bytes' in result['msg']
    assert host['calls'] == [LIST_JSON], 'only detection, which must know the backend and its limit'


def test_the_host_lock_is_free_when_a_run_ends(host, private_host_lock):
    # A run holds the one host lock from detection to its end: however it ends, the next run may go on.
    assert not run({'rules': RULES, 'persist': False})['failed']
    hold_host_lock(private_host_lock, timeout=0.1).close()
    assert run({'rules': RULES, 'persist': False, 'backend': 'ufw'})['failed'], 'refused by detection'
    hold_host_lock(private_host_lock, timeout=0.1).close()
    host['stage'] = 'tainted'
    assert run({'rules': RULES, 'persist': False})['failed'], 'refused by the backend'
    hold_host_lock(private_host_lock, timeout=0.1).close()
