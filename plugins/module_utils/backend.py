# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What every firewall backend of ``firewall_ruleset`` provides, and the one flow that drives them.

The flow (``converge``) is the same for every backend, in the manner of
linux-system-roles/firewall: read the live state once, compare the normalised
desired rules with the normalised rules of ours found there, and only when they
differ write one transaction.  A backend only knows how to read, parse,
render and apply its own format; it never decides whether to write.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fcntl
import os
import tempfile
import time
from collections import Counter

from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import (
    RuleError,
    normalize_rule,
    normalize_rules,
    rule_family,
)


class BackendError(Exception):
    """A failure the user must see (detection, validation, apply); the message says what and why."""


class KeyedValue(object):
    """Equality, hashing and repr from ``key()``.

    A backend's kernel-level rule built from the model and the same rule read back from the firewall must
    compare equal, so that the comparison of desired with live state is a comparison of sets.
    """

    __slots__ = ()

    def key(self):
        raise NotImplementedError

    def __eq__(self, other):
        return type(other) is type(self) and self.key() == other.key()

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(self.key())

    def __repr__(self):
        return '%s%r' % (type(self).__name__, self.key())


class Backend(object):
    """One firewall backend.

    ``run_command`` is ``AnsibleModule.run_command`` and ``get_bin_path`` is
    ``AnsibleModule.get_bin_path`` (or recording doubles in unit tests);
    ``options`` is the module's parameters.
    """

    name = None

    def __init__(self, run_command, get_bin_path, options):
        self.run_command = run_command
        self.get_bin_path = get_bin_path
        self.options = options
        # What read() found of ours: kernel rules in group_kernel_rules' form, and what could not be parsed.
        self.pieces, self.parse_problems = [], []
        self.live_rules, self.grouping_problems = None, []

    def check(self, rules, state):
        """Raise BackendError for what this backend cannot do as asked; called before anything is read."""

    # -- reading (exactly one read of the live state per run) ---------------
    def read(self):
        """Read the live state once and keep it; later calls work from that copy."""
        raise NotImplementedError

    def current_rules(self):
        """Our rules found in the live state, in canonical form, sorted by name.

        Reconstructed from the kernel's own representation (``self.pieces``,
        which read() fills, resetting ``self.live_rules`` to None), so that a
        rule of ours edited by hand shows up as a difference.  Grouped on
        demand: a no-op run, decided by in_place alone, never needs it.
        """
        if self.live_rules is None:
            self.live_rules, self.grouping_problems = group_kernel_rules(self.pieces)
        return self.live_rules

    def problems(self):
        """Why our rules are not in a form we wrote (unparseable, incomplete or duplicated kernel rules)."""
        self.current_rules()
        return self.parse_problems + self.grouping_problems

    def in_place(self, rules):
        """True when our chains and jumps are exactly as ``rules`` needs them (jumps first in their base chains)."""
        raise NotImplementedError

    def present_anywhere(self):
        """True when anything of ours (chain, jump, table) is in the live state."""
        raise NotImplementedError

    # -- writing (one transaction) ------------------------------------------
    def render_present(self, rules):
        """The transaction text that makes the live state hold exactly ``rules`` in our chains."""
        raise NotImplementedError

    def render_absent(self):
        """The transaction text that removes our chains and jumps, nothing else."""
        raise NotImplementedError

    def apply(self, script):
        """Validate the whole transaction, then apply it in one step; raise BackendError on failure."""
        raise NotImplementedError

    # -- persistence ----------------------------------------------------------
    def persist(self, rules, check_mode):
        """Make ``rules`` (None: nothing of ours) survive a reboot; return True if a file changed."""
        raise NotImplementedError

    def persistence_files(self):
        """The files ``persist`` owns or edits, for the module's return value."""
        return []


def converge(backend, rules, state, persist, check_mode, canonical=False):
    """The one flow: read once, compare, write only when different.

    ``canonical``: ``rules`` already went through ``normalize_rules`` (the
    module validates them before it looks at the host).  Returns a dict for
    the module result (without diff rendering).
    """
    if state != 'present':
        desired = []
    else:
        desired = list(rules) if canonical else normalize_rules(rules)
    backend.check(desired, state)
    backend.read()
    if state == 'present':
        # in_place compares the kernel's own rules with what rendering ``desired`` gives, chain by chain: when
        # it holds, the live rules read back are ``desired`` by construction, and the costlier grouping of
        # kernel rules back into model rules is skipped (a no-op run is the common case).
        write = not backend.in_place(desired)
        before = backend.current_rules() if write else desired
        script = backend.render_present(desired) if write else ''
    else:
        before = backend.current_rules()
        write = backend.present_anywhere()
        script = backend.render_absent() if write else ''
    if write and not check_mode:
        backend.apply(script)
    persisted = False
    if persist:
        persisted = backend.persist(desired if state == 'present' else None, check_mode)
    return {
        'changed': bool(write or persisted),
        'backend': backend.name,
        'rules': desired,
        'before': before,
        'script': script,
        'persisted': persisted,
        'persistence_files': backend.persistence_files() if persist else [],
    }


