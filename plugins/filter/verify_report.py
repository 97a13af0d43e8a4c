# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: verify_report
short_description: Join the planned flows with what each source observed, and judge every check
version_added: 1.1.0
author: lync.xmpp_federation contributors (@lync-xmpp-federation)
description:
  - The playbook C(lync.xmpp_federation.verify) plans its checks with P(lync.xmpp_federation.flows#filter), tries
    them from each source (M(lync.xmpp_federation.flow_probe) on Linux, PowerShell on Windows), and turns the
    flows and the observations into its report with this filter.
  - "A check is ok when a flow expected V(open) was open (and, with O(probe=protocol), an XMPP row answered with
    an XMPP stream header and an MTLS row asked for a client certificate), or when a flow expected V(blocked) was
    not open (V(refused), V(timeout) or V(unreachable): the observation says which)."
  - A flow that could not be tried is V(not-run) and not ok, with the reason in C(detail) - no vantage point or
    partner named, a source that is not an inventory host, a destination that is a network, or a source that did
    not report (it was unreachable or failed). With O(allow_not_run=true) such checks are ok V(null) instead.
  - A UDP flow is V(not-provable) (a connect proves nothing about it) and ok V(null).
positional: observations, hosts
options:
  _input:
    description: The flows, as P(lync.xmpp_federation.flows#filter) returns them.
    type: list
    elements: dict
    required: true
  observations:
    description:
      - A dict from flow id to the observation of that flow (C(observed), C(service), C(detail)), as
        M(lync.xmpp_federation.flow_probe) returns them.
    type: dict
    required: true
  hosts:
    description: The inventory's hosts (C(groups['all'])); a flow can be tried only from one of them.
    type: list
    elements: str
    required: true
  probe:
    description: The probe that was used, V(tcp) or V(protocol).
    type: str
    default: tcp
  allow_not_run:
    description: Whether a check that could not be run is left unjudged (ok V(null)) instead of failed.
    type: bool
    default: false
'''

EXAMPLES = r'''
- name: Judge every check
  ansible.builtin.set_fact:
    checks: "{{ planned_flows | lync.xmpp_federation.verify_report(observed_by_id, groups['all'], probe='protocol') }}"
'''

RETURN = r'''
_value:
  description:
    - One check per flow, in the flows' order, with C(id), C(row), C(kind), C(from), C(to), C(to_host), C(port),
      C(transport), C(application), C(expected) (V(open) or V(blocked)), C(translated_to), C(seen_as) from the
      flow, and C(observed) (V(open), V(refused), V(timeout), V(unreachable), V(not-provable) or V(not-run)),
      C(service), C(detail) and C(ok) (V(true), V(false), or V(null) for a check that proves nothing).
  type: list
  elements: dict
'''

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import RuleError
from ansible_collections.lync.xmpp_federation.plugins.module_utils.verify import report


def verify_report(flows, observations, hosts, probe='tcp', allow_not_run=False):
    try:
        return report(flows, observations or {}, set(hosts or ()), probe=probe,
                      allow_not_run=boolean(allow_not_run, strict=True))
    except (RuleError, TypeError) as error:
        raise AnsibleFilterError('lync.xmpp_federation.verify_report: %s' % error)


class FilterModule(object):
    def filters(self):
        return {'verify_report': verify_report}
