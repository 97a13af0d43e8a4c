# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The rule -> community.windows.win_firewall_rule mapping, on the example estate.

Rules are computed with the real matrix code from the role's real matrix and
inventory/example; every generated argument set is checked against the
documentation of win_firewall_rule itself (names, types, choices), and the
role's own win_firewall_rule tasks are checked to pass exactly those names.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import os

import pytest
import yaml

from ansible.errors import AnsibleFilterError
from ansible.utils.collection_loader import AnsibleCollectionConfig

COLLECTION = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))

if AnsibleCollectionConfig.collection_finder is None:
    # Plain pytest from the checkout: install the collection finder that ansible-test installs itself,
    # before the first collection import, so that the templar finds the collection's filters by name.
    from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder
    _AnsibleCollectionFinder(paths=[os.path.dirname(os.path.dirname(os.path.dirname(COLLECTION))),
                                    os.path.join(COLLECTION, '.cache', 'collections')])._install()  # pylint: disable=protected-access

from ansible_collections.lync.xmpp_federation.plugins.filter.windows_firewall_rules import (
    FilterModule,
    stale_rule_names,
    windows_firewall_plan,
)
from ansible_collections.lync.xmpp_federation.plugins.module_utils.matrix import host_rules
from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import RuleError

EXAMPLE = os.path.join(COLLECTION, 'inventory', 'example', 'hosts.yml')
DEFAULTS = os.path.join(COLLECTION, 'roles', 'xmpp_firewall', 'defaults', 'main.yml')
WINDOWS_TASKS = os.path.join(COLLECTION, 'roles', 'xmpp_firewall', 'tasks', 'windows.yml')
GROUP = 'Lync XMPP Federation'
ALL_PROFILES = ['domain', 'private', 'public']
WIN_FIREWALL_RULE = 'community.windows.win_firewall_rule'
WIN_POWERSHELL = 'ansible.windows.win_powershell'


# -- the example estate, read the way the inventory plugin reads it ------------

def load_inventory(path=EXAMPLE):
    """hosts.yml -> (hostvars, groups), children flattened into their parents."""
    with open(path) as handle:
        data = yaml.safe_load(handle)
    hostvars, groups = {}, {'all': []}

    def walk(name, group):
        members = []
        for host, variables in ((group or {}).get('hosts') or {}).items():
            hostvars.setdefault(host, {}).update(variables or {})
            members.append(host)
        for child, child_group in ((group or {}).get('children') or {}).items():
            members.extend(walk(child, child_group))
        groups[name] = sorted(set(groups.get(name, []) + members))
        return members

    walk('all', data['all'])
    return hostvars, groups


def load_matrix():
    with open(DEFAULTS) as handle:
        return yaml.safe_load(handle)['xmpp_firewall_matrix']


MATRIX = load_matrix()
EXAMPLE_ESTATE = load_inventory()
HOSTVARS = EXAMPLE_ESTATE[0]
GROUPS = EXAMPLE_ESTATE[1]
WINDOWS_HOSTS = sorted(GROUPS['lync_windows'])


def plan(host, hostvars=None, groups=None, matrix=None, existing=None, group=GROUP, profiles=None, listing=None,
         accept_group_policy=False, **narrowing):
    rules = host_rules(matrix or MATRIX, host, hostvars or HOSTVARS, groups or GROUPS, **narrowing)
    return windows_firewall_plan(rules, group=group, profiles=profiles or ALL_PROFILES, host=host,
                                 existing=existing, listing=listing, accept_group_policy=accept_group_policy)


def by_name(arguments):
    return dict((args['name'], args) for args in arguments)


# -- the mapping ---------------------------------------------------------------

def test_example_windows_hosts_are_the_edges_and_front_ends():
    assert WINDOWS_HOSTS == ['edge01', 'edge02', 'fe01', 'fe02']


def test_edge_inbound_rules_use_the_local_address_and_local_port():
    rules = by_name(plan('edge01')['rules'])
    inbound = rules['Lync XMPP Federation - xmpp-s2s-inbound-ipv4']
    assert inbound['direction'] == 'in'
    assert inbound['localip'] == '198.51.100.10'
    assert inbound['localport'] == '5269'
    assert inbound['remoteip'] == 'any'
    assert inbound['remoteport'] == 'any'
    assert inbound['protocol'] == 'tcp'
    assert inbound['action'] == 'allow'
    inbound6 = rules['Lync XMPP Federation - xmpp-s2s-inbound-ipv6']
    assert inbound6['localip'] == '2001:db8:10::10'
    gateway = rules['Lync XMPP Federation - xmpp-gateway-internal-ipv4']
    assert (gateway['direction'], gateway['localip'], gateway['localport'], gateway['remoteip']) == \
        ('in', '198.51.100.140', '23456', 'any')


def test_edge_outbound_rule_uses_the_local_address_and_remote_port():
    outbound = by_name(plan('edge01')['rules'])['Lync XMPP Federation - xmpp-s2s-outbound-ipv4']
    assert outbound['direction'] == 'out'
    assert outbound['localip'] == '198.51.100.10'
    assert outbound['localport'] == 'any'
    assert outbound['remoteport'] == '5269'
    assert outbound['remoteip'] == 'any'


def test_interface_address_with_prefix_length_becomes_the_host_address():
    # edge02's external address is written 198.51.100.11/27: the rule is for that host, not its subnet.
    rules = by_name(plan('edge02')['rules'])
    assert rules['Lync XMPP Federation - xmpp-s2s-inbound-ipv4']['localip'] == '198.51.100.11'
    assert rules['Lync XMPP Federation - xmpp-gateway-internal-ipv6']['localip'] == '2001:db8:20::11'
    # No IPv6 external address, no IPv6 5269 rule.
    assert 'Lync XMPP Federation - xmpp-s2s-inbound-ipv6' not in rules


def test_front_end_reaches_every_edge_internal_address():
    rules = by_name(plan('fe01')['rules'])
    assert sorted(rules) == ['Lync XMPP Federation - xmpp-gateway-internal-ipv4',
                             'Lync XMPP Federation - xmpp-gateway-internal-ipv6']
    gateway = rules['Lync XMPP Federation - xmpp-gateway-internal-ipv4']
    assert gateway['direction'] == 'out'
    assert gateway['localip'] == 'any'
    assert gateway['localport'] == 'any'
    assert gateway['remoteip'] == '198.51.100.140,198.51.100.141'
    assert gateway['remoteport'] == '23456'
    assert rules['Lync XMPP Federation - xmpp-gateway-internal-ipv6']['remoteip'] == '2001:db8:20::11'


