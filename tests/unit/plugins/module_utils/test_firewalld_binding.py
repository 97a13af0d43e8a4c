# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The firewalld backend through firewalld's own binding, against firewalld's answers recorded in the lab.

``RecordedBinding`` stands in for ``FirewalldApi`` (the backend's only door to
the binding): it starts from a recording (fixtures/firewalld/binding-*.json,
runtime and permanent configuration as FirewalldApi reads them from a real
firewalld 1.3.3 with fail2ban's runtime-only bans), changes it the way
firewalld does (runtime settings, permanent settings, a reload that rebuilds
the runtime from the permanent configuration), and records every call. That
the real binding does what the double does is proved in the lab (molecule
scenario firewalld).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json
import os

import pytest

from ansible_collections.lync.xmpp_federation.plugins.module_utils.backend import (
    BackendError,
    OwnershipError,
    converge,
)
from ansible_collections.lync.xmpp_federation.plugins.module_utils.firewalld import (
    POLICY_PRIORITY,
    FirewalldBackend,
    frozen,
    names_in_description,
    policy_settings,
)
from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import normalize_rules

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'firewalld')
OURS = ('lync-xmpp-fwd', 'lync-xmpp-in', 'lync-xmpp-out')
# What firewalld 1.3.3 leaves as it was when a running policy's settings are set at runtime (seen in the lab).
RUNTIME_FIXED = ('version', 'short', 'description', 'target', 'priority', 'ingress_zones', 'egress_zones')
WRITES = ('set_runtime_policy', 'set_permanent_policy', 'add_permanent_policy', 'remove_permanent_policy', 'reload',
          'restore_runtime', 'set_runtime_entries', 'set_permanent_entries', 'add_permanent_ipset',
          'remove_permanent_ipset', 'add_runtime_direct_rule', 'remove_runtime_direct_rule', 'add_permanent_direct_rule',
          'remove_permanent_direct_rule')


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


with open(os.path.join(FIXTURES, 'rules.json')) as _rules:
    RULES = normalize_rules(json.load(_rules))


def thaw_direct(snapshot):
    for kind in ('direct chains', 'direct rules', 'direct passthroughs'):
        snapshot[kind] = sorted(frozen(item) for item in snapshot[kind])
    return snapshot


