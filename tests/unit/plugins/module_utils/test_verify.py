# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import socket
import struct
import threading
import time
from xml.etree import ElementTree

import pytest
import yaml

from ansible_collections.lync.xmpp_federation.plugins.module_utils import probe, verify
from ansible_collections.lync.xmpp_federation.plugins.module_utils.flows import flows
from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import RuleError

DEFAULTS = os.path.join(os.path.dirname(__file__), '..', '..', '..', '..', 'roles', 'xmpp_firewall', 'defaults', 'main.yml')
with open(DEFAULTS) as handle:
    MATRIX = yaml.safe_load(handle)['xmpp_firewall_matrix']

HOSTVARS = {
    'edge1': {'lync_edge_external_ip': '198.51.100.10', 'lync_edge_internal_ip': '198.51.100.130'},
    'fe1': {'lync_internal_ip': '198.51.100.200'},
    'probe1': {'ansible_host': '198.51.100.40'},
}
GROUPS = {'all': sorted(HOSTVARS), 'lync_edge': ['edge1'], 'lync_front_end': ['fe1'], 'internet': ['probe1']}
HOSTS = set(GROUPS['all'])


def planned(**kwargs):
    return flows(MATRIX, HOSTVARS, GROUPS, **kwargs)


def by_id(found):
    return dict((flow['id'], flow) for flow in found)


def seen(observed, service=None, detail=''):
    return {'observed': observed, 'service': service, 'detail': detail}


def test_without_vantage_and_partner_those_checks_cannot_run_and_say_what_to_set():
    found = planned()
    reasons = dict((flow['id'], verify.why_not_runnable(flow, HOSTS)) for flow in found)
    assert reasons['xmpp-gateway-internal:row:fe1>198.51.100.130:tcp/23456:ipv4'] is None
    assert 'xmpp_firewall_verify_vantage' in reasons['xmpp-s2s-inbound:row:internet>198.51.100.10:tcp/5269:ipv4']
    assert 'xmpp_firewall_verify_partner' in reasons['xmpp-s2s-outbound:row:edge1>partner:tcp/5269:ipv4']
    assert sorted(verify.sources(found, HOSTS)) == ['edge1', 'fe1']


def test_sources_group_each_hosts_checks_for_one_call():
    found = planned(vantage='probe1', partner='198.51.100.30')
    grouped = verify.sources(found, HOSTS)
    assert sorted(grouped) == ['edge1', 'fe1', 'probe1']
    assert sum(len(checks) for checks in grouped.values()) == len(found)
    assert grouped['fe1'] == [
        {'id': 'xmpp-gateway-internal:row:fe1>198.51.100.130:tcp/23456:ipv4', 'to': '198.51.100.130', 'port': 23456,
         'transport': 'tcp', 'application': 'XMPP/MTLS', 'expected': 'open'},
        {'id': 'xmpp-gateway-internal:next-port:fe1>198.51.100.130:tcp/23457:ipv4', 'to': '198.51.100.130',
         'port': 23457, 'transport': 'tcp', 'application': None, 'expected': 'blocked'},
    ]


def test_a_literal_network_source_or_destination_cannot_be_tried():
    flow = {'from': '198.51.100.0/28', 'to': '198.51.100.10'}
    assert 'is not an inventory host' in verify.why_not_runnable(flow, HOSTS)
    flow = {'from': 'edge1', 'to': '198.51.100.64/26'}
    assert 'is a network' in verify.why_not_runnable(flow, HOSTS)