def test_partner_networks_narrow_the_remote_address_of_5269():
    rules = by_name(plan('edge01', partner_networks=['198.51.100.96/27', '2001:db8:99::/48', '198.51.100.7'])['rules'])
    assert rules['Lync XMPP Federation - xmpp-s2s-inbound-ipv4']['remoteip'] == '198.51.100.7,198.51.100.96/27'
    assert rules['Lync XMPP Federation - xmpp-s2s-outbound-ipv4']['remoteip'] == '198.51.100.7,198.51.100.96/27'
    assert rules['Lync XMPP Federation - xmpp-s2s-inbound-ipv6']['remoteip'] == '2001:db8:99::/48'
    # 23456 is not a partner row.
    assert rules['Lync XMPP Federation - xmpp-gateway-internal-ipv4']['remoteip'] == 'any'


def test_restricting_internal_sources_makes_the_front_end_pool_the_remote_address():
    rules = by_name(plan('edge02', restrict_internal_sources=True)['rules'])
    assert rules['Lync XMPP Federation - xmpp-gateway-internal-ipv4']['remoteip'] == '198.51.100.200,198.51.100.201'
    assert rules['Lync XMPP Federation - xmpp-gateway-internal-ipv6']['remoteip'] == '2001:db8:30::201'


def test_names_are_unique_prefixed_with_the_group_and_carry_group_profiles_and_description():
    for host in WINDOWS_HOSTS:
        rules = host_rules(MATRIX, host, HOSTVARS, GROUPS)
        arguments = plan(host, group='Edge XMPP', profiles=['public', 'domain'])['rules']
        assert len(arguments) == len(rules)
        names = [args['name'] for args in arguments]
        assert len(set(name.casefold() for name in names)) == len(names)
        for rule, args in zip(rules, arguments):
            assert args['name'] == 'Edge XMPP - ' + rule['name']
            assert args['group'] == 'Edge XMPP'
            # Profiles in the firewall's own order, each once.
            assert args['profiles'] == ['domain', 'public']
            assert args['enabled'] is True and args['state'] == 'present'
            assert args['program'] == 'any' and args['service'] == 'any'
            # The description names the documented row and the rule.
            assert rule['comment'] in args['description']
            assert 'XMPP federation row' in args['description']
            assert rule['name'] in args['description']


def test_description_names_the_row_number_of_the_documented_table():
    rules = by_name(plan('edge01')['rules'])
    assert 'row 1' in rules['Lync XMPP Federation - xmpp-s2s-inbound-ipv4']['description']
    assert 'row 2' in rules['Lync XMPP Federation - xmpp-s2s-outbound-ipv4']['description']
    assert 'row 3' in rules['Lync XMPP Federation - xmpp-gateway-internal-ipv4']['description']


def test_extra_rows_port_lists_ranges_udp_and_block():
    extra = [{'id': 'sip-test', 'transport': 'udp', 'ports': [6010, '6000-6005', 5061], 'source': ['198.51.100.64/26'],
              'destination': 'edge_internal', 'action': 'reject', 'comment': 'extra row'}]
    rules = by_name(plan('edge01', matrix=MATRIX + extra)['rules'])
    extra_args = rules['Lync XMPP Federation - sip-test-ipv4']
    assert extra_args['protocol'] == 'udp'
    assert extra_args['localport'] == '5061,6000-6005,6010'
    assert extra_args['remoteip'] == '198.51.100.64/26'
    assert extra_args['action'] == 'block'


def test_output_is_stable():
    assert plan('edge01') == plan('edge01')
    assert plan('fe02') == copy.deepcopy(plan('fe02'))


# -- refusals ------------------------------------------------------------------

@pytest.mark.parametrize('host', ['fw-ext01', 'fw-int01'])
def test_forward_rules_are_refused_naming_host_and_rule(host):
    with pytest.raises(RuleError) as error:
        plan(host)
    message = str(error.value)
    assert "host '%s'" % host in message
    assert "is a forward rule" in message
    assert "xmpp-" in message


def test_translation_rule_is_refused():
    rule = {'name': 'dnat-test', 'direction': 'forward', 'ports': [5269], 'destination': ['198.51.100.62'],
            'nat': 'dnat', 'nat_to': '198.51.100.11'}
    with pytest.raises(RuleError, match="rule 'dnat-test' is a forward rule"):
        windows_firewall_plan([rule], host='edge02')


@pytest.mark.parametrize('profiles', [['domain', 'work'], [], 'Public', None])
def test_bad_profiles_are_refused(profiles):
    with pytest.raises(RuleError, match="xmpp_firewall_windows_profiles"):
        windows_firewall_plan([], profiles=profiles, host='edge01')


def test_single_profile_string_is_taken_as_a_list():
    arguments = windows_firewall_plan(host_rules(MATRIX, 'edge01', HOSTVARS, GROUPS), profiles='public')['rules']
    assert all(args['profiles'] == ['public'] for args in arguments)


@pytest.mark.parametrize('group', ['', '   ', None, 5])
def test_bad_group_is_refused(group):
    with pytest.raises(RuleError, match="xmpp_firewall_windows_group"):
        windows_firewall_plan([], group=group, host='edge01')


def test_bad_rules_are_refused_by_the_rule_model():
    with pytest.raises(RuleError, match="port 70000 is outside"):
        windows_firewall_plan([{'name': 'x', 'direction': 'in', 'ports': [70000]}], host='edge01')


def test_filter_wraps_errors_for_ansible():
    windows_firewall_rules = FilterModule().filters()['windows_firewall_rules']
    with pytest.raises(AnsibleFilterError, match="lync.xmpp_federation.windows_firewall_rules: host 'fw-ext01'"):
        windows_firewall_rules(host_rules(MATRIX, 'fw-ext01', HOSTVARS, GROUPS), host='fw-ext01')
    assert windows_firewall_rules([], host='x') == {'rules': [], 'stale': [], 'replace': [], 'reset': []}


# -- stale rules -----------------------------------------------------------------

def test_rules_no_longer_wanted_are_stale_and_wanted_ones_are_not():
    wanted = [args['name'] for args in plan('edge01')['rules']]
    existing = wanted + ['Lync XMPP Federation - xmpp-old-row', 'Lync XMPP Federation - xmpp-old-row']
    assert plan('edge01', existing=existing)['stale'] == ['Lync XMPP Federation - xmpp-old-row']


