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

Each has priority 1 and target CONTINUE: firewalld consults a policy of
positive priority inside each zone's chain, after the zone's own rules (its
deny and allow rich rules, where fail2ban's firewallcmd-rich-rules action
bans), so a banned source stays blocked on our ports; traffic a policy of ours
does not match goes on to the zone's target as before.  Each kernel rule of
the model is one rich rule.  firewalld sorts a policy's plain rich rules into
deny-before-allow chains; rich rules with a priority keep their order instead,
so ours carry priorities in the order of the rules' names, as on the other
backends.  A source or destination list of SET_MIN_ADDRESSES networks or more
is one hash:net ipset of ours, matched by one rich rule.  Translations are
direct rules of ours in the nat table (see DIRECT_NAT_CHAINS).

Through firewalld's own Python binding over D-Bus (``FirewalldApi``), the live
state is read once (policies, ipsets and direct rules, runtime and permanent),
and a change goes into the runtime and the permanent configuration at once,
without a reload, so that runtime-only entries (fail2ban's bans, an admin's
``firewall-cmd --add-...``) are never touched.  firewalld creates and removes
policies and ipsets only in its permanent configuration: such a run reloads
once, after taking every runtime-only entry (zones, other policies, ipset
entries, direct chains, rules, passthroughs), and puts back and checks what
the reload dropped.  Every step keeps its undo; a failure undoes the steps
before it, so that runtime and permanent configuration never disagree because
of a half-done run.

Where the binding cannot be imported, the run says so and falls back to
``firewall-cmd``: our policy files in firewalld's permanent configuration,
``firewall-cmd --check-config``, then one ``firewall-cmd --reload``; on any
failure our files are put back (and reloaded).  Since that reload would
discard runtime-only state, the runtime zones, policies (ours aside), direct
rules and passthroughs and ipsets are compared with the permanent ones first,
and a difference refuses the run, naming what differs.  The fallback writes
every address as a rich rule and refuses translations.

firewalld creates policies only in its permanent configuration, so the rules
are persistent by construction: ``persist: false`` is refused.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import ipaddress
import json
import os
import re

from ansible_collections.lync.xmpp_federation.plugins.module_utils.backend import (
    Backend,
    BackendError,
    KeyedValue,
    Transaction,
    port_span_text,
    read_file_or_none,
    remove_file,
    write_file_atomic,
)
from ansible_collections.lync.xmpp_federation.plugins.module_utils.iptables import (
    OUR_CHAINS,
    format_kernel_rule,
    kernel_rule_piece,
    kernel_rules,
    parse_kernel_rule,
    save_quote,
    split_words,
)
from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import (
    IPTABLES_COMMENT_MAX_BYTES,
    OUR_MARK,
    RULE_MARK,
    RuleError,
    kernel_comment,
    normalize_network,
    port_spans,
    sort_networks,
    rule_family,
    split_kernel_comment,
    uses_set,
)

POLICIES = {
    'in': ('lync-xmpp-in', 'ANY', 'HOST'),
    'out': ('lync-xmpp-out', 'HOST', 'ANY'),
    'forward': ('lync-xmpp-fwd', 'ANY', 'ANY'),
}
SECTION_OF_POLICY = dict((policy[0], section) for section, policy in POLICIES.items())
OUR_POLICY = re.compile(r'^lync-xmpp-')
# Positive: firewalld consults such a policy inside each zone's chain, after the zone's own rules (its deny and allow
# rich rules, where fail2ban's firewallcmd-rich-rules action puts its bans) and before the zone's default reject. A
# source banned in the zone stays blocked on our ports; 1 puts ours before the admin's own positive policies (such
# as an egress REJECT policy), which it would otherwise never reach.
POLICY_PRIORITY = 1
POLICY_TARGET = 'CONTINUE'
# Rich rule priorities, in the order of our rules: -32768..-1 run before firewalld's own deny/allow
# chains of the policy, 1..32767 after them; 0 would let firewalld reorder.
FIRST_PRIORITY = -32768
MAX_RICH_RULES = 65535
DEFAULT_POLICY_DIR = '/etc/firewalld/policies'
# Our mark in a policy file of ours: its description ends with it. firewall-cmd's listing does not show
# descriptions, so a policy is ours only when firewalld's file for it, in our directory, carries the mark.
POLICY_DESCRIPTION = 'XMPP federation rules (%s), managed by lync.xmpp_federation [' + OUR_MARK + ']'
DESCRIPTION_MARK = '[' + OUR_MARK + ']'
MARKED_DESCRIPTION = re.compile(r'<description>[^<]*\[' + re.escape(OUR_MARK) + r'\]</description>')
# Policy fields firewall-cmd lists; ours hold nothing but rich rules.
EMPTY_FIELDS = ('services', 'ports', 'protocols', 'forward-ports', 'source-ports', 'icmp-blocks')
# A rich rule as firewall-cmd lists it: words, some with a quoted value. Every character must belong to one, so
# that a word we do not know (NOT, limit, log...) makes the rule not ours instead of being skipped.
RICH_WORDS = re.compile(r'^(?:\s*[A-Za-z-]+(?:="[^"]*")?)*\s*$')
RICH_WORD = re.compile(r'([A-Za-z-]+)(?:="([^"]*)")?')


# An ipset reference in a RichRule's source or destination: 'ipset:NAME'.
IPSET_REFERENCE = 'ipset:'
# ipset names are at most 31 characters (the kernel's limit): ours are our prefix, the field and a digest of the
# rule's name; the ipset's description names the rule in full.
IPSET_NAME = 'lync-xmpp-%s-%s'
IPSET_DESCRIPTION = 'XMPP federation %s list of rule %s, managed by lync.xmpp_federation [' + OUR_MARK + ']'
IPSET_FAMILY = {4: 'inet', 6: 'inet6'}


def ipset_name(rule, field):
    digest = hashlib.sha1(rule['name'].encode('utf-8')).hexdigest()[:12]
    return IPSET_NAME % ({'source': 'src', 'destination': 'dst'}[field], digest)


