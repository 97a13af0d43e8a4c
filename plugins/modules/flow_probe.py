#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: flow_probe
short_description: Try every XMPP federation flow that starts on this Linux host, concurrently, with real connections
version_added: 1.1.0
author: lync.xmpp_federation contributors (@lync-xmpp-federation)
description:
  - Connects from the managed host to every address and port in O(checks) at once (at most O(workers) at a time),
    each bounded by O(timeout), and says what each connection observed. The playbook
    C(lync.xmpp_federation.verify) calls it once per Linux source with all of that source's checks, as
    P(lync.xmpp_federation.flows#filter) plans them.
  - "Observations: V(open) (the TCP handshake completed), V(refused) (a TCP reset: no listener, or a firewall that
    rejects with a reset), V(timeout) (nothing answered: dropped on the way), V(unreachable) (no route, an ICMP
    unreachable, or the local firewall refused the connection), V(not-provable) (a UDP flow: a connect proves
    nothing about it)."
  - "With O(probe=protocol), an open connection is also asked what answers, by the check's C(application): for
    an C(XMPP) row it sends an s2s stream header and looks for the server's stream header (C(xmpp-stream) or
    C(no-xmpp-stream)); for an C(MTLS) row it offers a TLS 1.2 handshake, where the server's CertificateRequest
    travels in the clear, and looks for it (C(client-certificate-requested) or C(no-client-certificate-request)).
    It never sends a certificate and never finishes the handshake."
  - Changes nothing on any host; runs in check mode too, since it is read-only.
requirements:
  - Python 3.6 or later on the managed host.
options:
  checks:
    description:
      - The checks to run.
    type: list
    elements: dict
    required: true
    suboptions:
      id:
        description: A unique name of the check; the result's O(checks[].id) repeats it.
        type: str
        required: true
      to:
        description: The IP address to connect to (IPv4 or IPv6, without prefix length).
        type: str
        required: true
      port:
        description: The destination port.
        type: int
        required: true
      transport:
        description: V(tcp) is connected to; V(udp) is reported as V(not-provable).
        type: str
        default: tcp
        choices: [tcp, udp]
      application:
        description: The matrix row's application (such as V(XMPP) or V(XMPP/MTLS)), which picks the protocol probe.
        type: str
      expected:
        description:
          - What the flow model expects of the check. The module tries the connection either way and reports only
            what it observed; judging it is the caller's part (P(lync.xmpp_federation.verify_report#filter)).
        type: str
        choices: [open, blocked]
  probe:
    description:
      - V(tcp) connects only; V(protocol) also checks what answers on each open connection, as described above.
    type: str
    default: tcp
    choices: [tcp, protocol]
  timeout:
    description: Seconds each check may take, connection and protocol exchange together.
    type: float
    default: 3
  workers:
    description: How many checks run at the same time.
    type: int
    default: 64
seealso:
  - ref: lync.xmpp_federation.flows filter <ansible_collections.lync.xmpp_federation.flows_filter>
    description: The flows that verify checks.
attributes:
  check_mode:
    description: Read-only; the connections are made in check mode too.
    support: full
  diff_mode:
    description: Changes nothing, so there is no diff.
    support: none
  platform:
    description: Linux (any POSIX host with Python 3.6 or later); Windows sources use the role's PowerShell probe.
    support: full
    platforms: posix
'''

EXAMPLES = r'''
- name: Try this host's flows
  lync.xmpp_federation.flow_probe:
    checks:
      - {id: row3-v4, to: 198.51.100.130, port: 23456, application: XMPP/MTLS}
      - {id: next-port-v4, to: 198.51.100.130, port: 23457}
    probe: protocol
    timeout: 3
  register: observed
'''

RETURN = r'''
checks:
  description: One observation per check, in the order of O(checks).
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: The check's O(checks[].id).
      type: str
    observed:
      description: V(open), V(refused), V(timeout), V(unreachable) or V(not-provable).
      type: str
    service:
      description: With O(probe=protocol) on an open connection of an XMPP or MTLS row, what answered; else null.
      type: str
    detail:
      description: The error, or what the protocol probe saw.
      type: str
  sample:
    - {id: row3-v4, observed: open, service: client-certificate-requested,
       detail: the TLS server asked for a client certificate}
    - {id: next-port-v4, observed: timeout, service: null, detail: timed out}
elapsed:
  description: Seconds the checks took together.
  returned: always
  type: float
'''

import ipaddress
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lync.xmpp_federation.plugins.module_utils.probe import PROBES, probe_all


def main():
    module = AnsibleModule(
        argument_spec=dict(
            checks=dict(type='list', elements='dict', required=True, options=dict(
                id=dict(type='str', required=True),
                to=dict(type='str', required=True),
                port=dict(type='int', required=True),
                transport=dict(type='str', default='tcp', choices=['tcp', 'udp']),
                application=dict(type='str'),
                expected=dict(type='str', choices=['open', 'blocked']),
            )),
            probe=dict(type='str', default='tcp', choices=list(PROBES)),
            timeout=dict(type='float', default=3),
            workers=dict(type='int', default=64),
        ),
        supports_check_mode=True,
    )
    checks = module.params['checks']
    seen = set()
    for index, check in enumerate(checks):
        where = 'checks[%d] (id %r)' % (index, check['id'])
        if check['id'] in seen:
            module.fail_json(msg="%s: the id is already used by another check; give each check its own" % where)
        seen.add(check['id'])
        try:
            ipaddress.ip_address(check['to'])
        except ValueError:
            module.fail_json(msg="%s: field 'to': %r is not an IP address" % (where, check['to']))
        if not 1 <= check['port'] <= 65535:
            module.fail_json(msg="%s: field 'port': %r is not a port (1-65535)" % (where, check['port']))
    if not 0 < module.params['timeout'] <= 300:
        module.fail_json(msg="timeout: %r must be more than 0 and at most 300 seconds" % module.params['timeout'])
    if not 1 <= module.params['workers'] <= 1024:
        module.fail_json(msg="workers: %r must be 1-1024" % module.params['workers'])
    started = time.monotonic()
    observations = probe_all(checks, module.params['probe'], module.params['timeout'], module.params['workers'])
    results = [dict(observation, id=check['id']) for check, observation in zip(checks, observations)]
    module.exit_json(changed=False, checks=results, elapsed=round(time.monotonic() - started, 3))


if __name__ == '__main__':
    main()