def test_names_compare_without_case_as_windows_does():
    # win_firewall_rule finds a rule by name without regard to case, so a wanted rule
    # written in another case is updated in place, and removing it "as stale" would delete the wanted rule.
    existing = ['lync xmpp federation - XMPP-S2S-INBOUND-IPV4']
    assert plan('edge01', existing=existing)['stale'] == []
    assert stale_rule_names(['A - x', 'a - X', 'B'], ['a - x']) == ['B']


def test_a_changed_address_updates_in_place_and_a_lost_family_leaves_a_stale_rule():
    before = plan('edge02')
    moved = copy.deepcopy(HOSTVARS)
    # The internal interface moves and loses its IPv6 address.
    moved['edge02']['lync_edge_internal_ip'] = '198.51.100.142'
    after = plan('edge02', hostvars=moved, existing=[args['name'] for args in before['rules']])
    assert after['stale'] == ['Lync XMPP Federation - xmpp-gateway-internal-ipv6']
    gateway = by_name(after['rules'])['Lync XMPP Federation - xmpp-gateway-internal-ipv4']
    assert gateway['localip'] == '198.51.100.142'


def test_a_host_that_left_its_groups_loses_every_rule_of_the_group():
    before = plan('fe01')
    left = dict((name, [host for host in members if host != 'fe01']) for name, members in GROUPS.items())
    after = plan('fe01', groups=left, existing=[args['name'] for args in before['rules']])
    assert after['rules'] == []
    assert after['stale'] == sorted(args['name'] for args in before['rules'])


def test_a_removed_row_leaves_its_rules_stale():
    before = plan('edge01')
    without_outbound = [row for row in MATRIX if row['id'] != 'xmpp-s2s-outbound']
    after = plan('edge01', matrix=without_outbound, existing=[args['name'] for args in before['rules']])
    assert after['stale'] == ['Lync XMPP Federation - xmpp-s2s-outbound-ipv4',
                              'Lync XMPP Federation - xmpp-s2s-outbound-ipv6']


def test_existing_names_must_be_a_list_of_text():
    with pytest.raises(RuleError, match='not a list of names'):
        windows_firewall_plan([], host='edge01', existing='Lync XMPP Federation - x')


# -- refusals Windows needs, before the host is touched ------------------------------

def extra_row(row_id, **fields):
    row = {'id': row_id, 'transport': 'tcp', 'ports': [5269], 'source': 'any', 'destination': 'edge_external',
           'comment': 'extra row'}
    row.update(fields)
    return row


def plan_with_extra(host, rows, **options):
    rules = host_rules(MATRIX + rows, host, HOSTVARS, GROUPS)
    return windows_firewall_plan(rules, group=GROUP, profiles=ALL_PROFILES, host=host, extra_rows=rows, **options)


@pytest.mark.parametrize('group', ['Lync|XMPP', '|', 'Lync XMPP Federation |'])
def test_a_pipe_in_the_group_is_refused(group):
    with pytest.raises(RuleError) as error:
        windows_firewall_plan(host_rules(MATRIX, 'edge01', HOSTVARS, GROUPS), group=group, host='edge01')
    assert str(error.value) == ("host 'edge01': variable 'xmpp_firewall_windows_group': %r holds '|', which the "
                                "Windows firewall refuses in a rule group" % group)


def test_a_pipe_in_a_description_is_refused_naming_the_variable_of_its_row():
    rows = [extra_row('sip-extra', comment='SIP | federation')]
    with pytest.raises(RuleError) as error:
        plan_with_extra('edge01', rows)
    message = str(error.value)
    assert message.startswith("host 'edge01': variable 'xmpp_firewall_extra_rows' (row 'sip-extra'): comment "
                              "'SIP | federation' of rule 'sip-extra-ipv4' holds '|'")
    # A row of the matrix itself names the matrix.
    matrix = [dict(row, comment=row['comment'] + ' |') if row['id'] == 'xmpp-s2s-outbound' else row for row in MATRIX]
    with pytest.raises(RuleError, match=r"host 'edge01': variable 'xmpp_firewall_matrix' \(row 'xmpp-s2s-outbound'\)"):
        windows_firewall_plan(host_rules(matrix, 'edge01', HOSTVARS, GROUPS), host='edge01')


@pytest.mark.parametrize('name', ['all', 'ALL', 'All'])
def test_a_rule_named_all_is_refused(name):
    rule = {'name': name, 'direction': 'in', 'ports': [5269], 'destination': ['198.51.100.10']}
    with pytest.raises(RuleError) as error:
        windows_firewall_plan([rule], host='edge01', extra_rows=[{'id': name}])
    assert ("host 'edge01': variable 'xmpp_firewall_extra_rows' (row '%s'): rule name '%s' is refused on Windows"
            % (name, name)) in str(error.value)
    # Names that merely contain it are fine.
    windows_firewall_plan([dict(rule, name='all-ipv4'), dict(rule, name='install', ports=[5270])], host='edge01')


def test_an_allow_rule_that_a_block_rule_overlaps_is_refused_naming_both():
    # On Linux, "allow partners, then block any" works in that order; on Windows the block wins and cuts off the partners.
    rows = [extra_row('block-5269', action='drop')]
    with pytest.raises(RuleError) as error:
        plan_with_extra('edge01', rows)
    message = str(error.value)
    assert message.startswith("host 'edge01': variable 'xmpp_firewall_extra_rows' (row 'block-5269'): drop rule "
                              "'block-5269-ipv4' and allow rule 'xmpp-s2s-inbound-ipv4' of variable "
                              "'xmpp_firewall_matrix' (row 'xmpp-s2s-inbound') match the same connections (in, tcp, "
                              "ports 5269 and 5269)")
    assert 'on Windows a block rule always wins over an allow rule' in message
    # A reject of a port range that takes in 5269, from any source: the same.
    with pytest.raises(RuleError, match="reject rule 'block-range-ipv4' and allow rule 'xmpp-s2s-inbound-ipv4'"):
        plan_with_extra('edge01', [extra_row('block-range', action='reject', ports=['5000-6000'])])


@pytest.mark.parametrize('row', [
    # Another port.
    extra_row('block-5270', action='drop', ports=[5270]),
    # Another direction: blocking outbound 5269 from elsewhere does not touch inbound 5269 (but see below).
    extra_row('block-udp', action='drop', transport='udp'),
    # Sources that the allow rule's do not take in: partner networks narrow the allow rule.
    extra_row('block-others', action='drop', source=['198.51.100.200/29']),
    # Another local address: the internal interface.
    extra_row('block-internal', action='drop', destination='edge_internal'),
])
def test_allow_and_block_that_cannot_match_the_same_connection_are_accepted(row):
    rules = host_rules(MATRIX + [row], 'edge01', HOSTVARS, GROUPS, partner_networks=['198.51.100.96/27'])
    result = windows_firewall_plan(rules, host='edge01', extra_rows=[row])
    assert any(args['action'] == 'block' for args in result['rules'])


