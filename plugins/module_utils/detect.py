# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Which firewall a host really uses, and the backend that writes to it.

``backend: auto`` looks at the kernel, not at which packages are installed:

1. A host run by ufw gets the ufw backend (our chains hung from ufw's
   before-chains, persisted in its before.rules), a host run by firewalld the
   firewalld backend (policies of ours, through firewalld itself): rules
   written beside either would be undone at its next reload.
2. nftables tables of the admin's own with base chains -> nftables.
3. Tables that iptables-nft made (ip/ip6 filter, nat... with INPUT, FORWARD...)
   -> iptables, nft variant.
4. iptables-legacy tables in the kernel -> iptables, legacy variant.
5. Nothing at all (or only our own table) -> nftables where ``nft`` exists,
   else the variant of the ``iptables`` command.

The nftables ruleset read here is handed to the nftables backend, so that a
run reads the live state once; the lock it runs under is taken first, so no
other run changes the ruleset between the read and the write.  The iptables
backends read their own format (``*-save``) once; for them this listing only
decided which variant, and whether firewalld or ufw run the host.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
from collections import OrderedDict

from ansible_collections.lync.xmpp_federation.plugins.module_utils.backend import (
    HOST_LOCK_PATH,
    BackendError,
    hold_host_lock,
)
from ansible_collections.lync.xmpp_federation.plugins.module_utils.firewalld import FirewalldBackend
from ansible_collections.lync.xmpp_federation.plugins.module_utils.ufw import UfwBackend
from ansible_collections.lync.xmpp_federation.plugins.module_utils.iptables import IptablesBackend
from ansible_collections.lync.xmpp_federation.plugins.module_utils.nftables import (
    OUR_TABLE,
    NftablesBackend,
    Ruleset,
)

# The one registry of backends: the module's choices (with 'auto'), detection and the docs' list all come from it.
BACKENDS = OrderedDict([
    ('nftables', NftablesBackend),
    ('iptables', IptablesBackend),
    ('firewalld', FirewalldBackend),
    ('ufw', UfwBackend),
])
BACKEND_CHOICES = ('auto',) + tuple(BACKENDS)

IPTABLES_TABLES = ('filter', 'nat', 'mangle', 'raw', 'security')
IPTABLES_BUILTIN_CHAINS = ('INPUT', 'FORWARD', 'OUTPUT', 'PREROUTING', 'POSTROUTING')
PATHS = {
    'legacy_tables': ('/proc/net/ip_tables_names', '/proc/net/ip6_tables_names'),
    'ufw_config': '/etc/ufw/ufw.conf',
    'proc': '/proc',
}


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return ''


def iptables_nft_tables(ruleset):
    """The tables of ``ruleset`` that iptables-nft made: its table names, holding its built-in chain names."""
    tables = set()
    for (family, table, chain), properties in ruleset.chains.items():
        if family in ('ip', 'ip6') and table in IPTABLES_TABLES and chain in IPTABLES_BUILTIN_CHAINS and properties:
            tables.add((family, table))
    return tables


def native_tables(ruleset):
    """Tables of the admin's own (not iptables-nft's, not ours) that hold a base chain."""
    made_by_iptables = iptables_nft_tables(ruleset)
    candidates = set((family, table) for (family, table, _chain), properties in ruleset.chains.items()
                     if properties and family in ('inet', 'ip', 'ip6'))
    return candidates - made_by_iptables - set([OUR_TABLE])


def legacy_tables_present(paths):
    """True when the kernel holds iptables-legacy tables in this network namespace."""
    return any(_read(path).strip() for path in paths['legacy_tables'])


def network_namespace(proc, pid):
    """The network namespace of process ``pid`` ('net:[4026531840]'), or None when it cannot be read."""
    try:
        return os.readlink(os.path.join(proc, pid, 'ns', 'net'))
    except OSError:
        return None


def firewalld_running(paths):
    """True when a firewalld process runs in this network namespace (its tables may be in another backend than
    ours).  A firewalld in another namespace, a container's, manages that namespace's firewall, not this one."""
    proc = paths['proc']
    ours = network_namespace(proc, 'self')
    try:
        entries = os.listdir(proc)
    except OSError:
        return False
    for entry in entries:
        if not entry.isdigit():
            continue
        command = _read(os.path.join(proc, entry, 'cmdline')).split('\0')
        if any(os.path.basename(word) == 'firewalld' for word in command[:2]):
            if ours is None or network_namespace(proc, entry) == ours:
                return True
    return False


def ufw_enabled(paths):
    for line in _read(paths['ufw_config']).splitlines():
        key, _sep, value = line.partition('=')
        if key.strip() == 'ENABLED' and value.strip().strip('"\'').lower() == 'yes':
            return True
    return False


def firewalld_manages(ruleset, paths):
    """Why firewalld runs the host's firewall ('table firewalld in the ruleset', 'firewalld is running'), or None."""
    tables = set(table for _family, table in (ruleset.tables if ruleset else []))
    if 'firewalld' in tables:
        return 'table firewalld in the ruleset'
    if firewalld_running(paths):
        return 'firewalld is running'
    return None


