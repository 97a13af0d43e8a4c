# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The firewalld backend.

On a host run by firewalld, rules written beside it would vanish at its next
reload, and an accept in a table of our own would not override the drop of
firewalld's zones.  So our rules go through firewalld itself, into policy
objects of ours (firewalld 0.9 or later), one per section in use:

    in       lync-xmpp-in    ingress ANY  -> egress HOST   (traffic to the host)
    out      lync-xmpp-out   ingress HOST -> egress ANY    (traffic from the host)
    forward  lync-xmpp-fwd   ingress ANY  -> egress ANY    (traffic through the host)

Each has priority -100, so it is consulted before the zones (whose default
target rejects), and target CONTINUE, so traffic it does not match goes on to
the zones as before.  Each kernel rule of the model is one rich rule.
firewalld sorts a policy's plain rich rules into deny-before-allow chains;
rich rules with a priority keep their order instead, so ours carry
priorities in the order of the rules' names, as on the other backends.

The live state is read once (``firewall-cmd --list-all-policies``, the
runtime) beside our own files in firewalld's permanent configuration.  The
transaction is: write our policy files, ``firewall-cmd --check-config``, then
one ``firewall-cmd --reload``, which firewalld applies as a whole; on any
failure our files are put back (and reloaded).  A reload also replaces
whatever the admin (or a tool such as fail2ban) changed at runtime only, so
before reloading, the runtime zones, policies (ours aside), direct rules and
passthroughs and ipsets are compared with the permanent ones, and a
difference refuses the run, naming what differs.

firewalld keeps policies only in its permanent configuration, so the rules
are persistent by construction: ``persist: false`` is refused.  Rich rules
cannot translate a source to a chosen address, and a destination translation
to another host in a policy needs a newer firewalld than most hosts run, so
translation rules are refused too (use nftables or iptables on that firewall).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.lync.xmpp_federation.plugins.module_utils.backend import (
    Backend,
    BackendError,
    KeyedValue,
    Transaction,
    port_span_text,
    read_file_or_none,
    refuse_translations,
    remove_file,
    write_file_atomic,
)
from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import (
    IPTABLES_COMMENT_MAX_BYTES,
    OUR_MARK,
    RuleError,
    kernel_comment,
    normalize_network,
    port_spans,
    rule_family,
    split_kernel_comment,
)

POLICIES = {
    'in': ('lync-xmpp-in', 'ANY', 'HOST'),
    'out': ('lync-xmpp-out', 'HOST', 'ANY'),
    'forward': ('lync-xmpp-fwd', 'ANY', 'ANY'),
}
SECTION_OF_POLICY = dict((policy[0], section) for section, policy in POLICIES.items())
OUR_POLICY = re.compile(r'^lync-xmpp-')
POLICY_PRIORITY = -100
POLICY_TARGET = 'CONTINUE'
# Rich rule priorities, in the order of our rules: -32768..-1 run before firewalld's own deny/allow
# chains of the policy, 1..32767 after them; 0 would let firewalld reorder.
FIRST_PRIORITY = -32768
MAX_RICH_RULES = 65535
DEFAULT_POLICY_DIR = '/etc/firewalld/policies'
# Our mark in a policy file of ours: its description ends with it. firewall-cmd's listing does not show
# descriptions, so a policy is ours only when firewalld's file for it, in our directory, carries the mark.
POLICY_DESCRIPTION = 'XMPP federation rules (%s), managed by lync.xmpp_federation [' + OUR_MARK + ']'
MARKED_DESCRIPTION = re.compile(r'<description>[^<]*\[' + re.escape(OUR_MARK) + r'\]</description>')
# Policy fields firewall-cmd lists; ours hold nothing but rich rules.
EMPTY_FIELDS = ('services', 'ports', 'protocols', 'forward-ports', 'source-ports', 'icmp-blocks')
# A rich rule as firewall-cmd lists it: words, some with a quoted value. Every character must belong to one, so
# that a word we do not know (NOT, limit, log...) makes the rule not ours instead of being skipped.
RICH_WORDS = re.compile(r'^(?:\s*[A-Za-z-]+(?:="[^"]*")?)*\s*$')
RICH_WORD = re.compile(r'([A-Za-z-]+)(?:="([^"]*)")?')