def set_networks(networks):
    """A list as an ipset holds it: overlapping and adjacent networks merged (firewalld refuses overlapping entries
    of a hash:net ipset), sorted."""
    parsed = [ipaddress.ip_network(network) for network in networks]
    return sort_networks(str(network) for network in ipaddress.collapse_addresses(parsed))


def ipset_settings(rule, field):
    """The ipset of ours that holds one rule's long source or destination list, in our plain dict form."""
    family = rule_family(rule)
    return {'short': ipset_name(rule, field), 'description': IPSET_DESCRIPTION % (field, rule['name']),
            'type': 'hash:net', 'options': {'family': IPSET_FAMILY[family]},
            'entries': [network_entry(network) for network in set_networks(rule[field])]}


def network_entry(network):
    """'198.51.100.7/32' -> '198.51.100.7' (as firewalld lists a host entry), networks as they are."""
    net = ipaddress.ip_network(network)
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def entry_network(entry):
    return normalize_network(entry, 'ipset entry')


# Translations (an Edge behind NAT): firewalld's rich rules can masquerade but not translate a source to a chosen
# address, so both translations are firewalld direct rules of ours in the nat table, rendered and read back by the
# iptables backend's rule functions (one rule format, no second renderer), ours by the rule mark in their comment:
#     dnat   nat PREROUTING   (firewalld's PREROUTING_direct)
#     snat   nat POSTROUTING  (firewalld's POSTROUTING_direct)
# firewalld keeps direct rules in runtime and permanent configuration (/etc/firewalld/direct.xml) alike; they change
# in both without a reload.
DIRECT_NAT_CHAINS = {'dnat': 'PREROUTING', 'snat': 'POSTROUTING'}
DIRECT_PRIORITY = 0
IPV = {4: 'ipv4', 6: 'ipv6'}
FAMILY_OF_IPV = {'ipv4': 4, 'ipv6': 6}


def direct_nat_rules(rules):
    """The direct rules (ipv, table, chain, priority, args) that ``rules``' translations become."""
    out = set()
    for rule in rules:
        if not rule.get('nat'):
            continue
        for family in (4, 6):
            for kernel_rule in kernel_rules(rule, family):
                # format_kernel_rule writes '-A CHAIN ...' as iptables-save does; a direct rule is the words after it.
                args = tuple(split_words(format_kernel_rule(kernel_rule))[2:])
                out.add((IPV[family], 'nat', DIRECT_NAT_CHAINS[rule['nat']], DIRECT_PRIORITY, args))
    return out


def direct_rule_is_ours(item):
    args = list(item[4])
    return '--comment' in args[:-1] and args[args.index('--comment') + 1].startswith(RULE_MARK)


def direct_rule_piece(item):
    """One direct rule of ours -> a piece for group_kernel_rules; ValueError when it is not in a form we write."""
    ipv, table, chain, _priority, args = item
    section = dict((base, section) for section, base in DIRECT_NAT_CHAINS.items()).get(chain)
    if table != 'nat' or section is None or ipv not in FAMILY_OF_IPV:
        raise ValueError('not in the nat table\'s PREROUTING or POSTROUTING')
    kernel_rule = parse_kernel_rule(OUR_CHAINS[section][1], ' '.join(save_quote(word) for word in args))
    return kernel_rule_piece(kernel_rule, FAMILY_OF_IPV[ipv])


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

    def text(self):
        """The rule in firewalld's rich language, as its binding takes and lists it."""
        words = ['rule', 'priority="%d"' % self.priority]
        if self.family:
            words.append('family="ipv%d"' % self.family)
        for element, network in (('source', self.source), ('destination', self.destination)):
            if network and network.startswith(IPSET_REFERENCE):
                words.append('%s ipset="%s"' % (element, network[len(IPSET_REFERENCE):]))
            elif network:
                words.append('%s address="%s"' % (element, network))
        words += ['port port="%s" protocol="%s"' % (port_span_text(self.ports, '-'), self.protocol), self.action]
        return ' '.join(words)

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


def set_fields(rule):
    """The fields of ``rule`` matched through an ipset of ours (hash:net) in one rich rule instead of one rich rule
    per network: those the rule model says every backend matches through a kernel set (rule_model.uses_set)."""
    return [field for field in ('source', 'destination') if uses_set(rule[field])]


def rich_rules(rules, start=0, use_sets=False):
    """The rich rules of one policy, for its rules in the order of their names (``start``: rich rules before them;
    ``use_sets``: long lists through ipsets of ours, see set_fields)."""
    out = []
    start_index = start
    for rule in rules:
        family = rule_family(rule)
        matched = dict((field, rule[field] or [None]) for field in ('source', 'destination'))
        if use_sets:
            for field in set_fields(rule):
                matched[field] = [IPSET_REFERENCE + ipset_name(rule, field)]
        for source in matched['source']:
            for destination in matched['destination']:
                for span in port_spans(rule['ports']):
                    out.append(RichRule(rich_priority(start_index + len(out)), family, source, destination, span,
                                        rule['protocol'], rule['action'], kernel_comment(rule)))
    if start_index + len(out) > MAX_RICH_RULES:
        raise BackendError('firewalld: %d rich rules in one policy; firewalld orders at most %d'
                           % (start_index + len(out), MAX_RICH_RULES))
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
        if key not in ('priority', 'family', 'source.address', 'destination.address', 'port.port', 'port.protocol',
                       'source.ipset', 'destination.ipset') or key in fields:
            return None
        fields[key] = value
    for element in ('source', 'destination'):
        if element + '.ipset' in fields:
            if element + '.address' in fields or not fields[element + '.ipset'].startswith('lync-xmpp-'):
                return None
            fields[element + '.address'] = IPSET_REFERENCE + fields.pop(element + '.ipset')
    if 'action' not in fields or 'port.port' not in fields or 'priority' not in fields:
        return None
    try:
        family = {'ipv4': 4, 'ipv6': 6, None: None}[fields.get('family')]
        networks = [(fields[key] if fields[key].startswith(IPSET_REFERENCE) else normalize_network(fields[key], key))
                    if key in fields else None for key in ('source.address', 'destination.address')]
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


# -- firewalld's own Python binding (python3-firewall, over D-Bus) -----------------------------------------------

