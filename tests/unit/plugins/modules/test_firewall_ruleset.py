# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The module's main(), the way ansible runs it, on a host served from recorded nftables output."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
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

from ansible_collections.lync.xmpp_federation.plugins.module_utils import detect
from ansible_collections.lync.xmpp_federation.plugins.module_utils.nftables import NftablesBackend
from ansible_collections.lync.xmpp_federation.plugins.modules import firewall_ruleset

FIXTURES = os.path.join(os.path.dirname(__file__), '..', 'module_utils', 'fixtures', 'nftables')
NFT = '/usr/sbin/nft'


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
    """Patch AnsibleModule onto a recorded host; returns the list of commands run."""
    state = {'ruleset': fixture('applied.json'), 'calls': []}

    def run_command(self, argv, data=None, binary_data=False, **kwargs):
        state['calls'].append(argv)
        if argv == [NFT, '-j', 'list', 'ruleset']:
            return 0, state['ruleset'], ''
        if argv[:2] in ([NFT, '-c'], [NFT, '-f']):
            return 0, '', ''
        raise AssertionError('unexpected command %r' % (argv,))

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
    monkeypatch.setattr(NftablesBackend, 'lock_path', str(tmp_path / 'lock'))
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
    assert host['calls'] == [[NFT, '-j', 'list', 'ruleset']]


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
    assert [call[:2] for call in host['calls']] == [[NFT, '-j'], [NFT, '-c'], [NFT, '-f']]


def test_check_mode_reports_the_change_and_runs_nothing_that_writes(host):
    host['ruleset'] = fixture('admin.json')
    result = run({'rules': RULES, 'persist': False}, check=True)
    assert result['changed'] and result['script']
    assert host['calls'] == [[NFT, '-j', 'list', 'ruleset']]


def test_bad_input_fails_naming_the_rule_and_field_before_the_host_is_read(host):
    bad = RULES + [{'name': 'bad-port', 'direction': 'in', 'ports': [70000]}]
    result = run({'rules': bad})
    assert result['failed'] and "rules[9] (bad-port): field 'ports'" in result['msg'] and '70000' in result['msg']
    assert host['calls'] == []


def test_a_backend_error_is_a_failure_with_its_message(host):
    host['ruleset'] = fixture('admin.json')
    result = run({'rules': RULES, 'persist': False, 'backend': 'ufw'})
    assert result['failed'] and 'ufw does not run this host' in result['msg']


def test_absent_with_persistence_names_the_files(host, tmp_path):
    main_config, our_file = tmp_path / 'nftables.conf', tmp_path / 'lync.nft'
    main_config.write_text('flush ruleset\n')
    result = run({'state': 'absent', 'nft_main_config': str(main_config), 'nft_persist_file': str(our_file)})
    assert result['changed'] and result['rules'] == []
    assert result['persistence_files'] == [str(our_file), str(main_config)]
    assert main_config.read_text() == 'flush ruleset\n' and not result['persisted']
