#!/usr/bin/env python
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab: the XMPP federation perimeter as podman containers, and its proof with real traffic.

    partner (the Internet)
      |  ext       198.51.100.S+0/28   2001:db8:6S0::/64
    fw-ext (external firewall, forwarding)
      |  edge-ext  198.51.100.S+16/28  2001:db8:6S1::/64
    edge1..N (Linux stand-ins for the Edge: external and internal interface)
      |  edge-int  198.51.100.S+32/28  2001:db8:6S2::/64
    fw-int (internal firewall, forwarding)
      |  internal  198.51.100.S+48/28  2001:db8:6S3::/64
    fe1..N (Front End)

S is a slot (0, 64, 128, 192; IPv6 slot digit 0-3): podman refuses two
networks with one subnet, so each lab takes the first free /26 of
198.51.100.0/24, and up to four labs run side by side. Every network is
created --internal --disable-dns (no route to or from the machine) and every
name carries lxE-<run id>-, so that runs never collide.

Every flow comes from the collection's flow model (plugins/module_utils/flows.py, the
lync.xmpp_federation.flows filter) read on the lab's inventory: which host starts it,
which address and port it goes to, open or blocked. No row id or port of the matrix is
written here; the listeners listen on the ports the flows name.

Commands (all take --run-dir, where the lab's state, inventory and snapshots live):
    up          build the image if needed, create networks and containers, routes,
                the admin baseline (lab/baseline.py: default-drop policies,
                established/related, SSH, a foreign docker-like table; with
                --fail2ban, fail2ban's runtime-only bans on firewalld Edges),
                listeners, a throwaway PKI; write the inventory
    proof       real TCP connections for every flow of the model (open and blocked),
                foreign rules unchanged, counters of our rules moved, and the flows
                again after a reload of the persisted configuration; or (--state
                absent) every flow blocked and the baseline back byte for byte;
                prints one table, exits 1 on any failed check
    federation  a real XMPP federation: Prosody on the partner and every Edge, a
                message from the partner to each Edge and the answer back over s2s
                with dialback, per address family, at the addresses the model names;
                and the gateway's row as mutual TLS (openssl, client certificate
                required); --state absent: nothing may get through
    down        remove every container and network of the run
"""

from __future__ import print_function

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

LAB = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(LAB)
os.environ['CONTAINERS_CONF'] = os.path.join(LAB, 'containers.conf')
sys.path.insert(0, LAB)
# The collection as scripts/env.sh lays it out (PYTHONPATH has it too): the flow model is imported from there.
sys.path.append(os.path.join(TOP, '.cache', 'collections'))

import baseline  # noqa: E402  (lab/baseline.py: the admin's baseline, shared with tests/system)

PREFIX = 'lxE-'
NETWORKS = ('ext', 'edge-ext', 'edge-int', 'internal')
SLOTS = 4
GUEST_DIR = '/opt/lab'
ROLE_DEFAULTS = os.path.join(TOP, 'roles', 'xmpp_firewall', 'defaults', 'main.yml')
OURS = re.compile(r'lync', re.IGNORECASE)


class LabError(Exception):
    pass


def run(argv, stdin=None, check=True):
    proc = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False)
    if check and proc.returncode != 0:
        output = (proc.stderr or proc.stdout).strip()
        raise LabError('%s failed (exit %d): %s' % (' '.join(argv[:4]), proc.returncode, output))
    return proc


def in_container(state, host, script, check=True):
    """Run a shell script inside a lab container (one podman exec)."""
    return run(['podman', 'exec', '-i', state['hosts'][host]['container'], 'sh', '-euc', script],
               check=check)


def log(message):
    print('lab: %s' % message, file=sys.stderr)
    sys.stderr.flush()


# -- the plan: addresses, hosts, routes ----------------------------------------

def address(slot, network, offset, family):
    index = NETWORKS.index(network)
    if family == 4:
        return '198.51.100.%d' % (slot * 64 + index * 16 + offset)
    return '2001:db8:6%d%d::%d' % (slot, index, offset)


def subnet(slot, network, family):
    index = NETWORKS.index(network)
    if family == 4:
        return '198.51.100.%d/28' % (slot * 64 + index * 16)
    return '2001:db8:6%d%d::/64' % (slot, index)


def slot_prefix(slot, family):
    return '198.51.100.%d/26' % (slot * 64) if family == 4 else '2001:db8:6%d0::/44' % slot


def plan_hosts(options):
    """Hosts with their role, networks (offsets) and firewall; addresses follow from the slot."""
    hosts = {'partner': {'role': 'partner', 'offsets': {'ext': 2}},
             'fw-ext': {'role': 'external_firewall', 'offsets': {'ext': 1, 'edge-ext': 1}},
             'fw-int': {'role': 'internal_firewall', 'offsets': {'edge-int': 1, 'internal': 1}}}
    for number in range(1, options['edges'] + 1):
        hosts['edge%d' % number] = {'role': 'edge', 'offsets': {'edge-ext': 1 + number, 'edge-int': 1 + number},
                                    'number': number}
    for number in range(1, options['front_ends'] + 1):
        hosts['fe%d' % number] = {'role': 'front_end', 'offsets': {'internal': 1 + number}, 'number': number}
    for name, host in hosts.items():
        if host['role'] == 'partner':
            host['firewall'] = None
        elif options['firewall'] in ('nftables', 'firewalld', 'ufw'):
            host['firewall'] = options['firewall']
        else:
            # The iptables scenario carries both variants: the Edge on legacy, the rest on iptables-nft.
            host['firewall'] = 'iptables-legacy' if host['role'] == 'edge' else 'iptables-nft'
    return hosts


def resolve_addresses(state):
    slot = state['slot']
    for host in state['hosts'].values():
        host['addresses'] = {network: {str(family): address(slot, network, offset, family) for family in (4, 6)}
                             for network, offset in host['offsets'].items()}
        if host['role'] == 'edge' and host['number'] > state['options']['edges'] - state['options']['nat_edges']:
            # The public address lives on the external firewall's outer interface.
            host['public'] = address(slot, 'ext', 9 + host['number'], 4)


def ip_of(state, host, network, family):
    return state['hosts'][host]['addresses'][network][str(family)]


def edges(state):
    return sorted(name for name, host in state['hosts'].items() if host['role'] == 'edge')


def front_ends(state):
    return sorted(name for name, host in state['hosts'].items() if host['role'] == 'front_end')


def managed(state):
    return sorted(name for name, host in state['hosts'].items() if host['role'] != 'partner')


def route_commands(state, name):
    """Routes that make every flow cross the firewalls; the Edge itself never forwards."""
    slot, host, commands = state['slot'], state['hosts'][name], []
    for family in (4, 6):
        ip = 'ip -%d route replace' % family
        if host['role'] == 'partner':
            commands.append('%s %s via %s' % (ip, slot_prefix(slot, family), ip_of(state, 'fw-ext', 'ext', family)))
        elif host['role'] == 'external_firewall':
            # So that a packet for an Edge internal address would reach that Edge: the
            # firewall's forward policy, not a missing route, is what must stop it.
            for edge in edges(state):
                commands.append('%s %s via %s' % (ip, ip_of(state, edge, 'edge-int', family),
                                                  ip_of(state, edge, 'edge-ext', family)))
        elif host['role'] == 'edge':
            commands.append('%s default via %s' % (ip, ip_of(state, 'fw-ext', 'edge-ext', family)))
            commands.append('%s %s via %s' % (ip, subnet(slot, 'internal', family),
                                              ip_of(state, 'fw-int', 'edge-int', family)))
        elif host['role'] == 'front_end':
            commands.append('%s %s via %s' % (ip, slot_prefix(slot, family),
                                              ip_of(state, 'fw-int', 'internal', family)))
    if host['role'] == 'partner':
        # The partner's addresses that fail2ban bans on the Edges (none without --fail2ban).
        outer = ip_of(state, 'partner', 'ext', 4)
        for banned in banned_partner_addresses(state):
            commands.append('ip addr add %s/28 dev "$(ip -o addr show to %s | cut -d" " -f2)"' % (banned, outer))
    if host['role'] == 'external_firewall':
        outer = ip_of(state, 'fw-ext', 'ext', 4)
        for edge in edges(state):
            if state['hosts'][edge].get('public'):
                commands.append('ip addr add %s/28 dev "$(ip -o addr show to %s | cut -d" " -f2)"'
                                % (state['hosts'][edge]['public'], outer))
    return commands


def banned_partner_addresses(state):
    """The partner's extra IPv4 addresses, one per fail2ban jail, that fail2ban bans on the firewalld Edges
    (lab.py up --fail2ban); the partner's own address stays unbanned."""
    if not state['options'].get('fail2ban'):
        return []
    return [address(state['slot'], 'ext', 6 + index, 4) for index in range(len(baseline.FAIL2BAN_JAILS))]


def heredoc(path, text):
    return "mkdir -p %s\ncat > %s <<'LAB_EOF'\n%sLAB_EOF\n" % (os.path.dirname(path), path, text)


# -- what the lab knows about each kind of firewall ------------------------------
#
# One class per firewall: the admin's baseline (lab/baseline.py's texts, installed as the admin would), the
# Docker-like foreign rules, the runtime-only entries other tools keep in it (fail2ban's bans), what its service
# does on reload, how to list its live rules and persisted files, and how to count the packets our rules saw.
# Nothing else in the lab asks which firewall a host runs.

class Firewall(object):
    """The interface; ``counters`` is False where the firewall's rules carry no packet counters."""

    counters = True

    def baseline(self, role):
        """Shell script: the admin's persisted configuration, loaded, and the foreign rules."""
        raise NotImplementedError

    def foreign(self):
        """Shell script: Docker-like rules, made at run time (not persisted), as Docker does on start."""
        raise NotImplementedError

    def runtime_entries(self, host):
        """Shell script: runtime-only entries that other tools on the host (fail2ban) keep in this firewall, put in
        after the baseline and again after every reload, as an admin restarts those tools; ``host`` is the lab's
        plan of the host. None unless the firewall says otherwise."""
        return ''

    def reload(self):
        """Shell script: what the firewall service does on reload (and Docker on its restart)."""
        raise NotImplementedError

    def listing(self):
        """Shell script: the live rules, then each persisted file after a line '=== PATH'."""
        raise NotImplementedError

    def rules_for_comparison(self, ruleset):
        return ruleset

    def our_packets(self, ruleset):
        """Packets counted by the rules in our chains (iptables-save -c)."""
        total = 0
        for line in ruleset.splitlines():
            match = re.match(r'\[(\d+):\d+\] -A (\S+) ', line)
            if match and OURS.search(match.group(2)):
                total += int(match.group(1))
        return total


class Nftables(Firewall):
    def baseline(self, role):
        load = 'nft -f %s\n' % baseline.NFT_MAIN_CONFIG
        return heredoc(baseline.NFT_MAIN_CONFIG, baseline.nft_baseline(role)) + load + self.foreign()

    def foreign(self):
        return "nft -f - <<'LAB_EOF'\n%sLAB_EOF\n" % baseline.NFT_FOREIGN

    def reload(self):
        # /etc/nftables.conf starts with "flush ruleset", as Debian's does.
        return 'nft -f %s\n' % baseline.NFT_MAIN_CONFIG + self.foreign()

    def listing(self):
        return 'nft list ruleset\necho "=== %s"\ncat %s\n' % (baseline.NFT_MAIN_CONFIG, baseline.NFT_MAIN_CONFIG)

    def our_packets(self, ruleset):
        total, chain = 0, None
        for line in ruleset.splitlines():
            stripped = line.strip()
            if stripped.startswith('chain '):
                chain = stripped.split()[1]
            elif stripped == '}':
                chain = None
            elif chain and OURS.search(chain):
                total += sum(int(count) for count in re.findall(r'counter packets (\d+)', stripped))
        return total


class Iptables(Firewall):
    """iptables with one variant (legacy or nft) chosen by update-alternatives, persisted like iptables-persistent."""

    def __init__(self, variant):
        self.variant = variant

    def baseline(self, role):
        script = ''.join('update-alternatives --quiet --set %s /usr/sbin/%s-%s\n' % (tool, tool, self.variant)
                         for tool in ('iptables', 'ip6tables'))
        for family, path in zip((4, 6), baseline.IPTABLES_SAVE_FILES):
            restore = 'iptables-restore' if family == 4 else 'ip6tables-restore'
            script += heredoc(path, baseline.iptables_baseline(role, family)) + '%s %s\n' % (restore, path)
        return script + self.foreign()

    def foreign(self):
        return "iptables-restore --noflush <<'LAB_EOF'\n%sLAB_EOF\n" % baseline.IPTABLES_FOREIGN

    def reload(self):
        return 'iptables-restore %s\nip6tables-restore %s\n' % baseline.IPTABLES_SAVE_FILES + self.foreign()

    def listing(self):
        files = ''.join('echo "=== %s"\ncat %s\n' % (path, path) for path in baseline.IPTABLES_SAVE_FILES)
        return 'iptables-save -c\necho "=== ip6tables"\nip6tables-save -c\n' + files


class Firewalld(Firewall):
    # firewalld's rules carry no counters; the traffic checks prove them.
    counters = False

    def baseline(self, role):
        script = heredoc('/etc/firewalld/zones/public.xml', baseline.FIREWALLD_ZONE)
        if role in baseline.SERVER_ROLES:
            script += heredoc('/etc/firewalld/policies/admin-egress.xml', baseline.FIREWALLD_EGRESS)
        else:
            script += heredoc('/etc/firewalld/policies/lync-xmpp-out.xml', baseline.FIREWALLD_NAMESAKE)
        return script + baseline.FIREWALLD_START + self.foreign()

    def foreign(self):
        # Docker's table is not firewalld's: it sits beside firewalld's and stays through its restarts.
        return "nft -f - <<'LAB_EOF'\n%sLAB_EOF\n" % baseline.NFT_FOREIGN

    def reload(self):
        # A restart, not only a reload: everything comes back from the permanent configuration.
        return baseline.FIREWALLD_RESTART

    def runtime_entries(self, host):
        # fail2ban (lab.py up --fail2ban) on the Edges: its bans live in firewalld's runtime configuration only.
        ban = host.get('fail2ban')
        if not ban:
            return ''
        return baseline.fail2ban_script(ban['ports'], [(jail, banned) for jail, _action, banned in ban['bans']])

    def listing(self):
        # nft lists the rules firewalld's direct interface writes into iptables-nft's nat tables (the collection's
        # translations) without their comments, so those tables are listed by iptables-save, with our rule mark.
        return ("nft list ruleset | awk '/^table ip6? nat [{]/ {skip=1} !skip {print} skip && /^[}]/ {skip=0}'\n"
                'for save in iptables-save ip6tables-save; do $save -t nat 2>/dev/null; done\n'
                'for f in %s; do [ -e "$f" ] || continue; echo "=== $f"; cat "$f"; done\n' % baseline.FIREWALLD_FILES)

    def rules_for_comparison(self, ruleset):
        return tables_in_any_order(ruleset)


class Ufw(Firewall):
    def baseline(self, role):
        return baseline.ufw_baseline(role) + self.foreign()

    def foreign(self):
        return "iptables-restore --noflush <<'LAB_EOF'\n%sLAB_EOF\n" % baseline.IPTABLES_FOREIGN

    def reload(self):
        # A reboot first: ufw starts from its files alone (our ipsets and nat jumps come from before.init), and
        # Docker, which starts after it, puts its rules back. Then ufw reload as an admin runs it: ufw rebuilds its
        # chains from its files (before.init stop and start around it); Docker's chains are not ufw's and stay.
        # Then the init script's own restart (/etc/init.d/ufw restart), which runs before.init start twice.
        return baseline.UFW_BOOT + self.foreign() + 'ufw reload >/dev/null\n/usr/lib/ufw/ufw-init restart >/dev/null\n'

    def listing(self):
        return ('iptables-save -c\necho "=== ip6tables"\nip6tables-save -c\n'
                'for f in %s; do [ -e "$f" ] || continue; echo "=== $f"; cat "$f"\n'
                '  case "$f" in *.init) echo "(mode $(stat -c %%a "$f"))";; esac; done\n' % baseline.UFW_FILES)

    def rules_for_comparison(self, ruleset):
        # The nat table our translations needed stays after they go, empty: the kernel made it for us.
        return '\n'.join(drop_empty_tables(ruleset.splitlines())) + '\n'


FIREWALLS = {
    'nftables': Nftables(),
    'iptables-legacy': Iptables('legacy'),
    'iptables-nft': Iptables('nft'),
    'firewalld': Firewalld(),
    'ufw': Ufw(),
}


def firewall_of(state, name):
    return FIREWALLS[state['hosts'][name]['firewall']]


def baseline_script(state, name):
    host = state['hosts'][name]
    if host['firewall'] is None:
        return ''
    firewall = FIREWALLS[host['firewall']]
    return firewall.baseline(host['role']) + firewall.runtime_entries(host)


def reload_script(state, name):
    """The firewall's reload, then what other tools put back after it (fail2ban restarted)."""
    firewall = firewall_of(state, name)
    return firewall.reload() + firewall.runtime_entries(state['hosts'][name])


# -- snapshots: what the firewall holds, and what of it is ours ------------------

def split_listing(text):
    """-> (ruleset text, persisted files text)."""
    marker = text.find('\n=== /etc/')
    if marker < 0:
        return text, ''
    return text[:marker + 1], text[marker + 1:]


COUNTER_PAIR = re.compile(r'\[\d+:\d+\]')
# nft lists counters in rules too (iptables-nft's, such as a fail2ban ban's direct rule): traffic, not configuration.
NFT_COUNTER = re.compile(r'counter packets \d+ bytes \d+')


def comparable(ruleset):
    """The ruleset as it must stay: iptables-save's dated headers and counters (its own and nft's) left out."""
    lines = [line for line in ruleset.splitlines() if not line.startswith('# ')]
    return '\n'.join(NFT_COUNTER.sub('counter packets 0 bytes 0', COUNTER_PAIR.sub('[0:0]', line))
                     for line in lines) + '\n'


def without_ours(ruleset):
    """The ruleset with every table, chain, set and rule of ours taken out (found by its lync name)."""
    kept, skip_until = [], None
    for line in comparable(ruleset).splitlines():
        stripped = line.strip()
        if skip_until is not None:
            if line == skip_until:
                skip_until = None
            continue
        # A set of ours (a firewalld ipset holding a long partner list) is a block of its own, as a chain is.
        if re.match(r'(table|chain|set) ', stripped) and OURS.search(stripped.split('{')[0]) and stripped.endswith('{'):
            skip_until = line[:len(line) - len(line.lstrip())] + '}'
            continue
        if OURS.search(line):
            continue
        if stripped:
            kept.append(line)
    return '\n'.join(drop_empty_tables(kept)) + '\n'


def tables_in_any_order(ruleset):
    """An nft listing with its top-level tables sorted: firewalld's reload recreates its table, which nft then
    lists after tables made since, without any rule changing."""
    blocks, current = [], []
    for line in ruleset.splitlines():
        current.append(line)
        if line == '}':
            blocks.append('\n'.join(current))
            current = []
    return '\n'.join(sorted(blocks) + current) + '\n'


def drop_empty_tables(lines):
    """iptables-save sections without a rule and with accept policies only: a nat table that
    only our rules needed is created by the kernel for us and filters nothing."""
    kept, section = [], None
    for line in lines:
        if line.startswith('*'):
            section = [line]
            continue
        if section is None:
            kept.append(line)
            continue
        section.append(line)
        if line == 'COMMIT':
            empty = all(not COUNTER_PAIR.sub('', entry).lstrip().startswith('-A')
                        and not re.match(r':\S+ (DROP|REJECT)', entry) for entry in section)
            if not empty:
                kept.extend(section)
            section = None
    return kept + (section or [])


def take_listings(state, hosts):
    def one(name):
        return name, in_container(state, name, firewall_of(state, name).listing()).stdout
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(one, hosts))


