# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The firewalld backend's firewall-cmd fallback against output recorded from a real firewalld (fixtures/firewalld/).

The backend uses firewalld's Python binding where it can be imported
(test_firewalld_binding.py); these tests take it away, as on a host without
python3-firewall. The only double is ``RecordedFirewalld``: it answers
firewall-cmd from the recordings, records every call, and holds the policy
directory in tmp_path.
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
from ansible_collections.lync.xmpp_federation.plugins.module_utils.firewalld import (
    FirewalldBackend,
    RichRule,
    parse_listing,
    parse_rich_rule,
    rich_priority,
    rich_rules,
)
from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import RuleError, normalize_rules

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'firewalld')
CMD = '/usr/bin/firewall-cmd'
POLICY_FILES = ('lync-xmpp-fwd.xml', 'lync-xmpp-in.xml', 'lync-xmpp-out.xml')


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


with open(os.path.join(FIXTURES, 'rules.json')) as _rules:
    RULES = normalize_rules(json.load(_rules))


class RecordedFirewalld(object):
    """firewall-cmd as recorded; ``results`` maps 'check' and 'reload' to lists of (rc, out, err), one a call."""

    def __init__(self, tmp_path, stage, runtime_zones='zones', results=None):
        self.policy_dir = tmp_path / 'policies'
        self.policy_dir.mkdir()
        self.policies = fixture('%s.policies' % stage)
        self.permanent_policies = fixture('applied.permanent-policies' if stage == 'applied' else 'admin.policies')
        if stage == 'applied':
            for name in POLICY_FILES:
                (self.policy_dir / name).write_text(fixture(name))
        self.zones = {'runtime': fixture(runtime_zones), 'permanent': fixture('permanent-zones')}
        self.results = results or {}
        # Direct rules and ipsets, by the firewall-cmd arguments that list them (without --permanent).
        self.runtime_extra, self.permanent_extra = {}, {}
        self.calls = []

    def get_bin_path(self, name, required=False, opt_dirs=None):
        return CMD if name == 'firewall-cmd' else None

    def run_command(self, argv, data=None, binary_data=False):
        self.calls.append(argv[1:])
        if argv == [CMD, '--list-all-policies']:
            return 0, self.policies, ''
        if argv == [CMD, '--permanent', '--list-all-policies']:
            return 0, self.permanent_policies, ''
        if argv == [CMD, '--list-all-zones']:
            return 0, self.zones['runtime'], ''
        if argv == [CMD, '--permanent', '--list-all-zones']:
            return 0, self.zones['permanent'], ''
        listings = (('--direct', '--get-all-rules'), ('--direct', '--get-all-passthroughs'), ('--get-ipsets',))
        if tuple(argv[1:]) in listings:
            return 0, self.runtime_extra.get(tuple(argv[1:]), ''), ''
        if argv[1] == '--permanent' and tuple(argv[2:]) in listings:
            return 0, self.permanent_extra.get(tuple(argv[2:]), ''), ''
        if argv[-1].startswith('--info-ipset='):
            extra = self.permanent_extra if argv[1] == '--permanent' else self.runtime_extra
            return 0, extra.get(argv[-1], ''), ''
        if argv == [CMD, '--check-config']:
            return self.results.get('check', [(0, 'success', '')]).pop(0)
        if argv == [CMD, '--reload']:
            return self.results.get('reload', [(0, 'success', ''), (0, 'success', '')]).pop(0)
        raise AssertionError('unexpected command %r' % (argv,))

    def files(self):
        return dict((path.name, path.read_text()) for path in sorted(self.policy_dir.iterdir()))

    def writes(self):
        return [call for call in self.calls if call in (['--check-config'], ['--reload'])]


def no_binding():
    raise ImportError('No module named firewall')


FALLBACK = ("firewalld: python3-firewall (firewalld's Python binding) cannot be imported by this Python interpreter, "
            "so this run uses firewall-cmd")


def backend_for(host, tmp_path, **options):
    backend = FirewalldBackend(host.run_command, host.get_bin_path, dict({'persist': True}, **options))
    backend.lock_path = str(tmp_path / ('lock-%d' % id(backend)))
    backend.policy_dir = str(host.policy_dir)
    backend.connect_api = no_binding
    return backend