def rich_priority(index):
    return FIRST_PRIORITY + index if index < -FIRST_PRIORITY else index + FIRST_PRIORITY + 1


class RichRule(KeyedValue):
    """One rich rule of ours: what the model asks for, and what firewall-cmd lists, in one comparable form."""

    __slots__ = ('priority', 'family', 'source', 'destination', 'ports', 'protocol', 'action', 'comment')

    def __init__(self, priority, family, source, destination, ports, protocol, action, comment=''):
        self.priority, self.family, self.source, self.destination = priority, family, source, destination
        self.ports, self.protocol, self.action, self.comment = ports, protocol, action, comment

    def key(self):
        # Not the comment: firewalld does not keep it with the rule, only our file does.
        return (self.priority, self.family, self.source, self.destination, self.ports, self.protocol, self.action)

    def xml(self):
        """The rule as firewalld's policy file holds it, after an XML comment naming our rule."""
        family = ' family="ipv%d"' % self.family if self.family else ''
        # An XML comment may not hold "--".
        lines = ['  <!-- %s -->' % self.comment.replace('--', '- -'),
                 '  <rule priority="%d"%s>' % (self.priority, family)]
        for element, network in (('source', self.source), ('destination', self.destination)):
            if network:
                lines.append('    <%s address="%s"/>' % (element, network))
        lines += ['    <port port="%s" protocol="%s"/>' % (port_span_text(self.ports, '-'), self.protocol),
                  '    <%s/>' % self.action,
                  '  </rule>']
        return lines


def rich_rules(rules):
    """The rich rules of one policy, for its rules in the order of their names."""
    out = []
    for rule in rules:
        family = rule_family(rule)
        for source in rule['source'] or [None]:
            for destination in rule['destination'] or [None]:
                for span in port_spans(rule['ports']):
                    out.append(RichRule(rich_priority(len(out)), family, source, destination, span,
                                        rule['protocol'], rule['action'], kernel_comment(rule)))
    if len(out) > MAX_RICH_RULES:
        raise BackendError('firewalld: %d rich rules in one policy; firewalld orders at most %d'
                           % (len(out), MAX_RICH_RULES))
    return out


def parse_rich_rule(text):
    """A rich rule as firewall-cmd lists it -> RichRule; None for any shape we do not write."""
    if not RICH_WORDS.match(text):
        return None
    words = RICH_WORD.findall(text.strip())
    if not words or words[0] != ('rule', ''):
        return None
    fields, element = {}, None
    for word, value in words[1:]:
        if word in ('source', 'destination', 'port') and not value:
            element = word
            continue
        if word in ('accept', 'drop', 'reject') and not value:
            if 'action' in fields:
                return None
            fields['action'] = word
            element = None
            continue
        key = '%s.%s' % (element, word) if element else word
        if key not in ('priority', 'family', 'source.address', 'destination.address', 'port.port', 'port.protocol') \
                or key in fields:
            return None
        fields[key] = value
    if 'action' not in fields or 'port.port' not in fields or 'priority' not in fields:
        return None
    try:
        family = {'ipv4': 4, 'ipv6': 6, None: None}[fields.get('family')]
        networks = [normalize_network(fields[key], key) if key in fields else None
                    for key in ('source.address', 'destination.address')]
        low, _sep, high = fields['port.port'].partition('-')
        span = (int(low), int(high or low))
        priority = int(fields['priority'])
    except (KeyError, ValueError, RuleError):
        return None
    return RichRule(priority, family, networks[0], networks[1], span, fields.get('port.protocol'), fields['action'])


def parse_listing(text):
    """``firewall-cmd --list-all-policies`` (or ``--list-all-zones``) -> {name: {field: value, 'rich rules': [...]}}."""
    objects, current, field = {}, None, None
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            current = objects.setdefault(line.split()[0], {'rich rules': []})
            field = None
        elif current is None:
            continue
        elif line.startswith('\t') and field == 'rich rules':
            current['rich rules'].append(line.strip())
        else:
            field, _sep, value = line.strip().partition(':')
            if field != 'rich rules':
                current[field] = value.strip()
    return objects


