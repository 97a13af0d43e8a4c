# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Throwaway hosts made of network namespaces, for tests against real kernels.

Everything here runs as root and only inside namespaces this module created:
no rule is ever written to the machine's own network namespace.  Addresses
come from 198.51.100.0/24 and 2001:db8::/32 only.

    client (198.51.100.2, 2001:db8:a::2)
      |  net A 198.51.100.0/26, 2001:db8:a::/64
    router (198.51.100.1 | 198.51.100.65), forwarding on: the firewall under test
      |  net B 198.51.100.64/26, 2001:db8:b::/64
    server (198.51.100.66, 2001:db8:b::66)
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
COLLECTIONS = os.path.join(REPO, '.cache', 'collections')
VENV_BIN = os.path.join(REPO, '.venv', 'bin')

# The admin's baseline is one source with the podman lab: lab/baseline.py.
sys.path.insert(0, os.path.join(REPO, 'lab'))
import baseline as lab_baseline  # noqa: E402  pylint: disable=wrong-import-position

# The admin's nftables table on a host that forwards (policy drop on input and forward, established, ICMP, SSH),
# and Docker's own table beside it (a forward base chain of its own and chains it jumps to).
NFT_ADMIN = lab_baseline.nft_admin_table(server=False)
NFT_FOREIGN = lab_baseline.NFT_FOREIGN


def iptables_admin(family):
    """iptables-restore text of the admin's filter table for ``family`` (4 or 6), the same rules as NFT_ADMIN."""
    return lab_baseline.iptables_baseline('external_firewall', family)


CLIENT4, ROUTER4_A, ROUTER4_B, SERVER4 = '198.51.100.2', '198.51.100.1', '198.51.100.65', '198.51.100.66'
CLIENT6, ROUTER6_A, ROUTER6_B, SERVER6 = '2001:db8:a::2', '2001:db8:a::1', '2001:db8:b::1', '2001:db8:b::66'


# Rules the backends' system tests share: the server is a host firewall (in/out rules), the router a
# perimeter firewall (forward and NAT rules), both address families.
SERVER_RULES = [
    {'name': 'xmpp-in', 'direction': 'in', 'protocol': 'tcp', 'ports': [5269, 5270],
     'comment': 'partners to the Edge'},
    {'name': 'xmpp-out', 'direction': 'out', 'protocol': 'tcp', 'ports': [5269], 'comment': 'Edge to partners'},
]
ROUTER_RULES = [
    {'name': 'fwd-v4', 'direction': 'forward', 'ports': [5269], 'source': [CLIENT4], 'destination': [SERVER4],
     'comment': 'row 1 IPv4'},
    {'name': 'fwd-v6', 'direction': 'forward', 'ports': ['5269'], 'destination': [SERVER6 + '/128'],
     'comment': 'row 1 IPv6'},
    {'name': 'fwd-reject', 'direction': 'forward', 'ports': ['6000-6010', 7000], 'action': 'reject',
     'comment': 'reject, both families'},
    {'name': 'nat-edge', 'direction': 'forward', 'ports': [5269], 'destination': [ROUTER4_A], 'nat': 'dnat',
     'nat_to': SERVER4, 'comment': 'public address to the Edge'},
]


def sh(*argv, **kwargs):
    """Run a command, raise with its output on failure; return stdout."""
    check = kwargs.pop('check', True)
    stdin = kwargs.pop('input', None)
    proc = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, check=False, **kwargs)
    if check and proc.returncode != 0:
        raise RuntimeError('%s failed (%d): %s%s' % (' '.join(argv), proc.returncode, proc.stdout, proc.stderr))
    return proc.stdout