def test_allow_and_block_of_different_families_do_not_overlap():
    allow = {'name': 'allow4', 'direction': 'in', 'ports': [5269], 'destination': ['198.51.100.10']}
    block = {'name': 'block6', 'direction': 'in', 'ports': [5269], 'destination': ['2001:db8::10'], 'action': 'drop'}
    windows_firewall_plan([allow, block], host='edge01')
    # A block rule with no address at all matches both families.
    with pytest.raises(RuleError, match="drop rule 'block-any' and allow rule 'allow4'"):
        windows_firewall_plan([allow, dict(block, name='block-any', destination=[])], host='edge01')
    # Overlapping networks rather than equal ones.
    with pytest.raises(RuleError, match="drop rule 'block-net' and allow rule 'allow4'"):
        windows_firewall_plan([allow, dict(block, name='block-net', destination=['198.51.100.0/28'])], host='edge01')


# -- the host's listing: ownership, policy, stale set ------------------------------------

def listing_of(ours, current='public', modify_state=0, blocked=(), namesakes=(), settings=None, disabled=(),
               properties=None):
    """A listing as files/list_group.ps1 returns it ($Ansible.Result)."""
    objects = []
    for name in ours:
        item = {'name': name, 'description': 'XMPP federation row 1 (rule x, managed by lync.xmpp_federation)',
                'interface_types': 'All', 'edge_traversal': 0, 'secure_flags': 0,
                'settings': dict((settings or {}).get(name, {}))}
        item.update((properties or {}).get(name, {}))
        objects.append(item)
    return {
        'ours': objects,
        'namesakes': [{'name': name, 'group': group, 'direction': 1} for name, group in namesakes],
        'policy': {
            'modify_state': modify_state,
            'current_profiles': sum({'domain': 1, 'private': 2, 'public': 4}[profile] for profile in current.split(',')
                                    if profile),
            'profiles': dict((profile, {'enabled': profile not in disabled, 'block_all_inbound': profile in blocked})
                             for profile in ALL_PROFILES),
        },
    }


def edge_names(host='edge01'):
    return [args['name'] for args in plan(host)['rules']]


def test_the_stale_set_is_exactly_the_objects_of_our_group_no_longer_wanted():
    listing = listing_of(edge_names() + ['Lync XMPP Federation - xmpp-old-row', 'LYNC XMPP FEDERATION - XMPP-OLD-ROW'])
    result = plan('edge01', listing=listing)
    # Once per name (the COM step removes every object of our group with that name), in any case.
    assert result['stale'] == ['Lync XMPP Federation - xmpp-old-row']
    assert result['replace'] == []
    # Wanted names in another case are the same rules: updated in place, never removed.
    assert plan('edge01', listing=listing_of([name.upper() for name in edge_names()]))['stale'] == []


def test_state_absent_takes_out_every_object_of_our_group_and_judges_no_policy():
    listing = listing_of(edge_names() + ['Lync XMPP Federation - xmpp-old-row'], modify_state=1, blocked=('public',))
    result = windows_firewall_plan([], host='edge01', listing=listing)
    assert result == {'rules': [], 'stale': sorted(edge_names() + ['Lync XMPP Federation - xmpp-old-row']),
                      'replace': [], 'reset': []}
    assert windows_firewall_plan([], host='edge01', listing=listing_of([]))['stale'] == []


@pytest.mark.parametrize('rules_of_host', ['edge01', None])
def test_a_rule_outside_our_group_with_a_name_of_ours_is_refused_naming_it(rules_of_host):
    name = 'Lync XMPP Federation - xmpp-s2s-inbound-ipv4'
    listing = listing_of(edge_names(), namesakes=[(name, 'Admin rules'), (name.lower(), '')])
    with pytest.raises(RuleError) as error:
        if rules_of_host:
            plan(rules_of_host, listing=listing)
        else:  # state absent refuses too: nothing is changed on a host with a namesake
            windows_firewall_plan([], host='edge01', listing=listing)
    message = str(error.value)
    assert message.startswith("host 'edge01': variable 'xmpp_firewall_windows_group': 'Lync XMPP Federation': the "
                              "host has rules outside this group with the name of a rule of ours: "
                              "'Lync XMPP Federation - xmpp-s2s-inbound-ipv4' (group 'Admin rules'), "
                              "'lync xmpp federation - xmpp-s2s-inbound-ipv4' (group '')")
    assert 'nothing was changed' in message


def test_a_group_holding_rules_that_are_not_ours_is_refused_before_anything_is_removed():
    # The admin chose a group name already in use: its rules lack our mark and are never removed as stale.
    listing = listing_of(['Remote Desktop - User Mode (TCP-In)', 'Remote Desktop - Shadow (TCP-In)'],
                         properties={'Remote Desktop - User Mode (TCP-In)': {'description': 'Inbound rule for RDP'},
                                     'Remote Desktop - Shadow (TCP-In)': {'description': ''}})
    for rules in (host_rules(MATRIX, 'edge01', HOSTVARS, GROUPS), []):
        with pytest.raises(RuleError) as error:
            windows_firewall_plan(rules, group='Remote Desktop', host='edge01', listing=listing)
        assert str(error.value).startswith(
            "host 'edge01': variable 'xmpp_firewall_windows_group': 'Remote Desktop' holds rules that are not ours "
            "(their description lacks 'managed by lync.xmpp_federation'): 'Remote Desktop - Shadow (TCP-In)', "
            "'Remote Desktop - User Mode (TCP-In)'. Nothing was changed")
    # A wanted rule of ours whose description was edited by hand is not refused: the module puts it back.
    names = edge_names()
    edited = listing_of(names, properties={names[0]: {'description': 'edited'}})
    assert plan('edge01', listing=edited)['stale'] == []


def test_objects_the_module_cannot_put_back_are_replaced():
    names = edge_names()
    owner = {names[0]: {'RemoteMachineAuthorizedList': 'O:LSD:(A;;CC;;;S-1-5-21-1)'}}
    listing = listing_of(names + [names[1].upper()], settings=owner)
    result = plan('edge01', listing=listing)
    assert result['replace'] == sorted([names[0], names[1]])
    assert result['stale'] == [] and result['reset'] == []


