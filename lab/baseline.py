# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The admin's baseline: what a lab host's firewall holds before the collection's first run.

One source for the podman lab (lab/lab.py) and the real-kernel system tests
(tests/system/netlab.py): default-drop policies, established/related, SSH
and ICMP allowed; on the firewalls an admin's object that happens to carry one
of the collection's names (without its mark); a Docker-like set of
foreign rules that every run of ours must leave byte for byte; and (lab.py up
--fail2ban) fail2ban's runtime-only bans on a firewalld Edge.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

NFT_MAIN_CONFIG = '/etc/nftables.conf'
IPTABLES_SAVE_FILES = ('/etc/iptables/rules.v4', '/etc/iptables/rules.v6')
SERVER_ROLES = ('edge', 'front_end')


def nft_admin_table(server):
    """The admin's table inet filter: drop by default on input and forward, established, loopback, ICMP (neighbour
    discovery), SSH; a server (Edge, Front End) also drops what it sends but established, loopback and ICMP."""
    if server:
        output = ('\t\ttype filter hook output priority filter; policy drop;\n'
                  '\t\tct state established,related accept\n'
                  '\t\toif "lo" accept\n'
                  '\t\tmeta l4proto { icmp, ipv6-icmp } accept\n')
    else:
        output = '\t\ttype filter hook output priority filter; policy accept;\n'
    return ('table inet filter {\n'
            '\tchain input {\n'
            '\t\ttype filter hook input priority filter; policy drop;\n'
            '\t\tct state established,related accept\n'
            '\t\tiif "lo" accept\n'
            '\t\tmeta l4proto { icmp, ipv6-icmp } accept comment "neighbour discovery"\n'
            '\t\ttcp dport 22 accept comment "admin ssh"\n'
            '\t}\n\n'
            '\tchain forward {\n'
            '\t\ttype filter hook forward priority filter; policy drop;\n'
            '\t\tct state established,related accept\n'
            '\t\tmeta l4proto ipv6-icmp accept\n'
            '\t}\n\n'
            '\tchain output {\n%s'
            '\t}\n'
            '}\n' % output)


def nft_baseline(role):
    """/etc/nftables.conf as an admin would have it: the admin's table; on the firewalls also a namesake chain."""
    server = role in SERVER_ROLES
    header = ('#!/usr/sbin/nft -f\n'
              '# The admin\'s baseline of the lab host: default drop, SSH, ICMP, established.\n'
              'flush ruleset\n\n')
    return header + nft_admin_table(server) + ('' if server else NFT_NAMESAKE)


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
    """iptables-save text of the admin's filter table for one family, as nft_admin_table says it."""
    server = role in SERVER_ROLES
    icmp = 'icmp' if family == 4 else 'ipv6-icmp'
    lines = ['# The admin\'s baseline of the lab host: default drop, SSH, ICMP, established.',
             '*filter',
             ':INPUT DROP [0:0]',
             ':FORWARD DROP [0:0]',
             ':OUTPUT %s [0:0]' % ('DROP' if server else 'ACCEPT'),
             '-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
             '-A INPUT -i lo -j ACCEPT',
             '-A INPUT -p %s -j ACCEPT' % icmp,
             '-A INPUT -p tcp -m tcp --dport 22 -m comment --comment "admin: ssh" -j ACCEPT',
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
FIREWALLD_FILES = '/etc/firewalld/zones/*.xml /etc/firewalld/policies/*.xml'
# ufw as an admin would set it up: deny incoming and routed (and outgoing on the servers), SSH allowed.
# Its files: the rules ufw loads, and before.init (with its mode: the collection may have to make it executable
# for ufw to run its block) and the collection's ipset file, which that block loads.
UFW_FILES = ('/etc/ufw/before.rules /etc/ufw/before6.rules /etc/ufw/user.rules /etc/ufw/user6.rules '
             '/etc/ufw/before.init /etc/ufw/lync-xmpp-federation.ipsets')
# What a reboot leaves of the firewall (the kernel's rules and sets emptied; the tables iptables-nft made stay,
# empty, so that the listings compare), then ufw's boot unit: ufw-init start runs before.init, then loads the
# rule files.
UFW_BOOT = '''for tool in iptables ip6tables; do
  for table in $($tool-save | sed -n 's/^[*]//p'); do $tool -w -t "$table" -F; $tool -w -t "$table" -X; done
  for chain in INPUT FORWARD OUTPUT; do $tool -w -P "$chain" ACCEPT; done
done
ipset destroy
/usr/lib/ufw/ufw-init start >/dev/null
'''
# fail2ban on a firewalld Edge (lab.py up --fail2ban): two jails guarding the Edge's s2s port with fail2ban's
# firewalld actions, each holding a ban of one partner address at runtime only: a zone rich rule
# (firewallcmd-rich-rules) and a direct rule on a kernel ipset (firewallcmd-ipset). The lab takes its baseline with
# the bans in place, so every later comparison with it proves that the collection's runs kept them.
FAIL2BAN_JAILS = (('lab-xmpp-rich', 'firewallcmd-rich-rules'), ('lab-xmpp-ipset', 'firewallcmd-ipset'))
FAIL2BAN_FILTER = """[Definition]
failregex = ^lab: bad s2s stream from <HOST>$
"""
FAIL2BAN_JAIL = """[%s]
enabled = true
backend = polling
port = %s
protocol = tcp
filter = lab-xmpp
logpath = /var/log/lab-xmpp.log
banaction = %s
bantime = 1d
"""


def fail2ban_script(ports, bans):
    """Shell script: fail2ban's jails on ``ports`` (the ports the lab's flow model opens into the Edge), started, or
    restarted as an admin would after firewalld's restart dropped its runtime-only bans, and ``bans``
    ([(jail, address)]) banned; a restarted fail2ban bans them again from its database as well."""
    jails = '[sshd]\nenabled = false\n' + ''.join(FAIL2BAN_JAIL % (jail, ','.join(str(port) for port in ports), action)
                                                  for jail, action in FAIL2BAN_JAILS)
    return ("mkdir -p /etc/fail2ban/filter.d /etc/fail2ban/jail.d /run/fail2ban\n"
            "cat > /etc/fail2ban/filter.d/lab-xmpp.conf <<'LAB_EOF'\n%sLAB_EOF\n"
            "cat > /etc/fail2ban/jail.d/lab-xmpp.local <<'LAB_EOF'\n%sLAB_EOF\n"
            'touch /var/log/lab-xmpp.log\n'
            '! fail2ban-client ping >/dev/null 2>&1 || fail2ban-client stop >/dev/null\n'
            'fail2ban-client -x start >/dev/null\n'
            'i=0; until fail2ban-client ping >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 100 ] || '
            '{ echo "fail2ban did not start" >&2; exit 1; }; sleep 0.1; done\n%s'
            % (FAIL2BAN_FILTER, jails, ''.join('fail2ban-client set %s banip %s >/dev/null\n' % ban for ban in bans)))


def ufw_baseline(role):
    outgoing = 'deny' if role in SERVER_ROLES else 'allow'
    return ('ufw --force reset >/dev/null\n'
            'ufw default deny incoming >/dev/null\n'
            'ufw default deny routed >/dev/null\n'
            'ufw default %s outgoing >/dev/null\n'
            'ufw allow 22/tcp >/dev/null\n'
            'ufw --force enable >/dev/null\n'
            'rm -f /etc/ufw/*.rules.20*\n' % outgoing)