def refuse_translations(rules, backend, why):
    """Raise BackendError naming the first translation rule in ``rules``: ``backend`` cannot do it, ``why``."""
    for rule in rules:
        if rule.get('nat'):
            raise BackendError("%s: rule '%s' translates addresses (%s to %s); %s. Use backend nftables or iptables on "
                               "this firewall (with %s stopped), or do without lync_edge_public_ip"
                               % (backend, rule['name'], rule['nat'], rule['nat_to'], why, backend))


def write_file_atomic(path, content, check_mode, mode=0o600):
    """Write ``content`` to ``path`` only if it differs; rename into place so a reader never sees half a file.

    Returns True when the file changed (or would, in check mode).
    """
    try:
        with open(path) as current:
            if current.read() == content:
                return False
    except (IOError, OSError):
        pass
    if check_mode:
        return True
    directory = os.path.dirname(path) or '.'
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    if os.path.exists(path):
        mode = os.stat(path).st_mode & 0o7777
    handle, temporary = tempfile.mkstemp(dir=directory, prefix='.lync-xmpp-')
    try:
        with os.fdopen(handle, 'w') as output:
            output.write(content)
        os.chmod(temporary, mode)
        os.rename(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return True


def remove_file(path, check_mode):
    """Remove ``path`` if it exists; True when it did (or would, in check mode)."""
    if not os.path.exists(path):
        return False
    if not check_mode:
        os.unlink(path)
    return True


# -- helpers shared by the kernel backends (iptables, nftables) ---------------

def port_span_text(span, range_separator):
    """(5269, 5269) -> '5269'; (1000, 2000) -> '1000:2000' with ':' (iptables) or '1000-2000' with '-' (nft)."""
    low, high = span
    return str(low) if low == high else '%d%s%d' % (low, range_separator, high)


def group_kernel_rules(pieces):
    """Group kernel rules back into canonical model rules; -> (rules sorted by name, problems).

    One model rule becomes several kernel rules (one per address family, per
    source and destination address, per block of ports).  Each ``piece`` is
    one kernel rule read back, as a dict with the model's fields ``name``,
    ``comment``, ``direction``, ``protocol``, ``action``, ``nat``, ``nat_to``,
    plus ``families`` (the address families the kernel rule applies to, e.g.
    ``(4,)`` for an iptables rule, ``(4, 6)`` for an inet rule without
    addresses), ``source`` and ``destination`` (the networks it matches, []
    for any) and ``ports`` (its (low, high) spans).

    A rule is reported as a problem when its pieces disagree or do not form
    exactly the cross product that rendering the rule would give (a kernel
    rule deleted or duplicated by hand): the caller must then rewrite.
    """
    by_name = {}
    for piece in pieces:
        by_name.setdefault(piece['name'], []).append(piece)
    rules, problems = [], []
    for name in sorted(by_name):
        group = by_name[name]
        first = group[0]
        disagreeing = [field for field in ('comment', 'direction', 'protocol', 'action', 'nat', 'nat_to')
                       if any(piece.get(field) != first.get(field) for piece in group[1:])]
        if disagreeing:
            problems.append("rule '%s': its kernel rules differ in %s" % (name, ', '.join(disagreeing)))
        sources = sorted(set(net for piece in group for net in piece['source']))
        destinations = sorted(set(net for piece in group for net in piece['destination']))
        spans = sorted(set(span for piece in group for span in piece['ports']))
        candidate = {
            'name': name, 'direction': first['direction'], 'protocol': first['protocol'],
            'ports': [port_span_text(span, '-') for span in spans], 'source': sources,
            'destination': destinations, 'action': first['action'], 'comment': first.get('comment') or '',
        }
        if first.get('nat'):
            candidate.update(nat=first['nat'], nat_to=first.get('nat_to'))
        try:
            rule = normalize_rule(candidate, "live rule '%s'" % name)
        except RuleError as error:
            problems.append(str(error))
            continue
        family = rule_family(rule)
        expected = Counter((each, source, destination, span)
                           for each in ((family,) if family else (4, 6))
                           for source in sources or [None]
                           for destination in destinations or [None]
                           for span in spans)
        found = Counter((each, source, destination, span)
                        for piece in group
                        for each in piece['families']
                        for source in piece['source'] or [None]
                        for destination in piece['destination'] or [None]
                        for span in piece['ports'])
        if found != expected:
            missing = sorted(expected - found, key=str)
            extra = sorted(found - expected, key=str)
            problems.append("rule '%s': the kernel holds an incomplete or duplicated set of its rules "
                            "(missing %d, unexpected %d)" % (name, len(missing), len(extra)))
        rules.append(rule)
    return rules, problems


def hold_host_lock(path, timeout=120.0):
    """Take an exclusive lock on ``path`` and keep it until the process ends; return the open file.

    The firewall's own locking (nft transactions, the xtables lock) makes each
    write safe, but not our read-compare-write: two runs that both read "no
    jump yet" would both insert one.  Holding this lock from the read to the
    end of the run serialises our runs on one host.  Waits at most ``timeout``
    seconds.
    """
    try:
        directory = os.path.dirname(path)
        if directory and not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        handle = open(path, 'a')
    except (IOError, OSError) as error:
        raise BackendError('cannot open the lock file %s (%s); the module must run as root' % (path, error))
    deadline = time.time() + timeout
    while True:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except (IOError, OSError):
            if time.time() >= deadline:
                handle.close()
                raise BackendError('another firewall_ruleset run still holds %s after %d seconds' % (path, timeout))
            time.sleep(0.05)
