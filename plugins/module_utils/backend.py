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
    check_kernel_comment,
    normalize_rule,
    normalize_rules,
    rule_family,
)


# Shared by every backend.
SECTION_ORDER = ('in', 'out', 'forward', 'dnat', 'snat')
FAMILY_LABEL = {4: 'IPv4', 6: 'IPv6'}
# One lock per host for every backend: our read-compare-write must not interleave with another run's, whichever
# backend either of them uses.
HOST_LOCK_PATH = '/run/lync-xmpp-federation.lock'
HOST_LOCK_SECONDS = 120


class BackendError(Exception):
    """A failure the user must see (detection, validation, reading, applying); the message says what and why."""


class OwnershipError(BackendError):
    """Objects with our names that are not ours by mark stand where the run would have to change them."""


class PersistenceError(BackendError):
    """Persisting failed; ``applied`` says whether the live ruleset had already been changed by this run."""

    def __init__(self, message, applied):
        super(PersistenceError, self).__init__(message)
        self.applied = applied


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


class Transaction(object):
    """What one run writes, as ``plan`` builds it and ``apply`` commits it: no plan state hides in the backend.

    ``steps`` are (label, text, payload): ``text`` is what the user sees in the result's ``script``, ``payload``
    whatever the backend's apply needs for that step (for example the restore input of one address family).
    """

    def __init__(self, steps=None):
        self.steps = list(steps or [])

    def add(self, label, text, payload=None):
        self.steps.append((label, text, payload))

    def __bool__(self):
        return bool(self.steps)

    __nonzero__ = __bool__

    def text(self):
        return ''.join(text if text.endswith('\n') else text + '\n' for _label, text, _payload in self.steps)


