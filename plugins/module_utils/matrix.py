# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Port matrix + inventory -> one host's rules (the logic behind the ``host_rules`` filter).

A matrix row names its two ends with a small vocabulary of endpoints:

    any            every address (the table's "Any")
    edge_external  the Access Edge service interface(s): ``lync_edge_external_ip``
    edge_internal  the Edge internal interface(s): ``lync_edge_internal_ip``
    front_end      the Front End pool: ``lync_internal_ip`` (default ``ansible_host``)
    partners       ``xmpp_firewall_partner_networks`` (any while that list is empty)
    [networks]     a literal list of addresses/networks

A row whose one end is ``any`` may say ``any_narrowed_to: partners`` or
``any_narrowed_to: front_end``; the narrowing takes effect when partner
networks are given, or when ``restrict_internal_sources`` is on.

Which host gets which rule follows the topology of design.md: the Edge gets
host rules for the rows that touch its interfaces; the Front End, for the rows
between the internal side and the Edge internal interface; the external
firewall forwards every row that touches ``edge_external`` (and translates to
and from ``lync_edge_public_ip``), the internal firewall every row that touches
``edge_internal``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import re
from collections.abc import Mapping

from ansible.module_utils.parsing.convert_bool import BOOLEANS_FALSE, BOOLEANS_TRUE

from ansible_collections.lync.xmpp_federation.plugins.module_utils.rule_model import (
    ACTIONS,
    COMMENT_FORBIDDEN,
    COMMENT_RULES,
    NAME_PATTERN,
    NFTABLES_COMMENT_MAX_BYTES,
    PROTOCOLS,
    RuleError,
    as_list,
    family_of,
    kernel_comment,
    normalize_host_address,
    normalize_networks,
    normalize_ports,
    normalize_rule,
    rule_sort_key,
    sort_networks,
)

GROUP_EDGE = 'lync_edge'
GROUP_FRONT_END = 'lync_front_end'
GROUP_EXTERNAL_FIREWALL = 'lync_external_firewall'
GROUP_INTERNAL_FIREWALL = 'lync_internal_firewall'

VAR_EDGE_EXTERNAL = 'lync_edge_external_ip'
VAR_EDGE_INTERNAL = 'lync_edge_internal_ip'
VAR_EDGE_PUBLIC = 'lync_edge_public_ip'
VAR_FRONT_END = 'lync_internal_ip'
VAR_PARTNERS = 'xmpp_firewall_partner_networks'
VAR_RESTRICT = 'xmpp_firewall_restrict_internal_sources'
MATRIX_VARIABLE = 'xmpp_firewall_matrix'
EXTRA_ROWS_VARIABLE = 'xmpp_firewall_extra_rows'

ANY = 'any'
EDGE_EXTERNAL = 'edge_external'
EDGE_INTERNAL = 'edge_internal'
FRONT_END = 'front_end'
PARTNERS = 'partners'
ENDPOINTS = (ANY, EDGE_EXTERNAL, EDGE_INTERNAL, FRONT_END, PARTNERS)
NARROWINGS = (PARTNERS, FRONT_END)

ROW_FIELDS = ('id', 'application', 'transport', 'ports', 'source', 'destination', 'action',
              'any_narrowed_to', 'comment', 'reference')
ROW_REQUIRED = ('id', 'transport', 'ports', 'source', 'destination')
ROW_ID_MAX = 40
# Rule names are at most 64 characters (rule_model.NAME_PATTERN); '-ipv4'/'-ipv6' takes 5 of them.
FAMILY_SUFFIX_LENGTH = 5
RULE_NAME_MAX = 64
HOST_DIGEST_LENGTH = 8


def _row_where(index, row, variable):
    """Where a row is: its variable, and its id or, without a usable id, its index in that variable's list."""
    row_id = row.get('id') if isinstance(row, dict) else None
    label = 'row %r' % row_id if isinstance(row_id, str) else 'row %d' % index
    return "variable '%s': %s" % (variable, label)


def _rule_where(host, row):
    return "host '%s': variable '%s': row '%s'" % (host, row['variable'], row['id'])


def _required(mapping, field):
    """', not <value>' for a field given but empty, '' for one not given: the message shows what was written."""
    value = mapping.get(field)
    return '' if value is None else ', not %r' % (value,)


def _endpoint(row, field, where):
    value = row[field]
    if isinstance(value, str):
        if value not in ENDPOINTS:
            raise RuleError("%s: field '%s': unknown endpoint %r (known: %s, or a list of networks)"
                            % (where, field, value, ', '.join(ENDPOINTS)))
        return value
    if isinstance(value, (list, tuple)) and value:
        return normalize_networks(value, "%s: field '%s'" % (where, field))
    raise RuleError("%s: field '%s': %r is not an endpoint (known: %s, or a list of networks)"
                    % (where, field, value, ', '.join(ENDPOINTS)))


def normalize_row(row, index, host_where, variable=MATRIX_VARIABLE):
    """One matrix row, validated: a dict with every field of ROW_FIELDS, and the variable it came from."""
    where = '%s: %s' % (host_where, _row_where(index, row, variable))
    if not isinstance(row, dict):
        raise RuleError('%s: %r is not a row (a dict is expected)' % (where, row))
    unknown = sorted(str(key) for key in row if key not in ROW_FIELDS)
    if unknown:
        raise RuleError('%s: unknown field %s (known: %s)'
                        % (where, ', '.join("'%s'" % key for key in unknown), ', '.join(ROW_FIELDS)))
    for field in ROW_REQUIRED:
        if row.get(field) in (None, '', []):
            raise RuleError("%s: field '%s' is required%s" % (where, field, _required(row, field)))
    if not isinstance(row['id'], str) or not NAME_PATTERN.match(row['id']) or len(row['id']) > ROW_ID_MAX:
        raise RuleError("%s: field 'id': %r must be 1-%d letters, digits, '.', '_' or '-', starting with a letter "
                        "or digit" % (where, row['id'], ROW_ID_MAX))
    transport = row['transport']
    if not isinstance(transport, str) or transport.lower() not in PROTOCOLS:
        raise RuleError("%s: field 'transport': unknown transport %r (known: %s)"
                        % (where, transport, ', '.join(PROTOCOLS)))
    action = row.get('action') or 'accept'
    if not isinstance(action, str) or action.lower() not in ACTIONS:
        raise RuleError("%s: field 'action': %r is not one of %s" % (where, action, ', '.join(ACTIONS)))
    narrowed = row.get('any_narrowed_to')
    if narrowed not in (None, '') and narrowed not in NARROWINGS:
        raise RuleError("%s: field 'any_narrowed_to': %r is not one of %s" % (where, narrowed, ', '.join(NARROWINGS)))
    comment = row.get('comment') or ''
    # Checked here, not only in the rule model, so that the error names the row.
    if not isinstance(comment, str) or COMMENT_FORBIDDEN.search(comment):
        raise RuleError("%s: field 'comment': %r %s" % (where, comment, COMMENT_RULES))
    application = row.get('application')
    if application is not None and not isinstance(application, str):
        raise RuleError("%s: field 'application': %r is not a text (such as XMPP or XMPP/MTLS)" % (where, application))
    source = _endpoint(row, 'source', where)
    destination = _endpoint(row, 'destination', where)
    edge_ends = set(end for end in (source, destination) if end in (EDGE_EXTERNAL, EDGE_INTERNAL))
    if not edge_ends:
        raise RuleError("%s: fields 'source' and 'destination': one end of the row must be edge_external or "
                        "edge_internal, not %r and %r" % (where, source, destination))
    return {
        'variable': variable,
        'id': row['id'],
        'application': (application or '').strip() or None,
        'transport': transport.lower(),
        'ports': normalize_ports(row['ports'], "%s: field 'ports'" % where),
        'source': source,
        'destination': destination,
        'action': action.lower(),
        'any_narrowed_to': narrowed or None,
        'comment': comment.strip(),
        'side': 'external' if EDGE_EXTERNAL in edge_ends else 'internal',
        'both_edge_ends': len(edge_ends) == 2 or source == destination,
    }


def _bare(host_network):
    """'198.51.100.7/32' -> '198.51.100.7'."""
    return host_network.split('/')[0]


def _host_tag(text, room):
    """A host name as part of a rule name: stable, at most ``room`` characters.

    Characters a rule name cannot hold become '_'; a name that then no longer
    fits, or was changed (so two hosts could meet on one tag), is cut and given
    a short digest of the real name, which keeps it unique and stable.
    """
    text = str(text)
    tag = re.sub(r'[^A-Za-z0-9_.-]', '_', text)
    if tag == text and len(tag) <= room:
        return tag
    digest = hashlib.sha256(text.encode('utf-8')).hexdigest()[:HOST_DIGEST_LENGTH]
    return '%s-%s' % (tag[:max(room - len(digest) - 1, 0)], digest) if room > len(digest) else digest[:room]


def _boolean(value, where):
    """Booleans as inventories write them: true/false, yes/no, on/off, 1/0 (an INI inventory gives strings)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (str, int)):
        normalized = value.strip().lower() if isinstance(value, str) else value
        if normalized in BOOLEANS_TRUE:
            return True
        if normalized in BOOLEANS_FALSE:
            return False
    raise RuleError('%s: %r is not a boolean' % (where, value))


class _Inventory(object):
    """The slice of the inventory one translation needs, read lazily and once."""

    def __init__(self, host, hostvars, groups, partner_networks, restrict_internal_sources):
        self.host = host
        self.hostvars = hostvars
        self.groups = groups or {}
        self._cache = {}
        # Read only when an argument is not given: the flow model passes both and has no host of its own.
        if partner_networks is None:
            partner_networks = self.vars(host).get(VAR_PARTNERS) or []
        self.partner_where = "host '%s': variable '%s'" % (host, VAR_PARTNERS)
        self.partners = normalize_networks(partner_networks, self.partner_where)
        if restrict_internal_sources is None:
            restrict_internal_sources = self.vars(host).get(VAR_RESTRICT, False)
        self.restrict_internal_sources = _boolean(restrict_internal_sources,
                                                  "host '%s': variable '%s'" % (host, VAR_RESTRICT))

    def vars(self, host):
        try:
            return self.hostvars[host]
        except KeyError:
            return {}

    def group(self, name):
        return list(self.groups.get(name) or [])

    def _addresses(self, host, variable, required, fallback=None):
        key = (host, variable)
        if key not in self._cache:
            host_vars = self.vars(host)
            value = host_vars.get(variable)
            used = variable
            if value in (None, '', []) and fallback:
                value, used = host_vars.get(fallback), '%s (from %s)' % (variable, fallback)
            if value in (None, '', []):
                if required:
                    given = _required(host_vars, variable)
                    raise RuleError("host '%s': variable '%s' is required%s" % (host, variable, given or ' and not set'))
                self._cache[key] = []
            else:
                where = "host '%s': variable '%s'" % (host, used)
                items = as_list(value)
                self._cache[key] = sort_networks(
                    normalize_host_address(item, where if len(items) == 1 else '%s[%d]' % (where, index))
                    for index, item in enumerate(items))
        return self._cache[key]

    def edges(self):
        """The Edge pool; every Edge must carry valid interface variables, whichever this host needs."""
        if 'edges' not in self._cache:
            edges = self.group(GROUP_EDGE)
            published = {}
            for edge in edges:
                self._addresses(edge, VAR_EDGE_EXTERNAL, required=True)
                self._addresses(edge, VAR_EDGE_INTERNAL, required=True)
                for public, _private in self.edge_public(edge):
                    # A one-to-one translation cannot share a public address: the second
                    # Edge's DNAT would never match. A shared VIP is a load balancer's job.
                    if public in published:
                        raise RuleError("host '%s': variable '%s': %s is also the public address of '%s'; each Edge "
                                        "behind NAT needs a public address of its own"
                                        % (edge, VAR_EDGE_PUBLIC, _bare(public), published[public]))
                    published[public] = edge
            self._cache['edges'] = edges
        return self._cache['edges']

    def edge_addresses(self, edge, endpoint):
        variable = VAR_EDGE_EXTERNAL if endpoint == EDGE_EXTERNAL else VAR_EDGE_INTERNAL
        return self._addresses(edge, variable, required=True)

    def edge_public(self, edge):
        """[(public, private), ...]: each public address with the external address it translates to (both /32, /128).

        A translation is one-to-one: per address family, one public address
        and exactly one external address of the same family.
        """
        key = (edge, 'translations')
        if key not in self._cache:
            public = self._addresses(edge, VAR_EDGE_PUBLIC, required=False)
            external = self._addresses(edge, VAR_EDGE_EXTERNAL, required=True)
            pairs = []
            for family in (4, 6):
                family_public = [address for address in public if family_of(address) == family]
                if not family_public:
                    continue
                if len(family_public) > 1:
                    raise RuleError("host '%s': variable '%s': %s are %d IPv%d addresses; an Edge is published "
                                    "through one public address per address family"
                                    % (edge, VAR_EDGE_PUBLIC, [_bare(address) for address in family_public],
                                       len(family_public), family))
                same_family = [address for address in external if family_of(address) == family]
                if len(same_family) != 1:
                    raise RuleError("host '%s': variable '%s': %s needs exactly one IPv%d address in '%s' to "
                                    "translate to, found %s"
                                    % (edge, VAR_EDGE_PUBLIC, _bare(family_public[0]), family, VAR_EDGE_EXTERNAL,
                                       [_bare(address) for address in external if address] or 'none'))
                if family_public[0] == same_family[0]:
                    raise RuleError("host '%s': variable '%s': %s is the Edge's own '%s' address; an Edge that is "
                                    "not behind NAT needs no '%s'"
                                    % (edge, VAR_EDGE_PUBLIC, _bare(family_public[0]), VAR_EDGE_EXTERNAL,
                                       VAR_EDGE_PUBLIC))
                pairs.append((family_public[0], same_family[0]))
            self._cache[key] = pairs
        return self._cache[key]

    def front_end_addresses(self, host):
        return self._addresses(host, VAR_FRONT_END, required=True, fallback='ansible_host')


class _Translation(object):
    def __init__(self, inventory, rows):
        self.inv = inventory
        self.rows = rows
        self.rules = []
        self._row_of_name = {}

    # -- resolving endpoints -------------------------------------------------
    def _narrowed_any(self, row):
        """[] for any, or the narrowing's networks when it is in effect."""
        if row['any_narrowed_to'] == PARTNERS:
            return list(self.inv.partners)
        if row['any_narrowed_to'] == FRONT_END and self.inv.restrict_internal_sources:
            front_ends = self.inv.group(GROUP_FRONT_END)
            if not front_ends:
                raise RuleError("host '%s': variable '%s': true, but group '%s' is empty"
                                % (self.inv.host, VAR_RESTRICT, GROUP_FRONT_END))
            return sort_networks(address for host in front_ends for address in self.inv.front_end_addresses(host))
        return []

    def resolve(self, row, field):
        """The addresses of a row's end ('source' or 'destination') across the inventory ([] = any)."""
        endpoint = row[field]
        if endpoint == ANY:
            return self._narrowed_any(row)
        if endpoint == PARTNERS:
            return list(self.inv.partners)
        if endpoint in (EDGE_EXTERNAL, EDGE_INTERNAL):
            return sort_networks(address for edge in self.inv.edges()
                                 for address in self.inv.edge_addresses(edge, endpoint))
        if endpoint == FRONT_END:
            front_ends = self.inv.group(GROUP_FRONT_END)
            if not front_ends:
                # An empty end would silently drop the row; "any" is not what the row says either.
                raise RuleError("%s: field '%s': '%s', but group '%s' is empty"
                                % (_rule_where(self.inv.host, row), field, FRONT_END, GROUP_FRONT_END))
            return sort_networks(address for host in front_ends for address in self.inv.front_end_addresses(host))
        return list(endpoint)

    @staticmethod
    def _is_any(row, endpoint, resolved):
        return not resolved and endpoint in (ANY, PARTNERS)

    # -- emitting ------------------------------------------------------------
    def emit(self, name, row, direction, source, destination, source_any, destination_any, nat=None, nat_to=None):
        """Add the rule, split by address family so that no rule mixes IPv4 and IPv6.

        An end that is "any" matches both families; an end narrowed to
        addresses of one family only leaves no rule for the other family.
        """
        if source_any and destination_any and nat_to is None:
            variants = [(None, [], [])]
        else:
            variants = []
            for family in (4, 6):
                if nat_to is not None and family_of(nat_to) != family:
                    continue
                family_source = [] if source_any else [net for net in source if family_of(net) == family]
                family_destination = [] if destination_any else [net for net in destination
                                                                 if family_of(net) == family]
                if (not source_any and not family_source) or (not destination_any and not family_destination):
                    continue
                variants.append((family, family_source, family_destination))
        for family, family_source, family_destination in variants:
            rule = {
                'name': name + ('-ipv%s' % family if family else ''),
                'direction': direction,
                'protocol': row['transport'],
                'ports': row['ports'],
                'source': family_source,
                'destination': family_destination,
                'action': row['action'],
                'comment': row['comment'],
            }
            if nat:
                rule['nat'], rule['nat_to'] = nat, nat_to
            self._add(row, rule)

    def _add(self, row, rule):
        """Check the rule where its row is known, so that an error names the row, not a list index."""
        where = _rule_where(self.inv.host, row)
        rule = normalize_rule(rule, where)
        earlier = self._row_of_name.get(rule['name'])
        if earlier is not None:
            elsewhere = '' if earlier['variable'] == row['variable'] else " of variable '%s'" % earlier['variable']
            raise RuleError("%s: field 'id': its rule '%s' has the name of a rule of row '%s'%s; rename one of the "
                            "rows" % (where, rule['name'], earlier['id'], elsewhere))
        self._row_of_name[rule['name']] = row
        self.rules.append(rule)

    def _endpoint_pair(self, row):
        source = self.resolve(row, 'source')
        destination = self.resolve(row, 'destination')
        return (source, destination, self._is_any(row, row['source'], source),
                self._is_any(row, row['destination'], destination))

    def edge_host(self):
        host = self.inv.host
        for row in self.rows:
            source, destination, source_any, destination_any = self._endpoint_pair(row)
            for direction, own_end in (('in', 'destination'), ('out', 'source')):
                endpoint = row[own_end]
                if endpoint not in (EDGE_EXTERNAL, EDGE_INTERNAL):
                    continue
                own = self.inv.edge_addresses(host, endpoint)
                name = row['id'] + ('-' + direction if row['both_edge_ends'] else '')
                if direction == 'in':
                    self.emit(name, row, 'in', source, own, source_any, False)
                else:
                    self.emit(name, row, 'out', own, destination, False, destination_any)

    def front_end_host(self):
        for row in self.rows:
            if row['side'] != 'internal':
                continue
            source, destination, source_any, destination_any = self._endpoint_pair(row)
            # The Front End sits on the internal side: it is the "any" (or the
            # front_end) end of an internal row, whose other end is the Edge.
            if row['source'] in (ANY, FRONT_END) and row['destination'] == EDGE_INTERNAL:
                self.emit(row['id'], row, 'out', [], destination, True, False)
            if row['destination'] in (ANY, FRONT_END) and row['source'] == EDGE_INTERNAL:
                self.emit(row['id'], row, 'in', source, [], False, True)

    def firewall_host(self, side):
        for row in self.rows:
            if row['side'] != side:
                continue
            source, destination, source_any, destination_any = self._endpoint_pair(row)
            self.emit(row['id'], row, 'forward', source, destination, source_any, destination_any)
            if side == 'external':
                self.translations(row, source, destination, source_any, destination_any)

    @staticmethod
    def host_tag_room(row, prefix):
        """How long a host name may be in a rule name that starts with ``prefix``.

        The name must fit in a rule name, and with our mark and the row's comment in the kernel comment, which the
        strictest kernel (nftables) keeps in NFTABLES_COMMENT_MAX_BYTES bytes. Never less than a digest, which keeps
        names unique: a comment too long even then is refused where the rule is checked, naming the row.
        """
        used = len(kernel_comment({'name': '', 'comment': row['comment']}).encode('utf-8'))
        room = min(RULE_NAME_MAX, NFTABLES_COMMENT_MAX_BYTES - used) - FAMILY_SUFFIX_LENGTH - len(prefix)
        return max(room, HOST_DIGEST_LENGTH)

    def translations(self, row, source, destination, source_any, destination_any):
        """An Edge behind NAT: its public address in, its external address out."""
        for edge in self.inv.edges():
            for public, private in self.inv.edge_public(edge):
                for kind in ('dnat', 'snat'):
                    if row['destination' if kind == 'dnat' else 'source'] != EDGE_EXTERNAL:
                        continue
                    prefix = '%s-%s-' % (row['id'], kind)
                    name = prefix + _host_tag(edge, self.host_tag_room(row, prefix))
                    if kind == 'dnat':
                        self.emit(name, row, 'forward', source, [public], source_any, False,
                                  nat='dnat', nat_to=_bare(private))
                    else:
                        self.emit(name, row, 'forward', [private], destination, False, destination_any,
                                  nat='snat', nat_to=_bare(public))


def matrix_rows(matrix, extra_rows, where):
    """The rows of ``matrix`` and ``extra_rows``, each validated (normalize_row), with ids unique across both.

    ``extra_rows`` (the role's xmpp_firewall_extra_rows) are validated under their own variable's name, so that an
    error in one of them names that variable and the row's index in it. ``where`` starts every message.
    """
    row_lists = ((MATRIX_VARIABLE, matrix), (EXTRA_ROWS_VARIABLE, [] if extra_rows is None else extra_rows))
    for variable, rows in row_lists:
        if not isinstance(rows, (list, tuple)):
            raise RuleError("%s: variable '%s': %r is not a list of rows" % (where, variable, rows))
    rows = [normalize_row(row, index, where, variable)
            for variable, variable_rows in row_lists for index, row in enumerate(variable_rows)]
    first_row_of_id = {}
    for row in rows:
        earlier = first_row_of_id.setdefault(row['id'], row)
        if earlier is row:
            continue
        owner = 'an earlier row' if earlier['variable'] == row['variable'] else "a row of '%s'" % earlier['variable']
        raise RuleError("%s: variable '%s': row '%s': field 'id': '%s' is already the id of %s; give each row an id "
                        "of its own" % (where, row['variable'], row['id'], row['id'], owner))
    return rows


def check_magic_variables(where, hostvars, groups, usage):
    """The magic variables, passed in the wrong order or not at all, would otherwise fail deep inside."""
    for argument, value in (('hostvars', hostvars), ('groups', groups)):
        if value is not None and not isinstance(value, Mapping):
            raise RuleError("%s: argument '%s': a %s is not a mapping; pass the magic variable '%s' (%s)"
                            % (where, argument, type(value).__name__, argument, usage))


def host_roles(host, groups):
    """The groups of ours that ``host`` is in, in a fixed order; raises RuleError on a conflicting membership."""
    host_where = "host '%s'" % host
    roles = [group for group in (GROUP_EDGE, GROUP_FRONT_END, GROUP_EXTERNAL_FIREWALL, GROUP_INTERNAL_FIREWALL)
             if host in (groups.get(group) or ())]
    if GROUP_EDGE in roles and len(roles) > 1:
        raise RuleError("%s: is in group '%s' and in %s; an Edge server cannot also be a Front End or a firewall"
                        % (host_where, GROUP_EDGE, ', '.join("'%s'" % group for group in roles[1:])))
    if GROUP_FRONT_END in roles and len(roles) > 1:
        raise RuleError("%s: is in group '%s' and in %s; a Front End server cannot also be a firewall"
                        % (host_where, GROUP_FRONT_END, ', '.join("'%s'" % group for group in roles[1:])))
    return roles


def host_rules(matrix, host, hostvars, groups, partner_networks=None, restrict_internal_sources=None, extra_rows=None):
    """The rule list (canonical, sorted) for one host; raises RuleError on bad input.

    ``extra_rows`` (the role's xmpp_firewall_extra_rows) are rows added to ``matrix``, validated under their own
    variable's name so that an error in one of them names that variable and the row's index in it.
    """
    host_where = "host '%s'" % host
    for variable, rows in ((MATRIX_VARIABLE, matrix), (EXTRA_ROWS_VARIABLE, [] if extra_rows is None else extra_rows)):
        if not isinstance(rows, (list, tuple)):
            raise RuleError("%s: variable '%s': %r is not a list of rows" % (host_where, variable, rows))
    check_magic_variables(host_where, hostvars, groups, 'host_rules(inventory_hostname, hostvars, groups)')
    hostvars = hostvars or {}
    groups = groups or {}
    # A host in none of our groups has nothing to do with the matrix: it costs
    # one membership test per group, whatever the rest of the inventory holds.
    roles = [group for group in (GROUP_EDGE, GROUP_FRONT_END, GROUP_EXTERNAL_FIREWALL, GROUP_INTERNAL_FIREWALL)
             if host in (groups.get(group) or ())]
    if not roles:
        return []
    inventory = _Inventory(host, hostvars, groups, partner_networks, restrict_internal_sources)
    host_roles(host, groups)
    rows = matrix_rows(matrix, extra_rows, host_where)
    if GROUP_EDGE not in roles and not inventory.edges():
        raise RuleError("%s: is in group %s but group '%s' has no host; there is no Edge to open paths to"
                        % (host_where, ', '.join("'%s'" % group for group in roles), GROUP_EDGE))
    translation = _Translation(inventory, rows)
    if GROUP_EDGE in roles:
        translation.edge_host()
    if GROUP_FRONT_END in roles:
        translation.front_end_host()
    if GROUP_EXTERNAL_FIREWALL in roles:
        translation.firewall_host('external')
    if GROUP_INTERNAL_FIREWALL in roles:
        translation.firewall_host('internal')
    # Each rule is normalised and its name checked already (where its row is known): only the order is left.
    return sorted(translation.rules, key=rule_sort_key)