class RecordedBinding(object):
    """FirewalldApi as recorded; ``fail`` maps a call's name to the error message it raises (once)."""

    def __init__(self, recording, fail=None):
        data = json.loads(fixture(recording))
        self.runtime, self.permanent = thaw_direct(data['runtime']), thaw_direct(data['permanent'])
        self.fail = dict(fail or {})
        self.calls = []
        # Our ipsets' settings besides their entries (the recordings hold entries only), by side.
        self.ipset_settings = {'runtime': {}, 'permanent': {}}

    def _call(self, name, *args):
        self.calls.append((name,) + args)
        if name in self.fail:
            raise RuntimeError(self.fail.pop(name))

    def writes(self):
        return [call[:2] for call in self.calls if call[0] in WRITES]

    # runtime
    def runtime_policy_names(self):
        self._call('runtime_policy_names')
        return sorted(self.runtime['policies'])

    def runtime_policy(self, name):
        self._call('runtime_policy', name)
        return copy.deepcopy(self.runtime['policies'][name])

    def set_runtime_policy(self, name, settings):
        self._call('set_runtime_policy', name)
        # firewalld changes at runtime all but the description, short name, version and target.
        kept = self.runtime['policies'][name]
        self.runtime['policies'][name] = dict(copy.deepcopy(settings), **dict((key, kept[key]) for key in RUNTIME_FIXED))

    def reload(self):
        self._call('reload')
        self.runtime = copy.deepcopy(self.permanent)
        self.ipset_settings['runtime'] = copy.deepcopy(self.ipset_settings['permanent'])

    # ipsets
    def _ipset(self, side, name):
        state = self.runtime if side == 'runtime' else self.permanent
        return dict(self.ipset_settings[side][name], entries=list(state['ipsets'][name]))

    def runtime_ipset_names(self):
        self._call('runtime_ipset_names')
        return sorted(self.runtime['ipsets'])

    def runtime_ipset(self, name):
        self._call('runtime_ipset', name)
        return self._ipset('runtime', name)

    def set_runtime_entries(self, name, entries):
        self._call('set_runtime_entries', name)
        self.runtime['ipsets'][name] = sorted(entries)

    def permanent_ipset_names(self):
        self._call('permanent_ipset_names')
        return sorted(self.permanent['ipsets'])

    def permanent_ipset(self, name):
        self._call('permanent_ipset', name)
        return self._ipset('permanent', name)

    def add_permanent_ipset(self, name, settings):
        self._call('add_permanent_ipset', name)
        assert name not in self.permanent['ipsets'], 'firewalld refuses NAME_CONFLICT'
        kept = ('short', 'description', 'type', 'options')
        self.ipset_settings['permanent'][name] = dict((key, settings[key]) for key in kept)
        self.permanent['ipsets'][name] = sorted(settings['entries'])

    def set_permanent_entries(self, name, entries):
        self._call('set_permanent_entries', name)
        self.permanent['ipsets'][name] = sorted(entries)

    def remove_permanent_ipset(self, name):
        self._call('remove_permanent_ipset', name)
        del self.permanent['ipsets'][name]
        del self.ipset_settings['permanent'][name]

    # permanent
    def permanent_policy_names(self):
        self._call('permanent_policy_names')
        return sorted(self.permanent['policies'])

    def permanent_policy(self, name):
        self._call('permanent_policy', name)
        return copy.deepcopy(self.permanent['policies'][name])

    def add_permanent_policy(self, name, settings):
        self._call('add_permanent_policy', name)
        assert name not in self.permanent['policies'], 'firewalld refuses NAME_CONFLICT'
        self.permanent['policies'][name] = copy.deepcopy(settings)

    def set_permanent_policy(self, name, settings):
        self._call('set_permanent_policy', name)
        self.permanent['policies'][name] = copy.deepcopy(settings)

    def remove_permanent_policy(self, name):
        self._call('remove_permanent_policy', name)
        del self.permanent['policies'][name]

    # direct rules
    def runtime_direct_rules(self):
        self._call('runtime_direct_rules')
        return list(self.runtime['direct rules'])

    def permanent_direct_rules(self):
        self._call('permanent_direct_rules')
        return list(self.permanent['direct rules'])

    def _direct(self, side, item, add):
        self._call('%s_%s_direct_rule' % ('add' if add else 'remove', side), item)
        state = self.runtime if side == 'runtime' else self.permanent
        rules = set(state['direct rules'])
        assert (item not in rules) if add else (item in rules), 'firewalld refuses ALREADY_ENABLED / NOT_ENABLED'
        state['direct rules'] = sorted(rules | set([item]) if add else rules - set([item]))

    def add_runtime_direct_rule(self, item):
        self._direct('runtime', item, True)

    def remove_runtime_direct_rule(self, item):
        self._direct('runtime', item, False)

    def add_permanent_direct_rule(self, item):
        self._direct('permanent', item, True)

    def remove_permanent_direct_rule(self, item):
        self._direct('permanent', item, False)

    # what a reload discards
    def runtime_snapshot(self, skip_policies):
        self._call('runtime_snapshot')
        snapshot = copy.deepcopy(self.runtime)
        for kind in ('policies', 'ipsets'):
            snapshot[kind] = dict((name, fields) for name, fields in snapshot[kind].items() if name not in skip_policies)
        return snapshot

    def restore_runtime(self, before, after):
        self._call('restore_runtime')
        restored = []
        for kind in ('zones', 'policies', 'ipsets'):
            for name, settings in sorted(before[kind].items()):
                if name in self.runtime[kind] and self.runtime[kind][name] != settings:
                    self.runtime[kind][name] = copy.deepcopy(settings)
                    restored.append('%s %s' % (kind[:-1].replace('ie', 'y'), name))
        for kind in ('direct chains', 'direct rules', 'direct passthroughs'):
            if self.runtime[kind] != before[kind]:
                self.runtime[kind] = list(before[kind])
                restored.append(kind)
        return restored