def comparable_listing(text):
    """A listing without our policies and without what legitimately differs between runtime and permanent.

    Interfaces are bound to zones at runtime (NetworkManager does it), and only runtime marks active objects.
    """
    objects = parse_listing(text)
    for name in list(objects):
        if OUR_POLICY.match(name):
            del objects[name]
        else:
            objects[name].pop('interfaces', None)
    return objects


COMMENTED_RULE = re.compile(r'^\s*<!-- (.*) -->\n\s*<rule priority="(-?\d+)"', re.M)


def names_in_policy_file(text):
    """{rich rule priority: (our rule's name, its comment)} from the comment before each rule of our file."""
    named = ((int(priority), split_kernel_comment(comment)) for comment, priority in COMMENTED_RULE.findall(text))
    return dict((priority, name) for priority, name in named if name[0])


class FirewalldBackend(Backend):
    """firewalld through ``firewall-cmd`` and policy files of ours in its permanent configuration."""

    name = 'firewalld'
    # Our rule's name and comment live in an XML comment of our file: no kernel limit, but the same as iptables',
    # so that a list valid here is valid on the kernel backends too.
    comment_limit = IPTABLES_COMMENT_MAX_BYTES
    policy_dir = DEFAULT_POLICY_DIR

    def __init__(self, run_command, get_bin_path, options, lock=None):
        super(FirewalldBackend, self).__init__(run_command, get_bin_path, options, lock=lock)
        self.firewall_cmd = None
        self.runtime, self.files, self.foreign = {}, {}, {}

    def _cmd(self, *args):
        if self.firewall_cmd is None:
            self.firewall_cmd = self.get_bin_path('firewall-cmd')
            if not self.firewall_cmd:
                raise BackendError('firewalld: this host is managed by firewalld, but the firewall-cmd command was not '
                                   'found')
        return self.run_command([self.firewall_cmd] + list(args))

    def policy_path(self, policy):
        return os.path.join(self.policy_dir, policy + '.xml')

    # -- what firewalld cannot do --------------------------------------------------
    def check(self, rules, state):
        """Refuse, before anything is read or written, what this backend cannot do as asked."""
        if state == 'present' and not self.options.get('persist', True):
            raise BackendError('firewalld: persist=false cannot be honoured: firewalld keeps policies only in its '
                               'permanent configuration, so its rules always survive a reload or a reboot')
        refuse_translations(rules, 'firewalld', "firewalld's rich rules cannot translate a source to a chosen address, "
                                                "and a destination translation to another host in a policy needs a "
                                                "newer firewalld than most hosts run")

    # -- reading (once) ---------------------------------------------------------------
    def read(self):
        rc, out, err = self._cmd('--list-all-policies')
        if rc != 0:
            raise BackendError('firewalld: firewall-cmd --list-all-policies failed (%d): %s; firewalld must be '
                               'running, in version 0.9 or later (policy objects); nothing was changed'
                               % (rc, (err or out).strip()))
        runtime = dict((name, fields) for name, fields in parse_listing(out).items() if OUR_POLICY.match(name))
        files = {}
        try:
            entries = sorted(os.listdir(self.policy_dir)) if os.path.isdir(self.policy_dir) else []
        except OSError as error:
            raise BackendError('firewalld: cannot list %s: %s; nothing was changed' % (self.policy_dir, error))
        for entry in entries:
            if OUR_POLICY.match(entry) and entry.endswith('.xml'):
                files[entry[:-len('.xml')]] = read_file_or_none(os.path.join(self.policy_dir, entry))
        # Ours: a policy whose file in our directory carries our mark. A policy named like ours whose file lacks
        # it, or that firewalld has from elsewhere (its own /usr/lib/firewalld), is someone else's.
        self.files = dict((policy, text) for policy, text in files.items()
                          if text is not None and MARKED_DESCRIPTION.search(text))
        self.foreign = {}
        for policy in sorted(set(files) | set(runtime)):
            if policy in self.files:
                continue
            where = (self.policy_path(policy) + ' lacks our mark' if policy in files else
                     'it is not defined by a file of ours in %s' % self.policy_dir)
            self.foreign[policy] = 'firewalld policy %s is named like ours but is not ours (%s)' % (policy, where)
        self.runtime = dict((policy, fields) for policy, fields in runtime.items() if policy in self.files)
        names = dict(((policy, priority), name) for policy, text in self.files.items()
                     for priority, name in names_in_policy_file(text).items())
        self.pieces, self.parse_problems = [], []
        for policy, fields in sorted(self.runtime.items()):
            section = SECTION_OF_POLICY.get(policy)
            for text in fields['rich rules']:
                rich = parse_rich_rule(text)
                if rich is None or section is None:
                    self.parse_problems.append('firewalld: policy %s holds a rich rule not in a form we write: %s'
                                               % (policy, text))
                    continue
                # Our file names the rule at each priority; a rule edited by hand keeps its name, one added gets none.
                name, comment = names.get((policy, rich.priority), ('unnamed-%s-%d' % (section, rich.priority), ''))
                self.pieces.append({
                    'name': name, 'comment': comment, 'direction': section, 'protocol': rich.protocol,
                    'action': rich.action, 'nat': None, 'nat_to': None,
                    'families': (rich.family,) if rich.family else (4, 6),
                    'source': [rich.source] if rich.source else [],
                    'destination': [rich.destination] if rich.destination else [], 'ports': [rich.ports]})
        self.live_rules, self.grouping_problems = None, []

    def foreign_objects(self, rules):
        wanted = self.desired_rich_rules(rules)
        in_the_way = []
        for policy, description in sorted(self.foreign.items()):
            if policy in wanted:
                in_the_way.append('%s, and the rules need that policy (rename or remove it)' % description)
            else:
                self.notices.append('firewalld: left alone: %s' % description)
        return in_the_way

    @staticmethod
    def desired_rich_rules(rules):
        """{policy: its rich rules} for the sections ``rules`` use (canonical rules: in the order of their names)."""
        by_section = {}
        for rule in rules:
            by_section.setdefault(rule['direction'], []).append(rule)
        return dict((POLICIES[section][0], rich_rules(by_section[section])) for section in by_section)

    def in_place(self, rules):
        wanted = self.desired_rich_rules(rules)
        if set(wanted) != set(self.runtime) or set(wanted) != set(self.files) or self.parse_problems:
            return False
        for policy, riches in wanted.items():
            section = SECTION_OF_POLICY[policy]
            if self.files[policy] != policy_xml(section, riches):
                return False
            fields = self.runtime[policy]
            _name, ingress, egress = POLICIES[section]
            if (fields.get('priority'), fields.get('target'), fields.get('ingress-zones'), fields.get('egress-zones'),
                    fields.get('masquerade')) != (str(POLICY_PRIORITY), POLICY_TARGET, ingress, egress, 'no'):
                return False
            if any(fields.get(field) for field in EMPTY_FIELDS):
                return False
            if set(parse_rich_rule(text) for text in fields['rich rules']) != set(riches):
                return False
        return True

    def present_anywhere(self):
        return bool(self.runtime or self.files)

    # -- writing (one reload) ------------------------------------------------------
    def file_plan(self, rules):
        """{path: text, or None to remove}: our policy files as ``rules`` need them; only ours are named."""
        wanted = self.desired_rich_rules(rules)
        plan = dict((self.policy_path(policy), policy_xml(SECTION_OF_POLICY[policy], riches))
                    for policy, riches in wanted.items())
        for policy in set(self.files) | set(self.runtime):
            if policy not in wanted:
                plan[self.policy_path(policy)] = None
        return plan

    def plan(self, rules):
        files = self.file_plan(rules)
        lines = ['# lync-xmpp-federation: firewalld policy files, then firewall-cmd --check-config and --reload']
        for path, text in sorted(files.items()):
            if text is None:
                lines.append('# remove %s' % path)
            else:
                lines += ['# write %s' % path, text.rstrip('\n')]
        return Transaction([('policy files and one reload', '\n'.join(lines) + '\n', files)])

    def _listing(self, *args):
        rc, out, err = self._cmd(*args)
        if rc != 0:
            raise BackendError('firewalld: firewall-cmd %s failed (%d): %s' % (' '.join(args), rc, (err or out).strip()))
        return out

    def _runtime_only_changes(self):
        """What a reload would discard or change besides ours: each zone, policy, the direct rules and
        passthroughs, and each ipset (entries that tools such as fail2ban add at runtime) whose runtime
        differs from the permanent configuration."""
        changed = []
        for kind, label in (('zones', 'zone'), ('policies', 'policy')):
            runtime, permanent = [comparable_listing(self._listing(*(prefix + ('--list-all-%s' % kind,))))
                                  for prefix in ((), ('--permanent',))]
            changed += ['%s %s' % (label, name) for name in sorted(set(runtime) | set(permanent))
                        if runtime.get(name) != permanent.get(name)]
        for args, label in ((('--direct', '--get-all-rules'), 'the direct rules'),
                            (('--direct', '--get-all-passthroughs'), 'the direct passthroughs')):
            if sorted(self._listing(*args).splitlines()) != sorted(self._listing('--permanent', *args).splitlines()):
                changed.append(label)
        ipsets = set(self._listing('--get-ipsets').split()) | set(self._listing('--permanent', '--get-ipsets').split())
        for name in sorted(ipsets):
            # An ipset only one side has answers with an error there: that is a difference too.
            runtime, permanent = [self._cmd(*(prefix + ('--info-ipset=%s' % name,)))
                                  for prefix in ((), ('--permanent',))]
            if runtime != permanent:
                changed.append('ipset %s' % name)
        return changed

    def apply(self, transaction):
        changed = self._runtime_only_changes()
        if changed:
            raise BackendError('firewalld: the runtime configuration differs from the permanent one in %s, and the '
                               'reload that applies our policies would discard that. Make those changes permanent '
                               '(firewall-cmd --runtime-to-permanent) or drop them (firewall-cmd --reload) first; '
                               'nothing was changed' % ', '.join(changed))
        for _label, _text, files in transaction.steps:
            self._apply_files(files)

    def _apply_files(self, files):
        previous = dict((path, read_file_or_none(path)) for path in files)
        try:
            self._write(files)
        except BackendError as error:
            self._write(previous)
            raise BackendError('firewalld: %s; our policy files are as they were and firewalld was not reloaded'
                               % error)
        rc, out, err = self._cmd('--check-config')
        if rc != 0:
            self._write(previous)
            raise BackendError('firewalld: with our policy files the configuration does not load (%s); our files are '
                               'as they were and firewalld was not reloaded' % ' '.join((err or out).split()))
        rc, out, err = self._cmd('--reload')
        if rc != 0:
            self._write(previous)
            back, _out, _err = self._cmd('--reload')
            raise BackendError('firewalld: firewall-cmd --reload failed (%s); our policy files were put back%s'
                               % (' '.join((err or out).split()),
                                  ' and reloaded' if back == 0 else ', but reloading them failed too'))

    @staticmethod
    def _write(files):
        for path, text in sorted(files.items()):
            if text is None:
                remove_file(path, False)
            else:
                write_file_atomic(path, text, False, mode=0o640)

    # -- persistence: firewalld's permanent configuration is where the policies live ---------
    def persist(self, rules, check_mode):
        return False

    def persistence_files(self, rules):
        """Our policy files as the run leaves them."""
        return sorted(self.policy_path(policy) for policy in self.desired_rich_rules(rules or []))


def policy_xml(section, rules):
    """One policy file of ours."""
    policy, ingress, egress = POLICIES[section]
    lines = ['<?xml version="1.0" encoding="utf-8"?>',
             '<!-- Written by lync.xmpp_federation.firewall_ruleset: this host\'s XMPP federation rules. The next',
             '     run rewrites this file: change the inventory, not this file. -->',
             '<policy target="%s" priority="%d">' % (POLICY_TARGET, POLICY_PRIORITY),
             '  <short>%s</short>' % policy,
             '  <description>%s</description>' % (POLICY_DESCRIPTION % section),
             '  <ingress-zone name="%s"/>' % ingress,
             '  <egress-zone name="%s"/>' % egress]
    for rich in rules:
        lines += rich.xml()
    lines.append('</policy>')
    return '\n'.join(lines) + '\n'
