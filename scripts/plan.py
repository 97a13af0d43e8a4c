#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the plan playbook of this checkout: plan.py -i INVENTORY [any ansible-playbook option, -e ...].

The same as "ansible-playbook lync.xmpp_federation.plan -i INVENTORY" for an installed collection: every host's
rules and the estate's flows, computed on the control node without connecting to any host;
-e xmpp_firewall_plan_file=PATH (.md or .csv) also writes them. Run it after "source scripts/env.sh", which puts
this checkout on the collection path.
"""

from __future__ import absolute_import, division, print_function

import os
import sys

PLAYBOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'playbooks', 'plan.yml')

if __name__ == '__main__':
    if len(sys.argv) < 2 or sys.argv[1] in ('-h', '--help'):
        sys.exit(__doc__.strip())
    os.execvp('ansible-playbook', ['ansible-playbook', os.path.normpath(PLAYBOOK)] + sys.argv[1:])