# -- up and down -----------------------------------------------------------------

def save_state(state):
    path = os.path.join(state['run_dir'], 'state.json')
    with open(path + '.tmp', 'w') as handle:
        json.dump(state, handle, indent=1, sort_keys=True)
    os.rename(path + '.tmp', path)


def load_state(run_dir):
    try:
        with open(os.path.join(run_dir, 'state.json')) as handle:
            return json.load(handle)
    except (IOError, OSError):
        return None


def create_networks(state):
    """Take the first free slot: podman refuses a subnet another network already has."""
    for slot in range(SLOTS):
        created = []
        try:
            for network in NETWORKS:
                name = '%s%s-%s' % (PREFIX, state['run_id'], network)
                run(['podman', 'network', 'create', '--internal', '--disable-dns',
                     '--subnet', subnet(slot, network, 4), '--ipv6', '--subnet', subnet(slot, network, 6), name])
                created.append(name)
                state['networks'].append(name)
                save_state(state)
            state['slot'] = slot
            save_state(state)
            return
        except LabError as error:
            if 'already used' not in str(error):
                raise
            for name in created:
                run(['podman', 'network', 'rm', '-f', name], check=False)
                state['networks'].remove(name)
            save_state(state)
    raise LabError('all %d lab slots of 198.51.100.0/24 are taken by other podman networks '
                   '(podman network ls shows them)' % SLOTS)