def backend_for(binding, tmp_path, **options):
    backend = FirewalldBackend(None, None, dict({'persist': True}, **options))
    backend.lock_path = str(tmp_path / ('lock-%d' % id(backend)))
    backend.connect_api = lambda: binding
    return backend


def without_ours(snapshot):
    snapshot = copy.deepcopy(snapshot)
    snapshot['policies'] = dict((name, fields) for name, fields in snapshot['policies'].items() if name not in OURS)
    return snapshot


def banned_in(snapshot):
    """fail2ban's runtime-only bans in a snapshot: the zone rich rule and the direct rule on its kernel ipset."""
    rich = [rule for rule in snapshot['zones']['public']['rules_str'] if 'reject' in rule]
    direct = [rule for rule in snapshot['direct rules'] if 'f2b-lab-xmpp-ipset' in rule[-1]]
    return rich, direct


# -- the recordings ------------------------------------------------------------------

def test_the_recordings_hold_fail2ban_bans_at_runtime_only_and_ours_as_the_backend_writes_them():
    admin = RecordedBinding('binding-admin.json')
    rich, direct = banned_in(admin.runtime)
    assert len(rich) == 1 and '198.51.100.6' in rich[0] and len(direct) == 1
    assert banned_in(admin.permanent) == ([], [])
    applied = RecordedBinding('binding-applied.json')
    by_section = {'in': 'lync-xmpp-in', 'out': 'lync-xmpp-out', 'forward': 'lync-xmpp-fwd'}
    for section, policy in by_section.items():
        wanted = policy_settings(section, [rule for rule in RULES if rule['direction'] == section])
        for side in (applied.runtime, applied.permanent):
            recorded = dict(side['policies'][policy])
            assert recorded['rich_rules'] == wanted['rich_rules'], 'firewalld lists them as we write them'
            assert recorded['priority'] == POLICY_PRIORITY > 0, 'after the zones, where fail2ban bans'
        assert applied.permanent['policies'][policy]['description'] == wanted['description']
    names = names_in_description(applied.permanent['policies']['lync-xmpp-in']['description'])
    assert names == {-32768: ('xmpp-in', 'row 1'), -32767: ('xmpp-in6', 'row 1 v6'), -32766: ('xmpp-in6', 'row 1 v6')}


# -- applying ---------------------------------------------------------------------

def test_a_first_run_creates_our_policies_with_one_reload_and_puts_fail2bans_bans_back(tmp_path):
    binding = RecordedBinding('binding-admin.json')
    before = copy.deepcopy(binding.runtime)
    result = converge(backend_for(binding, tmp_path), RULES, 'present', True, False)
    assert result['changed'] and result['firewalld_interface'] == 'dbus' and result['firewalld_reloaded']
    assert result['firewalld_restored_runtime'] == ['zone public', 'ipset f2b-test', 'direct rules']
    assert any('runtime-only entries were put back' in warning and 'zone public' in warning
               for warning in result['warnings'])
    assert [call for call in binding.writes() if call[0] != 'restore_runtime'] == [
        ('add_permanent_policy', 'lync-xmpp-fwd'), ('add_permanent_policy', 'lync-xmpp-in'),
        ('add_permanent_policy', 'lync-xmpp-out'), ('reload',)]
    # Everything but ours is as it was at runtime, the bans included; ours run as recorded after a real first run.
    assert without_ours(binding.runtime) == without_ours(before)
    assert banned_in(binding.runtime) == banned_in(before)
    recorded = RecordedBinding('binding-applied.json')
    assert binding.permanent['policies'] == recorded.permanent['policies']


def test_a_second_run_reads_once_and_writes_nothing(tmp_path):
    binding = RecordedBinding('binding-applied.json')
    result = converge(backend_for(binding, tmp_path), RULES, 'present', True, False)
    assert not result['changed'] and result['script'] == '' and result['before'] == RULES
    assert binding.writes() == [] and not result['firewalld_reloaded']
    assert result['warnings'] == []


