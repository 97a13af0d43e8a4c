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

Commands (all take --run-dir, where the lab's state, inventory and snapshots live):
    up       build the image if needed, create networks and containers, routes,
             the admin baseline (default-drop policies, established/related,
             SSH, a foreign docker-like table), listeners; write the inventory
    proof    real TCP connections for every documented flow and the flows that
             must stay blocked, foreign rules unchanged, counters of our rules
             moved, and the flows again after a reload of the persisted
             configuration; prints one table, exits 1 on any failed check
    down     remove every container and network of the run
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

PREFIX = 'lxE-'
XMPP_PORT, GATEWAY_PORT, OTHER_PORT = 5269, 23456, 5270
NETWORKS = ('ext', 'edge-ext', 'edge-int', 'internal')
SLOTS = 4
GUEST_DIR = '/opt/lab'
NFT_MAIN_CONFIG = '/etc/nftables.conf'
NFT_OUR_FILE = '/etc/nftables.d/lync-xmpp-federation.nft'
IPTABLES_SAVE_FILES = ('/etc/iptables/rules.v4', '/etc/iptables/rules.v6')
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
        if host['role'] == 'edge' and state['options']['nat']:
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
    if host['role'] == 'partner' and state['options'].get('fail2ban'):
        # The partner's addresses that fail2ban bans on the Edges.
        outer = ip_of(state, 'partner', 'ext', 4)
        for _jail, _action, offset in FAIL2BAN_BANS:
            commands.append('ip addr add %s/28 dev "$(ip -o addr show to %s | cut -d" " -f2)"'
                            % (address(slot, 'ext', offset, 4), outer))
    if host['role'] == 'external_firewall':
        outer = ip_of(state, 'fw-ext', 'ext', 4)
        for edge in edges(state):
            if state['hosts'][edge].get('public'):
                commands.append('ip addr add %s/28 dev "$(ip -o addr show to %s | cut -d" " -f2)"'
                                % (state['hosts'][edge]['public'], outer))
    return commands


# -- the admin's baseline --------------------------------------------------------

def nft_baseline(role):
    """/etc/nftables.conf as an admin would have it: drop by default, SSH, ICMP, established."""
    server = role in ('edge', 'front_end')
    output = ('\t\ttype filter hook output priority filter; policy drop;\n'
              '\t\tct state established,related accept\n'
              '\t\toif "lo" accept\n'
              '\t\tmeta l4proto { icmp, ipv6-icmp } accept\n') if server else \
        '\t\ttype filter hook output priority filter; policy accept;\n'
    return ('#!/usr/sbin/nft -f\n'
            '# The admin\'s baseline of the lab host: default drop, SSH, ICMP, established.\n'
            'flush ruleset\n\n'
            'table inet filter {\n'
            '\tchain input {\n'
            '\t\ttype filter hook input priority filter; policy drop;\n'
            '\t\tct state established,related accept\n'
            '\t\tiif "lo" accept\n'
            '\t\tmeta l4proto { icmp, ipv6-icmp } accept\n'
            '\t\ttcp dport 22 accept\n'
            '\t}\n\n'
            '\tchain forward {\n'
            '\t\ttype filter hook forward priority filter; policy drop;\n'
            '\t\tct state established,related accept\n'
            '\t}\n\n'
            '\tchain output {\n' + output +
            '\t}\n'
            '}\n' + ('' if server else NFT_NAMESAKE))


# On the firewalls, an admin's chain that happens to carry one of our names, in a table of the admin's own, where
# the collection never puts anything (a firewall needs forward rules only). It is not ours (no mark), so every run
# leaves it alone, and the baseline comparison after removal finds it byte for byte.
NFT_NAMESAKE = '''
table inet admin_egress {
    chain lync_xmpp_out {
        tcp dport 9 reject
    }

    chain output {
        type filter hook output priority filter + 5; policy accept;
        jump lync_xmpp_out
    }
}
'''.replace('    ', '\t')


# Docker's way: a table of its own with a forward base chain and chains it
# jumps to. Created at run time (not in the persisted configuration), like
# Docker does on start; it must come through every run of ours untouched.
NFT_FOREIGN = '''table ip docker {
    chain DOCKER {
        iifname != "docker0" oifname "docker0" tcp dport 8080 accept
    }

    chain DOCKER-USER {
        return
    }

    chain FORWARD {
        type filter hook forward priority filter + 10; policy accept;
        jump DOCKER-USER
        oifname "docker0" ct state established,related accept
        oifname "docker0" jump DOCKER
        iifname "docker0" oifname != "docker0" accept
    }
}
'''.replace('    ', '\t')


def iptables_baseline(role, family):
    server = role in ('edge', 'front_end')
    icmp = 'icmp' if family == 4 else 'ipv6-icmp'
    lines = ['# The admin\'s baseline of the lab host: default drop, SSH, ICMP, established.',
             '*filter',
             ':INPUT DROP [0:0]',
             ':FORWARD DROP [0:0]',
             ':OUTPUT %s [0:0]' % ('DROP' if server else 'ACCEPT'),
             '-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
             '-A INPUT -i lo -j ACCEPT',
             '-A INPUT -p %s -j ACCEPT' % icmp,
             '-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT',
             '-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT']
    if server:
        lines += ['-A OUTPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
                  '-A OUTPUT -o lo -j ACCEPT',
                  '-A OUTPUT -p %s -j ACCEPT' % icmp]
    return '\n'.join(lines + ['COMMIT', ''])


IPTABLES_FOREIGN = '''*filter
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A DOCKER -d 198.51.100.254/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 8080 -j ACCEPT
-A DOCKER-USER -j RETURN
COMMIT
'''


# firewalld as an admin would run it: the public zone (every interface of the
# lab is in it) allows SSH and nothing else, and forwards nothing between
# interfaces (no <forward/>, which firewalld 1.x allows in a new zone); on the
# servers an egress policy rejects what the host sends but ICMP (neighbour
# discovery), like the nftables baseline's output policy. firewalld accepts
# established traffic by itself.
FIREWALLD_ZONE = '''<?xml version="1.0" encoding="utf-8"?>
<zone>
  <short>Public</short>
  <description>The lab admin's baseline: SSH only, no forwarding.</description>
  <service name="ssh"/>
</zone>
'''
FIREWALLD_EGRESS = '''<?xml version="1.0" encoding="utf-8"?>
<policy target="REJECT" priority="100">
  <short>admin-egress</short>
  <description>The lab admin's baseline: the host sends nothing it is not allowed to.</description>
  <ingress-zone name="HOST"/>
  <egress-zone name="ANY"/>
  <rule>
    <protocol value="icmp"/>
    <accept/>
  </rule>
  <rule>
    <protocol value="ipv6-icmp"/>
    <accept/>
  </rule>
</policy>
'''
# The same on firewalld: an admin's policy named like one of ours, without our mark, on the firewalls.
FIREWALLD_NAMESAKE = '''<?xml version="1.0" encoding="utf-8"?>
<policy target="CONTINUE" priority="50">
  <short>lync-xmpp-out</short>
  <description>The lab admin's own policy that happens to carry one of the collection's names.</description>
  <ingress-zone name="HOST"/>
  <egress-zone name="ANY"/>
  <rule>
    <protocol value="icmp"/>
    <accept/>
  </rule>
</policy>
'''
FIREWALLD_START = '''mkdir -p /run/dbus
[ -e /run/dbus/system_bus_socket ] || dbus-daemon --system --fork
setsid firewalld --nofork --nopid </dev/null >/var/log/lab-firewalld.log 2>&1 &
echo $! > /run/lab-firewalld.pid
i=0; until firewall-cmd --state >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 150 ] || { echo "firewalld did not start" >&2; exit 1; }; sleep 0.1; done
'''
# firewalld's restart from its permanent configuration: it removes its table when it stops (CleanupOnExit).
# The container's PID 1 reaps nobody, so a stopped firewalld stays a zombie: wait for that state, not its end.
FIREWALLD_RESTART = '''pid=$(cat /run/lab-firewalld.pid)
kill "$pid"
i=0; while [ -e /proc/$pid ] && ! grep -q '^State:[[:space:]]*Z' /proc/$pid/status 2>/dev/null; do
  i=$((i+1)); [ $i -lt 150 ] || { echo "firewalld did not stop" >&2; exit 1; }; sleep 0.1
done
''' + FIREWALLD_START
# fail2ban on a firewalld Edge (lab.py up --fail2ban): two jails guarding 5269 with fail2ban's firewalld actions,
# each holding a ban of one partner address at runtime only: a zone rich rule (firewallcmd-rich-rules) and a direct
# rule on a kernel ipset (firewallcmd-ipset). The baseline is taken with the bans in place, so every later
# comparison with it proves that the collection's runs kept them.
FAIL2BAN_BANS = (('lab-xmpp-rich', 'firewallcmd-rich-rules', 6), ('lab-xmpp-ipset', 'firewallcmd-ipset', 7))
FAIL2BAN_FILTER = """[Definition]
failregex = ^lab: bad s2s stream from <HOST>$
"""
FAIL2BAN_JAIL = """[%s]
enabled = true
backend = polling
port = 5269
protocol = tcp
filter = lab-xmpp
logpath = /var/log/lab-xmpp.log
banaction = %s
bantime = 1d
"""


def fail2ban_start(state):
    """Start fail2ban and ban the partner addresses (a restarted fail2ban bans them again from its database)."""
    bans = ''.join('fail2ban-client set %s banip %s >/dev/null\n' % (jail, address(state['slot'], 'ext', offset, 4))
                   for jail, _action, offset in FAIL2BAN_BANS)
    return ('mkdir -p /run/fail2ban\ntouch /var/log/lab-xmpp.log\nfail2ban-client -x start >/dev/null\n'
            'i=0; until fail2ban-client ping >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 100 ] || '
            '{ echo "fail2ban did not start" >&2; exit 1; }; sleep 0.1; done\n' + bans)


def fail2ban_script(state):
    jails = '[sshd]\nenabled = false\n' + ''.join(FAIL2BAN_JAIL % (jail, action) for jail, action, _offset in FAIL2BAN_BANS)
    return (heredoc('/etc/fail2ban/filter.d/lab-xmpp.conf', FAIL2BAN_FILTER)
            + heredoc('/etc/fail2ban/jail.d/lab-xmpp.local', jails) + fail2ban_start(state))


def fail2ban_restart(state, name):
    """After firewalld's restart (which drops runtime-only state), fail2ban restarted as an admin would, so that its
    bans are back; nothing where the lab runs no fail2ban."""
    host = state['hosts'][name]
    if host['firewall'] != 'firewalld' or host['role'] != 'edge' or not state['options'].get('fail2ban'):
        return ''
    return 'fail2ban-client stop >/dev/null\n' + fail2ban_start(state)


FIREWALLD_FILES = '/etc/firewalld/zones/*.xml /etc/firewalld/policies/*.xml'
# ufw as an admin would set it up: deny incoming and routed (and outgoing on the servers), SSH allowed.
UFW_FILES = '/etc/ufw/before.rules /etc/ufw/before6.rules /etc/ufw/user.rules /etc/ufw/user6.rules'


def ufw_baseline(role):
    outgoing = 'deny' if role in ('edge', 'front_end') else 'allow'
    return ('ufw --force reset >/dev/null\n'
            'ufw default deny incoming >/dev/null\n'
            'ufw default deny routed >/dev/null\n'
            'ufw default %s outgoing >/dev/null\n'
            'ufw allow 22/tcp >/dev/null\n'
            'ufw --force enable >/dev/null\n'
            'rm -f /etc/ufw/*.rules.20*\n' % outgoing)


def heredoc(path, text):
    return "mkdir -p %s\ncat > %s <<'LAB_EOF'\n%sLAB_EOF\n" % (os.path.dirname(path), path, text)


def foreign_commands(firewall):
    if firewall in ('nftables', 'firewalld'):
        return "nft -f - <<'LAB_EOF'\n%sLAB_EOF\n" % NFT_FOREIGN
    return "iptables-restore --noflush <<'LAB_EOF'\n%sLAB_EOF\n" % IPTABLES_FOREIGN


def baseline_script(state, name):
    host = state['hosts'][name]
    firewall = host['firewall']
    if firewall is None:
        return ''
    if firewall == 'nftables':
        script = heredoc(NFT_MAIN_CONFIG, nft_baseline(host['role'])) + 'nft -f %s\n' % NFT_MAIN_CONFIG
    elif firewall == 'firewalld':
        script = heredoc('/etc/firewalld/zones/public.xml', FIREWALLD_ZONE)
        if host['role'] in ('edge', 'front_end'):
            script += heredoc('/etc/firewalld/policies/admin-egress.xml', FIREWALLD_EGRESS)
        else:
            script += heredoc('/etc/firewalld/policies/lync-xmpp-out.xml', FIREWALLD_NAMESAKE)
        script += FIREWALLD_START
        if host['role'] == 'edge' and state['options'].get('fail2ban'):
            script += fail2ban_script(state)
    elif firewall == 'ufw':
        script = ufw_baseline(host['role'])
    else:
        variant = 'legacy' if firewall == 'iptables-legacy' else 'nft'
        script = ''.join('update-alternatives --quiet --set %s /usr/sbin/%s-%s\n' % (tool, tool, variant)
                         for tool in ('iptables', 'ip6tables'))
        for family, path in zip((4, 6), IPTABLES_SAVE_FILES):
            restore = 'iptables-restore' if family == 4 else 'ip6tables-restore'
            script += heredoc(path, iptables_baseline(host['role'], family)) + '%s %s\n' % (restore, path)
    return script + foreign_commands(firewall)


def reload_script(firewall):
    """What the firewall service does on reload (and Docker on its restart)."""
    if firewall == 'nftables':
        # /etc/nftables.conf starts with "flush ruleset", as Debian's does.
        return 'nft -f %s\n' % NFT_MAIN_CONFIG + foreign_commands(firewall)
    if firewall == 'firewalld':
        # A restart, not only a reload: everything comes back from the permanent configuration. Docker's
        # table is not firewalld's and stays.
        return FIREWALLD_RESTART
    if firewall == 'ufw':
        # ufw rebuilds its chains from its files; Docker's chains are not ufw's and stay.
        return 'ufw reload >/dev/null\n'
    return ('iptables-restore %s\nip6tables-restore %s\n' % IPTABLES_SAVE_FILES) + foreign_commands(firewall)


def listener_ports(role):
    return {'partner': [XMPP_PORT, OTHER_PORT],
            'edge': [XMPP_PORT, GATEWAY_PORT, OTHER_PORT],
            'front_end': [GATEWAY_PORT]}.get(role, [])


# -- snapshots: what the firewall holds, and what of it is ours ------------------

def listing_script(firewall):
    if firewall == 'firewalld':
        # nft lists the rules firewalld's direct interface writes into iptables-nft's nat tables (the collection's
        # translations) without their comments, so those tables are listed by iptables-save, with our rule mark.
        return ("nft list ruleset | awk '/^table ip6? nat [{]/ {skip=1} !skip {print} skip && /^[}]/ {skip=0}'\n"
                'for save in iptables-save ip6tables-save; do $save -t nat 2>/dev/null; done\n'
                'for f in %s; do [ -e "$f" ] || continue; echo "=== $f"; cat "$f"; done\n' % FIREWALLD_FILES)
    if firewall == 'ufw':
        return ('iptables-save -c\necho "=== ip6tables"\nip6tables-save -c\n'
                'for f in %s; do echo "=== $f"; cat "$f"; done\n' % UFW_FILES)
    if firewall == 'nftables':
        return 'nft list ruleset\necho "=== %s"\ncat %s\n' % (NFT_MAIN_CONFIG, NFT_MAIN_CONFIG)
    files = ''.join('echo "=== %s"\ncat %s\n' % (path, path) for path in IPTABLES_SAVE_FILES)
    return 'iptables-save -c\necho "=== ip6tables"\nip6tables-save -c\n' + files


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
    """The ruleset as it must stay: iptables-save's dated headers and counters left out."""
    lines = [line for line in ruleset.splitlines() if not line.startswith('# ')]
    return '\n'.join(NFT_COUNTER.sub('counter packets 0 bytes 0', COUNTER_PAIR.sub('[0:0]', line))
                     for line in lines) + '\n'


def without_ours(ruleset):
    """The ruleset with every table, chain and rule of ours taken out (found by its lync name)."""
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
            empty = all(not entry.startswith('-A') and not re.match(r':\S+ (DROP|REJECT)', entry)
                        for entry in section)
            if not empty:
                kept.extend(section)
            section = None
    return kept + (section or [])


def our_packets(ruleset, firewall):
    """Packets counted by the rules in our chains (nft counters, iptables-save -c)."""
    total, chain = 0, None
    if firewall == 'nftables':
        for line in ruleset.splitlines():
            stripped = line.strip()
            if stripped.startswith('chain '):
                chain = stripped.split()[1]
            elif stripped == '}':
                chain = None
            elif chain and OURS.search(chain):
                total += sum(int(count) for count in re.findall(r'counter packets (\d+)', stripped))
        return total
    for line in ruleset.splitlines():
        match = re.match(r'\[(\d+):\d+\] -A (\S+) ', line)
        if match and OURS.search(match.group(2)):
            total += int(match.group(1))
    return total


def take_listings(state, hosts):
    def one(name):
        return name, in_container(state, name, listing_script(state['hosts'][name]['firewall'])).stdout
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


def prepare_host(state, name):
    """Routes, the baseline, the listener; waits until the listener is ready."""
    host = state['hosts'][name]
    ports = listener_ports(host['role'])
    script = '\n'.join(route_commands(state, name)) + '\n' + baseline_script(state, name)
    if ports:
        script += ('rm -f /run/lab-listener.ready\n'
                   'setsid /usr/bin/python3 %s/listener.py %s %d %s </dev/null >/dev/null 2>&1 &\n'
                   'i=0; while [ ! -e /run/lab-listener.ready ]; do i=$((i+1)); [ $i -lt 100 ] || '
                   '{ echo "listener did not start" >&2; exit 1; }; sleep 0.05; done\n'
                   % (GUEST_DIR, name, state['options']['listen_seconds'], ' '.join(str(p) for p in ports)))
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
        role_vars['xmpp_firewall_partner_networks'] = [ip_of(state, 'partner', 'ext', f) for f in families]
        if state['options'].get('fail2ban'):
            # Listed partners that fail2ban bans: the ban, not the narrowing, must be what blocks them.
            role_vars['xmpp_firewall_partner_networks'] += [address(state['slot'], 'ext', offset, 4)
                                                            for _jail, _action, offset in FAIL2BAN_BANS]
        # A long partner list (documentation prefixes no lab host has), so that the firewalls match it through sets.
        role_vars['xmpp_firewall_partner_networks'] += ['2001:db8:f%03x:%x::/64' % (index // 65536, index % 65536)
                                                        for index in range(state['options'].get('partner_prefixes', 0))]
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


def command_up(args):
    if load_state(args.run_dir):
        raise LabError('%s already holds a lab; run "lab.py down --run-dir %s" first' % (args.run_dir, args.run_dir))
    os.makedirs(args.run_dir, exist_ok=True)
    extra_vars = {}
    for item in args.var or []:
        key, value = item.split('=', 1)
        extra_vars[key] = json.loads(value)
    options = {'edges': args.edges, 'front_ends': args.front_ends, 'firewall': args.firewall,
               'ipv6': args.ipv6, 'nat': args.nat, 'fail2ban': args.fail2ban,
               'listen_seconds': args.listen_minutes * 60,
               'narrow_partners': args.narrow_partners, 'restrict_internal_sources': args.restrict_internal_sources,
               'partner_prefixes': args.partner_prefixes}
    state = {'run_id': secrets.token_hex(3), 'run_dir': os.path.abspath(args.run_dir), 'options': options,
             'networks': [], 'containers': [], 'hosts': plan_hosts(options)}
    save_state(state)
    started = time.time()
    image = run(['bash', os.path.join(LAB, 'build-image.sh')]).stdout.strip().splitlines()[-1]
    create_networks(state)
    resolve_addresses(state)
    for name in sorted(state['hosts']):
        start_container(state, image, name)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda name: prepare_host(state, name), sorted(state['hosts'])))
    # The baseline as the admin left it, for the byte-for-byte comparisons later.
    with open(os.path.join(args.run_dir, 'baseline.json'), 'w') as handle:
        json.dump(take_listings(state, managed(state)), handle, indent=1, sort_keys=True)
    if args.inventory:
        write_inventory(state, args.inventory, extra_vars)
        state['inventory'] = os.path.abspath(args.inventory)
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

