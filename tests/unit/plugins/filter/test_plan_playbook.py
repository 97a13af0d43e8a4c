# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The plan playbook, run by ansible-playbook: every host's rules as the role computes them, the estate's flows,
the Markdown and CSV files, and no connection to any host (the example inventory's hosts do not exist)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import csv
import os
import subprocess
import sys

import pytest
import yaml

COLLECTION_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))
PLAYBOOK = os.path.join(COLLECTION_ROOT, 'playbooks', 'plan.yml')
EXAMPLE_INVENTORY = os.path.join(COLLECTION_ROOT, 'inventory', 'example')
RULE_COLUMNS = ['host', 'rule name', 'direction', 'protocol', 'ports', 'source', 'destination', 'action', 'nat']
FLOW_COLUMNS = ['row', 'kind', 'from', 'to', 'to host', 'port', 'transport', 'expected', 'nat']

ESTATE = {
    'all': {
        'children': {
            'lync_edge': {'hosts': {'edge1': {'lync_edge_external_ip': '198.51.100.10',
                                              'lync_edge_internal_ip': '198.51.100.130'}}},
            'lync_front_end': {'hosts': {'fe1': {'ansible_host': '198.51.100.200'}}},
            'lync_external_firewall': {'hosts': {'fw-ext': {}}},
            'lync_internal_firewall': {'hosts': {'fw-int': {}}},
        },
    },
}
SIP_ROW = {'id': 'sip-access-edge', 'transport': 'tcp', 'ports': [5061], 'source': 'any',
           'destination': 'edge_external', 'comment': 'Access Edge SIP/TLS'}


def collections_path():
    """Where ansible-playbook finds this collection: the ansible_collections tree that holds this copy of it
    (ansible-test's), else the path the environment already gives (scripts/env.sh in a checkout)."""
    namespace_dir = os.path.dirname(COLLECTION_ROOT)
    if os.path.basename(os.path.dirname(namespace_dir)) == 'ansible_collections':
        return os.path.dirname(os.path.dirname(namespace_dir))
    return os.environ.get('ANSIBLE_COLLECTIONS_PATH', '')


def run_plan(tmp_path, inventory, *extra_arguments):
    environment = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_NOCOLOR='1',
                       ANSIBLE_LOCAL_TEMP=str(tmp_path / 'ansible-local'), ANSIBLE_HOME=str(tmp_path / 'ansible-home'),
                       ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    # The ansible-core these tests import, whatever ansible-playbook is first on PATH.
    command = [sys.executable, '-m', 'ansible.cli.playbook', '-i', str(inventory), PLAYBOOK] + list(extra_arguments)
    return subprocess.run(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=300, check=False)


def estate_inventory(tmp_path, **all_vars):
    inventory = tmp_path / 'hosts.yml'
    inventory.write_text(yaml.safe_dump(dict(ESTATE, all=dict(ESTATE['all'], vars=all_vars))))
    return inventory


def csv_tables(path):
    """The CSV file's two tables (rules, flows), each a list of rows; an empty line separates them."""
    with open(str(path), newline='') as handle:
        rows = list(csv.reader(handle))
    blank = rows.index([])
    return rows[:blank], rows[blank + 1:]


def test_the_example_estate_as_csv_with_every_host_unreachable(tmp_path):
    plan_file = tmp_path / 'plan.csv'
    result = run_plan(tmp_path, EXAMPLE_INVENTORY, '-e', 'xmpp_firewall_plan_file=%s' % plan_file,
                      '-e', 'xmpp_firewall_verify_vantage=probe01', '-e', 'xmpp_firewall_verify_partner=198.51.100.245')
    assert result.returncode == 0, result.stdout
    assert 'unreachable=0' in result.stdout and 'failed=0' in result.stdout
    rules, flows = csv_tables(plan_file)
    assert rules[0] == RULE_COLUMNS and flows[0] == FLOW_COLUMNS
    assert [row for row in rules if row[0] == 'fw-ext01' and row[8]] == [
        ['fw-ext01', 'xmpp-s2s-inbound-dnat-edge02-ipv4', 'forward', 'tcp', '5269', 'any', '198.51.100.62/32',
         'accept', 'dnat to 198.51.100.11'],
        ['fw-ext01', 'xmpp-s2s-outbound-snat-edge02-ipv4', 'forward', 'tcp', '5269', '198.51.100.11/32', 'any',
         'accept', 'snat to 198.51.100.62'],
    ]
    assert ['probe01', '(none)', '', '', '', '', '', '', ''] in rules
    assert sorted(set(row[0] for row in rules[1:])) == ['edge01', 'edge02', 'fe01', 'fe02', 'fw-ext01', 'fw-int01',
                                                        'probe01']
    assert ['xmpp-s2s-inbound', 'row', 'probe01', '198.51.100.62', 'edge02', '5269', 'tcp', 'open',
            'translated to 198.51.100.11'] in flows
    assert ['xmpp-s2s-outbound', 'row', 'edge02', '198.51.100.245', '', '5269', 'tcp', 'open',
            'seen as 198.51.100.62'] in flows
    assert ['xmpp-gateway-internal', 'internal-port-from-internet', 'probe01', '198.51.100.141', 'edge02', '23456',
            'tcp', 'blocked', ''] in flows
    assert ['xmpp-gateway-internal', 'reverse', 'edge02', '2001:db8:30::201', 'fe02', '23456', 'tcp', 'blocked',
            ''] in flows
    assert len(flows) == 33