def test_a_change_goes_into_runtime_and_permanent_without_a_reload(tmp_path):
    binding = RecordedBinding('binding-applied.json')
    before = copy.deepcopy(binding.runtime)
    wanted = normalize_rules([dict(rule, ports=[5270]) if rule['name'] == 'xmpp-in' else rule for rule in RULES])
    result = converge(backend_for(binding, tmp_path), wanted, 'present', True, False)
    assert result['changed'] and not result['firewalld_reloaded'] and result['firewalld_restored_runtime'] == []
    assert binding.writes() == [('set_permanent_policy', 'lync-xmpp-in'), ('set_runtime_policy', 'lync-xmpp-in')]
    assert banned_in(binding.runtime) == banned_in(before)
    # The next run finds it in place.
    again = RecordedBinding('binding-applied.json')
    again.runtime, again.permanent = binding.runtime, binding.permanent
    assert not converge(backend_for(again, tmp_path), wanted, 'present', True, False)['changed']


def test_policies_of_1_0_0_at_priority_minus_100_move_after_the_zones_with_one_reload(tmp_path):
    binding = RecordedBinding('binding-applied.json')
    for side in (binding.runtime, binding.permanent):
        for policy in OURS:
            side['policies'][policy]['priority'] = -100
    result = converge(backend_for(binding, tmp_path), RULES, 'present', True, False)
    assert result['changed'] and result['firewalld_reloaded'] and ('reload',) in binding.writes()
    assert all(binding.runtime['policies'][policy]['priority'] == POLICY_PRIORITY for policy in OURS)
    assert not converge(backend_for(binding, tmp_path), RULES, 'present', True, False)['changed']


def test_check_mode_compares_and_writes_nothing(tmp_path):
    binding = RecordedBinding('binding-admin.json')
    result = converge(backend_for(binding, tmp_path), RULES, 'present', True, True)
    assert result['changed'] and binding.writes() == []
    assert 'create policy lync-xmpp-in' in result['script'] and 'one reload' in result['script']


def test_a_rule_changed_by_hand_at_runtime_is_seen_named_and_rewritten(tmp_path):
    binding = RecordedBinding('binding-applied.json')
    binding.runtime['policies']['lync-xmpp-in']['rich_rules'].pop()
    backend = backend_for(binding, tmp_path)
    backend.read()
    assert not backend.in_place(RULES)
    live = dict((rule['name'], rule) for rule in backend.current_rules())
    assert live['xmpp-in6']['ports'] == [5269] and live['xmpp-in6']['comment'] == 'row 1 v6'
    backend.release_lock()
    result = converge(backend_for(binding, tmp_path), RULES, 'present', True, False)
    assert result['changed'] and not result['firewalld_reloaded']
    assert binding.runtime['policies']['lync-xmpp-in'] == dict(
        binding.permanent['policies']['lync-xmpp-in'], version=binding.runtime['policies']['lync-xmpp-in']['version'])


def test_absent_removes_ours_with_one_reload_keeping_the_bans_and_a_second_absent_is_a_no_op(tmp_path):
    binding = RecordedBinding('binding-applied.json')
    before = copy.deepcopy(binding.runtime)
    result = converge(backend_for(binding, tmp_path), [], 'absent', True, False)
    assert result['changed'] and result['firewalld_reloaded']
    assert [rule['name'] for rule in result['before']] == ['xmpp-in', 'xmpp-in6', 'xmpp-out', 'zz-reject']
    assert sorted(binding.permanent['policies']) == ['allow-host-ipv6']
    assert sorted(binding.runtime['policies']) == ['allow-host-ipv6']
    assert banned_in(binding.runtime) == banned_in(before)
    assert not converge(backend_for(binding, tmp_path), [], 'absent', True, False)['changed']


# -- failures leave runtime and permanent as they were, and agreeing ---------------------