# Policy fields firewalld can change at runtime (firewall.client strips the others from a runtime update).
RUNTIME_FIXED_FIELDS = ('version', 'short', 'description', 'target')
# Our policy's description: the mark, then which rich rule priorities hold which of our rules, since a rich rule
# carries no comment and firewalld writes the file itself (an XML comment of ours would not survive).
NAMES_LABEL = '; rule priorities: '


def description_with_names(section, riches_by_name):
    """Our policy's description: the marked text, then [[first priority, last priority, kernel comment], ...]."""
    listed = json.dumps(riches_by_name, ensure_ascii=False, separators=(',', ':'))
    return (POLICY_DESCRIPTION % section) + NAMES_LABEL + listed


def names_in_description(text):
    """{rich rule priority: (our rule's name, its comment)} from a description of ours; {} when it names none."""
    _marked, found, listed = (text or '').partition(NAMES_LABEL)
    if not found:
        return {}
    try:
        ranges = json.loads(listed)
        named = {}
        for first, last, comment in ranges:
            name = split_kernel_comment(comment)
            if name[0]:
                named.update((priority, name) for priority in range(int(first), int(last) + 1))
        return named
    except (ValueError, TypeError):
        return {}


def policy_settings(section, rules):
    """The settings of one policy of ours, in firewall.client's dict form, for ``rules`` (canonical, in name order)."""
    policy, ingress, egress = POLICIES[section]
    riches, ranges = [], []
    for rule in rules:
        first = len(riches)
        riches += rich_rules([rule], first, use_sets=True)
        if len(riches) > first:
            ranges.append([riches[first].priority, riches[-1].priority, kernel_comment(rule)])
    if len(riches) > MAX_RICH_RULES:
        raise BackendError('firewalld: %d rich rules in one policy; firewalld orders at most %d'
                           % (len(riches), MAX_RICH_RULES))
    return {'short': policy, 'description': description_with_names(section, ranges), 'target': POLICY_TARGET,
            'priority': POLICY_PRIORITY, 'ingress_zones': [ingress], 'egress_zones': [egress],
            'rich_rules': [rich.text() for rich in riches], 'masquerade': False, 'forward_ports': [],
            'services': [], 'ports': [], 'protocols': [], 'source_ports': [], 'icmp_blocks': [], 'version': ''}


def comparable_settings(settings, runtime):
    """Policy settings as compared: rich rules parsed (firewalld may write them back in another spelling), lists as
    sets; at runtime without what only a reload changes (the description, which names our rules, among them)."""
    out = {}
    for field, value in settings.items():
        if field == 'version' or (runtime and field in RUNTIME_FIXED_FIELDS):
            continue
        if field == 'rich_rules':
            value = frozenset(parse_rich_rule(text) or text for text in value)
        elif isinstance(value, (list, tuple)):
            value = frozenset(tuple(item) if isinstance(item, list) else item for item in value)
        out[field] = value
    return out


# What firewalld takes from the permanent configuration only at a reload: its runtime update leaves the target out, and
# (firewalld 1.3.3, seen in the lab) keeps a running policy's priority and zones as they were, without an error.
RELOAD_ONLY_FIELDS = ('target', 'priority', 'ingress_zones', 'egress_zones')


def needs_reload(runtime, wanted):
    """A policy firewalld does not run yet, or one whose target, priority or zones differ, changes only with a reload
    (the upgrade from priority -100 is one)."""
    if runtime is None or wanted is None:
        return True
    return any(comparable_settings({field: runtime.get(field)}, False) != comparable_settings({field: wanted[field]}, False)
               for field in RELOAD_ONLY_FIELDS)


def frozen(item):
    """A direct chain, rule or passthrough as the binding lists it (its arguments a list) -> nested tuples."""
    return tuple(frozen(part) if isinstance(part, (list, tuple)) else part for part in item)


def thawed(item):
    """frozen()'s inverse: the arguments as the binding takes them (the iptables arguments a list)."""
    return [list(part) if isinstance(part, tuple) else part for part in item]


def ipset_dict(settings, entries=None):
    """firewall.client's ipset settings list (version, short, description, type, options, entries) -> our dict."""
    return {'short': settings[1], 'description': settings[2], 'type': settings[3], 'options': dict(settings[4]),
            'entries': list(settings[5] if entries is None else entries)}


def comparable_ipset(settings, runtime):
    """An ipset as compared: entries as networks (firewalld lists a host without its prefix length), a set; at runtime
    without the description, which only a reload changes."""
    out = {'type': settings['type'], 'options': dict(settings['options']),
           'entries': frozenset(entry_network(entry) for entry in settings['entries'])}
    if not runtime:
        out['description'] = settings['description']
    return out