@pytest.mark.parametrize('edit', [
    {'interface_types': 'Lan'}, {'interface_types': 'Wireless,RemoteAccess'}, {'edge_traversal': 1},
    {'edge_traversal': 2}, {'secure_flags': 1}, {'secure_flags': 4},
])
def test_a_hand_edit_of_what_the_module_does_not_document_is_put_back(edit):
    names = edge_names()
    result = plan('edge01', listing=listing_of(names, properties={names[2]: edit}))
    assert result['reset'] == [names[2]]
    assert result['replace'] == [] and result['stale'] == []


def test_properties_this_windows_lacks_or_already_at_their_defaults_are_left_alone():
    names = edge_names()
    # Windows Server 2008 R2 has no SecureFlags; a listing reads it as null. "ALL" is how some builds spell it.
    old = dict((name, {'secure_flags': None, 'interface_types': 'ALL'}) for name in names)
    assert plan('edge01', listing=listing_of(names, properties=old))['reset'] == []
    # A stale object is removed, not reset; an object to replace is not reset as well.
    edited = {'Lync XMPP Federation - old': {'edge_traversal': 1}, names[0]: {'edge_traversal': 1}}
    result = plan('edge01', listing=listing_of(names + ['Lync XMPP Federation - old'], properties=edited,
                                               settings={names[0]: {'LocalUserOwner': 'S-1-5-21-1'}}))
    assert result == dict(result, stale=['Lync XMPP Federation - old'], replace=[names[0]], reset=[])


def test_group_policy_overriding_local_rules_is_refused_unless_accepted():
    listing = listing_of(edge_names(), current='domain,public', modify_state=1)
    with pytest.raises(RuleError) as error:
        plan('edge01', listing=listing)
    message = str(error.value)
    assert message.startswith("host 'edge01': variable 'xmpp_firewall_windows_accept_group_policy': false: Group "
                              "Policy overrides the local firewall rules of this host (LocalPolicyModifyState 1, "
                              "GP_OVERRIDE")
    assert 'in the profile(s) in use (domain, public)' in message
    assert plan('edge01', listing=listing, accept_group_policy=True)['stale'] == []
    with pytest.raises(RuleError, match="'xmpp_firewall_windows_accept_group_policy': 'yes' is not true or false"):
        plan('edge01', listing=listing, accept_group_policy='yes')


def test_a_profile_in_use_that_blocks_all_inbound_is_refused_naming_the_profile():
    listing = listing_of(edge_names(), current='public', blocked=('public',), modify_state=2)
    with pytest.raises(RuleError) as error:
        plan('edge01', listing=listing)
    message = str(error.value)
    assert message.startswith("host 'edge01': variable 'xmpp_firewall_windows_profiles': profile 'public' is in use "
                              "and blocks all inbound connections (BlockAllInboundTraffic")
    assert 'xmpp-s2s-inbound-ipv4' in message
    # Accepting Group Policy does not make blocked inbound rules work.
    with pytest.raises(RuleError, match="profile 'public' is in use"):
        plan('edge01', listing=listing, accept_group_policy=True)
    # A blocking profile that is not in use does not matter.
    assert plan('edge01', listing=listing_of(edge_names(), current='private', blocked=('public',)))['stale'] == []


def test_a_front_end_with_outbound_rules_only_is_not_refused_for_blocked_inbound():
    listing = listing_of([], current='domain', blocked=('domain',), modify_state=2)
    result = plan('fe01', listing=listing)
    assert [args['direction'] for args in result['rules']] == ['out', 'out']


def test_a_host_none_of_whose_profiles_in_use_is_ours_is_refused():
    # A workgroup Edge has no Domain profile: rules for the Domain profile alone would never apply there.
    with pytest.raises(RuleError) as error:
        plan('edge01', profiles=['domain'], listing=listing_of([], current='private,public'))
    assert str(error.value).startswith("host 'edge01': variable 'xmpp_firewall_windows_profiles': ['domain']: none of "
                                       "the profiles in use on the host (private, public) is among them")
    assert plan('edge01', profiles=['private', 'public'], listing=listing_of([], current='public'))['stale'] == []


@pytest.mark.parametrize('listing', [
    None, [], 'text', {'ours': 'x'}, {'ours': [{'name': 5}]}, {'namesakes': [{}]}, {'policy': []},
    {'policy': {'modify_state': 'x', 'current_profiles': 4}},
])
def test_a_listing_that_is_not_what_the_script_returns_fails_closed(listing):
    if listing is None:
        # No listing at all is the old interface (names only), not an error.
        assert plan('edge01')['stale'] == []
        return
    with pytest.raises(RuleError, match="host 'edge01': the listing of the host's firewall"):
        plan('edge01', listing=listing)


# -- against the documentation of community.windows.win_firewall_rule -----------

def _collection_roots():
    """Where community.windows may be: the collection loader, ANSIBLE_COLLECTIONS_PATH, the checkout's .cache."""
    roots = []
    try:
        import ansible_collections.community.windows as windows_collection
        roots.extend(os.path.dirname(os.path.dirname(os.path.dirname(path)))
                     for path in getattr(windows_collection, '__path__', []))
    except ImportError:
        pass
    for entry in os.environ.get('ANSIBLE_COLLECTIONS_PATH', os.environ.get('ANSIBLE_COLLECTIONS_PATHS', '')).split(
            os.pathsep):
        if entry:
            roots.extend([entry, os.path.dirname(entry)])
    # The collection tree itself, and the checkout it was copied from (scripts/test.sh extracts it there).
    roots.append(os.path.dirname(os.path.dirname(os.path.dirname(COLLECTION))))
    roots.append(os.path.join(COLLECTION, '.cache', 'collections'))
    return roots


def _win_firewall_rule_documentation():
    for root in _collection_roots():
        for base in (root, os.path.join(root, 'ansible_collections')):
            module_dir = os.path.join(base, 'community', 'windows', 'plugins', 'modules')
            for name in ('win_firewall_rule.py', 'win_firewall_rule.yml'):
                path = os.path.join(module_dir, name)
                if os.path.isfile(path):
                    return path, _documentation_from(path)
    return None, None


def _documentation_from(path):
    with open(path) as handle:
        text = handle.read()
    if path.endswith('.yml'):
        return yaml.safe_load(text)['DOCUMENTATION']
    start = text.index("DOCUMENTATION = r'''") + len("DOCUMENTATION = r'''")
    return yaml.safe_load(text[start:text.index("'''", start)])


WIN_FIREWALL_RULE_DOCS = _win_firewall_rule_documentation()
DOC_PATH = WIN_FIREWALL_RULE_DOCS[0]
WIN_DOCUMENTATION = WIN_FIREWALL_RULE_DOCS[1]
needs_documentation = pytest.mark.skipif(
    WIN_DOCUMENTATION is None,
    reason='community.windows is not installed (bash scripts/setup.sh extracts it into .cache/collections and '
           'scripts/test.sh makes it visible to ansible-test): cannot read the documentation of win_firewall_rule')