@pytest.mark.parametrize('expected, observation, probe_used, application, ok', [
    ('open', seen('open'), 'tcp', 'XMPP', True),
    ('open', seen('timeout'), 'tcp', 'XMPP', False),
    ('open', seen('refused'), 'tcp', None, False),
    ('open', seen('open', 'xmpp-stream'), 'protocol', 'XMPP', True),
    ('open', seen('open', 'no-xmpp-stream'), 'protocol', 'XMPP', False),
    ('open', seen('open', 'client-certificate-requested'), 'protocol', 'XMPP/MTLS', True),
    ('open', seen('open', 'no-client-certificate-request'), 'protocol', 'XMPP/MTLS', False),
    # A row of another application: the protocol probe has nothing to ask, the connection is the proof.
    ('open', seen('open'), 'protocol', 'SIP/TLS', True),
    ('blocked', seen('timeout'), 'tcp', None, True),
    ('blocked', seen('refused'), 'tcp', None, True),
    ('blocked', seen('unreachable'), 'tcp', None, True),
    ('blocked', seen('open'), 'tcp', None, False),
    ('open', seen('not-provable'), 'tcp', None, None),
    ('open', seen('not-run'), 'tcp', None, False),
])
def test_judge(expected, observation, probe_used, application, ok):
    assert verify.judge({'expected': expected, 'application': application}, observation, probe_used)[0] is ok


def test_report_joins_every_flow_with_its_observation_and_fails_what_was_not_seen():
    found = planned(partner='198.51.100.30')
    observations = dict((flow['id'], seen('open' if flow['expected'] == 'open' else 'timeout'))
                        for flow in found if flow['from'] != 'internet')
    # The Edge's probe left one check out: it is not run, and not ok.
    missing = 'xmpp-s2s-outbound:next-port:edge1>198.51.100.30:tcp/5270:ipv4'
    del observations[missing]
    checks = verify.report(found, observations, HOSTS)
    assert [check['id'] for check in checks] == [flow['id'] for flow in found]
    assert all(set(verify.REPORT_FIELDS) == set(check) for check in checks)
    failed = dict((check['id'], check) for check in checks if check['ok'] is False)
    assert sorted(failed) == sorted([missing] + [flow['id'] for flow in found if flow['from'] == 'internet'])
    assert failed[missing]['observed'] == 'not-run'
    assert failed[missing]['detail'] == 'the source edge1 did not report this check'
    allowed = verify.report(found, observations, HOSTS, allow_not_run=True)
    assert [check['ok'] for check in allowed if check['id'] in failed] == [None] * len(failed)
    assert verify.summary(allowed)['failed'] == 0


def test_report_names_why_an_open_flow_failed_the_protocol_probe():
    found = [flow for flow in planned() if flow['kind'] == 'row' and flow['from'] == 'fe1']
    checks = verify.report(found, {found[0]['id']: seen('open', 'no-client-certificate-request', 'alert 40')},
                           HOSTS, probe='protocol')
    assert (checks[0]['ok'], checks[0]['detail']) == (False, 'open, but no-client-certificate-request')
    assert verify.describe(checks[0]) == ('xmpp-gateway-internal: fe1 -> 198.51.100.130 tcp/23456 expected open, '
                                          'observed open (no-client-certificate-request)')


def test_report_refuses_an_observation_it_does_not_know():
    found = planned()[:1]
    with pytest.raises(RuleError, match="observed 'closed' is not one of open, refused"):
        verify.report(found, {found[0]['id']: seen('closed')}, HOSTS)


def test_junit_has_one_testcase_per_check_with_failures_and_skips():
    found = planned(vantage='probe1', partner='198.51.100.30')
    observations = dict((flow['id'], seen('open' if flow['expected'] == 'open' else 'timeout')) for flow in found)
    broken = 'xmpp-s2s-inbound:row:probe1>198.51.100.10:tcp/5269:ipv4'
    observations[broken] = seen('timeout', detail='timed out <&>')
    checks = verify.report(found, observations, HOSTS)
    checks.append(dict(checks[0], id='udp', transport='udp', observed='not-provable', ok=None, detail='udp'))
    root = ElementTree.fromstring(verify.junit_xml(checks).split('\n', 1)[1])
    suite = root.find('testsuite')
    cases = suite.findall('testcase')
    assert len(cases) == len(checks)
    assert (suite.get('tests'), suite.get('failures'), suite.get('skipped')) == (str(len(checks)), '1', '1')
    failures = [case for case in cases if case.find('failure') is not None]
    assert [(case.get('classname'), case.find('failure').get('type'), case.find('failure').text) for case in failures] == [
        ('xmpp-s2s-inbound', 'timeout', 'timed out <&>')]
    assert len([case for case in cases if case.find('skipped') is not None]) == 1