class Namespace(object):
    """One network namespace; ``run`` executes a command inside it."""

    def __init__(self, prefix):
        # Namespace names are short and unique, so that parallel runs never collide.
        self.name = '%s%s' % (prefix, uuid.uuid4().hex[:8])
        sh('ip', 'netns', 'add', self.name)
        self.run('ip', 'link', 'set', 'lo', 'up')
        self._processes = []
        self._interpreter = None
        self._interpreter_lock = threading.Lock()
        self._wrappers = []

    def run(self, *argv, **kwargs):
        return sh('ip', 'netns', 'exec', self.name, *argv, **kwargs)

    def sysctl(self, key, value):
        self.run('sysctl', '-q', '-w', '%s=%s' % (key, value))

    @property
    def interpreter(self):
        """A python3 that runs inside this namespace: the ansible_python_interpreter of this 'host'."""
        # Runs started together (at_once) ask at the same time: one wrapper only, or one would outlive delete().
        with self._interpreter_lock:
            return self._make_interpreter()

    def _make_interpreter(self):
        if self._interpreter is None:
            handle, path = tempfile.mkstemp(prefix='%s-python-' % self.name)
            with os.fdopen(handle, 'w') as script:
                script.write('#!/bin/sh\nexec ip netns exec %s /usr/bin/python3 "$@"\n' % self.name)
            os.chmod(path, 0o755)
            self._interpreter = path
        return self._interpreter

    def interpreter_with_path(self, directory):
        """A python3 in this namespace whose PATH starts with ``directory``: tools there shadow the real ones."""
        handle, path = tempfile.mkstemp(prefix='%s-python-path-' % self.name)
        with os.fdopen(handle, 'w') as script:
            script.write('#!/bin/sh\nPATH=%s:$PATH exec ip netns exec %s /usr/bin/python3 "$@"\n' % (directory, self.name))
        os.chmod(path, 0o755)
        self._wrappers.append(path)
        return path

    def listen(self, address, ports, seconds=120, answer=b''):
        """Accept TCP connections on ``ports`` for at most ``seconds`` (a bounded listener); with ``answer``, read
        what the client sends first and answer it (a server's greeting, for protocol probes)."""
        code = textwrap.dedent('''
            import selectors, socket, sys, time
            address, ports, deadline = sys.argv[1], sys.argv[2].split(','), time.time() + float(sys.argv[3])
            answer = bytes.fromhex(sys.argv[4])
            family = socket.AF_INET6 if ':' in address else socket.AF_INET
            selector = selectors.DefaultSelector()
            for port in ports:
                listener = socket.socket(family, socket.SOCK_STREAM)
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind((address, int(port)))
                listener.listen(16)
                selector.register(listener, selectors.EVENT_READ)
            print('ready', flush=True)
            while time.time() < deadline:
                for key, _ in selector.select(timeout=0.5):
                    connection, _ = key.fileobj.accept()
                    if answer:
                        connection.settimeout(2)
                        try:
                            connection.recv(4096)
                            connection.sendall(answer)
                        except OSError:
                            pass
                    connection.close()
        ''')
        proc = subprocess.Popen(['ip', 'netns', 'exec', self.name, sys.executable, '-c', code, address,
                                 ','.join(str(port) for port in ports), str(seconds), answer.hex()],
                                stdout=subprocess.PIPE, universal_newlines=True)
        if proc.stdout.readline().strip() != 'ready':
            proc.kill()
            raise RuntimeError('listener on %s %s did not start' % (address, ports))
        self._processes.append(proc)
        return proc

    def connects(self, address, port, timeout=1.0):
        """True when a TCP connection from this namespace to address:port completes within ``timeout``."""
        code = ('import socket,sys\n'
                's=socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)\n'
                's.settimeout(float(sys.argv[3]))\n'
                'try:\n s.connect((sys.argv[1], int(sys.argv[2]))); print("open")\n'
                'except OSError as e:\n print("closed", e)\n')
        return self.run(sys.executable, '-c', code, address, str(port), str(timeout)).startswith('open')

    def delete(self):
        for proc in self._processes:
            proc.kill()
            proc.wait()
        for wrapper in [self._interpreter] + self._wrappers:
            if wrapper and os.path.exists(wrapper):
                os.unlink(wrapper)
        sh('ip', 'netns', 'del', self.name, check=False)