def plan_checks(state, present):
    """Every flow of the matrix (open when present) and the ones that must stay blocked."""
    families = (4, 6) if state['options']['ipv6'] else (4,)
    opened = 'open' if present else 'blocked'
    checks = []

    def check(row, source, target_host, target, port, expected, **extra):
        checks.append(dict(row=row, source=source, target_host=target_host, address=target, port=port,
                           expected=expected, **extra))

    for family in families:
        partner = ip_of(state, 'partner', 'ext', family)
        for edge in edges(state):
            public = state['hosts'][edge].get('public') if family == 4 else None
            outside = public or ip_of(state, edge, 'edge-ext', family)
            internal = ip_of(state, edge, 'edge-int', family)
            check('xmpp-s2s-inbound', 'partner', edge, outside, XMPP_PORT, opened)
            check('none: other Edge port', 'partner', edge, outside, OTHER_PORT, 'blocked')
            check('xmpp-s2s-outbound', edge, 'partner', partner, XMPP_PORT, opened,
                  seen_as=public and present and public)
            check('none: other partner port', edge, 'partner', partner, OTHER_PORT, 'blocked')
            check('none: 23456 from Internet', 'partner', edge, outside, GATEWAY_PORT, 'blocked')
            check('none: 23456 from Internet', 'partner', edge, internal, GATEWAY_PORT, 'blocked')
            if state['options'].get('narrow_partners'):
                # The external firewall's own address is on the Internet side but not a partner.
                check('none: 5269 from a non-partner', 'fw-ext', edge, ip_of(state, edge, 'edge-ext', family),
                      XMPP_PORT, 'blocked')
            if state['options'].get('fail2ban') and family == 4:
                # A partner address fail2ban banned on the Edge stays blocked on 5269 while ours accept it.
                for jail, _action, offset in FAIL2BAN_BANS:
                    check('none: 5269 banned by %s' % jail, 'partner', edge, ip_of(state, edge, 'edge-ext', 4),
                          XMPP_PORT, 'blocked', bind=address(state['slot'], 'ext', offset, 4))
            if state['options'].get('restrict_internal_sources'):
                # The internal firewall's own address is on the internal side but not a Front End.
                check('none: 23456 from a non-Front-End', 'fw-int', edge, internal, GATEWAY_PORT, 'blocked')
            for front_end in front_ends(state):
                check('xmpp-gateway-internal', front_end, edge, internal, GATEWAY_PORT, opened)
                check('none: other internal port', front_end, edge, internal, OTHER_PORT, 'blocked')
                check('none: reverse of row 3', edge, front_end, ip_of(state, front_end, 'internal', family),
                      GATEWAY_PORT, 'blocked')
    return checks