# -- the probes' protocol halves, over socket pairs ---------------------------

def serve(answer):
    """A socket pair whose far end reads once and sends ``answer``; returns the near end."""
    near, far = socket.socketpair()

    def respond():
        far.settimeout(2)
        try:
            far.recv(65536)
            far.sendall(answer)
        finally:
            far.close()
    threading.Thread(target=respond).start()
    return near


def test_xmpp_stream_probe_sees_a_stream_header_and_nothing_else():
    sock = serve(b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' id='x' version='1.0'>")
    assert probe.xmpp_stream_probe(sock, '198.51.100.10', time.monotonic() + 2)[0] == probe.SERVICE_XMPP
    sock = serve(b'HTTP/1.1 400 Bad Request\r\n\r\n')
    service, detail = probe.xmpp_stream_probe(sock, '198.51.100.10', time.monotonic() + 2)
    assert service == probe.SERVICE_NO_XMPP and 'HTTP/1.1 400' in detail


def record(content_type, body):
    return struct.pack('!BHH', content_type, 0x0303, len(body)) + body


def message(kind, body=b''):
    return bytes([kind]) + len(body).to_bytes(3, 'big') + body


def test_handshake_messages_join_a_message_split_across_records():
    flight = message(2, b'\x03\x03' + b'\x00' * 38) + message(11, b'\x00' * 300) + message(13, b'\x01\x01\x00\x00') + message(14)
    records = record(probe.TLS_HANDSHAKE, flight[:100]) + record(probe.TLS_HANDSHAKE, flight[100:])
    messages, alert = probe.handshake_messages(records)
    assert [kind for kind, _body in messages] == [2, 11, 13, 14] and alert is None
    # Cut short: the last, incomplete message is left out.
    assert [kind for kind, _body in probe.handshake_messages(records[:-3])[0]] == [2, 11, 13]
    assert probe.handshake_messages(record(probe.TLS_ALERT, b'\x02\x46')) == ([], 0x46)


def test_mtls_probe_reads_the_certificate_request_of_the_first_flight():
    with_request = record(probe.TLS_HANDSHAKE, message(2, b'\x03\x03') + message(11) + message(13, b'\x01\x01') + message(14))
    sock = serve(with_request)
    assert probe.mtls_probe(sock, time.monotonic() + 2)[0] == probe.SERVICE_MTLS
    sock = serve(record(probe.TLS_HANDSHAKE, message(2, b'\x03\x03') + message(11) + message(14)))
    assert probe.mtls_probe(sock, time.monotonic() + 2) == (
        probe.SERVICE_NO_MTLS, 'the TLS server finished its first flight without asking for a client certificate')
    sock = serve(record(probe.TLS_ALERT, b'\x02\x46'))
    assert probe.mtls_probe(sock, time.monotonic() + 2)[1] == 'the TLS server sent alert 70 instead of a TLS 1.2 handshake'


def test_client_hello_is_a_tls_handshake_record():
    hello = probe._client_hello()
    assert hello[0] == probe.TLS_HANDSHAKE and hello[5] == 1


@pytest.mark.parametrize('application, kind', [
    ('XMPP', 'xmpp'), ('xmpp', 'xmpp'), ('XMPP/MTLS', 'mtls'), ('SIP/MTLS', 'mtls'), ('SIP/TLS', None), (None, None),
])
def test_application_kind(application, kind):
    assert probe.application_kind(application) == kind


def test_a_udp_flow_is_not_provable_and_never_connected():
    assert probe.probe({'to': '198.51.100.10', 'port': 3478, 'transport': 'udp'}, 'tcp', 1)['observed'] == 'not-provable'


def test_probe_all_keeps_the_order_and_runs_nothing_for_nothing():
    assert probe.probe_all([], 'tcp', 1) == []
    checks = [{'to': '198.51.100.10', 'port': port, 'transport': 'udp'} for port in range(1, 200)]
    assert [o['observed'] for o in probe.probe_all(checks, 'tcp', 1, workers=7)] == ['not-provable'] * 199