def warnings_besides_the_fallback(result):
    assert result['warnings'][0].startswith(FALLBACK) and result['firewalld_interface'] == 'firewall-cmd'
    return result['warnings'][1:]


# -- rich rules ------------------------------------------------------------------

def test_one_model_rule_becomes_rich_rules_per_address_pair_and_port_span_in_priority_order():
    inbound = [rule for rule in RULES if rule['direction'] == 'in']
    assert rich_rules(inbound) == [
        RichRule(-32768, 4, '198.51.100.0/24', '198.51.100.10/32', (5269, 5269), 'tcp', 'accept'),
        RichRule(-32767, 6, None, '2001:db8::10/128', (5269, 5269), 'tcp', 'accept'),
        RichRule(-32766, 6, None, '2001:db8::10/128', (6000, 6010), 'tcp', 'accept'),
    ]
    # Past the negative range, priorities go on above zero: 0 would let firewalld reorder.
    assert [rich_priority(index) for index in (0, 32767, 32768, 65534)] == [-32768, -1, 1, 32767]


def test_rich_rules_as_listed_parse_and_other_shapes_are_not_ours():
    listed = parse_listing(fixture('applied.policies'))
    assert sorted(listed) == ['allow-host-ipv6', 'lync-xmpp-fwd', 'lync-xmpp-in', 'lync-xmpp-out']
    assert listed['lync-xmpp-in']['egress-zones'] == 'HOST' and listed['lync-xmpp-in']['priority'] == '1'
    parsed = [parse_rich_rule(text) for text in listed['lync-xmpp-in']['rich rules']]
    assert parsed == rich_rules([rule for rule in RULES if rule['direction'] == 'in'])
    # firewalld's own rules, and shapes we never write, are not taken for ours.
    assert all(parse_rich_rule(text) is None for text in listed['allow-host-ipv6']['rich rules'])
    for text in ('rule priority="-1" port port="5269" protocol="tcp" accept limit value="1/m"',
                 'rule priority="-1" source NOT address="198.51.100.1" port port="5269" protocol="tcp" accept',
                 'rule port port="5269" protocol="tcp" accept',
                 'rule priority="-1" family="ipv4" source address="nonsense" port port="1" protocol="tcp" drop'):
        assert parse_rich_rule(text) is None, text


# -- reading and comparing -------------------------------------------------------

def test_applied_rules_read_back_with_their_names_and_a_second_run_writes_nothing(tmp_path):
    host = RecordedFirewalld(tmp_path, 'applied')
    backend = backend_for(host, tmp_path)
    result = converge(backend, RULES, 'present', True, False)
    assert not result['changed'] and result['script'] == '' and result['before'] == RULES
    assert not result['firewalld_reloaded'] and warnings_besides_the_fallback(result) == []
    assert host.calls == [['--list-all-policies']], 'one read, nothing else'
    assert backend.problems() == []
    assert result['persistence_files'] == [str(host.policy_dir / name) for name in POLICY_FILES]


def test_a_host_without_ours_gets_our_policy_files_and_one_reload(tmp_path):
    host = RecordedFirewalld(tmp_path, 'admin')
    result = converge(backend_for(host, tmp_path), RULES, 'present', True, False)
    assert result['changed'] and result['before'] == [] and result['firewalld_reloaded']
    assert host.files() == dict((name, fixture(name)) for name in POLICY_FILES)
    assert host.writes() == [['--check-config'], ['--reload']]
    assert '# write %s' % (host.policy_dir / 'lync-xmpp-in.xml') in result['script']


def test_check_mode_compares_and_writes_nothing(tmp_path):
    host = RecordedFirewalld(tmp_path, 'admin')
    result = converge(backend_for(host, tmp_path), RULES, 'present', True, True)
    assert result['changed'] and host.files() == {} and host.writes() == []