def ufw_manages(ruleset, paths):
    """Why ufw runs the host's firewall ('ufw chains in the ruleset', 'ENABLED=yes in ...'), or None."""
    if ruleset and any(chain.startswith(('ufw-', 'ufw6-')) for _f, _t, chain in ruleset.chains):
        return 'ufw chains in the ruleset'
    if ufw_enabled(paths):
        return 'ENABLED=yes in %s' % paths['ufw_config']
    return None


def iptables_variant(run_command, get_bin_path, ruleset, paths):
    """'nft' or 'legacy': the variant whose tables are in the kernel, else the iptables command's own."""
    if ruleset is not None and iptables_nft_tables(ruleset):
        return 'nft'
    if legacy_tables_present(paths):
        return 'legacy'
    binary = get_bin_path('iptables')
    if binary:
        rc, out, err = run_command([binary, '-V'])
        if rc == 0 and '(legacy)' in out + err:
            return 'legacy'
    return 'nft'


def select_backend(run_command, get_bin_path, options, paths=None):
    """The backend for this host, per ``options['backend']`` (see BACKEND_CHOICES).

    The host lock is taken before the first read and handed to the backend, which keeps it to the end of the run.
    """
    paths = paths or PATHS
    choice = options.get('backend') or 'auto'
    if choice not in BACKEND_CHOICES:
        raise BackendError('backend: %r is not one of %s' % (choice, ', '.join(BACKEND_CHOICES)))
    nft = get_bin_path('nft')
    lock = hold_host_lock(HOST_LOCK_PATH) if HOST_LOCK_PATH else None
    try:
        return _detected_backend(run_command, get_bin_path, options, paths, choice, nft, lock)
    except Exception:
        # No backend will hold the lock: let the next run in now, not when a long-lived caller drops the error.
        if lock is not None:
            lock.close()
        raise


def _detected_backend(run_command, get_bin_path, options, paths, choice, nft, lock):
    ruleset, ruleset_text = None, None
    if nft:
        rc, ruleset_text, err = run_command([nft, '-j', 'list', 'ruleset'])
        if rc == 0:
            ruleset = Ruleset.from_text(ruleset_text)
        elif choice == 'iptables':
            # Only detection would have used it (which variant, whether ufw or firewalld run the host); the
            # iptables backend reads its own format, and fails itself if it cannot.
            ruleset_text = None
        else:
            raise BackendError('nft -j list ruleset failed (%d): %s; cannot tell what runs this host\'s firewall, '
                               'nothing was changed' % (rc, (err or ruleset_text).strip() or 'no message'))
    elif choice == 'nftables':
        raise BackendError('nftables: the nft command was not found on this host (install the nftables package)')
    ufw = ufw_manages(ruleset, paths)
    if ufw:
        if choice not in ('auto', 'ufw'):
            raise BackendError('this host\'s firewall is managed by ufw (%s): rules written to %s beside ufw would '
                               'lose their place at its next reload; use backend ufw (or auto)' % (ufw, choice))
        variant = iptables_variant(run_command, get_bin_path, ruleset, paths)
        return BACKENDS['ufw'](run_command, get_bin_path, options, variant, lock=lock)
    if choice == 'ufw':
        raise BackendError('ufw: ufw does not run this host\'s firewall (no ufw chains, ENABLED=no); use backend '
                           'auto to write to what the host uses')
    firewalld = firewalld_manages(ruleset, paths)
    if firewalld:
        if choice not in ('auto', 'firewalld'):
            raise BackendError('this host\'s firewall is managed by firewalld (%s): rules written to %s beside '
                               'firewalld would be lost at its next reload; use backend firewalld (or auto)'
                               % (firewalld, choice))
        return BACKENDS['firewalld'](run_command, get_bin_path, options, lock=lock)
    if choice == 'firewalld':
        raise BackendError('firewalld: firewalld does not run this host\'s firewall (no firewalld process in this '
                           'network namespace, no firewalld table); use backend auto to write to what the host uses')

    if choice == 'auto':
        if ruleset is not None and native_tables(ruleset):
            choice = 'nftables'
        elif ruleset is not None and iptables_nft_tables(ruleset):
            choice = 'iptables'
        elif legacy_tables_present(paths):
            choice = 'iptables'
        elif ruleset is not None:
            choice = 'nftables'
        elif get_bin_path('iptables') or get_bin_path('iptables-legacy') or get_bin_path('iptables-nft'):
            choice = 'iptables'
        else:
            raise BackendError('no firewall tooling found on this host: neither nft nor iptables')
    if choice == 'nftables':
        return BACKENDS['nftables'](run_command, get_bin_path, options, ruleset_text=ruleset_text, lock=lock)
    return BACKENDS['iptables'](run_command, get_bin_path, options,
                                iptables_variant(run_command, get_bin_path, ruleset, paths), lock=lock)
