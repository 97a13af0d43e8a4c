#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: firewall_ruleset
short_description: Apply one host's XMPP federation rules to a Linux firewall in one atomic, idempotent step
version_added: 1.0.0
author: lync.xmpp_federation contributors (@lync-xmpp-federation)
description:
  - Applies the whole rule list of one host, as the filter P(lync.xmpp_federation.host_rules#filter) returns it,
    to nftables, iptables (iptables-nft or iptables-legacy), firewalld or ufw in a single call.
  - Reads the live ruleset once, compares the normalised desired rules with the rules of ours found there, and
    only when they differ writes one transaction (C(nft -f), C(iptables-restore --noflush)) that is validated
    first. Either all of it is applied or none.
  - Owns exactly the objects that carry its mark, C(lync-xmpp-federation), and nothing else. Rules live in chains
    of ours inside the table that holds the host's filter base chains, entered by one jump rule per hook inserted at
    the top of that base chain, so that an accept of ours takes effect even where the base chain's policy is drop.
    Chain policies, other tables, other chains and other rules are never changed.
  - "How ours are recognised: nftables tables and chains of ours carry the mark as their comment; jump rules of
    ours (nftables and iptables) have the mark as their whole comment; every kernel rule of ours has a comment that
    starts with C(lync-xmpp:) and the rule's name (C(lync-xmpp:NAME: COMMENT)); an iptables chain is ours through
    those marked rules and jumps; a firewalld policy is ours when its permanent description carries
    C([lync-xmpp-federation]) (with the C(firewall-cmd) fallback: its file in C(/etc/firewalld/policies/)). A name
    alone never makes an object ours."
  - "What it refuses, changing nothing: a table, chain or policy with one of our names but without our mark, where
    the rules need that name (the message names the table, the chain and its rules; rename it, or point
    O(nft_table) or O(base_chains) at another table). Elsewhere such an object is left alone, with a warning. A rule
    without our mark inside a chain of ours, or a foreign rule jumping into one, fails every run, O(state=absent)
    included, since ours could not be changed without touching it. A marked leftover of ours from an earlier
    placement is removed."
  - "Fail closed: a run that cannot read the live state, take the host lock (C(/run/lync-xmpp-federation.lock),
    shared by every backend, waited for at most 120 seconds) or apply its transaction fails, naming the tool and its
    error; it never reports ok about a host it could not read. When the live rules changed but persisting them
    failed, the result is failed and changed, and says the rules are in force but will not survive a reload."
  - "nftables: chains C(lync_xmpp_in), C(lync_xmpp_out), C(lync_xmpp_fwd). Where several tables have a base chain at
    one hook, ours hangs from the one that decides: policy drop first, then an C(inet) table, then the earliest
    priority. Translations go to base chains of our own table C(inet lync_xmpp), C(lync_xmpp_dnat) at hook
    prerouting, priority C(dstnat), and C(lync_xmpp_snat) at hook postrouting, priority C(srcnat): a NAT verdict
    needs no one else's table, so a foreign nat table (Docker's, iptables-nft's) is never written to."
  - "iptables: chains C(LYNC-XMPP-IN), C(LYNC-XMPP-OUT), C(LYNC-XMPP-FWD) in the filter table (and
    C(LYNC-XMPP-DNAT), C(LYNC-XMPP-SNAT) in the nat table), in iptables and ip6tables as the rules' families
    need, each entered by one marked jump from C(INPUT), C(OUTPUT), C(FORWARD), C(PREROUTING), C(POSTROUTING).
    Each family is one C(iptables-restore --noflush) input, validated for both families with C(--test) before
    either is applied; the kernel commits the two families (and, within one, the filter and nat tables) one after
    the other. A failure in a later commit puts back what this run committed. A run killed between two commits
    leaves each family's table wholly old or wholly new, never half of one; the next run sees the difference and
    completes it."
  - "nftables: a host with no filter base chain at a hook gets a table of ours (C(inet lync_xmpp)) whose base chains
    have policy accept."
  - "Comments are limited in bytes, as the kernels count them: C(lync-xmpp:), the name, C(: ) and the comment
    together take at most 128 bytes in UTF-8 on nftables and 255 on iptables, ufw and firewalld. A longer one is
    refused before anything is read, naming the rule, the field and the value; it is never cut, so a re-run never
    sees a difference that is not there."
  - "firewalld (0.9 or later): policies of ours, C(lync-xmpp-in) (ingress C(ANY), egress C(HOST)), C(lync-xmpp-out)
    (C(HOST) to C(ANY)) and C(lync-xmpp-fwd) (C(ANY) to C(ANY)), target C(CONTINUE), one rich rule per kernel rule,
    ordered by rich-rule priorities. Their priority is 1 (version_added 1.1.0; -100 before): firewalld consults them
    inside each zone's chain after the zone's own rules, so a source that fail2ban (or the admin) bans in the zone
    stays blocked on our ports."
  - "firewalld through its own Python binding over D-Bus (C(python3-firewall), the module's interpreter must import
    C(firewall.client); version_added 1.1.0): our policies go into the runtime and the permanent configuration at
    once, with no reload, so runtime-only entries of fail2ban or anyone else (zone rich rules, ipset entries,
    direct rules) are never touched. firewalld creates and removes a policy only in its permanent configuration: the
    first run (and O(state=absent), and the upgrade from priority -100) needs one reload. Before it the module takes
    every runtime-only entry (zones, other policies, ipset entries, direct chains, rules and passthroughs), after it
    puts back what the reload dropped and checks that all of it is back; it says so in a warning and in
    RV(firewalld_restored_runtime). A failed step puts the previous runtime and permanent settings back, so that
    the two never disagree because of a half-done run."
  - "firewalld without the binding: a warning says so and the run falls back to C(firewall-cmd): policy files of
    ours in C(/etc/firewalld/policies/), checked with C(firewall-cmd --check-config) and applied by one
    C(firewall-cmd --reload). Because that reload would discard runtime-only changes, such a run is refused while
    the runtime zones, policies (ours aside), direct rules or ipsets differ from the permanent ones; every address
    is a rich rule of its own there, and translation rules are refused. O(persist=false) is refused on firewalld."
  - "firewalld, long address lists (version_added 1.1.0): a source or destination list of four networks or more is
    one firewalld ipset of ours (C(lync-xmpp-src-*) or C(lync-xmpp-dst-*), C(hash:net), its description naming the
    rule and carrying our mark) matched by one rich rule per port span; its entries change in runtime and permanent
    configuration without a reload, and it goes with O(state=absent)."
  - "firewalld, translations (version_added 1.1.0): rich rules only masquerade, so an Edge behind NAT gets firewalld
    direct rules of ours in the nat table (C(PREROUTING) DNAT to the Edge, C(POSTROUTING) SNAT to its public
    address), in the iptables rule format with our rule mark in their comment, written in runtime and permanent
    configuration (C(/etc/firewalld/direct.xml)) without a reload."
  - "ufw: the iptables chains above, entered from ufw's own C(ufw-before-input), C(ufw-before-output) and
    C(ufw-before-forward) (C(ufw6-) for IPv6), applied live like on any iptables host and persisted as our lines in
    C(/etc/ufw/before.rules) and C(before6.rules), ufw's place for rules of an admin's own, so that ufw's next
    reload rebuilds them. O(base_chains) is refused on ufw."
  - "ufw, translations and sets (version_added 1.1.0): our nat chains (C(LYNC-XMPP-DNAT), C(LYNC-XMPP-SNAT)) are
    declared and filled in the C(*nat) section of before.rules and before6.rules, which ufw flushes and refills at
    every start. Their jumps into C(PREROUTING) and C(POSTROUTING) cannot live there (ufw never flushes the nat
    table's built-in chains, so every reload would add them again), and the ipsets a long list needs must exist
    before before.rules loads; so a marked block of ours in C(/etc/ufw/before.init), which ufw runs at start
    before loading its files and at stop, loads our ipsets (O(ipset_save_file), by default
    C(/etc/ufw/lync-xmpp-federation.ipsets)) and hangs the jumps once at the top (checked first), and takes the jumps
    out at stop. The block goes first in the file, which ufw must run: ufw's stock before.init (which does
    nothing) is made executable for it and its mode given back when the block goes; a before.init of the admin's
    own that is not executable is refused, naming the file, since making it executable would start running its
    commands. The block goes, and the file is as before, when no rule needs it."
  - "Long address lists: a source or destination list of 4 or more networks once overlapping and adjacent ones are
    merged (the collection's C(SET_MIN_ADDRESSES)) is matched through one kernel set in one rule, a lookup whatever its length, instead of one
    rule per address scanned in turn. Overlapping and adjacent networks of such a list are merged first, as the
    kernel's interval sets merge them (the rules returned show the merged list). nftables writes an anonymous interval
    set inside the rule (C(ip saddr { ... })): it is created, replaced and removed with its rule in the same
    transaction, has no name anyone else could take, and is compared with the rule it belongs to. iptables uses an
    ipset of ours (C(hash:net), one per rule, field and family, named C(lync-xmpp-HASH-s4) and the like, created with
    the C(comment) extension, every entry with the comment C(lync-xmpp-federation); a set with that prefix without
    those marks is foreign and refused where the rules need its name), matched with C(-m set --match-set). A changed
    list is built as a new set under a staging name and swapped in with C(ipset swap) before the rules are restored;
    on a failure the previous sets and rules stay. Sets no longer needed are destroyed after the rules stopped
    matching them. Without the C(ipset) command the lists stay one rule per address, with a warning. On ufw the sets
    are loaded at boot by our block in C(/etc/ufw/before.init) (see above)."
  - O(state=absent) removes our chains, our jumps, our sets and our persisted configuration, nothing else.
extends_documentation_fragment: []
requirements:
  - Python 3.6 or later on the managed host (Python 2.7 is not supported; the module says so and fails)
  - Root on the managed host (C(become))
  - "The host's own firewall tooling: C(nft) (nftables), C(iptables-save)/C(iptables-restore) and their IPv6 twins
    (iptables-nft or iptables-legacy), C(firewall-cmd) (firewalld 0.9 or later), or ufw."
  - "Optionally C(ipset) on iptables hosts, for long address lists as one set lookup (without it they stay one rule per
    address)."