TYPES = {'str': (str,), 'bool': (bool,), 'int': (int,), 'list': (list,), 'dict': (dict,), 'path': (str,)}


def documented_options():
    options = {}
    for name, spec in WIN_DOCUMENTATION['options'].items():
        options[name] = spec
        for alias in spec.get('aliases') or []:
            options[alias] = spec
    return options


def check_against_documentation(arguments):
    """Problems with one win_firewall_rule argument set, as the module's own documentation defines it."""
    options = documented_options()
    problems = []
    if 'name' not in arguments and 'group' not in arguments:
        problems.append('neither name nor group (the module requires one)')
    for key, value in sorted(arguments.items()):
        spec = options.get(key)
        if spec is None:
            problems.append('%s: not a documented option' % key)
            continue
        kind = spec.get('type', 'str')
        if not isinstance(value, TYPES[kind]) or (kind != 'bool' and isinstance(value, bool)):
            problems.append('%s: %r is not of type %s' % (key, value, kind))
            continue
        values = value if kind == 'list' else [value]
        if kind == 'list' and spec.get('elements'):
            problems.extend('%s: element %r is not of type %s' % (key, element, spec['elements'])
                            for element in values if not isinstance(element, TYPES[spec['elements']]))
        if spec.get('choices'):
            problems.extend('%s: %r is not one of %s' % (key, element, spec['choices'])
                            for element in values if element not in spec['choices'])
    return problems


def all_generated_argument_sets():
    sets = []
    extra = [{'id': 'extra', 'transport': 'udp', 'ports': ['6000-6005'], 'source': ['2001:db8:99::/48'],
              'destination': 'edge_external', 'action': 'drop', 'comment': 'extra row'}]
    for host in WINDOWS_HOSTS:
        for narrowing in ({}, {'partner_networks': ['198.51.100.96/27', '2001:db8:99::/48'],
                               'restrict_internal_sources': True}):
            for profiles in (ALL_PROFILES, ['public'], ['domain', 'private']):
                sets.extend(plan(host, profiles=profiles, matrix=MATRIX + extra, **narrowing)['rules'])
    return sets


@needs_documentation
def test_the_checker_itself_finds_misspelt_and_invalid_arguments():
    good = plan('edge01')['rules'][0]
    assert check_against_documentation(good) == []
    for bad, expected in (({'local_port': '5269'}, 'local_port: not a documented option'),
                          ({'direction': 'inbound'}, "direction: 'inbound' is not one of"),
                          ({'action': 'accept'}, "action: 'accept' is not one of"),
                          ({'enabled': 'yes'}, 'enabled: '),
                          ({'profiles': 'public'}, 'profiles: '),
                          ({'localport': 5269}, 'localport: 5269 is not of type str')):
        arguments = dict(good, **bad)
        problems = check_against_documentation(arguments)
        assert any(expected in problem for problem in problems), (bad, problems)
    assert check_against_documentation({'state': 'absent'}) == ['neither name nor group (the module requires one)']


@needs_documentation
def test_every_generated_argument_set_is_valid_for_win_firewall_rule():
    sets = all_generated_argument_sets()
    assert len(sets) > 50
    problems = dict((args['name'], check_against_documentation(args)) for args in sets)
    assert dict((name, found) for name, found in problems.items() if found) == {}, DOC_PATH


def test_the_role_never_removes_with_win_firewall_rule():
    # win_firewall_rule removes by name alone (and a group removal goes name by name too), which reaches
    # same-named rules of other groups: every removal of the role goes through its own COM step instead.
    with open(WINDOWS_TASKS) as handle:
        tasks = yaml.safe_load(handle)
    for task in tasks:
        if WIN_FIREWALL_RULE in task:
            assert task[WIN_FIREWALL_RULE]['state'] == '{{ item.state }}'
    assert set(args['state'] for args in all_generated_argument_sets()) == {'present'}


@needs_documentation
def test_the_role_passes_exactly_the_generated_arguments_and_only_documented_ones():
    with open(WINDOWS_TASKS) as handle:
        tasks = yaml.safe_load(handle)
    calls = [task for task in tasks if WIN_FIREWALL_RULE in task]
    assert len(calls) == 1
    options = documented_options()
    generated = set(plan('edge01')['rules'][0])
    create = [task for task in calls if task.get('loop_control', {}).get('label') == '{{ item.name }}']
    assert len(create) == 1
    create_args = create[0][WIN_FIREWALL_RULE]
    # Every generated argument reaches the module, under its own name.
    assert set(create_args) == generated
    assert all(value == '{{ item.%s }}' % key for key, value in create_args.items())
    for task in calls:
        assert set(task[WIN_FIREWALL_RULE]) <= set(options), task['name']


# -- the role's own templates, rendered by Ansible's templar ------------------------
# The Windows path cannot run here (no Windows, no PowerShell), so the role's
# glue around the filter is rendered exactly as the role writes it.

def _templar(variables):
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    return Templar(loader=DataLoader(), variables=variables)


def render(expression, **variables):
    try:
        from ansible.template import trust_as_template
    except ImportError:  # ansible-core before 2.19 templates every string it is given

        def trust_as_template(value):
            return value
    with open(DEFAULTS) as handle:
        defaults = yaml.safe_load(handle)
    defaults.update(variables)
    return _templar(defaults).template(trust_as_template(expression))


def role_tasks(name):
    with open(os.path.join(COLLECTION, 'roles', 'xmpp_firewall', 'tasks', name)) as handle:
        return dict((task['name'], task) for task in yaml.safe_load(handle))


def test_role_computes_the_rules_with_the_extra_rows_and_none_for_absent():
    compute = role_tasks('main.yml')["Compute this host's XMPP federation rules from the matrix and the inventory"]
    expression = compute['ansible.builtin.set_fact']['xmpp_firewall__rules']
    extra = [{'id': 'extra', 'transport': 'tcp', 'ports': [443], 'source': 'any', 'destination': 'edge_external'}]
    rules = render(expression, inventory_hostname='edge02', hostvars=HOSTVARS, groups=GROUPS,
                   xmpp_firewall_extra_rows=extra, xmpp_firewall_partner_networks=['198.51.100.96/27'])
    assert [rule['name'] for rule in rules] == [rule['name'] for rule in host_rules(
        MATRIX + extra, 'edge02', HOSTVARS, GROUPS, partner_networks=['198.51.100.96/27'])]
    assert 'extra-ipv4' in [rule['name'] for rule in rules]
    # The extra rows go in on their own: an error in one of them names their variable, not the matrix.
    with pytest.raises(Exception) as error:
        render(expression, inventory_hostname='edge02', hostvars=HOSTVARS, groups=GROUPS,
               xmpp_firewall_extra_rows=[dict(extra[0], ports=[0])])
    assert ("host 'edge02': variable 'xmpp_firewall_extra_rows': row 'extra': field 'ports': port 0 is outside "
            "1-65535") in str(error.value)
    # Absent needs no rules, so an inventory that no longer validates can still be cleaned up.
    broken = copy.deepcopy(HOSTVARS)
    del broken['edge02']['lync_edge_external_ip']
    assert render(expression, inventory_hostname='edge02', hostvars=broken, groups=GROUPS,
                  xmpp_firewall_state='absent') == []


