# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The ufw backend: the iptables backend, hung where ufw expects rules of an admin's own.

ufw builds its iptables chains from its rule files at every start and
reload, flushing its own chains first: rules written beside it into INPUT
would lose their place, and rules of ours inside its user chains would be
ufw's to rewrite.  ufw's extension point for rules of one's own is
``/etc/ufw/before.rules`` (IPv4) and ``before6.rules`` (IPv6), iptables-restore
input that ufw loads before its user rules.  So on a ufw host:

    in       LYNC-XMPP-IN    <- jump at the top of ufw-before-input   (ufw6-before-input for IPv6)
    out      LYNC-XMPP-OUT   <- ... ufw-before-output                  (ufw6-before-output)
    forward  LYNC-XMPP-FWD   <- ... ufw-before-forward                 (ufw6-before-forward)

applied live in one ``iptables-restore --noflush`` per family as on any
iptables host, and persisted as our lines in before.rules and before6.rules,
every other line of those files kept as it was, so that ufw's next reload
builds exactly the live state.  Translation rules are refused: ufw reloads
before.rules without flushing the nat table's built-in chains, so a jump of
ours there would be added once more at every reload.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.lync.xmpp_federation.plugins.module_utils.backend import BackendError, refuse_translations
from ansible_collections.lync.xmpp_federation.plugins.module_utils.iptables import IptablesBackend

UFW_BASE_CHAINS = {
    4: {'in': 'ufw-before-input', 'out': 'ufw-before-output', 'forward': 'ufw-before-forward'},
    6: {'in': 'ufw6-before-input', 'out': 'ufw6-before-output', 'forward': 'ufw6-before-forward'},
}
UFW_RULE_FILES = {4: '/etc/ufw/before.rules', 6: '/etc/ufw/before6.rules'}


class UfwBackend(IptablesBackend):
    """iptables under ufw (``variant`` 'nft' or 'legacy', as ufw's iptables is)."""

    base_chain_origin = 'ufw\'s chain for %s traffic (is ufw enabled?)'

    def __init__(self, run_command, get_bin_path, options, variant, lock=None):
        super(UfwBackend, self).__init__(run_command, get_bin_path, options, variant, lock=lock)
        self.name = 'ufw'

    def check(self, rules, state):
        if self.options.get('base_chains'):
            raise BackendError('ufw: base_chains does not apply on a ufw host: our jumps go into ufw\'s own '
                               'ufw-before-input, ufw-before-output and ufw-before-forward chains (ufw6- for IPv6)')
        refuse_translations(rules, 'ufw', "ufw reloads before.rules without flushing the nat table's built-in chains, "
                                          "so a translation of ours would be added again at every reload")

    def base_chain(self, section, family):
        return UFW_BASE_CHAINS[family][section]

    def save_files(self):
        configured = self.options.get('iptables_save_files') or {}
        return {4: configured.get('ipv4') or UFW_RULE_FILES[4], 6: configured.get('ipv6') or UFW_RULE_FILES[6]}