attributes:
  check_mode:
    description: Compares and reports what would change; writes nothing.
    support: full
  diff_mode:
    description: Returns before and after as sorted rule lists, one rule a line.
    support: full
  platform:
    description: Linux hosts with nftables, iptables, firewalld or ufw.
    support: full
    platforms: linux
options:
  rules:
    description:
      - The host's rules, as P(lync.xmpp_federation.host_rules#filter) returns them. Validated again with the
        same rule model and messages.
      - Each rule has C(name), C(direction) (C(in), C(out), C(forward)), C(protocol) (C(tcp), C(udp)), C(ports),
        C(source), C(destination) (lists of addresses or networks; empty means any), C(action) (C(accept),
        C(drop), C(reject)), C(comment), and for translation rules C(nat) (C(dnat), C(snat)) and C(nat_to).
      - Rules are evaluated in the order of their names.
      - Required with O(state=present). An explicit empty list means nothing of ours on this host (everything of
        ours is removed); leaving the option out is an error, so that a forgotten variable never removes rules.
    type: list
    elements: dict
  state:
    description:
      - V(present) makes our chains hold exactly O(rules).
      - V(absent) removes our chains, jumps and persisted configuration.
    type: str
    choices: [present, absent]
    default: present
  backend:
    description:
      - The firewall to write to.
      - V(auto) uses what the host really uses, as the kernel shows it. An nftables ruleset of the admin's own
        first, else tables made by iptables-nft, else iptables-legacy tables; a host with none of these gets
        nftables where the C(nft) command exists.
      - A host managed by firewalld (its table in the ruleset, or its process running) gets V(firewalld) with
        V(auto); V(nftables) or V(iptables) there are refused, since rules written beside firewalld would be lost at
        its next reload. V(firewalld) on a host firewalld does not run is refused.
      - Likewise a host managed by ufw (its chains in the ruleset, or C(ENABLED=yes) in C(/etc/ufw/ufw.conf)) gets
        V(ufw); any other choice there is refused, and so is V(ufw) where ufw does not run.
      - V(iptables) writes with iptables, in the variant (nft or legacy) whose tables are in the kernel, else in the
        variant of the host's C(iptables) command.
    type: str
    choices: [auto, nftables, iptables, firewalld, ufw]
    default: auto
  persist:
    description:
      - Make the rules survive a reboot or a reload of the firewall service, by the distribution's own mechanism.
      - nftables, a file of ours (O(nft_persist_file)) and an include line for it in O(nft_main_config) if that
        file lacks one. The main configuration is then checked to load (C(nft -c -f)); if it would not, both files
        are put back and the module fails saying why.
      - iptables, our chains in the netfilter-persistent or iptables-services save files (O(iptables_save_files)),
        leaving every other line of those files as it was, and our ipsets in O(ipset_save_file).
      - firewalld creates policies only in its permanent configuration, so there the rules always persist and
        V(false) is refused.
      - ufw, our chains in C(/etc/ufw/before.rules) and C(before6.rules) (or O(iptables_save_files)), leaving every
        other line as it was, and where translations or sets need it our block in C(/etc/ufw/before.init) and our
        ipsets in O(ipset_save_file).
    type: bool
    default: true
  nft_table:
    description:
      - The nftables table to place our chains in, as C(FAMILY NAME) (for example C(inet filter)).
      - By default the table that holds the host's filter base chains, or a table of ours (C(inet lync_xmpp))
        when the host has none.
      - A named table must exist and have a filter base chain at every hook the rules need (name them with
        O(base_chains) where it has several); translation rules still go to the table's nat base chains, or to
        a table of ours.
    type: str
  base_chains:
    description:
      - The base chains our jump rules go into, by direction, where detection is not wanted.
      - For iptables, the defaults are C(INPUT), C(OUTPUT) and C(FORWARD).
    type: dict
    suboptions:
      in:
        description: The input base chain.
        type: str
      out:
        description: The output base chain.
        type: str
      forward:
        description: The forward base chain.
        type: str
  nft_persist_file:
    description:
      - The file our persisted nftables rules are written to.
      - By default C(/etc/nftables/lync-xmpp-federation.nft) where the main configuration is
        C(/etc/sysconfig/nftables.conf) (RHEL, CentOS, Fedora), else C(/etc/nftables.d/lync-xmpp-federation.nft).
    type: path
  nft_main_config:
    description:
      - The nftables service's main configuration, which gets an include line for O(nft_persist_file).
      - By default C(/etc/sysconfig/nftables.conf) where it exists (RHEL, CentOS, Fedora), else C(/etc/nftables.conf)
        (Debian, Ubuntu).
    type: path
  iptables_save_files:
    description:
      - The iptables save files to keep our chains in, by family.
      - By default C(/etc/iptables/rules.v4) and C(/etc/iptables/rules.v6) (Debian, Ubuntu), or
        C(/etc/sysconfig/iptables) and C(/etc/sysconfig/ip6tables) where that directory exists (RHEL); on a ufw
        host C(/etc/ufw/before.rules) and C(/etc/ufw/before6.rules).
    type: dict
    suboptions:
      ipv4:
        description: The IPv4 save file.
        type: path
      ipv6:
        description: The IPv6 save file.
        type: path
  ipset_save_file:
    description:
      - The file the ipsets of ours are persisted in, in C(ipset save) form, every other set's lines kept as they were.
      - By default C(/etc/iptables/ipsets), which Debian's C(ipset-persistent) (a netfilter-persistent plugin) loads at
        boot before the iptables rules, or C(/etc/sysconfig/ipset) where that directory exists, which RHEL's
        C(ipset-service) loads before C(iptables.service). Without that loader the saved rules, which match the
        sets, would not load at boot; the module warns when the loader is missing.
      - On a ufw host by default C(/etc/ufw/lync-xmpp-federation.ipsets), which our block in C(/etc/ufw/before.init)
        loads at every ufw start, before ufw loads before.rules.
    type: path
    version_added: 1.1.0
