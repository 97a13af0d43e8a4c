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
    dnat     LYNC-XMPP-DNAT  <- jump at the top of the nat table's PREROUTING
    snat     LYNC-XMPP-SNAT  <- ... POSTROUTING

applied live in one ``iptables-restore --noflush`` per family as on any
iptables host, and persisted as our lines in before.rules and before6.rules,
every other line of those files kept as it was, so that ufw's next start
builds exactly the live state.

Two things cannot live in those files.  ufw loads them with ``--noflush``
and never flushes the nat table's built-in chains (unless told to manage
them), so a jump of ours into PREROUTING written there would be added once
more at every reload; and an ipset a rule matches must exist before the file
loads.  ufw runs ``/etc/ufw/before.init start`` before it loads its files and
``before.init stop`` when it stops or reloads: a marked block of ours there
loads our ipsets and hangs our nat jumps (once, checked first), and takes the
jumps out again at stop.  Our nat chains themselves are declared in the
files, so each start flushes and refills them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible.module_utils.six.moves import shlex_quote
from ansible_collections.lync.xmpp_federation.plugins.module_utils.backend import (
    BackendError,
    read_file_or_none,
    remove_file,
    write_file_atomic,
)
from ansible_collections.lync.xmpp_federation.plugins.module_utils.iptables import (
    FAMILIES,
    IptablesBackend,
    SECTION_OF_CHAIN,
    TOOL_PREFIX,
    desired_chains,
    jump_spec,
    split_words,
)

UFW_BASE_CHAINS = {
    4: {'in': 'ufw-before-input', 'out': 'ufw-before-output', 'forward': 'ufw-before-forward'},
    6: {'in': 'ufw6-before-input', 'out': 'ufw6-before-output', 'forward': 'ufw6-before-forward'},
}
NAT_BASE_CHAINS = {'dnat': 'PREROUTING', 'snat': 'POSTROUTING'}
UFW_RULE_FILES = {4: '/etc/ufw/before.rules', 6: '/etc/ufw/before6.rules'}
UFW_BEFORE_INIT = '/etc/ufw/before.init'
# Our ipsets on a ufw host: a file of ours, which only our before.init block loads.
UFW_IPSET_FILE = '/etc/ufw/lync-xmpp-federation.ipsets'

BLOCK_BEGIN = '# >>> lync-xmpp-federation: managed by lync.xmpp_federation.firewall_ruleset; do not edit this block'
BLOCK_END = '# <<< lync-xmpp-federation'
# Inside the block: how before.init was before the block first came, so that removing the block gives it back.
CREATED_MARK = '# lync-xmpp-federation: this file did not exist before'
MODE_MARK = '# lync-xmpp-federation: mode before '

# The commands of the before.init that ufw ships (Debian, Ubuntu), comments and blank lines left out: a file
# that holds nothing else does nothing, so making it executable to run our block changes nothing else.
STOCK_BEFORE_INIT = (
    'set -e', 'case "$1" in', 'start)', ';;', 'stop)', ';;', 'status)', ';;', 'flush-all)', ';;', '*)',
    'echo "\'$1\' not supported"', 'echo "Usage: before.init {start|stop|flush-all|status}"', ';;', 'esac',
)


def shell_words(words):
    return ' '.join(shlex_quote(word) for word in words)


class BeforeInit(object):
    """``/etc/ufw/before.init`` as read: its text without our block, our block's lines, and its mode.

    ``problem`` says why our block cannot be written into it (None when it can).
    """

    def __init__(self, path):
        self.path = path
        self.text = read_file_or_none(path)
        self.mode = os.stat(path).st_mode & 0o7777 if self.text is not None else None
        self.block, self.rest, self.problem = [], [], None
        if self.text is None:
            return
        lines = self.text.splitlines(True)
        begins = [index for index, line in enumerate(lines) if line.rstrip('\n') == BLOCK_BEGIN]
        ends = [index for index, line in enumerate(lines) if line.rstrip('\n') == BLOCK_END]
        if len(begins) > 1 or len(ends) != len(begins) or (begins and ends[0] < begins[0]):
            self.problem = ('%s holds %d begin and %d end lines of our block (%r, %r) where there must be one of '
                            'each, in that order: a hand edit; put it back or take both lines and what is between '
                            'them out' % (path, len(begins), len(ends), BLOCK_BEGIN, BLOCK_END))
            return
        if begins:
            self.block = lines[begins[0]:ends[0] + 1]
            self.rest = lines[:begins[0]] + lines[ends[0] + 1:]
        else:
            self.rest = lines

    def created_by_us(self):
        return any(line.rstrip('\n') == CREATED_MARK for line in self.block)

    def mode_before(self):
        """The mode before.init had before our block made it executable (None: we did not change it)."""
        for line in self.block:
            if line.startswith(MODE_MARK):
                return int(line[len(MODE_MARK):].strip(), 8)
        return None

    def executable(self):
        """True when ufw runs it (a missing file is ours to create executable)."""
        return self.mode is None or bool(self.mode & 0o100)

    def commands_of_its_own(self):
        """The file's commands outside our block that the stock before.init does not have."""
        commands = [line.strip() for line in self.rest if line.strip() and not line.strip().startswith('#')]
        return [command for command in commands if command not in STOCK_BEFORE_INIT]