def start_container(state, image, name):
    host = state['hosts'][name]
    container = '%s%s-%s' % (PREFIX, state['run_id'], name)
    argv = ['podman', 'run', '--detach', '--name', container, '--hostname', name,
            '--cap-add', 'NET_ADMIN', '--cap-add', 'NET_RAW',
            '--sysctl', 'net.ipv6.conf.all.accept_dad=0', '--sysctl', 'net.ipv6.conf.default.accept_dad=0',
            '--volume', '%s:%s:ro' % (os.path.join(LAB, 'guest'), GUEST_DIR)]
    forwarding = '1' if host['role'] in ('external_firewall', 'internal_firewall') else '0'
    argv += ['--sysctl', 'net.ipv4.ip_forward=' + forwarding,
             '--sysctl', 'net.ipv6.conf.all.forwarding=' + forwarding]
    for network in sorted(host['addresses']):
        argv += ['--network', '%s%s-%s:ip=%s,ip=%s' % (PREFIX, state['run_id'], network,
                                                       host['addresses'][network]['4'],
                                                       host['addresses'][network]['6'])]
    host['container'] = container
    state['containers'].append(container)
    save_state(state)
    run(argv + [image, '/bin/sleep', 'infinity'])


def listener_start_script(state, name):
    """Start the bounded TCP listener on the host's ports (from the flow model) and wait until it is ready."""
    ports = state['hosts'][name].get('listen') or []
    if not ports:
        return ''
    return ('rm -f /run/lab-listener.ready\n'
            'setsid /usr/bin/python3 %s/listener.py %s %d %s </dev/null >/dev/null 2>&1 &\n'
            'echo $! > /run/lab-listener.pid\n'
            'i=0; while [ ! -e /run/lab-listener.ready ]; do i=$((i+1)); [ $i -lt 100 ] || '
            '{ echo "listener did not start" >&2; exit 1; }; sleep 0.05; done\n'
            % (GUEST_DIR, name, state['options']['listen_seconds'], ' '.join(str(port) for port in ports)))


# The container's PID 1 (sleep) reaps nobody: a stopped process stays a zombie, whose sockets are closed.
STOP_PID_FILE = '''stop_pid_file() {
  [ -e "$1" ] || return 0
  pid=$(cat "$1"); rm -f "$1"
  kill "$pid" 2>/dev/null || return 0
  i=0; while [ -e /proc/$pid ] && ! grep -q '^State:[[:space:]]*Z' /proc/$pid/status 2>/dev/null; do
    i=$((i+1)); [ $i -lt 100 ] || { echo "process $pid did not stop" >&2; return 1; }; sleep 0.05
  done
}
'''


def listener_stop_script():
    return STOP_PID_FILE + 'stop_pid_file /run/lab-listener.pid\n'