@pytest.mark.parametrize('limit', ['fe01', 'fw-ext01,probe01'])
def test_a_limit_never_narrows_or_skips_the_plan(tmp_path, limit):
    # AWX job templates run playbooks with a limit: the plan still covers the whole estate, from the control node.
    whole, limited = tmp_path / 'whole.csv', tmp_path / 'limited.csv'
    result = run_plan(tmp_path, EXAMPLE_INVENTORY, '-e', 'xmpp_firewall_plan_file=%s' % whole)
    assert result.returncode == 0, result.stdout
    result = run_plan(tmp_path, EXAMPLE_INVENTORY, '--limit', limit, '-e', 'xmpp_firewall_plan_file=%s' % limited)
    assert result.returncode == 0, result.stdout
    assert 'unreachable=0' in result.stdout and 'skipping: no hosts matched' not in result.stdout
    assert limited.read_text() == whole.read_text()


def test_the_example_estate_as_markdown(tmp_path):
    plan_file = tmp_path / 'plan.md'
    result = run_plan(tmp_path, EXAMPLE_INVENTORY, '-e', 'xmpp_firewall_plan_file=%s' % plan_file)
    assert result.returncode == 0, result.stdout
    lines = plan_file.read_text().splitlines()
    assert lines[:4] == ['## Rules, host by host', '',
                         '| host | rule name | direction | protocol | ports | source | destination | action | nat |',
                         '|---|---|---|---|---|---|---|---|---|']
    assert '| edge02 | xmpp-s2s-outbound-ipv4 | out | tcp | 5269 | 198.51.100.11/32 | any | accept |  |' in lines
    flows_at = lines.index('## Flows, open and blocked')
    assert lines[flows_at + 2] == '| row | kind | from | to | to host | port | transport | expected | nat |'
    assert '| xmpp-s2s-outbound | row | edge02 | partner |  | 5269 | tcp | open | seen as 198.51.100.62 |' in lines
    assert lines[-1].startswith('| xmpp-s2s-outbound | next-port |')
    # The same tables are printed.
    assert 'fw-ext01 | xmpp-s2s-inbound-dnat-edge02-ipv4  | forward' in result.stdout


def test_a_plan_file_of_another_kind_fails_before_anything_is_written(tmp_path):
    plan_file = tmp_path / 'plan.txt'
    result = run_plan(tmp_path, EXAMPLE_INVENTORY, '-e', 'xmpp_firewall_plan_file=%s' % plan_file)
    assert result.returncode != 0
    assert "xmpp_firewall_plan_file '%s' must end in .md (Markdown) or .csv (CSV)" % plan_file in result.stdout
    assert not plan_file.exists()


def test_the_inventory_extra_rows_and_matrix_are_honoured_even_an_empty_matrix(tmp_path):
    plan_file = tmp_path / 'plan.csv'
    inventory = estate_inventory(tmp_path, xmpp_firewall_matrix=[], xmpp_firewall_extra_rows=[SIP_ROW])
    result = run_plan(tmp_path, inventory, '-e', 'xmpp_firewall_plan_file=%s' % plan_file)
    assert result.returncode == 0, result.stdout
    rules, flows = csv_tables(plan_file)
    assert [row[1] for row in rules if row[0] == 'edge1'] == ['sip-access-edge-ipv4']
    assert [(row[1], row[3], row[5], row[7]) for row in flows[1:]] == [
        ('row', '198.51.100.10', '5061', 'open'), ('next-port', '198.51.100.10', '5062', 'blocked')]


def test_an_error_in_the_extra_rows_names_the_host_and_the_variable(tmp_path):
    inventory = estate_inventory(tmp_path, xmpp_firewall_extra_rows=[dict(SIP_ROW, ports=[0])])
    result = run_plan(tmp_path, inventory)
    assert result.returncode != 0
    assert ("variable 'xmpp_firewall_extra_rows': row 'sip-access-edge': field 'ports': port 0 is outside 1-65535"
            in result.stdout)


@pytest.mark.parametrize('host', ['edge1', 'fw-int'])
def test_hosts_that_disagree_on_the_estate_s_settings_are_named(tmp_path, host):
    estate = yaml.safe_load(yaml.safe_dump(ESTATE))
    group = 'lync_edge' if host == 'edge1' else 'lync_internal_firewall'
    estate['all']['children'][group]['hosts'][host]['xmpp_firewall_restrict_internal_sources'] = True
    inventory = tmp_path / 'hosts.yml'
    inventory.write_text(yaml.safe_dump(estate))
    result = run_plan(tmp_path, inventory)
    assert result.returncode != 0
    differing = 'fe1, fw-ext, fw-int' if host == 'edge1' else 'fw-int'
    assert 'Differing from edge1: xmpp_firewall_restrict_internal_sources on %s.' % differing in result.stdout