def init_block(jumps, ipset_file, origin):
    """Our before.init block: shell lines that load ``ipset_file`` (None: no sets) and hang ``jumps`` ([(family,
    base chain, our chain)]) at ``start``, and take the jumps out at ``stop``; ``origin`` is the marker line
    saying how the file was before (or None)."""
    start, stop = [], []
    if ipset_file:
        start.append('ipset -exist restore < %s || return 1' % shlex_quote(ipset_file))
    for family, base, chain in jumps:
        tool = TOOL_PREFIX[family] + ' -w -t nat'
        spec = shell_words(split_words(jump_spec(chain)))
        start.append('%s -S %s >/dev/null 2>&1 || %s -N %s || return 1' % (tool, chain, tool, chain))
        start.append('%s -C %s %s 2>/dev/null || %s -I %s 1 %s || return 1' % (tool, base, spec, tool, base, spec))
        stop.append('while %s -D %s %s 2>/dev/null; do :; done' % (tool, base, spec))
    lines = [BLOCK_BEGIN,
             '# ufw runs this at start (before it loads before.rules) and at stop: it loads our ipsets and hangs our',
             '# jumps into the nat table once, which before.rules cannot do without adding them again at every reload.']
    if origin:
        lines.append(origin)
    lines += ['lync_xmpp_federation() {', '    case "$1" in', '    start)']
    lines += ['        ' + line for line in start] + ['        ;;', '    stop)']
    lines += ['        ' + line for line in stop] + ['        ;;', '    esac', '}']
    lines += ['lync_xmpp_federation "$1" || { echo "lync-xmpp-federation: the block in $0 failed at $1" >&2; exit 1; }',
              BLOCK_END]
    return ''.join(line + '\n' for line in lines)