notes:
  - One call applies the whole list; its cost grows with the number of rules, not with the number of tasks.
  - "nftables: a packet must be accepted at every base chain of its hook, in every table. Our chains hang from
    one base chain per hook (see O(nft_table)); where two tables both drop at one hook, the other table must pass
    the traffic too, which this module does not change."
  - Two runs at once on one host end in the correct state (nft transactions, the xtables lock).
  - "Our rules accept the packets that open a flow (destination port, addresses); the replies are accepted by the
    host's stateful rule (C(ct state established,related accept) or C(-m conntrack --ctstate ESTABLISHED,RELATED -j
    ACCEPT)), which a default-drop ruleset carries for every service it allows. This module adds no rule outside
    its chains, so a ruleset without one must get it from its admin."
seealso:
  - plugin: lync.xmpp_federation.host_rules
    plugin_type: filter
  - module: ansible.builtin.iptables
'''

EXAMPLES = r'''
- name: Apply this host's XMPP federation rules
  lync.xmpp_federation.firewall_ruleset:
    rules: "{{ xmpp_firewall_matrix | lync.xmpp_federation.host_rules(inventory_hostname, hostvars, groups) }}"

- name: Open 5269 to the Edge on an iptables host, without persistence
  lync.xmpp_federation.firewall_ruleset:
    backend: iptables
    persist: false
    rules:
      - name: xmpp-s2s-inbound-ipv4
        direction: forward
        protocol: tcp
        ports: [5269]
        source: []
        destination: [198.51.100.10]
        comment: XMPP federation row 1