def link(left, left_if, right, right_if):
    """A veth pair between two namespaces."""
    temporary = 'lxv%s' % uuid.uuid4().hex[:8]
    sh('ip', 'link', 'add', temporary, 'type', 'veth', 'peer', 'name', temporary + 'p')
    sh('ip', 'link', 'set', temporary, 'netns', left.name)
    sh('ip', 'link', 'set', temporary + 'p', 'netns', right.name)
    left.run('ip', 'link', 'set', temporary, 'name', left_if)
    right.run('ip', 'link', 'set', temporary + 'p', 'name', right_if)
    for namespace, interface in ((left, left_if), (right, right_if)):
        namespace.run('ip', 'link', 'set', interface, 'up')


def address(namespace, interface, *cidrs):
    for cidr in cidrs:
        extra = ['nodad'] if ':' in cidr else []
        namespace.run('ip', 'addr', 'add', cidr, 'dev', interface, *extra)


class Topology(object):
    """client - router - server; ``router`` is the firewall under test (forward rules),
    ``server`` doubles as a host firewall under test (in/out rules)."""

    def __init__(self, prefix='lxt'):
        self.namespaces = []
        try:
            self.client = self._add(prefix + 'c')
            self.router = self._add(prefix + 'r')
            self.server = self._add(prefix + 's')
            link(self.client, 'eth0', self.router, 'eth0')
            link(self.router, 'eth1', self.server, 'eth0')
            address(self.client, 'eth0', CLIENT4 + '/26', CLIENT6 + '/64')
            address(self.router, 'eth0', ROUTER4_A + '/26', ROUTER6_A + '/64')
            address(self.router, 'eth1', ROUTER4_B + '/26', ROUTER6_B + '/64')
            address(self.server, 'eth0', SERVER4 + '/26', SERVER6 + '/64')
            self.client.run('ip', 'route', 'add', 'default', 'via', ROUTER4_A)
            self.client.run('ip', '-6', 'route', 'add', 'default', 'via', ROUTER6_A)
            self.server.run('ip', 'route', 'add', 'default', 'via', ROUTER4_B)
            self.server.run('ip', '-6', 'route', 'add', 'default', 'via', ROUTER6_B)
            self.router.sysctl('net.ipv4.ip_forward', 1)
            self.router.sysctl('net.ipv6.conf.all.forwarding', 1)
            # Resolve IPv6 neighbours now, so that a first connection in a test is not slowed by it.
            self.client.run('ping', '-c1', '-W2', ROUTER6_A, check=False)
            self.server.run('ping', '-c1', '-W2', ROUTER6_B, check=False)
        except Exception:
            self.delete()
            raise

    def _add(self, prefix):
        namespace = Namespace(prefix)
        self.namespaces.append(namespace)
        return namespace

    def delete(self):
        for namespace in self.namespaces:
            namespace.delete()