@pytest.mark.parametrize('connection, shell, os_family, platform, windows', [
    ('winrm', None, None, 'auto', True),
    ('psrp', None, None, 'auto', True),
    ('ansible.builtin.psrp', None, None, 'auto', True),
    ('ssh', 'powershell', None, 'auto', True),
    ('ssh', 'cmd', None, 'auto', True),
    ('ssh', None, None, 'auto', False),
    ('ssh', 'sh', None, 'auto', False),
    ('local', None, None, 'auto', False),
    ('containers.podman.podman', None, None, 'auto', False),
    ('community.aws.aws_ssm', None, 'Windows', 'auto', True),
    ('community.aws.aws_ssm', None, 'Debian', 'auto', False),
    ('ssh', None, 'Windows', 'auto', True),
    ('winrm', None, None, 'linux', False),
    ('ssh', None, None, 'windows', True),
])
def test_role_tells_windows_from_facts_or_the_connection(connection, shell, os_family, platform, windows):
    tasks = role_tasks('platform.yml')
    with open(os.path.join(COLLECTION, 'roles', 'xmpp_firewall', 'vars', 'main.yml')) as handle:
        variables = yaml.safe_load(handle)
    variables.update({'ansible_connection': connection, 'xmpp_firewall_platform': platform})
    if shell:
        variables['ansible_shell_type'] = shell
    variables['ansible_facts'] = {'os_family': os_family} if os_family else {}
    read = tasks['Read the platform from facts, the connection and the shell']['ansible.builtin.set_fact']
    for name, expression in read.items():
        variables[name] = render(expression, **variables).strip()
    gather = tasks['Gather the minimal facts, for a connection that does not tell the platform']['when']
    would_gather = all(render('{{ %s }}' % condition, **variables) for condition in gather)
    # Only a connection the role cannot read, without facts, costs a fact gathering.
    assert would_gather == (platform == 'auto' and not os_family and not shell
                            and connection == 'community.aws.aws_ssm')
    decide = tasks['Decide whether the host is Windows']['ansible.builtin.set_fact']['xmpp_firewall__windows']
    assert render(decide, **variables) is windows


def test_role_windows_tasks_map_every_rule_and_remove_only_the_stale_ones():
    tasks = role_tasks('windows.yml')
    rules = host_rules(MATRIX, 'edge01', HOSTVARS, GROUPS)
    variables = {'xmpp_firewall__rules': rules, 'inventory_hostname': 'edge01',
                 'xmpp_firewall_windows_group': 'Edge XMPP', 'xmpp_firewall_windows_profiles': ['public']}
    mapping = tasks['Map this host\'s rules to Windows firewall rules']['ansible.builtin.set_fact']
    arguments = render(mapping['xmpp_firewall__windows_rules'], **variables)
    assert arguments == plan('edge01', group='Edge XMPP', profiles=['public'])['rules']

    listing_task = tasks['List our group, the rules sharing its names, and whether local rules take effect']
    listing_args = listing_task[WIN_POWERSHELL]
    # Read-only, so it runs in check mode too and never reports a change.
    assert listing_task['check_mode'] is False and listing_task['changed_when'] is False
    assert 'when' not in listing_task
    assert render(listing_args['parameters']['Names'], xmpp_firewall__windows_rules=arguments) == \
        [args['name'] for args in arguments]
    assert render(listing_args['parameters']['Group'], **variables) == 'Edge XMPP'
    assert 'list_group.ps1' in listing_args['script']

    create = tasks['Create or correct each Windows firewall rule']
    for item in arguments:
        rendered = dict((key, render(value, item=item)) for key, value in create[WIN_FIREWALL_RULE].items())
        assert rendered == item
        if WIN_DOCUMENTATION:
            assert check_against_documentation(rendered) == []

    judge = tasks['Judge the listing and work out which rule objects of our group must go']
    expression = judge['ansible.builtin.set_fact']['xmpp_firewall__windows_plan']
    names = [args['name'] for args in arguments]
    listing = {'result': listing_of(names + ['Edge XMPP - xmpp-old-row'], current='public')}
    judged = render(expression, xmpp_firewall__windows_listing=listing, **variables)
    assert judged['stale'] == ['Edge XMPP - xmpp-old-row'] and judged['replace'] == []
    # An empty list on a host that had rules (state absent, or the host left its groups): every object of the group goes.
    emptied = dict(variables)
    emptied['xmpp_firewall__rules'] = []
    assert render(expression, xmpp_firewall__windows_listing=listing, **emptied)['stale'] == \
        sorted(names + ['Edge XMPP - xmpp-old-row'])
    # Group Policy: refused by default, written when the estate says it deploys by Group Policy.
    overridden = {'result': listing_of(names, current='domain', modify_state=1)}
    domain = dict(variables)
    domain['xmpp_firewall_windows_profiles'] = ['domain']
    with pytest.raises(Exception, match='Group Policy overrides'):
        render(expression, xmpp_firewall__windows_listing=overridden, **domain)
    assert render(expression, xmpp_firewall__windows_listing=overridden, xmpp_firewall_windows_accept_group_policy=True,
                  **domain)['stale'] == []

    before = tasks['Put back what win_firewall_rule does not own on the rule objects of our group']
    after = tasks['Remove the rule objects of our group that are no longer wanted']
    order = list(tasks)
    assert order.index(before['name']) < order.index(create['name']) < order.index(after['name'])
    edited = {'stale': ['Edge XMPP - old'], 'replace': ['Edge XMPP - a'], 'reset': ['Edge XMPP - b']}
    nothing = {'stale': [], 'replace': [], 'reset': []}
    for task, parameters in ((before, {'Group': 'Edge XMPP', 'Remove': ['Edge XMPP - a'], 'Reset': ['Edge XMPP - b']}),
                             (after, {'Group': 'Edge XMPP', 'Remove': ['Edge XMPP - old']})):
        assert 'apply_group.ps1' in task[WIN_POWERSHELL]['script']
        rendered = dict((key, render(value, xmpp_firewall__windows_plan=edited, **variables))
                        for key, value in task[WIN_POWERSHELL]['parameters'].items())
        assert rendered == parameters
        # Skipped, so no round trip, when there is nothing to do.
        assert render('{{ %s }}' % task['when'], xmpp_firewall__windows_plan=nothing) is False
        assert render('{{ %s }}' % task['when'], xmpp_firewall__windows_plan=edited) is True
    assert render('{{ %s }}' % before['when'], xmpp_firewall__windows_plan=dict(nothing, reset=['x'])) is True
    assert render(create['loop'], xmpp_firewall__windows=True, xmpp_firewall__windows_rules=arguments) == arguments