def test_a_changed_rule_rewrites_and_a_policy_no_longer_needed_goes(tmp_path):
    host = RecordedFirewalld(tmp_path, 'applied')
    wanted = [dict(rule, ports=[5270]) if rule['name'] == 'xmpp-in' else rule
              for rule in RULES if rule['direction'] != 'forward']
    result = converge(backend_for(host, tmp_path), normalize_rules(wanted), 'present', True, False)
    assert result['changed']
    files = host.files()
    assert sorted(files) == ['lync-xmpp-in.xml', 'lync-xmpp-out.xml'], 'the forward policy went'
    assert '<port port="5270" protocol="tcp"/>' in files['lync-xmpp-in.xml']
    assert '# remove %s' % (host.policy_dir / 'lync-xmpp-fwd.xml') in result['script']


def test_a_rich_rule_removed_at_runtime_is_seen_and_named(tmp_path):
    host = RecordedFirewalld(tmp_path, 'applied')
    host.policies = '\n'.join(line for line in host.policies.splitlines() if 'port="6000-6010"' not in line) + '\n'
    backend = backend_for(host, tmp_path)
    backend.read()
    assert not backend.in_place(RULES)
    # Named from our policy file, the rule read back is what is left of it.
    live = dict((rule['name'], rule) for rule in backend.current_rules())
    assert live['xmpp-in6']['ports'] == [5269] and live['xmpp-in6']['comment'] == 'row 1 v6'


def test_a_foreign_rich_rule_in_our_policy_is_a_difference(tmp_path):
    host = RecordedFirewalld(tmp_path, 'applied')
    host.policies = host.policies.replace(
        '\trule priority="-32768" port port="5269" protocol="tcp" accept\n',
        '\trule priority="-32768" port port="5269" protocol="tcp" accept\n\trule service name="ssh" accept\n')
    backend = backend_for(host, tmp_path)
    backend.read()
    assert not backend.in_place(RULES)
    assert backend.problems() == ['firewalld: policy lync-xmpp-out holds a rich rule not in a form we write: '
                                  'rule service name="ssh" accept']


def test_absent_removes_our_files_and_reloads_once(tmp_path):
    host = RecordedFirewalld(tmp_path, 'applied')
    result = converge(backend_for(host, tmp_path), [], 'absent', True, False)
    assert result['changed'] and host.files() == {} and host.writes() == [['--check-config'], ['--reload']]
    assert [rule['name'] for rule in result['before']] == ['xmpp-in', 'xmpp-in6', 'xmpp-out', 'zz-reject']
    empty = RecordedFirewalld(tmp_path / 'b', 'admin') if (tmp_path / 'b').mkdir() is None else None
    assert not converge(backend_for(empty, tmp_path), [], 'absent', True, False)['changed']


# -- what is refused, and failures -------------------------------------------------

def test_runtime_only_changes_of_the_admin_refuse_the_reload(tmp_path):
    host = RecordedFirewalld(tmp_path, 'admin', runtime_zones='zones-runtime-change')
    with pytest.raises(BackendError, match=r'differs from the permanent one in zone public.*nothing was changed'):
        converge(backend_for(host, tmp_path), RULES, 'present', True, False)
    assert host.files() == {} and host.writes() == []


IPSET_RUNTIME = 'banned\n  type: hash:ip\n  options: \n  entries: 198.51.100.99\n'
IPSET_PERMANENT = 'banned\n  type: hash:ip\n  options: \n  entries: \n'


@pytest.mark.parametrize('runtime, permanent, named', [
    # A direct rule added at runtime only (as recorded from firewall-cmd --direct --get-all-rules).
    ({('--direct', '--get-all-rules'): 'ipv4 filter INPUT 0 -s 198.51.100.98 -j DROP\n'}, {}, 'the direct rules'),
    ({('--direct', '--get-all-passthroughs'): 'ipv4 -A INPUT -j DROP\n'}, {}, 'the direct passthroughs'),
    # An entry added to a permanent ipset at runtime, as fail2ban's firewalld actions do.
    ({('--get-ipsets',): 'banned\n', '--info-ipset=banned': IPSET_RUNTIME},
     {('--get-ipsets',): 'banned\n', '--info-ipset=banned': IPSET_PERMANENT}, 'ipset banned'),
])
def test_runtime_only_direct_rules_and_ipset_entries_refuse_the_reload(tmp_path, runtime, permanent, named):
    host = RecordedFirewalld(tmp_path, 'admin')
    host.runtime_extra, host.permanent_extra = runtime, permanent
    with pytest.raises(BackendError, match='differs from the permanent one in %s,' % named):
        converge(backend_for(host, tmp_path), RULES, 'present', True, False)
    assert host.files() == {} and host.writes() == []