def prepare_host(state, name):
    """Routes, the baseline, the listener; waits until the listener is ready."""
    script = '\n'.join(route_commands(state, name)) + '\n' + baseline_script(state, name)
    script += listener_start_script(state, name)
    try:
        in_container(state, name, script)
    except LabError as error:
        raise LabError('host %s: %s' % (name, error))


def write_inventory(state, path, extra_vars):
    def first(values):
        return values[0] if len(values) == 1 else values

    families = (4, 6) if state['options']['ipv6'] else (4,)
    inventory = {
        'all': {
            'vars': dict({
                'ansible_connection': 'containers.podman.podman',
                'ansible_python_interpreter': '/usr/bin/python3',
                'xmpp_firewall_verify_partner': first([ip_of(state, 'partner', 'ext', f) for f in families]),
                'xmpp_firewall_verify_vantage': 'partner',
                'xmpp_firewall_verify_timeout': 2,
            }, **extra_vars),
            'children': {
                'lab_internet': {'hosts': {'partner': {'ansible_host': state['hosts']['partner']['container']}}},
                'lync_external_firewall': {'hosts': {'fw-ext': {'ansible_host': state['hosts']['fw-ext']['container']}}},
                'lync_internal_firewall': {'hosts': {'fw-int': {'ansible_host': state['hosts']['fw-int']['container']}}},
                'lync_edge': {'hosts': {}},
                'lync_front_end': {'hosts': {}},
            },
        },
    }
    role_vars = inventory['all']['vars']
    if state['options']['narrow_partners']:
        partners = [ip_of(state, 'partner', 'ext', f) for f in families]
        # Listed partners that fail2ban bans (--fail2ban): the ban, not the narrowing, must be what blocks them.
        partners += banned_partner_addresses(state)
        role_vars['xmpp_firewall_partner_networks'] = partners
        # A long partner list (documentation prefixes no lab host has), so that the firewalls match it through sets.
        role_vars['xmpp_firewall_partner_networks'] += ['2001:db8:f%03x:%x::/64' % (index // 65536, index % 65536)
                                                        for index in range(state['options']['partner_prefixes'])]
    if state['options']['restrict_internal_sources']:
        role_vars['xmpp_firewall_restrict_internal_sources'] = True
    for edge in edges(state):
        host = state['hosts'][edge]
        entry = {'ansible_host': host['container'],
                 'lync_edge_external_ip': first([ip_of(state, edge, 'edge-ext', f) for f in families]),
                 'lync_edge_internal_ip': first([ip_of(state, edge, 'edge-int', f) for f in families])}
        if host.get('public'):
            entry['lync_edge_public_ip'] = host['public']
        inventory['all']['children']['lync_edge']['hosts'][edge] = entry
    for front_end in front_ends(state):
        inventory['all']['children']['lync_front_end']['hosts'][front_end] = {
            'ansible_host': state['hosts'][front_end]['container'],
            'lync_internal_ip': first([ip_of(state, front_end, 'internal', f) for f in families])}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w') as handle:
        handle.write('# The lab of run %s, written by lab/lab.py up (JSON is YAML).\n' % state['run_id'])
        json.dump(inventory, handle, indent=2, sort_keys=True)
        handle.write('\n')
    state['inventory'] = os.path.abspath(path)


def command_up(args):
    if load_state(args.run_dir):
        raise LabError('%s already holds a lab; run "lab.py down --run-dir %s" first' % (args.run_dir, args.run_dir))
    if args.fail2ban and args.firewall != 'firewalld':
        raise LabError('--fail2ban needs --firewall firewalld (the lab runs fail2ban with its firewalld actions), '
                       'not --firewall %s' % args.firewall)
    if args.partner_prefixes and not args.narrow_partners:
        raise LabError('--partner-prefixes %d needs --narrow-partners (the prefixes are more partner networks)'
                       % args.partner_prefixes)
    if args.partner_prefixes < 0 or args.partner_prefixes > 65536:
        raise LabError('--partner-prefixes %d: give 0 to 65536' % args.partner_prefixes)
    os.makedirs(args.run_dir, exist_ok=True)
    extra_vars = {}
    for item in args.var or []:
        key, value = item.split('=', 1)
        extra_vars[key] = json.loads(value)
    options = {'edges': args.edges, 'front_ends': args.front_ends, 'firewall': args.firewall,
               'ipv6': args.ipv6, 'nat_edges': args.edges if args.nat else min(args.nat_edges, args.edges),
               'fail2ban': args.fail2ban, 'listen_seconds': args.listen_minutes * 60,
               'narrow_partners': args.narrow_partners, 'restrict_internal_sources': args.restrict_internal_sources,
               'partner_prefixes': args.partner_prefixes}
    state = {'run_id': secrets.token_hex(3), 'run_dir': os.path.abspath(args.run_dir), 'options': options,
             'networks': [], 'containers': [], 'hosts': plan_hosts(options)}
    save_state(state)
    started = time.time()
    image = run(['bash', os.path.join(LAB, 'build-image.sh')]).stdout.strip().splitlines()[-1]
    create_networks(state)
    resolve_addresses(state)
    for name, host in state['hosts'].items():
        host['container'] = '%s%s-%s' % (PREFIX, state['run_id'], name)
    # The inventory first: the flow model reads it, and the listeners listen where its flows go.
    write_inventory(state, args.inventory or os.path.join(args.run_dir, 'inventory.yml'), extra_vars)
    plan_fail2ban(state)
    for name, ports in listen_ports(state, plan_checks(state, True)).items():
        state['hosts'][name]['listen'] = ports
    make_pki(state)
    save_state(state)
    for name in sorted(state['hosts']):
        start_container(state, image, name)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda name: prepare_host(state, name), sorted(state['hosts'])))
    # The baseline as the admin left it, for the byte-for-byte comparisons later.
    with open(os.path.join(args.run_dir, 'baseline.json'), 'w') as handle:
        json.dump(take_listings(state, managed(state)), handle, indent=1, sort_keys=True)
    save_state(state)
    log('run %s up in %.0fs: slot 198.51.100.%d/26, %s'
        % (state['run_id'], time.time() - started, state['slot'] * 64, ', '.join(state['containers'])))
    return 0


def command_down(args):
    state = load_state(args.run_dir)
    if state is None:
        return 0
    containers = list(state['containers'])
    listed = run(['podman', 'ps', '--all', '--format', '{{.Names}}',
                  '--filter', 'name=^%s%s-' % (PREFIX, state['run_id'])], check=False).stdout.split()
    containers += [name for name in listed if name not in containers]
    if containers:
        run(['podman', 'rm', '--force', '--time', '0'] + containers, check=False)
    for network in state['networks']:
        run(['podman', 'network', 'rm', '--force', network], check=False)
    left = run(['podman', 'ps', '--all', '--format', '{{.Names}}',
                '--filter', 'name=^%s%s-' % (PREFIX, state['run_id'])], check=False).stdout.split()
    left += [name for name in state['networks']
             if run(['podman', 'network', 'exists', name], check=False).returncode == 0]
    if left:
        raise LabError('run %s: could not remove %s' % (state['run_id'], ', '.join(left)))
    os.rename(os.path.join(args.run_dir, 'state.json'), os.path.join(args.run_dir, 'state.down.json'))
    log('run %s down: %d containers, %d networks removed'
        % (state['run_id'], len(containers), len(state['networks'])))
    return 0


# -- the proof -------------------------------------------------------------------

# -- the flows to prove: the collection's flow model, on the lab's hosts ------------

def read_inventory(state):
    with open(state['inventory']) as handle:
        # JSON after one comment line (write_inventory).
        return json.loads(''.join(line for line in handle if not line.startswith('#')))