- name: Put our chains in a named table and base chains
  lync.xmpp_federation.firewall_ruleset:
    backend: nftables
    nft_table: inet firewall
    base_chains:
      in: inbound
      out: outbound
      forward: forwarding
    rules: "{{ my_rules }}"

- name: Remove everything of ours
  lync.xmpp_federation.firewall_ruleset:
    state: absent
'''

RETURN = r'''
backend:
  description: The backend that was used (C(nftables), C(iptables-nft), C(iptables-legacy), C(firewalld) or C(ufw)).
  returned: always
  type: str
  sample: nftables
rules:
  description: The rules of ours in force now (in check mode, the ones that would be), canonical and sorted.
  returned: always
  type: list
  elements: dict
  sample:
    - name: xmpp-s2s-inbound-ipv4
      direction: in
      protocol: tcp
      ports: [5269]
      source: []
      destination: [198.51.100.10/32]
      action: accept
      comment: XMPP federation row 1, partners to Access Edge XMPP proxy
script:
  description: The transaction that was applied (or would be, in check mode); empty when nothing had to change.
  returned: always
  type: str
  sample: "flush chain inet filter lync_xmpp_in\nadd rule inet filter lync_xmpp_in ..."
persisted:
  description: Whether a persistence file was (or would be) written.
  returned: always
  type: bool
