# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: verify_sources
short_description: Group the flows that can be tried by the inventory host they start on
version_added: 1.1.0
author: lync.xmpp_federation contributors (@lync-xmpp-federation)
description:
  - Returns, for every inventory host that some flow starts on, the checks to run there in one call of
    M(lync.xmpp_federation.flow_probe) (or the Windows probe). Flows that cannot be tried (from the label
    V(internet), to the label V(partner), from a network, to a network) are left out; P(lync.xmpp_federation.verify_report#filter)
    reports them as V(not-run).
positional: hosts
options:
  _input:
    description: The flows, as P(lync.xmpp_federation.flows#filter) returns them.
    type: list
    elements: dict
    required: true
  hosts:
    description: The inventory's hosts (C(groups['all'])).
    type: list
    elements: str
    required: true
'''

EXAMPLES = r'''
- name: The checks each source runs
  ansible.builtin.set_fact:
    by_source: "{{ planned_flows | lync.xmpp_federation.verify_sources(groups['all']) }}"
'''

RETURN = r'''
_value:
  description:
    - A dict from source host to its list of checks, each with C(id), C(to), C(port), C(transport), C(application)
      and C(expected).
  type: dict
'''

from ansible.errors import AnsibleFilterError

from ansible_collections.lync.xmpp_federation.plugins.module_utils.verify import sources


def verify_sources(flows, hosts):
    try:
        return sources(flows, set(hosts or ()))
    except (KeyError, TypeError) as error:
        raise AnsibleFilterError('lync.xmpp_federation.verify_sources: not a list of flows: %s' % error)


class FilterModule(object):
    def filters(self):
        return {'verify_sources': verify_sources}