def flow_model(state):
    """The flows of the collection's flow model (plugins/module_utils/flows.py) for the lab's inventory.

    Called with the same arguments as the plan playbook: the role's defaults under the inventory's variables,
    the verify vantage point and partner. No row, port or address of a flow is written in the lab.
    """
    import yaml
    from ansible_collections.lync.xmpp_federation.plugins.module_utils.flows import flows
    from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import RuleError

    inventory = read_inventory(state)['all']
    with open(ROLE_DEFAULTS) as handle:
        settings = dict(yaml.safe_load(handle), **inventory['vars'])
    hostvars, groups = {}, {'all': []}
    for group, members in inventory['children'].items():
        groups[group] = sorted(members['hosts'])
        for host, host_vars in members['hosts'].items():
            hostvars[host] = dict(inventory['vars'], inventory_hostname=host, **host_vars)
            groups['all'].append(host)
    try:
        return flows(settings['xmpp_firewall_matrix'], hostvars, groups,
                     extra_rows=settings['xmpp_firewall_extra_rows'],
                     partner_networks=settings['xmpp_firewall_partner_networks'],
                     restrict_internal_sources=settings['xmpp_firewall_restrict_internal_sources'],
                     vantage=settings.get('xmpp_firewall_verify_vantage'),
                     partner=settings.get('xmpp_firewall_verify_partner'))
    except RuleError as error:
        raise LabError('the flow model refused the lab inventory %s: %s' % (state['inventory'], error))


def host_of_address(state, wanted):
    """The lab host that holds an address (an Edge's public address is the Edge's: the NAT sends it there)."""
    for name, host in state['hosts'].items():
        held = [value for families in host['addresses'].values() for value in families.values()]
        if wanted in held or wanted == host.get('public'):
            return name
    return None


def lab_checks(state, flows):
    """Each flow as a check between lab hosts: where it starts, which host must answer, what it must see."""
    checks = []
    for flow in flows:
        target = flow['to_host'] or host_of_address(state, flow['to'])
        if flow['from'] not in state['hosts'] or target not in state['hosts']:
            raise LabError('flow %s runs between %s and %s, which are not both hosts of the lab'
                           % (flow['id'], flow['from'], flow['to']))
        label = flow['row'] if flow['kind'] == 'row' else '%s: %s' % (flow['row'], flow['kind'])
        checks.append(dict(row=label, source=flow['from'], target_host=target, address=flow['to'],
                           port=flow['port'], expected=flow['expected'], seen_as=flow['seen_as'],
                           application=flow['application']))
    return checks


def listen_ports(state, checks):
    """host -> the ports it must listen on: every port a flow to it names, open or blocked (a blocked flow must be
    stopped by a firewall, not by an empty port)."""
    ports = {}
    for check in checks:
        ports.setdefault(check['target_host'], set()).add(check['port'])
    return dict((host, sorted(found)) for host, found in ports.items())


def partner_flows_into_edge(state, flows, edge, family):
    """The model's open flows from the partner to the Edge's external address of ``family`` (behind NAT the
    partner reaches it at the public address, which the firewall translates to it)."""
    external = ip_of(state, edge, 'edge-ext', family)
    found = []
    for flow in flows:
        reaches_edge = flow['to_host'] == edge and external in (flow['to'], flow['translated_to'])
        if flow['kind'] == 'row' and flow['expected'] == 'open' and flow['from'] == 'partner' and reaches_edge:
            found.append(flow)
    return found


def plan_fail2ban(state):
    """With --fail2ban, each firewalld Edge's jails guard the ports the model opens from the partner into the
    Edge's external address, and ban the partner's extra addresses (lab/baseline.py's fail2ban_script)."""
    banned = banned_partner_addresses(state)
    if not banned:
        return
    flows = flow_model(state)
    for edge in edges(state):
        host = state['hosts'][edge]
        if host['firewall'] != 'firewalld':
            continue
        ports = sorted(set(flow['port'] for flow in partner_flows_into_edge(state, flows, edge, 4)))
        if not ports:
            raise LabError('the flow model opens nothing from the partner into %s over IPv4: no port for fail2ban to '
                           'guard' % edge)
        host['fail2ban'] = {'ports': ports,
                            'bans': [[jail, action, address] for (jail, action), address
                                     in zip(baseline.FAIL2BAN_JAILS, banned)]}


def ban_checks(state, flows):
    """A partner address that fail2ban banned on an Edge stays blocked on each flow the model opens from the
    partner into that Edge, while our rules accept the partner (its address is a listed partner network)."""
    checks = []
    for edge in edges(state):
        ban = state['hosts'][edge].get('fail2ban')
        if not ban:
            continue
        for flow in partner_flows_into_edge(state, flows, edge, 4):
            for jail, _action, banned in ban['bans']:
                checks.append(dict(row='%s: banned by fail2ban (%s)' % (flow['row'], jail), source=flow['from'],
                                   target_host=edge, address=flow['to'], port=flow['port'], expected='blocked',
                                   seen_as=None, application=None, bind=banned))
    return checks


def plan_checks(state, present):
    """Every flow of the model, and the fail2ban bans (--fail2ban); with the rules absent, every one of them must
    be blocked."""
    flows = flow_model(state)
    checks = lab_checks(state, flows) + ban_checks(state, flows)
    for check in checks:
        if not present:
            check['expected'], check['seen_as'] = 'blocked', None
    return checks


def run_checks(state, checks, timeout):
    by_source = {}
    for index, item in enumerate(checks):
        item['id'] = index
        # bind: the source address to connect from (a banned one of the partner's), else the host's own choice.
        by_source.setdefault(item['source'], []).append(
            {'id': str(index), 'address': item['address'], 'port': item['port'], 'timeout': timeout,
             'bind': item.get('bind')})

    def probe(source):
        proc = run(['podman', 'exec', '-i', state['hosts'][source]['container'],
                    '/usr/bin/python3', GUEST_DIR + '/probe.py'], stdin=json.dumps(by_source[source]))
        return json.loads(proc.stdout)

    results = {}
    with ThreadPoolExecutor(max_workers=4) as pool:
        for found in pool.map(probe, sorted(by_source)):
            results.update(found)
    rows = []
    for item in checks:
        result = results[str(item['id'])]
        if result['state'] == 'open':
            words = result['banner'].split()
            reached = words[1] if len(words) >= 4 and words[0] == 'lab-listener' else '?'
            seen = words[3] if len(words) >= 4 else '?'
            observed = 'open (%s)' % reached
            ok = item['expected'] == 'open' and reached == item['target_host']
            if item.get('seen_as'):
                observed = 'open (%s saw %s)' % (reached, seen)
                ok = ok and seen == item['seen_as']
        else:
            observed = 'blocked (%s)' % result['reason']
            ok = item['expected'] == 'blocked'
        source = item['source'] + (' from %s' % item['bind'] if item.get('bind') else '')
        rows.append(dict(row=item['row'], source=source,
                         to='%s %s' % (item['target_host'], item['address']), port=str(item['port']),
                         expected=item['expected'] + (' as %s' % item['seen_as'] if item.get('seen_as') else ''),
                         observed=observed, ok=ok))
    return rows