class FirewalldApi(object):
    """firewalld's own Python binding (``firewall.client``), reduced to plain values: runtime and permanent policies,
    the reload, and a snapshot of every runtime-only entry a reload would discard, to put it back."""

    def __init__(self, client):
        self.fw = client
        self.config = client.config()

    @classmethod
    def connect(cls):
        """-> FirewalldApi; ImportError when the binding is missing; BackendError when firewalld does not answer."""
        from firewall.client import FirewallClient  # noqa: F401 pylint: disable=import-error
        try:
            client = FirewallClient()
            connected = client.connected
        except Exception as error:  # the binding raises dbus and firewall errors alike
            raise BackendError('firewalld: cannot reach firewalld over D-Bus: %s; nothing was changed' % error)
        if not connected:
            raise BackendError('firewalld: firewalld does not answer on D-Bus (is it running?); nothing was changed')
        return cls(client)

    # runtime
    def runtime_policy_names(self):
        return list(self.fw.getPolicies())

    def runtime_policy(self, name):
        return dict(self.fw.getPolicySettings(name).getSettingsDict())

    def set_runtime_policy(self, name, settings):
        from firewall.client import FirewallClientPolicySettings  # pylint: disable=import-error
        self.fw.setPolicySettings(name, FirewallClientPolicySettings(settings))

    def reload(self):
        self.fw.reload()

    # permanent
    def permanent_policy_names(self):
        return list(self.config.getPolicyNames())

    def permanent_policy(self, name):
        return dict(self.config.getPolicyByName(name).getSettings().getSettingsDict())

    def add_permanent_policy(self, name, settings):
        from firewall.client import FirewallClientPolicySettings  # pylint: disable=import-error
        # The settings object gives D-Bus the types of empty lists, which a plain dict cannot.
        self.config.addPolicy(name, FirewallClientPolicySettings(settings))

    def set_permanent_policy(self, name, settings):
        from firewall.client import FirewallClientPolicySettings  # pylint: disable=import-error
        self.config.getPolicyByName(name).update(FirewallClientPolicySettings(settings))

    def remove_permanent_policy(self, name):
        self.config.getPolicyByName(name).remove()

    # ipsets: ours hold our long address lists
    def runtime_ipset_names(self):
        return list(self.fw.getIPSets())

    def runtime_ipset(self, name):
        return ipset_dict(self.fw.getIPSetSettings(name).settings, self.fw.getEntries(name))

    def set_runtime_entries(self, name, entries):
        self.fw.setEntries(name, list(entries))

    def permanent_ipset_names(self):
        return list(self.config.getIPSetNames())

    def permanent_ipset(self, name):
        return ipset_dict(self.config.getIPSetByName(name).getSettings().settings)

    def add_permanent_ipset(self, name, settings):
        from firewall.client import FirewallClientIPSetSettings  # pylint: disable=import-error
        self.config.addIPSet(name, FirewallClientIPSetSettings(
            ['', settings['short'], settings['description'], settings['type'], dict(settings['options']),
             list(settings['entries'])]))

    def set_permanent_entries(self, name, entries):
        self.config.getIPSetByName(name).setEntries(list(entries))

    def remove_permanent_ipset(self, name):
        self.config.getIPSetByName(name).remove()

    # direct rules (our translations)
    def runtime_direct_rules(self):
        return [frozen(item) for item in self.fw.getAllRules()]

    def permanent_direct_rules(self):
        return [frozen(item) for item in self.config.direct().getAllRules()]

    def add_runtime_direct_rule(self, item):
        self.fw.addRule(*thawed(item))

    def remove_runtime_direct_rule(self, item):
        self.fw.removeRule(*thawed(item))

    def add_permanent_direct_rule(self, item):
        self.config.direct().addRule(*thawed(item))

    def remove_permanent_direct_rule(self, item):
        self.config.direct().removeRule(*thawed(item))

    # what a reload discards
    def runtime_snapshot(self, skip_policies):
        """Every runtime object a reload rebuilds from the permanent configuration, as it is now."""
        return {
            'zones': dict((zone, dict(self.fw.getZoneSettings(zone).getSettingsDict())) for zone in self.fw.getZones()),
            'policies': dict((name, self.runtime_policy(name)) for name in self.fw.getPolicies()
                             if name not in skip_policies),
            'ipsets': dict((name, sorted(self.fw.getEntries(name))) for name in self.fw.getIPSets()
                           if name not in skip_policies),
            'direct chains': sorted(frozen(item) for item in self.fw.getAllChains()),
            'direct rules': sorted(frozen(item) for item in self.fw.getAllRules()),
            'direct passthroughs': sorted(frozen(item) for item in self.fw.getAllPassthroughs()),
        }

    def restore_runtime(self, before, after):
        """Put back what ``before`` (a snapshot) held and ``after`` (one taken since) lacks; -> what was put back."""
        from firewall.client import FirewallClientZoneSettings  # pylint: disable=import-error
        restored = []
        for zone, settings in sorted(before['zones'].items()):
            if after['zones'].get(zone) != settings and zone in after['zones']:
                self.fw.setZoneSettings(zone, FirewallClientZoneSettings(settings))
                restored.append('zone %s' % zone)
        for name, settings in sorted(before['policies'].items()):
            if after['policies'].get(name) != settings and name in after['policies']:
                self.set_runtime_policy(name, settings)
                restored.append('policy %s' % name)
        for name, entries in sorted(before['ipsets'].items()):
            if after['ipsets'].get(name) != entries and name in after['ipsets']:
                self.fw.setEntries(name, entries)
                restored.append('ipset %s' % name)
        for kind, add, remove in (('direct chains', self.fw.addChain, self.fw.removeChain),
                                  ('direct rules', self.fw.addRule, self.fw.removeRule),
                                  ('direct passthroughs', self.fw.addPassthrough, self.fw.removePassthrough)):
            wanted, now = set(before[kind]), set(after[kind])
            # Rules before chains go away; chains before rules come back.
            for item in sorted(now - wanted):
                remove(*thawed(item))
            for item in sorted(wanted - now):
                add(*thawed(item))
            if wanted != now:
                restored.append(kind[:-1] + 's')
        return restored