def test_a_failed_runtime_update_puts_permanent_and_runtime_back(tmp_path):
    binding = RecordedBinding('binding-applied.json', fail={'set_runtime_policy': 'INVALID_RULE: bad'})
    before = copy.deepcopy((binding.runtime, binding.permanent))
    wanted = normalize_rules([dict(rule, ports=[5270]) for rule in RULES])
    with pytest.raises(BackendError, match='updating runtime policy lync-xmpp-fwd failed: INVALID_RULE: bad; the '
                                           'previous runtime and permanent settings are back'):
        converge(backend_for(binding, tmp_path), wanted, 'present', True, False)
    assert (binding.runtime, binding.permanent) == before


def test_a_failed_reload_undoes_the_permanent_changes_and_puts_the_runtime_back(tmp_path):
    binding = RecordedBinding('binding-admin.json', fail={'reload': 'COMMAND_FAILED: nft says no'})
    before = copy.deepcopy((binding.runtime, binding.permanent))
    with pytest.raises(BackendError, match='the reload failed: COMMAND_FAILED: nft says no; the previous runtime '
                                           'and permanent settings are back, reloaded with them, runtime-only '
                                           'entries put back'):
        converge(backend_for(binding, tmp_path), RULES, 'present', True, False)
    assert (binding.runtime, binding.permanent) == before


def test_a_failed_creation_undoes_the_policies_created_before_it_without_a_reload(tmp_path):
    binding = RecordedBinding('binding-admin.json', fail={'add_permanent_policy': 'NAME_CONFLICT'})
    binding.calls = []
    before = copy.deepcopy((binding.runtime, binding.permanent))
    with pytest.raises(BackendError, match='creating permanent policy lync-xmpp-fwd failed: NAME_CONFLICT; firewalld '
                                           'was not reloaded'):
        converge(backend_for(binding, tmp_path), RULES, 'present', True, False)
    assert (binding.runtime, binding.permanent) == before and ('reload',) not in binding.writes()


def test_runtime_entries_that_do_not_come_back_fail_the_run_naming_them(tmp_path):
    binding = RecordedBinding('binding-admin.json')
    binding.restore_runtime = lambda before, after: []
    with pytest.raises(BackendError, match='runtime-only entries of zones, ipsets, direct rules could not be put back'):
        converge(backend_for(binding, tmp_path), RULES, 'present', True, False)


# -- ownership by mark -------------------------------------------------------------

def test_a_policy_named_like_ours_without_our_mark_is_refused_where_needed_and_left_alone_elsewhere(tmp_path):
    binding = RecordedBinding('binding-applied.json')
    for side in (binding.runtime, binding.permanent):
        side['policies']['lync-xmpp-in']['description'] = 'the admin\'s own'
    with pytest.raises(OwnershipError, match='firewalld policy lync-xmpp-in is named like ours but is not ours \\(its '
                                             'description lacks \\[lync-xmpp-federation\\]\\), and the rules need'):
        converge(backend_for(binding, tmp_path), RULES, 'present', True, False)
    assert binding.writes() == []
    result = converge(backend_for(binding, tmp_path), [], 'absent', True, False)
    assert 'lync-xmpp-in' in binding.permanent['policies'] and 'lync-xmpp-out' not in binding.permanent['policies']
    assert any('left alone: firewalld policy lync-xmpp-in' in warning for warning in result['warnings'])


# -- the firewall-cmd fallback ---------------------------------------------------------

def test_without_the_binding_the_run_says_it_falls_back_to_firewall_cmd(tmp_path):
    def no_binding():
        raise ImportError('No module named firewall')

    calls = []

    def run_command(argv, **kwargs):
        calls.append(argv[1:])
        return 0, fixture('admin.policies'), ''

    backend = FirewalldBackend(run_command, lambda name, required=False: '/usr/bin/firewall-cmd', {'persist': True})
    backend.lock_path = str(tmp_path / 'lock')
    backend.policy_dir = str(tmp_path)
    backend.connect_api = no_binding
    result = converge(backend, RULES, 'present', True, True)
    assert result['firewalld_interface'] == 'firewall-cmd' and calls == [['--list-all-policies']]
    assert any('python3-firewall' in warning and 'uses firewall-cmd' in warning for warning in result['warnings'])