def print_table(rows):
    headers = ('row', 'from', 'to', 'port', 'expected', 'observed', '')
    keys = ('row', 'source', 'to', 'port', 'expected', 'observed')
    table = [headers] + [tuple(row[key] for key in keys) + ('ok' if row['ok'] else 'FAIL',) for row in rows]
    widths = [max(len(line[column]) for line in table) for column in range(len(headers))]
    for line in table:
        print('  '.join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
    sys.stdout.flush()


def command_proof(args):
    state = load_state(args.run_dir)
    if state is None:
        raise LabError('no lab in %s (run "lab.py up" first)' % args.run_dir)
    with open(os.path.join(args.run_dir, 'baseline.json')) as handle:
        snapshot = json.load(handle)
    present = args.state == 'present'
    started = time.time()
    rows = run_checks(state, plan_checks(state, present), args.timeout)
    listings = take_listings(state, managed(state))
    for name in managed(state):
        firewall = firewall_of(state, name)
        before_rules, before_files = split_listing(snapshot[name])
        now_rules, now_files = split_listing(listings[name])
        before_rules, now_rules = firewall.rules_for_comparison(before_rules), firewall.rules_for_comparison(now_rules)
        if present:
            same = without_ours(now_rules) == without_ours(before_rules)
            rows.append(dict(row='foreign rules', source=name, to='-', port='-', expected='unchanged',
                             observed='unchanged' if same else 'CHANGED', ok=same))
            if not same:
                with open(os.path.join(args.run_dir, 'differs-%s-foreign.txt' % name), 'w') as handle:
                    handle.write('--- baseline\n%s\n--- now\n%s' % (without_ours(before_rules), without_ours(now_rules)))
            if firewall.counters:
                packets = firewall.our_packets(now_rules)
                rows.append(dict(row='counters', source=name, to='-', port='-', expected='> 0 packets',
                                 observed='%d packets' % packets, ok=packets > 0))
        else:
            for what, before, now in (('ruleset', before_rules, now_rules), ('persisted', before_files, now_files)):
                same = comparable(now) == comparable(before)
                rows.append(dict(row='baseline %s' % what, source=name, to='-', port='-',
                                 expected='byte for byte', observed='identical' if same else 'DIFFERS', ok=same))
                if not same:
                    with open(os.path.join(args.run_dir, 'differs-%s-%s.txt' % (name, what)), 'w') as handle:
                        handle.write('--- baseline\n%s\n--- now\n%s' % (comparable(before), comparable(now)))
    if present and args.reload:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda name: in_container(state, name, reload_script(state, name)), managed(state)))
        for row in run_checks(state, plan_checks(state, present), args.timeout):
            row['row'] += ' (reloaded)'
            rows.append(row)
    print_table(rows)
    failed = [row for row in rows if not row['ok']]
    with open(os.path.join(args.run_dir, 'proof-%s.json' % args.state), 'w') as handle:
        json.dump(rows, handle, indent=1)
    if failed:
        print('lab proof: %d of %d checks FAILED (%.0fs): %s' % (
            len(failed), len(rows), time.time() - started,
            '; '.join('%s from %s to %s:%s observed %s'
                      % (row['row'], row['source'], row['to'], row['port'], row['observed']) for row in failed)))
        return 1
    print('lab proof: all %d checks passed (%.0fs)' % (len(rows), time.time() - started))
    return 0


# -- a real XMPP federation, and the gateway's mutual TLS ---------------------------
#
# The flow model says where each application of the matrix must get through; the lab runs the real thing there:
# Prosody on the partner and on every Edge for the s2s application (dialback, no trusted certificates, so that
# each direction needs its own row), and openssl s_server requiring a client certificate on each Edge internal
# address for the gateway's mutual TLS. They take the listeners' ports for as long as the exchange runs.

APPLICATION_S2S = 'XMPP'
APPLICATION_MTLS = 'XMPP/MTLS'
DOMAIN = 'lab.example'
PASSWORD = 'lab-only-secret'
PKI_DIR = '/etc/lab-pki'
# Prosody's client port, on the loopback only (lab/guest/xmpp_client.py logs in there): not a port of the matrix.
C2S_PORT = 5222
PROSODY_DIR = '/etc/lab-prosody'


def make_pki(state):
    """A throwaway CA, a certificate per Edge (server) and Front End (client), and a stranger's CA and client
    certificate that the Edge must refuse; EC keys, valid for two days."""
    pki = os.path.join(state['run_dir'], 'pki')
    os.makedirs(pki, exist_ok=True)
    key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
    for ca in ('lab-ca', 'stranger-ca'):
        run(['openssl', 'req', '-x509', '-days', '2', '-subj', '/CN=%s' % ca, '-keyout', os.path.join(pki, ca + '.key'),
             '-out', os.path.join(pki, ca + '.crt')] + key)
    holders = [(name, 'lab-ca') for name in edges(state) + front_ends(state)] + [('stranger', 'stranger-ca')]
    for name, ca in holders:
        base = os.path.join(pki, name)
        run(['openssl', 'req', '-new', '-subj', '/CN=%s' % name, '-keyout', base + '.key', '-out', base + '.csr'] + key)
        run(['openssl', 'x509', '-req', '-days', '2', '-in', base + '.csr', '-CA', os.path.join(pki, ca + '.crt'),
             '-CAkey', os.path.join(pki, ca + '.key'), '-CAcreateserial', '-out', base + '.crt'])
    state['pki'] = pki


def pki_script(state, names):
    """Shell script: the PEM files ``names`` (e.g. 'edge1.crt') into PKI_DIR of a container."""
    script = 'mkdir -p %s\n' % PKI_DIR
    for name in names:
        with open(os.path.join(state['pki'], name)) as handle:
            script += heredoc(os.path.join(PKI_DIR, name), handle.read())
    return script


def domain(host, family):
    return 'v%d.%s.%s' % (family, host, DOMAIN)


def application_flows(state, application):
    """The open row flows of one application in the model (whatever the rules' state: they say where to try)."""
    return [flow for flow in flow_model(state)
            if flow['kind'] == 'row' and flow['expected'] == 'open' and flow['application'] == application]


def federation_pairs(state):
    """[(edge, family, address the partner reaches the Edge at, partner address the Edge reaches, port)]: every
    Edge and family for which the model has both an inbound and an outbound s2s flow."""
    flows = application_flows(state, APPLICATION_S2S)
    inbound = dict(((flow['to_host'], flow['family']), flow) for flow in flows if flow['to_host'] in edges(state))
    outbound = dict(((flow['from'], flow['family']), flow) for flow in flows if flow['from'] in edges(state))
    pairs = []
    for key in sorted(set(inbound) & set(outbound)):
        if inbound[key]['port'] != outbound[key]['port']:
            raise LabError('the model gives s2s different ports in and out (%s, %s): one Prosody port cannot serve '
                           'both' % (inbound[key]['id'], outbound[key]['id']))
        pairs.append(key + (inbound[key]['to'], outbound[key]['to'], inbound[key]['port']))
    if not pairs:
        raise LabError('the flow model has no %s flow both into and out of an Edge' % APPLICATION_S2S)
    return pairs


def prosody_config(domains, ports):
    """Prosody 0.12 for the lab: s2s by dialback without certificates, c2s on the loopback only."""
    hosts = ''.join('VirtualHost "%s"\n' % name for name in domains)
    return '''-- Written by lab/lab.py: a lab Prosody, run in the foreground by the lab.
run_as_root = true
data_path = "/var/lib/lab-prosody"
pidfile = "/run/lab-prosody.pid"
log = { info = "/var/log/lab-prosody.log"; error = "/var/log/lab-prosody.err" }
modules_enabled = { "roster"; "saslauth"; "dialback"; "disco"; "ping" }
authentication = "internal_plain"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
s2s_require_encryption = false
s2s_secure_auth = false
c2s_interfaces = { "127.0.0.1" }
c2s_ports = { %d }
s2s_interfaces = { "*", "::" }
s2s_ports = { %s }
-- Peers come from /etc/hosts; every other name under example. is answered at once (no SRV time-outs).
unbound = { hoststxt = true; resolvconf = false; options = { ["local-zone:"] = "example. static" } }
%s''' % (C2S_PORT, '; '.join(str(port) for port in ports), hosts)


def prosody_start_script(state, name, domains, ports, peers, users):
    """Shell script: /etc/hosts entries for the peers, the config, the users, Prosody started and listening."""
    lines = ["grep -v '[.]%s$' /etc/hosts > /tmp/lab-hosts || true" % DOMAIN.replace('.', '[.]')]
    lines += ['echo "%s %s" >> /tmp/lab-hosts' % (address, peer) for peer, address in sorted(peers.items())]
    lines += ['cat /tmp/lab-hosts > /etc/hosts', 'rm -rf /var/lib/lab-prosody; mkdir -p /var/lib/lab-prosody']
    script = '\n'.join(lines) + '\n' + heredoc(PROSODY_DIR + '/prosody.cfg.lua', prosody_config(domains, ports))
    for user in users:
        script += 'prosodyctl --config %s/prosody.cfg.lua register %s %s %s\n' % ((PROSODY_DIR,) + user + (PASSWORD,))
    script += ('setsid prosody --config %s/prosody.cfg.lua -F </dev/null >/var/log/lab-prosody.out 2>&1 &\n'
               'echo $! > /run/lab-prosody.lab-pid\n'
               'i=0; until ss -Hltn "( sport = :%d )" | grep -q . && ss -Hltn "( sport = :%d )" | grep -q .; do\n'
               '  i=$((i+1)); [ $i -lt 100 ] || { echo "prosody did not start on %s:" >&2; '
               'cat /var/log/lab-prosody.* >&2; exit 1; }; sleep 0.1\n'
               'done\n' % (PROSODY_DIR, C2S_PORT, ports[0], name))
    return script