class Backend(object):
    """One firewall backend: small hooks that ``converge`` drives.

    ``run_command`` is ``AnsibleModule.run_command`` and ``get_bin_path`` is
    ``AnsibleModule.get_bin_path`` (or recording doubles in unit tests);
    ``options`` is the module's parameters; ``lock`` a host lock already held
    (detection takes it before its own read).
    """

    name = None
    # The most bytes a kernel rule's comment may take in this backend (name and comment, see kernel_comment).
    comment_limit = None
    lock_path = HOST_LOCK_PATH

    def __init__(self, run_command, get_bin_path, options, lock=None):
        self.run_command = run_command
        self.get_bin_path = get_bin_path
        self.options = options
        self._lock = lock
        # What read() found of ours: kernel rules in group_kernel_rules' form, and what could not be parsed.
        self.pieces, self.parse_problems = [], []
        self.live_rules, self.grouping_problems = None, []
        # Objects with our names that are not ours, left alone (see foreign_objects for those in the way).
        self.notices = []

    # -- hooks --------------------------------------------------------------------
    def check(self, rules, state):
        """Raise BackendError for what this backend cannot do as asked; called before anything is read."""

    def read(self):
        """Read the live state once (the host lock is held); raise BackendError naming the tool when it cannot."""
        raise NotImplementedError

    def foreign_objects(self, rules):
        """Descriptions of the objects with our names, not ours by mark, that ``rules`` (or removing ours) would
        have to change: each names its table, chain and the foreign rule.  Empty when the run may go on."""
        raise NotImplementedError

    def in_place(self, rules):
        """True when our objects are exactly as ``rules`` needs them (jumps first in their base chains)."""
        raise NotImplementedError

    def present_anywhere(self):
        """True when anything of ours (by mark) is in the live state."""
        raise NotImplementedError

    def plan(self, rules):
        """The Transaction that makes the live state hold exactly ``rules`` in our objects ([]: nothing of ours)."""
        raise NotImplementedError

    def apply(self, transaction):
        """Validate the whole transaction, then apply it; raise BackendError on failure, saying what is in force."""
        raise NotImplementedError

    def persist(self, rules, check_mode):
        """Make ``rules`` (None: nothing of ours) survive a reboot; return True if a file changed."""
        raise NotImplementedError

    def persistence_files(self, rules):
        """The files ``persist`` owns or edits for ``rules``, for the module's return value."""
        return []

    def result_details(self):
        """Backend-specific keys for the module's result (how the run reached the firewall, what it had to do)."""
        return {}

    # -- shared -------------------------------------------------------------------
    def hold_lock(self):
        if self._lock is None and self.lock_path:
            self._lock = hold_host_lock(self.lock_path)

    def release_lock(self):
        """Let the next run in: after persisting, nothing of this run's read-compare-write is left to protect."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

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

    def check_comment_limit(self, rules):
        """Refuse, before anything is read, a rule whose kernel comment would not fit this backend in bytes."""
        if self.comment_limit:
            for rule in rules:
                check_kernel_comment(rule, self.comment_limit, self.name)


def converge(backend, rules, state, persist, check_mode, canonical=False):
    """The one flow: check, lock, read once, sort ours from foreign, compare, plan, apply, persist.

    ``canonical``: ``rules`` already went through ``normalize_rules`` (the
    module validates them before it looks at the host).  Returns a dict for
    the module result (without diff rendering).  Every failure raises
    BackendError (OwnershipError, PersistenceError): a run never reports ok
    about a host it could not read or change.
    """
    try:
        return _converge(backend, rules, state, persist, check_mode, canonical)
    finally:
        # A long-lived caller (a test runner, a driver applying many lists) must not keep other runs out.
        backend.release_lock()


def _converge(backend, rules, state, persist, check_mode, canonical):
    if state != 'present':
        desired = []
    else:
        desired = list(rules) if canonical else normalize_rules(rules)
    backend.check(desired, state)
    backend.check_comment_limit(desired)
    backend.hold_lock()
    backend.read()
    foreign = backend.foreign_objects(desired)
    if foreign:
        raise OwnershipError('%s: refusing to run, nothing was changed: %s' % (backend.name, '; '.join(foreign)))
    if state == 'present':
        # in_place compares the kernel's own rules with what rendering ``desired`` gives, chain by chain: when
        # it holds, the live rules read back are ``desired`` by construction, and the costlier grouping of
        # kernel rules back into model rules is skipped (a no-op run is the common case).
        write = not backend.in_place(desired)
        before = backend.current_rules() if write else desired
    else:
        before = backend.current_rules()
        write = backend.present_anywhere()
    transaction = backend.plan(desired) if write else Transaction()
    applied = False
    if write and not check_mode:
        backend.apply(transaction)
        applied = True
    persisted = False
    if persist:
        try:
            persisted = backend.persist(desired if state == 'present' else None, check_mode)
        except BackendError as error:
            if applied:
                raise PersistenceError('%s: the new rules are in force now, but will not survive a reboot or a '
                                       'reload of the firewall: persisting them failed: %s' % (backend.name, error),
                                       applied=True)
            raise PersistenceError('%s: the live rules are as wanted and were not changed, but persisting them '
                                   'failed: %s' % (backend.name, error), applied=False)
    warnings = list(backend.notices)
    if write:
        done = 'a run without check mode would rewrite it' if check_mode else 'rewritten by this run'
        warnings += ['%s (%s)' % (problem, done) for problem in backend.problems()]
    result = {
        'changed': bool(write or persisted),
        'backend': backend.name,
        'rules': desired,
        'before': before,
        'script': transaction.text(),
        'persisted': persisted,
        'persistence_files': backend.persistence_files(desired) if persist else [],
        'warnings': warnings,
    }
    result.update(backend.result_details())
    return result


def refuse_translations(rules, backend, why):
    """Raise BackendError naming the first translation rule in ``rules``: ``backend`` cannot do it, ``why``."""
    for rule in rules:
        if rule.get('nat'):
            raise BackendError("%s: rule '%s' translates addresses (%s to %s); %s. Use backend nftables or iptables on "
                               "this firewall (with %s stopped), or do without lync_edge_public_ip"
                               % (backend, rule['name'], rule['nat'], rule['nat_to'], why, backend))


def write_file_atomic(path, content, check_mode, mode=0o600, keep_mode=True):
    """Write ``content`` to ``path`` only if it differs; rename into place so a reader never sees half a file.

    An existing file keeps its mode unless ``keep_mode`` is False: then content and ``mode`` arrive together.
    Returns True when the file changed (or would, in check mode).
    """
    try:
        with open(path) as current:
            if current.read() == content and (keep_mode or os.stat(path).st_mode & 0o7777 == mode):
                return False
    except (IOError, OSError):
        pass
    if check_mode:
        return True
    directory = os.path.dirname(path) or '.'
    temporary = None
    try:
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        if keep_mode and os.path.exists(path):
            mode = os.stat(path).st_mode & 0o7777
        handle, temporary = tempfile.mkstemp(dir=directory, prefix='.lync-xmpp-')
        with os.fdopen(handle, 'w') as output:
            output.write(content)
        os.chmod(temporary, mode)
        os.rename(temporary, path)
    except (IOError, OSError) as error:
        # The user's file is named, not our temporary one: the write never reached it.
        raise BackendError('cannot write %s: %s' % (path, error.strerror or error))
    finally:
        if temporary and os.path.exists(temporary):
            os.unlink(temporary)
    return True


def remove_file(path, check_mode):
    """Remove ``path`` if it exists; True when it did (or would, in check mode)."""
    if not os.path.exists(path):
        return False
    if not check_mode:
        try:
            os.unlink(path)
        except (IOError, OSError) as error:
            raise BackendError('cannot remove %s: %s' % (path, error.strerror or error))
    return True


def read_file_or_none(path):
    """A file's text; None when it does not exist; BackendError when it exists but cannot be read."""
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError) as error:
        if not os.path.exists(path):
            return None
        raise BackendError('cannot read %s: %s' % (path, error.strerror or error))


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


def hold_host_lock(path, timeout=HOST_LOCK_SECONDS):
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