# -- long address lists as ipsets of ours ------------------------------------------------

# Four hosts no two of which merge: a list that stays four networks, as a kernel set holds it.
PARTNERS = ['198.51.100.%d/32' % host for host in (2, 4, 6, 8)] + ['2001:db8:%x::/48' % index for index in range(3)]
SET_RULES = normalize_rules([
    {'name': 'xmpp-in', 'direction': 'in', 'ports': [5269], 'source': PARTNERS[:4], 'comment': 'partners'},
    {'name': 'xmpp-in6', 'direction': 'in', 'ports': [5269], 'source': PARTNERS[4:], 'comment': 'three: no set'},
    {'name': 'xmpp-out', 'direction': 'out', 'ports': [5269], 'destination': PARTNERS[:4], 'comment': 'partners'},
])


def test_a_list_of_set_min_addresses_networks_is_one_marked_ipset_and_one_rich_rule(tmp_path):
    binding = RecordedBinding('binding-admin.json')
    result = converge(backend_for(binding, tmp_path), SET_RULES, 'present', True, False)
    assert result['changed'] and result['firewalld_reloaded']
    ours = sorted(name for name in binding.permanent['ipsets'] if name.startswith('lync-xmpp-'))
    assert len(ours) == 2 and all(len(name) <= 31 for name in ours)
    source_set = [name for name in ours if name.startswith('lync-xmpp-src-')][0]
    assert binding.permanent['ipsets'][source_set] == ['198.51.100.2', '198.51.100.4', '198.51.100.6', '198.51.100.8'], 'one host each, as firewalld lists them'
    assert binding.runtime['ipsets'][source_set] == binding.permanent['ipsets'][source_set]
    settings = binding.ipset_settings['permanent'][source_set]
    assert settings['type'] == 'hash:net' and settings['options'] == {'family': 'inet'}
    assert settings['description'].endswith('rule xmpp-in, managed by lync.xmpp_federation [lync-xmpp-federation]')
    inbound = binding.runtime['policies']['lync-xmpp-in']['rich_rules']
    assert inbound[0] == ('rule priority="-32768" family="ipv4" source ipset="%s" port port="5269" protocol="tcp" '
                          'accept' % source_set)
    assert len(inbound) == 4, 'one rule through the set, three for the short IPv6 list'
    # Read back through the ipset: the same rules (networks as the set holds them), and a re-run writes nothing.
    again = converge(backend_for(binding, tmp_path), SET_RULES, 'present', True, False)
    assert not again['changed'] and binding.writes()[-1] == ('restore_runtime',)
    backend = backend_for(binding, tmp_path)
    backend.read()
    live = dict((rule['name'], rule) for rule in backend.current_rules())
    assert live['xmpp-in']['source'] == PARTNERS[:4] and backend.problems() == []


def test_a_changed_list_changes_the_ipset_entries_live_and_absent_removes_the_ipsets(tmp_path):
    binding = RecordedBinding('binding-admin.json')
    converge(backend_for(binding, tmp_path), SET_RULES, 'present', True, False)
    binding.calls = []
    bans = banned_in(binding.runtime)
    wanted = normalize_rules([dict(rule, source=rule['source'] + ['198.51.100.9']) if rule['name'] == 'xmpp-in'
                              else rule for rule in SET_RULES])
    result = converge(backend_for(binding, tmp_path), wanted, 'present', True, False)
    assert result['changed'] and not result['firewalld_reloaded']
    assert [call[0] for call in binding.writes()] == ['set_permanent_entries', 'set_runtime_entries']
    assert banned_in(binding.runtime) == bans
    assert not converge(backend_for(binding, tmp_path), wanted, 'present', True, False)['changed']
    result = converge(backend_for(binding, tmp_path), [], 'absent', True, False)
    assert result['changed'] and not [name for name in binding.permanent['ipsets'] if name.startswith('lync-xmpp-')]
    assert not [name for name in binding.runtime['ipsets'] if name.startswith('lync-xmpp-')]
    assert banned_in(binding.runtime) == bans and binding.runtime['ipsets']['f2b-test'] == ['198.51.100.77']


