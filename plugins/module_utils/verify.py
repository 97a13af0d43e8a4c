# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""verify's bookkeeping: which flows can be tried from where, and whether what was observed is what the matrix says.

flows.py says what must be open and what must stay blocked; probe.py (on a Linux source) and the role's
Windows probe say what a connection observed. This module joins the two into the report, one check per flow:

    row, kind, from, to, to_host, port, transport, application, expected   the flow, as planned
    observed   open | refused | timeout | unreachable | not-provable, or not-run where it could not be tried
    service    what the protocol probe found, or None
    detail     the error or what was seen, or why the check was not run
    ok         True / False, or None for a check that proves nothing (a UDP flow, or an allowed not-run one)

A check is ok when:
    expected open      it was open, and with the protocol probe, an XMPP or MTLS row's service answered
    expected blocked   it was not open (refused, timeout and unreachable all mean the connection did not get
                       through; the observation says which)
Any check that could not be run (no vantage point or partner named, a source that is not an inventory host, an
unreachable source) is not ok: verify fails rather than pass on what it did not see.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
from xml.etree import ElementTree

from ansible_collections.lync.xmpp_federation.plugins.module_utils.flows import PARTNER_LABEL, VANTAGE_LABEL
from ansible_collections.lync.xmpp_federation.plugins.module_utils.probe import (
    OBSERVED_NOT_PROVABLE,
    OBSERVED_OPEN,
    OBSERVATIONS,
    PROBE_PROTOCOL,
    SERVICE_EXPECTED,
    application_kind,
)
from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import RuleError

NOT_RUN = 'not-run'
REPORT_FIELDS = ('id', 'row', 'kind', 'from', 'to', 'to_host', 'port', 'transport', 'application', 'expected',
                 'observed', 'service', 'detail', 'ok', 'translated_to', 'seen_as')


def _is_address(text):
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def why_not_runnable(flow, hosts):
    """None where the flow can be tried from an inventory host to an address; else the reason, for the report."""
    if flow['from'] == VANTAGE_LABEL:
        return ('no vantage point: set xmpp_firewall_verify_vantage to the inventory host on the Internet side '
                'that stands for a partner')
    if flow['to'] == PARTNER_LABEL:
        return 'no partner: set xmpp_firewall_verify_partner to the address of a 5269 listener the Edges must reach'
    if flow['from'] not in hosts:
        return 'the source %s is not an inventory host; add a host inside it to try this flow' % flow['from']
    if not _is_address(flow['to']):
        return 'the destination %s is a network, not an address a connection can try' % flow['to']
    return None


def sources(flows, hosts):
    """{source host: [check, ...]}: the runnable flows of each source, as flow_probe checks."""
    by_source = {}
    for flow in flows:
        if why_not_runnable(flow, hosts) is None:
            by_source.setdefault(flow['from'], []).append({
                'id': flow['id'], 'to': flow['to'], 'port': flow['port'], 'transport': flow['transport'],
                'application': flow.get('application'), 'expected': flow['expected']})
    return by_source


def judge(flow, observation, probe):
    """(ok, reason): ok is True, False or None (proves nothing)."""
    observed = observation['observed']
    if observed == NOT_RUN:
        return False, None
    if observed == OBSERVED_NOT_PROVABLE:
        return None, None
    if flow['expected'] == 'blocked':
        return observed != OBSERVED_OPEN, None
    if observed != OBSERVED_OPEN:
        return False, None
    wanted = SERVICE_EXPECTED.get(application_kind(flow.get('application'))) if probe == PROBE_PROTOCOL else None
    if wanted and observation.get('service') != wanted:
        return False, 'open, but %s' % (observation.get('service') or 'no protocol answer')
    return True, None


def report(flows, observations, hosts, probe='tcp', allow_not_run=False):
    """One check per flow, in the flows' order, each judged; see the module docstring.

    ``observations`` maps a flow id to its observation (dict with observed, service, detail); a runnable flow
    without one was not run (its source failed or was unreachable: ``observations`` may then carry an entry
    with observed 'not-run' and the source's error as detail).
    """
    checks = []
    for flow in flows:
        reason = why_not_runnable(flow, hosts)
        observation = observations.get(flow['id']) if reason is None else None
        if observation is None:
            observation = {'observed': NOT_RUN, 'service': None,
                           'detail': reason or 'the source %s did not report this check' % flow['from']}
        if observation['observed'] not in OBSERVATIONS + (NOT_RUN,):
            raise RuleError("verify: check %s: observed %r is not one of %s"
                            % (flow['id'], observation['observed'], ', '.join(OBSERVATIONS + (NOT_RUN,))))
        ok, why = judge(flow, observation, probe)
        if ok is False and observation['observed'] == NOT_RUN and allow_not_run:
            ok = None
        check = dict((field, flow.get(field)) for field in REPORT_FIELDS)
        check.update(observed=observation['observed'], service=observation.get('service'),
                     detail=why or observation.get('detail') or '', ok=ok)
        checks.append(check)
    return checks


def summary(checks):
    """{'total', 'passed', 'failed', 'unproven'} counts."""
    return {
        'total': len(checks),
        'passed': sum(1 for check in checks if check['ok'] is True),
        'failed': sum(1 for check in checks if check['ok'] is False),
        'unproven': sum(1 for check in checks if check['ok'] is None),
    }


def describe(check):
    """'xmpp-s2s-inbound: internet -> 198.51.100.10 tcp/5269 expected open, observed timeout'."""
    text = '%s: %s -> %s %s/%s expected %s, observed %s' % (
        check['row'], check['from'], check['to'], check['transport'], check['port'], check['expected'],
        check['observed'])
    if check.get('service'):
        text += ' (%s)' % check['service']
    if check['kind'] != 'row':
        text += ' [%s]' % check['kind']
    return text


def junit_xml(checks, suite='lync.xmpp_federation.verify'):
    """JUnit XML: one testsuite, one testcase per check (classname the row), failures and skips as JUnit has them."""
    counts = summary(checks)
    root = ElementTree.Element('testsuites', name=suite, tests=str(counts['total']), failures=str(counts['failed']),
                               skipped=str(counts['unproven']))
    testsuite = ElementTree.SubElement(root, 'testsuite', name=suite, tests=str(counts['total']),
                                       failures=str(counts['failed']), skipped=str(counts['unproven']), errors='0')
    for check in checks:
        name = '%s %s -> %s %s/%s expected %s' % (check['kind'], check['from'], check['to'], check['transport'],
                                                  check['port'], check['expected'])
        case = ElementTree.SubElement(testsuite, 'testcase', classname=check['row'], name=name)
        if check['ok'] is False:
            failure = ElementTree.SubElement(case, 'failure', message=describe(check), type=check['observed'])
            failure.text = check['detail'] or ''
        elif check['ok'] is None:
            ElementTree.SubElement(case, 'skipped', message='%s: %s' % (check['observed'], check['detail'] or ''))
        output = ElementTree.SubElement(case, 'system-out')
        output.text = 'observed %s%s: %s' % (check['observed'], ' (%s)' % check['service'] if check['service'] else '',
                                             check['detail'] or '')
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root, encoding='unicode') + '\n'