class UfwBackend(IptablesBackend):
    """iptables under ufw (``variant`` 'nft' or 'legacy', as ufw's iptables is)."""

    base_chain_origin = 'ufw\'s chain for %s traffic (is ufw enabled?)'
    before_init_path = UFW_BEFORE_INIT

    def __init__(self, run_command, get_bin_path, options, variant, lock=None):
        super(UfwBackend, self).__init__(run_command, get_bin_path, options, variant, lock=lock)
        self.name = 'ufw'
        self.before_init = None

    def check(self, rules, state):
        if self.options.get('base_chains'):
            raise BackendError('ufw: base_chains does not apply on a ufw host: our jumps go into ufw\'s own '
                               'ufw-before-input, ufw-before-output and ufw-before-forward chains (ufw6- for IPv6)')
        super(UfwBackend, self).check(rules, state)

    def base_chain(self, section, family):
        if section in NAT_BASE_CHAINS:
            return NAT_BASE_CHAINS[section]
        return UFW_BASE_CHAINS[family][section]

    def save_files(self):
        configured = self.options.get('iptables_save_files') or {}
        return {4: configured.get('ipv4') or UFW_RULE_FILES[4], 6: configured.get('ipv6') or UFW_RULE_FILES[6]}

    # -- what before.init must do --------------------------------------------------
    def _nat_jumps(self, rules):
        jumps = []
        for family in FAMILIES:
            for chain in sorted(desired_chains(rules or [], family, self.use_sets).get('nat', {})):
                jumps.append((family, self.base_chain(SECTION_OF_CHAIN[chain], family), chain))
        return jumps

    def _needs_block(self, rules):
        return bool(self._nat_jumps(rules) or self.wanted_sets(rules or []))

    def read(self):
        super(UfwBackend, self).read()
        if self.options.get('persist', True):
            self.before_init = BeforeInit(self.before_init_path)

    def foreign_objects(self, rules):
        """Besides the chains and sets of iptables: a before.init our block cannot go into (or out of) safely."""
        found = super(UfwBackend, self).foreign_objects(rules)
        init = self.before_init
        if init is None or not (init.block or self._needs_block(rules)):
            return found
        if init.problem:
            found.append(init.problem)
        elif self._needs_block(rules) and not init.executable() and init.commands_of_its_own():
            found.append('%s is not executable, so ufw does not run it, and it holds commands of its own (%s): '
                         'ufw must run it for our block (our ipsets, our nat jumps), and making it executable would '
                         'start running them; make it executable yourself once they may run'
                         % (init.path, '; '.join(init.commands_of_its_own()[:3])))
        return found

    # -- persistence -------------------------------------------------------------------
    def ipset_save_file(self):
        return self.options.get('ipset_save_file') or UFW_IPSET_FILE

    def _check_ipset_loader(self, path):
        """Our before.init block loads the sets on a ufw host, before ufw loads before.rules."""

    def persisted_lines(self, rules, family):
        ours = super(UfwBackend, self).persisted_lines(rules, family)
        for entry in ours.get('nat', []):
            # before.init hangs it, once (see the module's docstring).
            entry['jump'] = None
        return ours

    def _persist_before_init(self, rules, check_mode):
        """Our block in before.init as ``rules`` need it (or out of it); True when the file changed."""
        init = self.before_init or BeforeInit(self.before_init_path)
        if not self._needs_block(rules):
            if not init.block:
                return False
            rest = ''.join(init.rest)
            if init.created_by_us() and rest.strip() in ('', '#!/bin/sh'):
                return remove_file(init.path, check_mode)
            mode = init.mode_before()
            return write_file_atomic(init.path, rest, check_mode, mode=init.mode if mode is None else mode,
                                     keep_mode=False)
        origin, mode = None, init.mode
        if init.text is None:
            origin, mode, rest = CREATED_MARK, 0o750, ['#!/bin/sh\n']
        else:
            rest = list(init.rest)
            origin = next((line.rstrip('\n') for line in init.block
                           if line.startswith(MODE_MARK) or line.rstrip('\n') == CREATED_MARK), None)
            if not init.executable():
                # ufw runs only an executable before.init, and what else this one holds does nothing (see
                # foreign_objects): executable where it is readable, its mode of before kept in the block.
                origin = origin or '%s%04o' % (MODE_MARK, init.mode)
                mode = init.mode | (init.mode & 0o444) >> 2 | 0o100
        at = 1 if rest and rest[0].startswith('#!') else 0
        if at and not rest[0].endswith('\n'):
            rest[0] += '\n'
        block = init_block(self._nat_jumps(rules), self._block_ipset_file(rules), origin)
        text = ''.join(rest[:at]) + block + ''.join(rest[at:])
        return write_file_atomic(init.path, text, check_mode, mode=mode, keep_mode=False)

    def _block_ipset_file(self, rules):
        return self.ipset_save_file() if self.wanted_sets(rules or []) else None

    def persist(self, rules, check_mode):
        # At boot ufw runs before.init (our block: sets, nat jumps) and then loads before.rules: what the new
        # files will need is written before them, and what only the old files needed goes after them, so that a
        # run stopped between two writes never leaves a before.rules that ufw cannot load.
        sets = bool(self.wanted_sets(rules or []))
        block = self._needs_block(rules)
        changed = False
        if sets:
            changed = self._persist_sets(rules, check_mode) or changed
        if block:
            changed = self._persist_before_init(rules, check_mode) or changed
        changed = self._persist_rule_files(rules, check_mode) or changed
        if not block:
            changed = self._persist_before_init(rules, check_mode) or changed
        if not sets:
            changed = self._persist_sets(rules, check_mode) or changed
        return changed

    def persistence_files(self, rules):
        files = super(UfwBackend, self).persistence_files(rules)
        if self._needs_block(rules):
            files.append(self.before_init_path)
        return files