def run_module(namespace, args, check=False, diff=False, module='lync.xmpp_federation.firewall_ruleset',
               interpreter=None):
    """Run the module inside ``namespace`` through ansible itself (AnsiballZ, module_utils and all).

    Returns the module's result dict (``failed`` and ``msg`` on failure).  ``interpreter``: another wrapper
    than the namespace's own (see Namespace.interpreter_with_path).
    """
    interpreter = interpreter or namespace.interpreter
    env = dict(os.environ)
    env.update({
        'ANSIBLE_COLLECTIONS_PATH': COLLECTIONS,
        'ANSIBLE_HOST_KEY_CHECKING': '0',
        'ANSIBLE_LOCALHOST_WARNING': '0',
        'ANSIBLE_INVENTORY_UNPARSED_WARNING': '0',
        'ANSIBLE_PYTHON_INTERPRETER': interpreter,
    })
    tree = tempfile.mkdtemp(prefix='lync-xmpp-result-')
    # The tree callback (-t) writes each host's result as JSON: no output scraping.
    # The interpreter goes in as an extra var too: for the implicit localhost, ansible sets
    # ansible_python_interpreter to its own python, which outranks ANSIBLE_PYTHON_INTERPRETER and would
    # run the module in the machine's own network namespace.
    argv = [os.path.join(VENV_BIN, 'ansible'), 'localhost', '-c', 'local', '-m', module, '-a', json.dumps(args),
            '-e', json.dumps({'ansible_python_interpreter': interpreter}), '-t', tree]
    if check:
        argv.append('--check')
    if diff:
        argv.append('--diff')
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, env=env,
                          check=False)
    try:
        with open(os.path.join(tree, 'localhost')) as result:
            outcome = json.load(result)
        # What ansible printed (warnings among it: the result tree leaves them out).
        outcome['_output'] = proc.stdout + proc.stderr
        return outcome
    except (IOError, OSError, ValueError):
        raise RuntimeError('ansible gave no result (%d): %s %s' % (proc.returncode, proc.stdout, proc.stderr))
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def ruleset_module(namespace, default_backend, rules=None, **args):
    """firewall_ruleset in ``namespace``, persist off unless asked; ``_check=True``: check mode."""
    args.setdefault('backend', default_backend)
    args.setdefault('persist', False)
    if rules is not None:
        args['rules'] = rules
    check = args.pop('_check', False)
    interpreter = args.pop('_interpreter', None)
    return run_module(namespace, args, check=check, interpreter=interpreter)


def failed(result):
    """A module failure (the result tree keeps fail_json's msg, not always its 'failed' flag)."""
    return bool(result.get('failed') or ('msg' in result and 'script' not in result))


def ok(result):
    """The result of a module run that must have succeeded."""
    assert not failed(result), result.get('msg', result)
    return result


# The end of a fault-injection driver (python code run by run_driver): apply the backend's ``poisoned``
# script and print the error it raised, as JSON.
APPLY_POISONED = '''
try:
    backend.apply(poisoned)
except BackendError as error:
    print(json.dumps({'error': str(error)}))
else:
    print(json.dumps({'error': None}))
'''


# The start of a fault-injection driver on iptables: reads the live ruleset with the backend of variant argv[1]
# and plans the rules in argv[3] (JSON); ``backend`` and ``transaction`` are then defined.
IPTABLES_DRIVER_HEAD = r'''
import json, shutil, subprocess, sys
from ansible_collections.lync.xmpp_federation.plugins.module_utils.backend import BackendError, Transaction
from ansible_collections.lync.xmpp_federation.plugins.module_utils.iptables import IptablesBackend
from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import normalize_rules

def run_command(argv, data=None, binary_data=False):
    proc = subprocess.run(argv, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    return proc.returncode, proc.stdout, proc.stderr

variant, lock, rules = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
backend = IptablesBackend(run_command, shutil.which, {}, variant)
backend.lock_path = lock
backend.read()
transaction = backend.plan(normalize_rules(rules))
'''


def run_driver(namespace, code, *args):
    """Run python ``code`` inside ``namespace`` with the collection importable; -> the JSON it prints."""
    env = dict(os.environ, PYTHONPATH=COLLECTIONS)
    proc = subprocess.run(['ip', 'netns', 'exec', namespace.name, sys.executable, '-c', code] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, env=env,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def at_once(count, call, seconds=120):
    """Run ``call`` in ``count`` threads started together; -> their results (each thread waited for at most ``seconds``)."""
    results = []
    threads = [threading.Thread(target=lambda: results.append(call())) for _index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds)
    assert len(results) == count, 'a run did not finish within %d seconds' % seconds
    return results


def wait_until(predicate, seconds=5.0, step=0.1):
    """Poll ``predicate`` for a bounded time; return its last value."""
    deadline = time.time() + seconds
    value = predicate()
    while not value and time.time() < deadline:
        time.sleep(step)
        value = predicate()
    return value