def test_the_same_direct_rules_and_ipsets_on_both_sides_are_no_reason_to_refuse(tmp_path):
    host = RecordedFirewalld(tmp_path, 'admin')
    same = {('--direct', '--get-all-rules'): 'ipv4 filter INPUT 0 -s 198.51.100.98 -j DROP\n',
            ('--get-ipsets',): 'banned\n', '--info-ipset=banned': IPSET_PERMANENT}
    host.runtime_extra, host.permanent_extra = dict(same), dict(same)
    assert converge(backend_for(host, tmp_path), RULES, 'present', True, False)['changed']
    assert host.writes() == [['--check-config'], ['--reload']]


def test_a_configuration_that_does_not_load_puts_our_files_back(tmp_path):
    host = RecordedFirewalld(tmp_path, 'applied', results={'check': [(28, '', 'Error: INVALID_RULE: bad')]})
    wanted = normalize_rules([dict(rule, ports=[5270]) for rule in RULES])
    with pytest.raises(BackendError, match='does not load .*INVALID_RULE.*firewalld was not reloaded'):
        converge(backend_for(host, tmp_path), wanted, 'present', True, False)
    assert host.files() == dict((name, fixture(name)) for name in POLICY_FILES)
    assert host.writes() == [['--check-config']]


def test_a_failed_reload_puts_our_files_back_and_reloads_them(tmp_path):
    host = RecordedFirewalld(tmp_path, 'admin', results={'reload': [(1, '', 'Error: COMMAND_FAILED'), (0, '', '')]})
    with pytest.raises(BackendError, match='COMMAND_FAILED.*put back and reloaded'):
        converge(backend_for(host, tmp_path), RULES, 'present', True, False)
    assert host.files() == {}
    assert host.writes() == [['--check-config'], ['--reload'], ['--reload']]


def test_translation_without_the_binding_and_persist_false_are_refused_before_anything_changes(tmp_path):
    host = RecordedFirewalld(tmp_path, 'admin')
    nat = normalize_rules([{'name': 'dnat', 'direction': 'forward', 'ports': [5269], 'destination': ['198.51.100.62'],
                            'nat': 'dnat', 'nat_to': '198.51.100.10'}])
    with pytest.raises(BackendError, match="rule 'dnat' translates addresses .*install python3-firewall; nothing was "
                                           "changed"):
        converge(backend_for(host, tmp_path), nat, 'present', True, False)
    assert host.calls == [['--list-all-policies']] and host.files() == {}
    host.calls = []
    with pytest.raises(BackendError, match='persist=false cannot be honoured'):
        converge(backend_for(host, tmp_path, persist=False), RULES, 'present', False, False)
    assert host.calls == []
    # Removing needs no persistence choice.
    assert not converge(backend_for(host, tmp_path, persist=False), [], 'absent', False, False)['changed']


def test_firewalld_not_running_is_said(tmp_path):
    host = RecordedFirewalld(tmp_path, 'admin')
    host.run_command = lambda argv, data=None, binary_data=False: (252, 'not running', '')
    with pytest.raises(BackendError,
                       match=r'--list-all-policies failed \(252\): not running; firewalld must be running'):
        converge(backend_for(host, tmp_path), RULES, 'present', True, False)


# -- ownership by mark ---------------------------------------------------------------

def unmark(host, name):
    """Our policy file as an admin might have written it under our name: the same, without our mark."""
    path = host.policy_dir / name
    text = path.read_text()
    assert ' [lync-xmpp-federation]</description>' in text
    path.write_text(text.replace(' [lync-xmpp-federation]</description>', '</description>'))
    return path


