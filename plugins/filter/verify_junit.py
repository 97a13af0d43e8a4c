# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: verify_junit
short_description: The checks of verify as a JUnit XML document
version_added: 1.1.0
author: lync.xmpp_federation contributors (@lync-xmpp-federation)
description:
  - One C(testsuite) named C(lync.xmpp_federation.verify), one C(testcase) per check with the matrix row as its
    C(classname); a check that is not ok has a C(failure) (its C(type) the observation), one that proves nothing
    (ok V(null)) is C(skipped). CI systems and AWX artifacts read it.
options:
  _input:
    description: The checks, as P(lync.xmpp_federation.verify_report#filter) returns them.
    type: list
    elements: dict
    required: true
'''

EXAMPLES = r'''
- name: Write the JUnit file
  ansible.builtin.copy:
    dest: /tmp/verify.xml
    content: "{{ checks | lync.xmpp_federation.verify_junit }}"
    mode: "0644"
'''

RETURN = r'''
_value:
  description: The XML document, with its declaration.
  type: str
'''

from ansible.errors import AnsibleFilterError

from ansible_collections.lync.xmpp_federation.plugins.module_utils.verify import junit_xml


def verify_junit(checks):
    try:
        return junit_xml(checks)
    except (KeyError, TypeError) as error:
        raise AnsibleFilterError('lync.xmpp_federation.verify_junit: not a list of checks: %s' % error)


class FilterModule(object):
    def filters(self):
        return {'verify_junit': verify_junit}