def test_an_ipset_named_like_ours_without_our_mark_is_refused_naming_it(tmp_path):
    binding = RecordedBinding('binding-admin.json')
    converge(backend_for(binding, tmp_path), SET_RULES, 'present', True, False)
    name = sorted(name for name in binding.permanent['ipsets'] if name.startswith('lync-xmpp-src-'))[0]
    for side in ('runtime', 'permanent'):
        binding.ipset_settings[side][name]['description'] = 'the admin\'s'
    binding.calls = []
    with pytest.raises(OwnershipError, match='firewalld ipset %s is named like ours but is not ours' % name):
        converge(backend_for(binding, tmp_path), SET_RULES, 'present', True, False)
    assert binding.writes() == []


# -- translations as direct rules of ours ----------------------------------------------------

NAT_RULES = normalize_rules([
    {'name': 'xmpp-dnat', 'direction': 'forward', 'ports': [5269], 'destination': ['198.51.100.11'], 'nat': 'dnat',
     'nat_to': '198.51.100.18', 'comment': 'public to Edge'},
    {'name': 'xmpp-snat', 'direction': 'forward', 'ports': [5269], 'source': ['198.51.100.18'], 'nat': 'snat',
     'nat_to': '198.51.100.11', 'comment': 'Edge to public'},
    {'name': 'xmpp-fwd', 'direction': 'forward', 'ports': [5269], 'destination': ['198.51.100.18']},
])
DNAT = ('ipv4', 'nat', 'PREROUTING', 0, ('-d', '198.51.100.11/32', '-p', 'tcp', '-m', 'tcp', '--dport', '5269', '-m',
                                         'comment', '--comment', 'lync-xmpp:xmpp-dnat: public to Edge', '-j', 'DNAT',
                                         '--to-destination', '198.51.100.18'))


def test_translations_are_direct_rules_of_ours_in_runtime_and_permanent_without_a_reload(tmp_path):
    binding = RecordedBinding('binding-applied.json')
    wanted = normalize_rules(list(RULES) + list(NAT_RULES))
    bans = banned_in(binding.runtime)
    result = converge(backend_for(binding, tmp_path), wanted, 'present', True, False)
    assert result['changed'] and not result['firewalld_reloaded']
    assert DNAT in binding.runtime['direct rules'] and DNAT in binding.permanent['direct rules']
    assert 'ipv4 -t nat -A POSTROUTING -s 198.51.100.18/32' in result['script']
    # Only the forward accept is a rich rule: a translation is never one.
    assert all('198.51.100.11' not in rule for rule in binding.runtime['policies']['lync-xmpp-fwd']['rich_rules'])
    assert banned_in(binding.runtime) == (bans[0], bans[1]), 'fail2ban\'s direct rule stays'
    again = converge(backend_for(binding, tmp_path), wanted, 'present', True, False)
    assert not again['changed'] and again['before'] == wanted
    result = converge(backend_for(binding, tmp_path), RULES, 'present', True, False)
    assert result['changed'] and DNAT not in binding.runtime['direct rules'] + binding.permanent['direct rules']
    assert banned_in(binding.runtime) == bans


def test_a_failed_direct_rule_puts_the_ones_added_before_it_back(tmp_path):
    binding = RecordedBinding('binding-applied.json', fail={'add_runtime_direct_rule': 'INVALID_RULE'})
    before = copy.deepcopy((binding.runtime['direct rules'], binding.permanent['direct rules']))
    with pytest.raises(BackendError, match='adding runtime direct rule .* failed: INVALID_RULE; the previous runtime '
                                           'and permanent settings are back'):
        converge(backend_for(binding, tmp_path), normalize_rules(list(RULES) + list(NAT_RULES)), 'present', True,
                 False)
    assert (binding.runtime['direct rules'], binding.permanent['direct rules']) == before
