# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""scripts/plan.py, the filter's command-line view: it computes every host's rules as the role does."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib.util
import os
import sys

import pytest
import yaml

from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import RuleError

COLLECTION_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))
PLAN_SCRIPT = os.path.join(COLLECTION_ROOT, 'scripts', 'plan.py')

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


def load_plan():
    spec = importlib.util.spec_from_file_location('lync_xmpp_plan', PLAN_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_plan(tmp_path, monkeypatch, **all_vars):
    estate = dict(ESTATE, all=dict(ESTATE['all'], vars=all_vars))
    inventory = tmp_path / 'hosts.yml'
    inventory.write_text(yaml.safe_dump(estate))
    monkeypatch.setattr(sys, 'argv', ['plan.py', '-i', str(inventory)])
    load_plan().main()


def test_plan_shows_the_extra_rows(tmp_path, monkeypatch, capsys):
    run_plan(tmp_path, monkeypatch, xmpp_firewall_extra_rows=[SIP_ROW])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split('|')[2].strip() for line in lines if line.startswith('| edge1 ')] == [
        'sip-access-edge-ipv4', 'xmpp-gateway-internal-ipv4', 'xmpp-s2s-inbound-ipv4', 'xmpp-s2s-outbound-ipv4']


def test_plan_names_xmpp_firewall_extra_rows_in_an_error_there(tmp_path, monkeypatch):
    with pytest.raises(RuleError) as error:
        run_plan(tmp_path, monkeypatch, xmpp_firewall_extra_rows=[dict(SIP_ROW, ports=[0])])
    assert str(error.value) == ("host 'edge1': variable 'xmpp_firewall_extra_rows': row 'sip-access-edge': field "
                                "'ports': port 0 is outside 1-65535")


def test_plan_takes_an_inventory_matrix_even_an_empty_one(tmp_path, monkeypatch, capsys):
    # As in the role: the inventory's xmpp_firewall_matrix replaces the documented rows, even when empty.
    run_plan(tmp_path, monkeypatch, xmpp_firewall_matrix=[], xmpp_firewall_extra_rows=[SIP_ROW])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split('|')[2].strip() for line in lines if line.startswith('| edge1 ')] == ['sip-access-edge-ipv4']