def test_our_policy_files_carry_our_mark_and_our_rules_names():
    for name in POLICY_FILES:
        text = fixture(name)
        assert '<description>XMPP federation rules (%s), managed by lync.xmpp_federation [lync-xmpp-federation]' \
            '</description>' % {'lync-xmpp-fwd.xml': 'forward', 'lync-xmpp-in.xml': 'in',
                                'lync-xmpp-out.xml': 'out'}[name] in text
    assert '  <!-- lync-xmpp:xmpp-in6: row 1 v6 -->\n  <rule priority="-32767" family="ipv6">' in \
        fixture('lync-xmpp-in.xml')


def test_a_policy_named_like_ours_without_our_mark_where_the_rules_need_it_is_refused(tmp_path):
    host = RecordedFirewalld(tmp_path, 'applied')
    path = unmark(host, 'lync-xmpp-in.xml')
    before = host.files()
    with pytest.raises(OwnershipError) as error:
        converge(backend_for(host, tmp_path), RULES, 'present', True, False)
    assert str(error.value) == (
        'firewalld: refusing to run, nothing was changed: firewalld policy lync-xmpp-in is named like ours but is '
        'not ours (%s lacks our mark), and the rules need that name (rename or remove it)' % path)
    assert host.files() == before and host.calls == [['--list-all-policies']]


def test_a_policy_named_like_ours_the_rules_do_not_need_is_left_alone_and_said(tmp_path):
    host = RecordedFirewalld(tmp_path, 'applied')
    path = unmark(host, 'lync-xmpp-in.xml')
    admins = path.read_text()
    without_in = [rule for rule in RULES if rule['direction'] != 'in']
    result = converge(backend_for(host, tmp_path), without_in, 'present', True, False)
    # Our other policies are as wanted: nothing to write, and the admin's file is neither rewritten nor removed.
    assert not result['changed'] and path.read_text() == admins
    assert warnings_besides_the_fallback(result) == [
        'firewalld: left alone: firewalld policy lync-xmpp-in is named like ours but is not ours (%s lacks our mark)'
        % path]
    assert [rule['name'] for rule in result['before']] == ['xmpp-out', 'zz-reject']
    # Removing ours leaves it too.
    result = converge(backend_for(host, tmp_path), [], 'absent', True, False)
    assert result['changed'] and sorted(host.files()) == ['lync-xmpp-in.xml'] and path.read_text() == admins
    assert '# remove %s' % path not in result['script']


def test_a_policy_named_like_ours_from_elsewhere_is_not_ours(tmp_path):
    # firewalld lists our policies, but our directory has no file for them (they came from elsewhere).
    host = RecordedFirewalld(tmp_path, 'applied')
    for name in POLICY_FILES:
        (host.policy_dir / name).unlink()
    with pytest.raises(OwnershipError) as error:
        converge(backend_for(host, tmp_path), RULES, 'present', True, False)
    assert ('firewalld policy lync-xmpp-fwd is named like ours but is not ours (it is not defined by a file of ours '
            'in %s)' % host.policy_dir) in str(error.value)
    assert host.files() == {}
    # Nothing of ours to remove.
    result = converge(backend_for(host, tmp_path), [], 'absent', True, False)
    assert not result['changed'] and len(warnings_besides_the_fallback(result)) == 3 and host.writes() == []


def test_comments_are_limited_to_255_bytes_as_on_iptables(tmp_path):
    host = RecordedFirewalld(tmp_path, 'admin')
    fits = [{'name': 'r', 'direction': 'in', 'ports': [5269], 'comment': u'\u00e9' * 100}]
    assert converge(backend_for(host, tmp_path), fits, 'present', True, True)['changed']
    too_long = [{'name': 'r', 'direction': 'in', 'ports': [5269], 'comment': u'\u20ac' * 81}]
    (tmp_path / 'b').mkdir()
    host = RecordedFirewalld(tmp_path / 'b', 'admin')
    with pytest.raises(RuleError, match='256 bytes, more than the 255 bytes any firewall backend takes'):
        converge(backend_for(host, tmp_path), too_long, 'present', True, False)
    assert host.calls == []