def s2s_connections(state, name, port):
    """The established s2s connections of a host: [(local address, local port, peer address, peer port)]."""
    listed = in_container(state, name, 'ss -Htn state established "( sport = :%d or dport = :%d )"' % (port, port),
                          check=False).stdout
    connections = []
    for fields in (line.split() for line in listed.splitlines()):
        if len(fields) >= 2:
            ends = [re.match(r'\[?(.*?)\]?:(\d+)$', end).groups() for end in fields[-2:]]
            connections.append((ends[0][0], int(ends[0][1]), ends[1][0], int(ends[1][1])))
    return sorted(connections)


def arrival_rows(pairs, connections, present):
    """The Edge's own s2s connection (row 2's direction) must reach the partner from the address the partner knows
    the Edge by: its external address, or behind NAT its public one (the firewall's SNAT)."""
    rows = []
    for edge, family, seen, partner, port in pairs:
        # Connections from the other Edges' addresses are theirs: what is left must be this Edge's address.
        others = set(pair[2] for pair in pairs if pair[0] != edge)
        peers = sorted(set(peer for local, local_port, peer, _peer_port in connections
                           if local == partner and local_port == port and peer not in others))
        expected = 'from %s' % seen if present else 'none'
        rows.append(dict(row='s2s from the Edge IPv%d' % family, source=edge, to='partner %s' % partner, port=str(port),
                         expected=expected, observed='from %s' % ', '.join(peers) if peers else 'none',
                         ok=peers == [seen] if present else not peers))
    return rows


def mtls_targets(state):
    """[(front end, edge, address, port)] of the model's mutual-TLS flows."""
    return [(flow['from'], flow['to_host'], flow['to'], flow['port'])
            for flow in application_flows(state, APPLICATION_MTLS)
            if flow['from'] in state['hosts'] and flow['to_host'] in edges(state)]


def bracketed(address, port):
    return '[%s]:%d' % (address, port) if ':' in address else '%s:%d' % (address, port)


MTLS_PING = 'lab-gateway-ping'


def mtls_server_script(edge, targets, accepts):
    """Shell script: one s_server per Edge internal address, client certificate required, answering each line
    reversed (-rev), for at most ``accepts`` connections."""
    script = ''
    for index, (_front_end, _edge, address, port) in enumerate(targets):
        script += ('setsid timeout 120 openssl s_server -accept %s -cert %s/%s.crt -key %s/%s.key -CAfile %s/lab-ca.crt '
                   '-Verify 1 -verify_return_error -rev -naccept %d -quiet </dev/null >/var/log/lab-mtls-%d.log 2>&1 &\n'
                   'echo $! > /run/lab-mtls-%d.pid\n'
                   'i=0; until ss -Hltn "( sport = :%d )" | grep -q "%s"; do i=$((i+1)); [ $i -lt 100 ] || '
                   '{ echo "openssl s_server did not start on %s" >&2; exit 1; }; sleep 0.05; done\n'
                   % (bracketed(address, port), PKI_DIR, edge, PKI_DIR, edge, PKI_DIR, accepts, index, index, port,
                      address, edge))
    return script


def mtls_client(state, front_end, address, port, identity):
    """One TLS connection from a Front End; identity: a certificate name, or None for none. -> (accepted, what)."""
    credentials = '-cert %s/%s.crt -key %s/%s.key ' % (PKI_DIR, identity, PKI_DIR, identity) if identity else ''
    script = ('status=0; errors=$(mktemp)\n'
              '(echo %s; sleep 1) | timeout 5 openssl s_client -connect %s -CAfile %s/lab-ca.crt '
              '-verify_return_error %s-quiet 2>"$errors" || status=$?\n'
              'echo "=== stderr"; cat "$errors"; rm -f "$errors"\n'
              '[ "$status" != 124 ] || echo "no TLS session within 5s"\n'
              % (MTLS_PING, bracketed(address, port), PKI_DIR, credentials))
    output = in_container(state, front_end, script).stdout
    answer, _separator, errors = output.partition('=== stderr\n')
    if MTLS_PING[::-1] in answer:
        return True, 'answered %s' % MTLS_PING[::-1]
    alert = re.search(r'alert ([a-z ]+)', errors) or re.search(r'connect:errno=\d+|no TLS session within \d+s', errors)
    return False, 'refused (%s)' % (alert.group(0) if alert else (errors.strip().splitlines() or ['no answer'])[-1])


def echo_start_script(edge_domains, seconds):
    """Shell script: the Edge side's answering client (a second XMPP user, logged in to the Edge's Prosody)."""
    accounts = json.dumps([{'jid': 'bot@' + name, 'password': PASSWORD} for name in edge_domains])
    return ('rm -f /run/lab-echo.ready\n'
            "echo '%s' > /tmp/lab-echo.json\n"
            'setsid /usr/bin/python3 %s/xmpp_client.py echo %d /run/lab-echo.ready </tmp/lab-echo.json '
            '>/var/log/lab-echo.log 2>&1 &\n'
            'echo $! > /run/lab-echo.pid\n'
            'i=0; until [ -e /run/lab-echo.ready ]; do i=$((i+1)); [ $i -lt 100 ] || '
            '{ echo "the echo client did not log in:" >&2; cat /var/log/lab-echo.log >&2; exit 1; }; sleep 0.1; done\n'
            % (accounts, GUEST_DIR, seconds))


def federation_setups(state, pairs, ports, seconds):
    """host -> shell script: Prosody on the partner (user alice) and on each Edge (user bot, answering), one
    virtual host per address family, each peer's domain in /etc/hosts at the address the model names."""
    partner_domains = sorted(set(domain('partner', pair[1]) for pair in pairs))
    peers = dict((domain(edge, family), seen) for edge, family, seen, _partner, _port in pairs)
    setups = {'partner': prosody_start_script(state, 'partner', partner_domains, ports, peers,
                                              [('alice', name) for name in partner_domains])}
    for edge in sorted(set(pair[0] for pair in pairs)):
        own = [pair for pair in pairs if pair[0] == edge]
        edge_domains = [domain(edge, pair[1]) for pair in own]
        peers = dict((domain('partner', pair[1]), pair[3]) for pair in own)
        setups[edge] = prosody_start_script(state, edge, edge_domains, ports, peers,
                                            [('bot', name) for name in edge_domains])
        setups[edge] += echo_start_script(edge_domains, seconds)
    return setups


def federation_rows(state, pairs, present, timeout):
    """The partner's user sends one message to each Edge's user over each family and waits for the answer."""
    messages = [{'jid': 'alice@' + domain('partner', family), 'password': PASSWORD, 'to': 'bot@' + domain(edge, family),
                 'timeout': timeout, 'body': 'hello over IPv%d' % family}
                for edge, family, _seen, _partner, _port in pairs]
    sent = run(['podman', 'exec', '-i', state['hosts']['partner']['container'], '/usr/bin/python3',
                GUEST_DIR + '/xmpp_client.py', 'send'], stdin=json.dumps(messages))
    rows = []
    for (edge, family, seen, _partner, port), result in zip(pairs, json.loads(sent.stdout)):
        if result['delivered']:
            observed = 'reply in %ss: "%s"' % (result['seconds'], result['reply'])
        else:
            observed = 'no reply: %s' % result['reason']
        rows.append(dict(row='XMPP federation IPv%d' % family, source='alice@' + domain('partner', family),
                         to='bot@%s at %s' % (domain(edge, family), seen), port=str(port),
                         expected='reply' if present else 'no reply', observed=observed,
                         ok=result['delivered'] == present))
    return rows


# Row 3 as real mutual TLS: the Front End's own certificate must be accepted (where the rules let it through),
# none at all and a stranger CA's one must be refused by the Edge.
MTLS_ATTEMPTS = ((None, 'no client certificate'), ('stranger', "a stranger CA's certificate"))