class FirewalldBackend(Backend):
    """firewalld through its own Python binding (runtime and permanent at once, no reload once our policies exist),
    or, where the binding is missing, through ``firewall-cmd`` and policy files of ours with one reload."""

    name = 'firewalld'
    # Our rule's name and comment live in our policy's description (binding) or an XML comment of our file
    # (firewall-cmd): no kernel limit, but the same as iptables', so that a list valid here is valid on the kernel
    # backends too.
    comment_limit = IPTABLES_COMMENT_MAX_BYTES
    policy_dir = DEFAULT_POLICY_DIR

    def __init__(self, run_command, get_bin_path, options, lock=None):
        super(FirewalldBackend, self).__init__(run_command, get_bin_path, options, lock=lock)
        self.firewall_cmd = None
        self.runtime, self.files, self.foreign = {}, {}, {}
        self.permanent = {}
        self.ipsets_runtime, self.ipsets_permanent = {}, {}
        self.direct_runtime, self.direct_permanent = set(), set()
        self.translations = []
        self.api = None
        self.interface = None
        self.reloaded, self.restored = False, []

    # The binding, or None where it is missing (then firewall-cmd). A test hands in a double of FirewalldApi.
    connect_api = staticmethod(FirewalldApi.connect)

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
            raise BackendError('firewalld: persist=false cannot be honoured: firewalld creates policies only in its '
                               'permanent configuration, so its rules always survive a reload or a reboot')
        self.translations = [rule for rule in rules if rule.get('nat')]

    # -- reading (once) ---------------------------------------------------------------
    def read(self):
        try:
            self.api = self.connect_api()
        except ImportError:
            self.api = None
        if self.api is None:
            self.interface = 'firewall-cmd'
            self.notices.append('firewalld: python3-firewall (firewalld\'s Python binding) cannot be imported by this '
                                'Python interpreter, so this run uses firewall-cmd and policy files with one reload, '
                                'and refuses while firewalld holds runtime-only entries (fail2ban\'s bans among them); '
                                'install python3-firewall, or use the system Python as ansible_python_interpreter')
            return self._read_cli()
        self.interface = 'dbus'
        return self._read_api()

    def _call(self, what, function, *args):
        try:
            return function(*args)
        except BackendError:
            raise
        except Exception as error:  # dbus.exceptions.DBusException, firewall.errors.FirewallError
            raise BackendError('firewalld: %s failed: %s' % (what, ' '.join(str(error).split())))

    def _read_api(self):
        api = self.api
        runtime_names = set(name for name in self._call('listing runtime policies', api.runtime_policy_names)
                            if OUR_POLICY.match(name))
        permanent_names = set(name for name in self._call('listing permanent policies', api.permanent_policy_names)
                              if OUR_POLICY.match(name))
        self.foreign, self.runtime, self.permanent = {}, {}, {}
        for policy in sorted(runtime_names | permanent_names):
            permanent = (self._call('reading permanent policy %s' % policy, api.permanent_policy, policy)
                         if policy in permanent_names else None)
            runtime = (self._call('reading runtime policy %s' % policy, api.runtime_policy, policy)
                       if policy in runtime_names else None)
            # Ours: the permanent policy carries our mark in its description; a policy firewalld runs whose permanent
            # one is gone (removed, not reloaded since) is ours when its runtime description carries the mark.
            marked_by = permanent if permanent is not None else runtime
            if DESCRIPTION_MARK in (marked_by.get('description') or ''):
                self.permanent[policy], self.runtime[policy] = permanent, runtime
            else:
                self.foreign[policy] = ('firewalld policy %s is named like ours but is not ours (its description '
                                        'lacks %s)' % (policy, DESCRIPTION_MARK))
        self._read_ipsets()
        self.direct_runtime = set(item for item in self._call('listing runtime direct rules', api.runtime_direct_rules)
                                  if direct_rule_is_ours(item))
        self.direct_permanent = set(item for item in self._call('listing permanent direct rules',
                                                                api.permanent_direct_rules) if direct_rule_is_ours(item))
        self.pieces, self.parse_problems = [], []
        for item in sorted(self.direct_runtime):
            try:
                self.pieces.append(direct_rule_piece(item))
            except ValueError as error:
                self.parse_problems.append('firewalld: direct rule %s carries our mark but is not in a form we write '
                                           '(%s)' % (' '.join(str(part) for part in thawed(item)[:4] + list(item[4])),
                                                     error))
        for policy, fields in sorted(self.runtime.items()):
            if fields is None:
                continue
            source = self.permanent.get(policy) or fields
            self._collect_pieces(policy, fields['rich_rules'], names_in_description(source.get('description')))
        self.live_rules, self.grouping_problems = None, []

    def _read_ipsets(self):
        """Our ipsets, by the mark in their permanent description (runtime only: in the runtime one)."""
        api = self.api
        runtime_names = set(name for name in self._call('listing runtime ipsets', api.runtime_ipset_names)
                            if OUR_POLICY.match(name))
        permanent_names = set(name for name in self._call('listing permanent ipsets', api.permanent_ipset_names)
                              if OUR_POLICY.match(name))
        self.ipsets_runtime, self.ipsets_permanent = {}, {}
        for name in sorted(runtime_names | permanent_names):
            permanent = (self._call('reading permanent ipset %s' % name, api.permanent_ipset, name)
                         if name in permanent_names else None)
            runtime = (self._call('reading runtime ipset %s' % name, api.runtime_ipset, name)
                       if name in runtime_names else None)
            marked_by = permanent if permanent is not None else runtime
            if DESCRIPTION_MARK in (marked_by.get('description') or ''):
                self.ipsets_permanent[name], self.ipsets_runtime[name] = permanent, runtime
            else:
                self.foreign[name] = ('firewalld ipset %s is named like ours but is not ours (its description lacks '
                                      '%s)' % (name, DESCRIPTION_MARK))

    def _ipset_networks(self, reference):
        """The networks an ipset of ours holds at runtime, for a rich rule's 'ipset:NAME'; None when it is not ours."""
        runtime = getattr(self, 'ipsets_runtime', {}).get(reference[len(IPSET_REFERENCE):])
        if runtime is None:
            return None
        try:
            return set_networks([entry_network(entry) for entry in runtime['entries']])
        except (RuleError, ValueError):
            return None

    def _collect_pieces(self, policy, texts, names):
        section = SECTION_OF_POLICY.get(policy)
        for text in texts:
            rich = parse_rich_rule(text)
            if rich is None or section is None:
                self.parse_problems.append('firewalld: policy %s holds a rich rule not in a form we write: %s'
                                           % (policy, text))
                continue
            matched = {}
            for field, network in (('source', rich.source), ('destination', rich.destination)):
                matched[field] = [network] if network else []
                if network and network.startswith(IPSET_REFERENCE):
                    matched[field] = self._ipset_networks(network)
            if matched['source'] is None or matched['destination'] is None:
                self.parse_problems.append('firewalld: policy %s holds a rich rule matching an ipset that is not ours: '
                                           '%s' % (policy, text))
                continue
            # Our description (or file) names the rule at each priority; a rule added by hand gets none.
            name, comment = names.get(rich.priority, ('unnamed-%s-%d' % (section, rich.priority), ''))
            self.pieces.append({
                'name': name, 'comment': comment, 'direction': section, 'protocol': rich.protocol,
                'action': rich.action, 'nat': None, 'nat_to': None,
                'families': (rich.family,) if rich.family else (4, 6),
                'source': matched['source'], 'destination': matched['destination'], 'ports': [rich.ports]})

    def _read_cli(self):
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
        self.pieces, self.parse_problems = [], []
        for policy, fields in sorted(self.runtime.items()):
            self._collect_pieces(policy, fields['rich rules'], names_in_policy_file(self.files[policy]))
        self.live_rules, self.grouping_problems = None, []

    def foreign_objects(self, rules):
        wanted = self.desired_rich_rules(rules)
        if self.api is not None:
            wanted.update(self.desired_ipsets(rules))
        in_the_way = []
        for policy, description in sorted(self.foreign.items()):
            if policy in wanted:
                in_the_way.append('%s, and the rules need that name (rename or remove it)' % description)
            else:
                self.notices.append('firewalld: left alone: %s' % description)
        return in_the_way

    @staticmethod
    def rules_by_section(rules):
        """Filter rules by policy section; translations are direct rules (direct_nat_rules), not rich rules."""
        by_section = {}
        for rule in rules:
            if not rule.get('nat'):
                by_section.setdefault(rule['direction'], []).append(rule)
        return by_section

    def desired_rich_rules(self, rules):
        """{policy: its rich rules} for the sections ``rules`` use (canonical rules: in the order of their names)."""
        return dict((POLICIES[section][0], rich_rules(section_rules))
                    for section, section_rules in self.rules_by_section(rules).items())

    @staticmethod
    def desired_ipsets(rules):
        """{ipset: its settings} for the long address lists of ``rules`` (see set_fields)."""
        return dict((ipset_name(rule, field), ipset_settings(rule, field))
                    for rule in rules for field in set_fields(rule))

    def desired_settings(self, rules):
        """{policy: its settings} (the binding's dict form) for the sections ``rules`` use."""
        return dict((POLICIES[section][0], policy_settings(section, section_rules))
                    for section, section_rules in self.rules_by_section(rules).items())

    def in_place(self, rules):
        if self.parse_problems:
            return False
        if self.api is None:
            return self._in_place_cli(rules)
        wanted = self.desired_settings(rules)
        # A policy of ours firewalld still runs but that is gone from the permanent configuration holds no rule
        # once we emptied it: it is not in the way of "nothing of ours".
        running = set(policy for policy, fields in self.runtime.items()
                      if fields is not None and (self.permanent.get(policy) is not None or fields['rich_rules']))
        if set(wanted) != set(policy for policy, fields in self.permanent.items() if fields is not None):
            return False
        if set(wanted) != running:
            return False
        if not self._ipsets_in_place(self.desired_ipsets(rules)):
            return False
        wanted_direct = direct_nat_rules(rules)
        if self.direct_runtime != wanted_direct or self.direct_permanent != wanted_direct:
            return False
        for policy, settings in wanted.items():
            if comparable_settings(self.permanent[policy], False) != comparable_settings(settings, False):
                return False
            if comparable_settings(self.runtime[policy], True) != comparable_settings(settings, True):
                return False
            if needs_reload(self.runtime[policy], settings):
                return False
        return True

    def _ipsets_in_place(self, wanted):
        if set(wanted) != set(name for name, fields in self.ipsets_permanent.items() if fields is not None):
            return False
        if set(wanted) != set(name for name, fields in self.ipsets_runtime.items() if fields is not None):
            return False
        for name, settings in wanted.items():
            if comparable_ipset(self.ipsets_permanent[name], False) != comparable_ipset(settings, False):
                return False
            if comparable_ipset(self.ipsets_runtime[name], True) != comparable_ipset(settings, True):
                return False
        return True

    def _in_place_cli(self, rules):
        if self.translations:
            raise BackendError("firewalld: rule '%s' translates addresses (%s to %s); on firewalld the collection writes "
                               "translations as direct rules through firewalld's Python binding, which this Python "
                               "interpreter cannot import: install python3-firewall; nothing was changed"
                               % (self.translations[0]['name'], self.translations[0]['nat'],
                                  self.translations[0]['nat_to']))
        wanted = self.desired_rich_rules(rules)
        if set(wanted) != set(self.runtime) or set(wanted) != set(self.files):
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
        if self.api is None:
            return bool(self.runtime or self.files)
        return any([
            any(fields is not None for fields in self.permanent.values()),
            any(fields is not None and fields['rich_rules'] for fields in self.runtime.values()),
            any(fields is not None for fields in self.ipsets_permanent.values()),
            self.direct_runtime,
            self.direct_permanent,
        ])

    # -- writing -------------------------------------------------------------------
    def plan(self, rules):
        if self.api is None:
            return self._plan_cli(rules)
        wanted = self.desired_settings(rules)
        changes = {}
        for policy in sorted(set(wanted) | set(self.permanent) | set(self.runtime)):
            settings = wanted.get(policy)
            permanent, runtime = self.permanent.get(policy), self.runtime.get(policy)
            if permanent is None or settings is None:
                same_permanent = permanent is None and settings is None
            else:
                same_permanent = comparable_settings(permanent, False) == comparable_settings(settings, False)
            if settings is None and runtime is not None and not runtime['rich_rules'] and permanent is None:
                continue
            same_runtime = all([runtime is not None, settings is not None]) and all([
                not needs_reload(runtime, settings),
                comparable_settings(runtime, True) == comparable_settings(settings, True)])
            if same_permanent and same_runtime:
                continue
            changes[policy] = {'permanent': permanent, 'runtime': runtime, 'wanted': settings,
                               'reload': needs_reload(runtime, settings)}
        ipset_changes = self._ipset_changes(self.desired_ipsets(rules))
        wanted_direct = direct_nat_rules(rules)
        direct = {'wanted': sorted(wanted_direct),
                  'changed': self.direct_runtime != wanted_direct or self.direct_permanent != wanted_direct}
        reload = any(change['reload'] for change in list(changes.values()) + list(ipset_changes.values()))
        lines = ['# lync-xmpp-federation: firewalld policies and ipsets through its D-Bus API, runtime and permanent%s'
                 % (', then one reload that keeps every runtime-only entry' if reload else ' (no reload)')]
        for name, change in sorted(ipset_changes.items()):
            settings = change['wanted']
            if settings is None:
                lines.append('# remove ipset %s' % name)
            else:
                lines.append('# %s ipset %s (%s, family %s): %d entries'
                             % ('create' if change['permanent'] is None else 'update', name, settings['type'],
                                settings['options']['family'], len(settings['entries'])))
        for policy, change in sorted(changes.items()):
            settings = change['wanted']
            if settings is None:
                lines.append('# remove policy %s' % policy)
                continue
            verb = 'update' if change['permanent'] is not None else 'create'
            lines.append('# %s policy %s: priority %d, target %s, ingress %s, egress %s'
                         % (verb, policy, settings['priority'], settings['target'],
                            ' '.join(settings['ingress_zones']), ' '.join(settings['egress_zones'])))
            lines += ['%s %s' % (policy, text) for text in settings['rich_rules']]
        if direct['changed']:
            lines.append('# direct rules of ours (translations), runtime and permanent: %d' % len(wanted_direct))
            lines += ['%s -t %s -A %s %s' % (item[0], item[1], item[2],
                                             ' '.join('"%s"' % word if ' ' in word else word for word in item[4]))
                      for item in direct['wanted']]
        payload = {'changes': changes, 'ipsets': ipset_changes, 'reload': reload, 'direct': direct}
        return Transaction([('firewalld policies', '\n'.join(lines) + '\n', payload)])

    def _ipset_changes(self, wanted):
        """{ipset: change} for our ipsets; entries alone change live, anything else (a new ipset, one no longer
        needed, another type, family or description) needs the reload, since firewalld creates ipsets only in its
        permanent configuration."""
        changes = {}
        for name in sorted(set(wanted) | set(self.ipsets_permanent) | set(self.ipsets_runtime)):
            settings = wanted.get(name)
            permanent, runtime = self.ipsets_permanent.get(name), self.ipsets_runtime.get(name)
            if settings is None and permanent is None and runtime is None:
                continue
            if settings is not None and permanent is not None and runtime is not None:
                same_permanent = comparable_ipset(permanent, False) == comparable_ipset(settings, False)
                if same_permanent and comparable_ipset(runtime, True) == comparable_ipset(settings, True):
                    continue
                shape = dict(comparable_ipset(settings, False), entries=None)
                permanent_shape = dict(comparable_ipset(permanent, False), entries=None)
                runtime_shape = dict(comparable_ipset(runtime, False), entries=None, description=shape['description'])
                live = permanent_shape == shape and runtime_shape == shape
            else:
                live = False
            changes[name] = {'permanent': permanent, 'runtime': runtime, 'wanted': settings, 'reload': not live}
        return changes

    def apply(self, transaction):
        if self.api is None:
            return self._apply_cli(transaction)
        for _label, _text, payload in transaction.steps:
            if payload['reload']:
                self._apply_with_reload(payload)
            else:
                self._apply_live(payload)
            if payload['direct']['changed']:
                self._apply_direct(set(payload['direct']['wanted']))

    def _apply_direct(self, wanted):
        """Our translations as direct rules, runtime and permanent, without a reload; read again here, since a reload
        of this run rebuilt the runtime ones from the permanent configuration."""
        api, done = self.api, []
        runtime = set(item for item in self._call('listing runtime direct rules', api.runtime_direct_rules)
                      if direct_rule_is_ours(item))
        permanent = set(item for item in self._call('listing permanent direct rules', api.permanent_direct_rules)
                        if direct_rule_is_ours(item))
        try:
            for side, now, add, remove in (
                    ('permanent', permanent, api.add_permanent_direct_rule, api.remove_permanent_direct_rule),
                    ('runtime', runtime, api.add_runtime_direct_rule, api.remove_runtime_direct_rule)):
                for item in sorted(now - wanted):
                    self._step(done, 'removing %s direct rule %s' % (side, ' '.join(item[4])), remove, (item,),
                               lambda item=item, add=add: add(item))
                for item in sorted(wanted - now):
                    self._step(done, 'adding %s direct rule %s' % (side, ' '.join(item[4])), add, (item,),
                               lambda item=item, remove=remove: remove(item))
        except BackendError as error:
            raise BackendError('%s; %s%s' % (error, self._undo(done), ' (policies and ipsets of this run stay applied)'
                                             if self.reloaded else ''))

    def _step(self, done, what, function, args, undo):
        """One change through the binding; on success ``undo`` (a callable putting the previous state back) is kept."""
        self._call(what, function, *args)
        done.append((what, undo))

    def _apply_live(self, payload):
        """Every policy and ipset already runs: permanent and runtime each, undone all together on a failure.
        Ipset entries first, so that a rule never matches a list that is not there yet."""
        api, done = self.api, []
        try:
            for name, change in sorted(payload['ipsets'].items()):
                entries = change['wanted']['entries']
                previous_permanent, previous_runtime = change['permanent']['entries'], change['runtime']['entries']
                self._step(done, 'setting the permanent entries of ipset %s' % name, api.set_permanent_entries,
                           (name, entries), lambda name=name, old=previous_permanent: api.set_permanent_entries(name, old))
                self._step(done, 'setting the runtime entries of ipset %s' % name, api.set_runtime_entries,
                           (name, entries), lambda name=name, old=previous_runtime: api.set_runtime_entries(name, old))
            for policy, change in sorted(payload['changes'].items()):
                self._step(done, 'updating permanent policy %s' % policy, api.set_permanent_policy,
                           (policy, change['wanted']),
                           lambda policy=policy, old=change['permanent']: api.set_permanent_policy(policy, old))
                self._step(done, 'updating runtime policy %s' % policy, api.set_runtime_policy,
                           (policy, change['wanted']),
                           lambda policy=policy, old=change['runtime']: api.set_runtime_policy(policy, old))
        except BackendError as error:
            raise BackendError('%s; %s' % (error, self._undo(done)))

    @staticmethod
    def _undo(done):
        """Run the undo of every step ``done`` lists (newest first); -> a sentence saying whether that worked."""
        failures = []
        for what, undo in reversed(done):
            try:
                undo()
            except Exception as error:  # report every failure, keep undoing the rest
                failures.append('undoing %s: %s' % (what, ' '.join(str(error).split())))
        if failures:
            return 'putting the previous settings back failed too (%s): check firewalld' % '; '.join(failures)
        return 'the previous runtime and permanent settings are back'

    def _permanent_steps(self, payload, done):
        """The permanent changes before the reload: new ipsets, then policies, then ipsets no longer needed (a policy
        must not name an ipset that is not there)."""
        api = self.api
        for name, change in sorted(payload['ipsets'].items()):
            if change['wanted'] is None:
                continue
            if change['permanent'] is not None:
                self._step(done, 'removing permanent ipset %s' % name, api.remove_permanent_ipset, (name,),
                           lambda name=name, old=change['permanent']: api.add_permanent_ipset(name, old))
            self._step(done, 'creating permanent ipset %s' % name, api.add_permanent_ipset, (name, change['wanted']),
                       lambda name=name: api.remove_permanent_ipset(name))
        for policy, change in sorted(payload['changes'].items()):
            if change['wanted'] is None:
                # A policy firewalld still runs whose permanent one is gone: the reload alone drops it.
                if change['permanent'] is not None:
                    self._step(done, 'removing permanent policy %s' % policy, api.remove_permanent_policy, (policy,),
                               lambda policy=policy, old=change['permanent']: api.add_permanent_policy(policy, old))
            elif change['permanent'] is None:
                self._step(done, 'creating permanent policy %s' % policy, api.add_permanent_policy,
                           (policy, change['wanted']), lambda policy=policy: api.remove_permanent_policy(policy))
            else:
                self._step(done, 'updating permanent policy %s' % policy, api.set_permanent_policy,
                           (policy, change['wanted']),
                           lambda policy=policy, old=change['permanent']: api.set_permanent_policy(policy, old))
        for name, change in sorted(payload['ipsets'].items()):
            if change['wanted'] is None and change['permanent'] is not None:
                self._step(done, 'removing permanent ipset %s' % name, api.remove_permanent_ipset, (name,),
                           lambda name=name, old=change['permanent']: api.add_permanent_ipset(name, old))

    def _apply_with_reload(self, payload):
        """A policy or ipset firewalld must create (or drop, or retarget): permanent changes, one reload, then every
        runtime-only entry that the reload discarded put back as it was."""
        ours = set(payload['changes']) | set(payload['ipsets'])
        before = self._call('reading the runtime configuration', self.api.runtime_snapshot, ours)
        done = []
        try:
            self._permanent_steps(payload, done)
        except BackendError as error:
            raise BackendError('%s; firewalld was not reloaded and %s' % (error, self._undo(done)))
        try:
            self._call('the reload', self.api.reload)
            self.reloaded = True
            self.restored = self._restore(before)
        except BackendError as error:
            undone = self._undo(done)
            try:
                self._call('the reload', self.api.reload)
                restored = self._restore(before)
                back = 'reloaded with them%s' % (', runtime-only entries put back: %s' % ', '.join(restored)
                                                 if restored else '')
            except BackendError as again:
                back = 'reloading them failed too (%s): check firewalld' % again
            raise BackendError('%s; %s, %s' % (error, undone, back))
        if self.restored:
            self.notices.append('firewalld: creating or removing a policy or ipset of ours, or moving a policy to another '
                                'priority, target or zones, needs a reload; these runtime-only entries were put back as '
                                'they were before it: %s'
                                % ', '.join(self.restored))

    def _restore(self, before):
        # Our own direct rules (translations) are this run's to set, after the reload, not runtime state to restore.
        before['direct rules'] = [item for item in before['direct rules'] if not direct_rule_is_ours(item)]
        after = self._call('reading the runtime configuration', self.api.runtime_snapshot, set())
        after['direct rules'] = [item for item in after['direct rules'] if not direct_rule_is_ours(item)]
        for kind in ('policies', 'ipsets'):
            after[kind] = dict((name, fields) for name, fields in after[kind].items() if name in before[kind])
        restored = self._call('putting runtime-only entries back', self.api.restore_runtime, before, after)
        check = self._call('reading the runtime configuration', self.api.runtime_snapshot, set())
        check['ipsets'] = dict((name, entries) for name, entries in check['ipsets'].items() if name in before['ipsets'])
        check['direct rules'] = [item for item in check['direct rules'] if not direct_rule_is_ours(item)]
        lost = [kind for kind in ('zones', 'ipsets', 'direct chains', 'direct rules', 'direct passthroughs')
                if check[kind] != before[kind]]
        lost += ['policy %s' % name for name, fields in before['policies'].items()
                 if check['policies'].get(name) != fields]
        if lost:
            raise BackendError('firewalld: after the reload, the runtime-only entries of %s could not be put back as '
                               'they were' % ', '.join(lost))
        return restored

    def result_details(self):
        return {'firewalld_interface': self.interface, 'firewalld_reloaded': self.reloaded,
                'firewalld_restored_runtime': list(self.restored)}

    # -- the firewall-cmd fallback: policy files and one reload ---------------------------
    def file_plan(self, rules):
        """{path: text, or None to remove}: our policy files as ``rules`` need them; only ours are named."""
        wanted = self.desired_rich_rules(rules)
        plan = dict((self.policy_path(policy), policy_xml(SECTION_OF_POLICY[policy], riches))
                    for policy, riches in wanted.items())
        for policy in set(self.files) | set(self.runtime):
            if policy not in wanted:
                plan[self.policy_path(policy)] = None
        return plan

    def _plan_cli(self, rules):
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

    def _apply_cli(self, transaction):
        changed = self._runtime_only_changes()
        if changed:
            raise BackendError('firewalld: the runtime configuration differs from the permanent one in %s, and the '
                               'reload that applies our policies would discard that. Make those changes permanent '
                               '(firewall-cmd --runtime-to-permanent) or drop them (firewall-cmd --reload) first; '
                               'nothing was changed' % ', '.join(changed))
        for _label, _text, files in transaction.steps:
            self._apply_files(files)
        self.reloaded = True

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
        """Our policy files as the run leaves them (firewalld writes them for the binding, in the same place)."""
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