def run_checks(state, checks, timeout):
    by_source = {}
    for index, item in enumerate(checks):
        item['id'] = index
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
        rows.append(dict(row=item['row'], source=item['source'],
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
        baseline = json.load(handle)
    present = args.state == 'present'
    started = time.time()
    rows = run_checks(state, plan_checks(state, present), args.timeout)
    listings = take_listings(state, managed(state))
    for name in managed(state):
        firewall = state['hosts'][name]['firewall']
        before_rules, before_files = split_listing(baseline[name])
        now_rules, now_files = split_listing(listings[name])
        if firewall == 'firewalld':
            before_rules, now_rules = tables_in_any_order(before_rules), tables_in_any_order(now_rules)
        if present:
            same = without_ours(now_rules) == without_ours(before_rules)
            rows.append(dict(row='foreign rules', source=name, to='-', port='-', expected='unchanged',
                             observed='unchanged' if same else 'CHANGED', ok=same))
            if not same:
                with open(os.path.join(args.run_dir, 'differs-%s-foreign.txt' % name), 'w') as handle:
                    handle.write('--- baseline\n%s\n--- now\n%s' % (without_ours(before_rules), without_ours(now_rules)))
            if firewall != 'firewalld':
                # firewalld's rules carry no counters; the traffic checks prove them.
                packets = our_packets(now_rules, firewall)
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
            list(pool.map(lambda name: in_container(state, name, reload_script(state['hosts'][name]['firewall'])
                                                    + fail2ban_restart(state, name)),
                          managed(state)))
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
    up.add_argument('--fail2ban', action='store_true',
                    help='firewalld: run fail2ban on each Edge with two runtime-only bans of partner addresses on 5269 '
                         '(a zone rich rule, a direct rule on an ipset), and prove they stay blocked and are kept')
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
    down = sub.add_parser('down', help='remove the lab')
    down.add_argument('--run-dir', required=True)
    args = parser.parse_args()
    try:
        return {'up': command_up, 'down': command_down, 'proof': command_proof}[args.command](args)
    except LabError as error:
        print('lab %s: %s' % (args.command, error), file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