def mtls_setups(state, targets):
    """host -> shell script: the PKI files each host needs, and the Edges' s_servers."""
    setups = {}
    for edge in sorted(set(target[1] for target in targets)):
        setups[edge] = pki_script(state, ['lab-ca.crt', edge + '.crt', edge + '.key'])
        setups[edge] += mtls_server_script(edge, [target for target in targets if target[1] == edge],
                                           1 + len(MTLS_ATTEMPTS))
    for front_end in sorted(set(target[0] for target in targets)):
        setups[front_end] = pki_script(state, ['lab-ca.crt', front_end + '.crt', front_end + '.key', 'stranger.crt',
                                               'stranger.key'])
    return setups


def mtls_rows(state, target, present):
    """The attempts on one s_server, one after the other: it serves one connection at a time."""
    front_end, edge, address, port = target
    rows = []
    for identity, label, allowed in [(front_end, 'its certificate', present)] + [item + (False,) for item in MTLS_ATTEMPTS]:
        accepted, what = mtls_client(state, front_end, address, port, identity)
        rows.append(dict(row='gateway mutual TLS', source='%s, %s' % (front_end, label), to='%s %s' % (edge, address),
                         port=str(port), expected='accepted' if allowed else 'refused', observed=what,
                         ok=accepted == allowed))
    return rows


def command_federation(args):
    state = load_state(args.run_dir)
    if state is None:
        raise LabError('no lab in %s (run "lab.py up" first)' % args.run_dir)
    present = args.state == 'present'
    started = time.time()
    pairs = federation_pairs(state)
    targets = [] if args.s2s_only else mtls_targets(state)
    ports = sorted(set(pair[4] for pair in pairs))
    setups = federation_setups(state, pairs, ports, args.timeout + 30)
    for name, script in mtls_setups(state, targets).items():
        setups[name] = setups.get(name, '') + script
    # The real servers take the listeners' ports while they run, and give them back.
    swapped = sorted(setups)
    rows, connections = [], []
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda name: in_container(state, name, listener_stop_script()), swapped))
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda name: in_container(state, name, setups[name]), swapped))
        with ThreadPoolExecutor(max_workers=1 + len(targets)) as pool:
            exchange = pool.submit(federation_rows, state, pairs, present, args.timeout)
            sessions = [pool.submit(mtls_rows, state, target, present) for target in targets]
            rows = exchange.result() + [row for session in sessions for row in session.result()]
        connections = s2s_connections(state, 'partner', ports[0])
        rows += arrival_rows(pairs, connections, present)
    finally:
        stop = STOP_PID_FILE + ''.join('stop_pid_file %s\n' % pid for pid in (
            '/run/lab-prosody.lab-pid', '/run/lab-echo.pid')) + 'for f in /run/lab-mtls-*.pid; do stop_pid_file "$f"; done\n'
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda name: in_container(state, name, stop + listener_start_script(state, name)), swapped))
    print_table(rows)
    print('s2s connections the partner had open: %s'
          % (', '.join('%s -> %s' % (bracketed(*item[:2]), bracketed(*item[2:])) for item in connections) or 'none'))
    failed = [row for row in rows if not row['ok']]
    with open(os.path.join(args.run_dir, 'federation-%s.json' % args.state), 'w') as handle:
        json.dump(rows, handle, indent=1)
    if failed:
        print('lab federation: %d of %d checks FAILED (%.0fs)' % (len(failed), len(rows), time.time() - started))
        return 1
    print('lab federation (%s): all %d checks passed (%.0fs)' % (args.state, len(rows), time.time() - started))
    return 0


def command_without_outbound(args):
    """Print extra vars (JSON) for the site playbook: the matrix without the rows of the Edges' own s2s flows."""
    state = load_state(args.run_dir)
    if state is None:
        raise LabError('no lab in %s (run "lab.py up" first)' % args.run_dir)
    outbound = set(flow['row'] for flow in application_flows(state, APPLICATION_S2S) if flow['from'] in edges(state))
    if not outbound:
        raise LabError('the flow model has no %s flow out of an Edge' % APPLICATION_S2S)
    import yaml
    with open(ROLE_DEFAULTS) as handle:
        matrix = dict(yaml.safe_load(handle), **read_inventory(state)['all']['vars'])['xmpp_firewall_matrix']
    json.dump({'xmpp_firewall_matrix': [row for row in matrix if row['id'] not in outbound]}, sys.stdout, indent=1)
    log('left out of the matrix: %s' % ', '.join(sorted(outbound)))
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    sub = parser.add_subparsers(dest='command', required=True)
    up = sub.add_parser('up', help='create the lab')
    up.add_argument('--run-dir', required=True)
    up.add_argument('--inventory', help='write the Ansible inventory of the lab here')
    up.add_argument('--edges', type=int, default=1)
    up.add_argument('--front-ends', type=int, default=1)
    up.add_argument('--firewall', choices=('nftables', 'iptables', 'firewalld', 'ufw'), default='nftables',
                    help='iptables: the Edge on iptables-legacy, the other hosts on iptables-nft; '
                         'firewalld, ufw: that on every host but the partner')
    up.add_argument('--ipv6', action='store_true', help='give the Edge and Front End their IPv6 addresses too')
    up.add_argument('--nat', action='store_true', help='publish each Edge through NAT on the external firewall')
    up.add_argument('--nat-edges', type=int, default=0, metavar='N',
                    help='publish only the last N Edges through NAT (the main job: one Edge direct, one behind NAT)')
    up.add_argument('--fail2ban', action='store_true',
                    help='firewalld: run fail2ban on each Edge with two runtime-only bans of partner addresses on the '
                         'ports the flow model opens into the Edge (a zone rich rule, a direct rule on an ipset), and '
                         'prove they stay blocked and are kept')
    up.add_argument('--narrow-partners', action='store_true',
                    help='set xmpp_firewall_partner_networks to the partner, and prove a non-partner is refused')
    up.add_argument('--partner-prefixes', type=int, default=0, metavar='N',
                    help='with --narrow-partners: N more partner prefixes (2001:db8:f000::/36, no lab host in them)')
    up.add_argument('--restrict-internal-sources', action='store_true',
                    help='set xmpp_firewall_restrict_internal_sources, and prove a non-Front-End is refused')
    up.add_argument('--listen-minutes', type=int, default=30, help='the listeners exit after this long')
    up.add_argument('--var', action='append', metavar='NAME=JSON', help='an extra inventory variable for all hosts')
    proof = sub.add_parser('proof', help='prove the flows with real traffic')
    proof.add_argument('--run-dir', required=True)
    proof.add_argument('--state', choices=('present', 'absent'), default='present')
    proof.add_argument('--timeout', type=float, default=2.0)
    proof.add_argument('--reload', dest='reload', action='store_true', default=True,
                       help='(default) also reload every firewall from its persisted configuration and prove again')
    proof.add_argument('--no-reload', dest='reload', action='store_false')
    federation = sub.add_parser('federation', help='a real XMPP federation (Prosody, s2s by dialback) partner to '
                                'every Edge and back, and the gateway\'s mutual TLS from every Front End')
    federation.add_argument('--run-dir', required=True)
    federation.add_argument('--state', choices=('present', 'absent'), default='present',
                            help='absent: the rules are not there, so no message and no TLS session may get through')
    federation.add_argument('--timeout', type=float, default=10.0, help='seconds to wait for each reply')
    federation.add_argument('--s2s-only', action='store_true', help='the federation alone, no mutual TLS')
    without = sub.add_parser('without-outbound', help='print extra vars for the site playbook: the matrix without '
                             'the rows the Edges\' own s2s flows come from (a control: dialback then fails)')
    without.add_argument('--run-dir', required=True)
    down = sub.add_parser('down', help='remove the lab')
    down.add_argument('--run-dir', required=True)
    args = parser.parse_args()
    try:
        return {'up': command_up, 'down': command_down, 'proof': command_proof,
                'federation': command_federation, 'without-outbound': command_without_outbound}[args.command](args)
    except LabError as error:
        print('lab %s: %s' % (args.command, error), file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