@pytest.mark.parametrize('task_file', ['main.yml', 'platform.yml', 'linux.yml', 'windows.yml'])
def test_role_loops_render_on_a_linux_firewall(task_file):
    # Ansible templates a loop before it evaluates the task's condition, so every loop of the role
    # must render on every host, including a Linux firewall whose forward rules the Windows mapping refuses.
    rules = host_rules(MATRIX, 'fw-ext01', HOSTVARS, GROUPS)
    variables = {'xmpp_firewall__rules': rules, 'inventory_hostname': 'fw-ext01', 'hostvars': HOSTVARS,
                 'groups': GROUPS, 'xmpp_firewall__windows': False, 'xmpp_firewall__state': 'present'}
    for name, task in role_tasks(task_file).items():
        if 'loop' in task:
            assert render(task['loop'], **variables) == [], name


def test_role_refuses_forward_rules_on_windows_before_touching_the_host():
    tasks = yaml.safe_load(open(os.path.join(COLLECTION, 'roles', 'xmpp_firewall', 'tasks', 'windows.yml')))
    # The mapping (which refuses) comes before the first task that reaches the host.
    assert 'ansible.builtin.set_fact' in tasks[0]
    rules = host_rules(MATRIX, 'fw-int01', HOSTVARS, GROUPS)
    with pytest.raises(Exception, match="host 'fw-int01': rule 'xmpp-gateway-internal-ipv4' is a forward rule"):
        render(tasks[0]['ansible.builtin.set_fact']['xmpp_firewall__windows_rules'],
               xmpp_firewall__rules=rules, inventory_hostname='fw-int01')


# -- the verify probe from a Windows source (roles/xmpp_firewall/tasks/probe_windows.yml) ----

PROBE_CHECKS = [
    {'id': 'xmpp-gateway-internal fe01 edge01 198.51.100.140 23456', 'to': '198.51.100.140', 'port': 23456,
     'transport': 'tcp', 'application': 'XMPP/MTLS', 'expected': 'open'},
    {'id': 'xmpp-gateway-internal fe01 edge02 2001:db8:20::11 23456', 'to': '2001:db8:20::11', 'port': 23456,
     'transport': 'tcp', 'application': 'XMPP/MTLS', 'expected': 'open'},
    {'id': 'next-port udp', 'to': '198.51.100.140', 'port': 23457, 'transport': 'udp', 'application': None,
     'expected': 'blocked'},
]


def test_the_windows_probe_is_one_win_powershell_call_with_the_interface_verify_uses():
    with open(os.path.join(COLLECTION, 'roles', 'xmpp_firewall', 'tasks', 'probe_windows.yml')) as handle:
        tasks = yaml.safe_load(handle)
    calls = [task for task in tasks if WIN_POWERSHELL in task]
    assert len(calls) == 1 and 'loop' not in calls[0]
    # The old per-check win_wait_for loop (IPv4 only on PowerShell 5.1) is gone.
    assert not [task for task in tasks if 'ansible.windows.win_wait_for' in task]
    probe = calls[0]
    assert probe['check_mode'] is False and probe['changed_when'] is False
    assert "lookup('ansible.builtin.file', 'probe_flows.ps1')" in probe[WIN_POWERSHELL]['script']
    variables = {'xmpp_firewall__probe_checks': PROBE_CHECKS, 'xmpp_firewall__probe_mode': 'protocol',
                 'xmpp_firewall__probe_timeout': '4'}
    parameters = dict((key, render(value, **variables)) for key, value in probe[WIN_POWERSHELL]['parameters'].items())
    # ansible-core 2.16 renders text where 2.19 renders an int; PowerShell's [int] parameter takes either.
    assert int(parameters.pop('Timeout')) == 4
    assert parameters == {'Checks': PROBE_CHECKS, 'Mode': 'protocol'}
    assert render('{{ %s }}' % probe['when'], **variables) is True
    no_checks = dict(variables)
    no_checks['xmpp_firewall__probe_checks'] = []
    assert render('{{ %s }}' % probe['when'], **no_checks) is False

    record = tasks[1]['ansible.builtin.set_fact']['xmpp_firewall__probe_observed']
    observed = {PROBE_CHECKS[0]['id']: {'observed': 'open', 'service': 'client-certificate-requested', 'detail': 'x'}}
    assert render(record, xmpp_firewall__probe_run={'result': observed}, **variables) == observed
    # No checks: no round trip, and an empty record rather than an undefined one.
    assert render(record, xmpp_firewall__probe_run={'skipped': True}, **no_checks) == {}


def test_the_probe_script_classifies_as_verify_expects():
    with open(os.path.join(COLLECTION, 'roles', 'xmpp_firewall', 'files', 'probe_flows.ps1')) as handle:
        script = handle.read()
    # A socket of the address's own family (IPv6 too), asynchronous connects, one bounded wait.
    assert '$address.AddressFamily' in script and 'BeginConnect' in script
    assert script.count('Start-Sleep') == 1
    for observed in ("'open'", "'refused'", "'timeout'", "'unreachable'", "'not-provable'"):
        assert observed in script, observed
    for error_code, observed in (('ConnectionRefused', 'refused'), ('HostUnreachable', 'unreachable'),
                                 ('NetworkUnreachable', 'unreachable')):
        assert "'%s' { '%s' }" % (error_code, observed) in script
    for service in ('client-certificate-requested', 'no-client-certificate-request', 'xmpp-stream', 'no-xmpp-stream'):
        assert "'%s'" % service in script
    assert ("<?xml version='1.0'?><stream:stream xmlns='jabber:server' \" +\n"
            "                \"xmlns:stream='http://etherx.jabber.org/streams' version='1.0' to='$($check.to)'>") in script