firewalld_interface:
  description: How the firewalld backend reached firewalld, C(dbus) (its Python binding) or C(firewall-cmd) (the
    fallback where the binding cannot be imported).
  returned: when the backend is firewalld
  type: str
  sample: dbus
  version_added: 1.1.0
firewalld_reloaded:
  description: Whether the run reloaded firewalld (to create or remove a policy of ours, or with the fallback).
  returned: when the backend is firewalld
  type: bool
  version_added: 1.1.0
firewalld_restored_runtime:
  description: The runtime-only state the reload dropped and the run put back as it was (fail2ban's bans, for example).
  returned: when the backend is firewalld
  type: list
  elements: str
  sample: [zone public, direct rules]
  version_added: 1.1.0
persistence_files:
  description: The files persistence owns or edits.
  returned: always
  type: list
  elements: str
  sample: [/etc/nftables.d/lync-xmpp-federation.nft, /etc/nftables.conf]
'''

import sys
import traceback

from ansible.module_utils.basic import AnsibleModule

# The rule model needs the standard library of Python 3.6 or later (ipaddress, ordered dicts); under an older
# target interpreter the module says so instead of failing on an import.
try:
    from ansible_collections.lync.xmpp_federation.plugins.module_utils.backend import (
        BackendError,
        PersistenceError,
        converge,
    )
    from ansible_collections.lync.xmpp_federation.plugins.module_utils.detect import (
        BACKEND_CHOICES,
        select_backend,
    )
    from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import (
        RuleError,
        normalize_rules,
    )
except (ImportError, SyntaxError, AttributeError):
    # AttributeError: Python 2.7 has no functools.lru_cache, which the rule model uses at import.
    IMPORT_ERROR = traceback.format_exc()
    BACKEND_CHOICES = ('auto', 'nftables', 'iptables', 'firewalld', 'ufw')
else:
    IMPORT_ERROR = None


def rules_as_text(rules):
    """One rule a line, for diff mode: a sorted list a person can read in a unified diff."""
    lines = []
    for rule in rules:
        text = '%s: %s %s %s from %s to %s %s' % (
            rule['name'], rule['direction'], rule['protocol'], ','.join(str(port) for port in rule['ports']),
            ','.join(rule['source']) or 'any', ','.join(rule['destination']) or 'any', rule['action'])
        if rule.get('nat'):
            text += ' %s to %s' % (rule['nat'], rule['nat_to'])
        lines.append(text + '\n')
    return ''.join(lines)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            rules=dict(type='list', elements='dict'),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            backend=dict(type='str', choices=list(BACKEND_CHOICES), default='auto'),
            persist=dict(type='bool', default=True),
            nft_table=dict(type='str'),
            base_chains=dict(type='dict', options={
                'in': dict(type='str'),
                'out': dict(type='str'),
                'forward': dict(type='str'),
            }),
            nft_persist_file=dict(type='path'),
            nft_main_config=dict(type='path'),
            iptables_save_files=dict(type='dict', options={
                'ipv4': dict(type='path'),
                'ipv6': dict(type='path'),
            }),
            ipset_save_file=dict(type='path'),
        ),
        # A left-out list must not mean "remove everything of ours": that takes an explicit rules: [].
        required_if=[('state', 'present', ['rules'])],
        supports_check_mode=True,
    )
    if IMPORT_ERROR:
        module.fail_json(msg='firewall_ruleset needs Python 3.6 or later on the managed host, not %s'
                         % sys.version.split()[0], exception=IMPORT_ERROR)
    params = module.params
    if params['state'] == 'present' and params['rules'] is None:
        # required_if takes an option given as null for given: "rules:" left empty, or a variable that is null, must
        # not remove everything of ours either.
        module.fail_json(msg='rules: null with state=present; give the host\'s rules, or rules: [] to remove '
                         'everything of ours', changed=False)
    try:
        # Validate before anything is read or written: bad input changes nothing.
        rules = normalize_rules(params['rules'] or [], 'rules')
        backend = select_backend(module.run_command, module.get_bin_path, params)
        result = converge(backend, rules, params['state'], params['persist'], module.check_mode, canonical=True)
    except PersistenceError as error:
        # The live ruleset may have changed before persisting failed: changed says whether it did.
        module.fail_json(msg=str(error), changed=error.applied)
    except (RuleError, BackendError) as error:
        module.fail_json(msg=str(error), changed=False)
    before = result.pop('before')
    for warning in result.pop('warnings'):
        module.warn(warning)
    if module._diff:
        result['diff'] = {'before': rules_as_text(before), 'after': rules_as_text(result['rules']),
                          'before_header': 'live rules', 'after_header': 'desired rules'}
    module.exit_json(**result)


if __name__ == '__main__':
    main()
