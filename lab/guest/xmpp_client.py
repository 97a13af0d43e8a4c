#!/usr/bin/env python
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A small XMPP client for the lab (Python standard library only): runs inside a lab container.

It logs in to the container's own Prosody over c2s on the loopback (SASL PLAIN
over plain TCP, which the lab's Prosody allows there), so that every byte that
crosses a firewall is Prosody's own s2s traffic.

    xmpp_client.py echo SECONDS READY_FILE < accounts.json
        accounts: [{"jid", "password"}]; answers every chat message with
        "echo from JID: BODY" until SECONDS have passed; writes READY_FILE once
        every account is online
    xmpp_client.py send < messages.json
        messages: [{"jid", "password", "to", "body", "timeout"}]; sends each
        (all at once), waits at most "timeout" seconds for the answer from "to",
        prints a JSON list of {"to", "delivered", "reply" | "reason", "seconds"}
"""

import base64
import json
import socket
import sys
import threading
import time
import uuid
from xml.etree import ElementTree
from xml.sax.saxutils import escape, quoteattr

C2S = ('127.0.0.1', 5222)
NS_STREAM = 'http://etherx.jabber.org/streams'
NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl'
NS_BIND = 'urn:ietf:params:xml:ns:xmpp-bind'
NS_CLIENT = 'jabber:client'
NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas'


class XmppError(Exception):
    pass


class Session(object):
    """One c2s session: logged in, bound to a resource, available."""

    def __init__(self, jid, password, deadline):
        self.jid, self.deadline = jid, deadline
        self.user, self.domain = jid.split('@', 1)
        self.sock = socket.create_connection(C2S, timeout=max(0.1, deadline - time.monotonic()))
        self.open_stream()
        features = self.expect('{%s}features' % NS_STREAM)
        mechanisms = [item.text for item in features.iter('{%s}mechanism' % NS_SASL)]
        if 'PLAIN' not in mechanisms:
            raise XmppError('%s: the server offers no SASL PLAIN (%s)' % (jid, ', '.join(mechanisms)))
        secret = base64.b64encode(('\0%s\0%s' % (self.user, password)).encode()).decode()
        self.send("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>" % (NS_SASL, secret))
        answer = self.next_element(deadline)
        if answer is None or answer.tag != '{%s}success' % NS_SASL:
            raise XmppError('%s: authentication failed (%s)' % (jid, describe(answer)))
        self.open_stream()
        self.expect('{%s}features' % NS_STREAM)
        # A resource of its own: one user may send over several sessions at once, and a second session on the
        # same resource would push the first one off.
        self.send("<iq type='set' id='bind'><bind xmlns='%s'><resource>lab-%s</resource></bind></iq>"
                  % (NS_BIND, uuid.uuid4().hex[:12]))
        bound = self.expect('{%s}iq' % NS_CLIENT)
        found = bound.find('.//{%s}jid' % NS_BIND)
        if bound.get('type') != 'result' or found is None:
            raise XmppError('%s: resource binding failed (%s)' % (jid, describe(bound)))
        self.full_jid = found.text
        self.send('<presence/>')

    def open_stream(self):
        # A new parser for every stream header: after SASL the stream starts again from the beginning.
        self.parser = ElementTree.XMLPullParser(events=('start', 'end'))
        self.depth, self.pending = 0, []
        self.send("<?xml version='1.0'?><stream:stream xmlns='%s' xmlns:stream='%s' to=%s version='1.0'>"
                  % (NS_CLIENT, NS_STREAM, quoteattr(self.domain)))

    def send(self, text):
        self.sock.sendall(text.encode('utf-8'))

    def next_element(self, deadline):
        """The next complete top-level element of the stream, or None when ``deadline`` passes first."""
        while not self.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return None
            if not data:
                raise XmppError('%s: the server closed the stream' % self.jid)
            self.parser.feed(data)
            for event, element in self.parser.read_events():
                if event == 'start':
                    self.depth += 1
                    continue
                self.depth -= 1
                if self.depth == 1:
                    self.pending.append(element)
        return self.pending.pop(0)

    def expect(self, tag):
        element = self.next_element(self.deadline)
        if element is None or element.tag != tag:
            raise XmppError('%s: expected %s from the server, got %s' % (self.jid, tag, describe(element)))
        return element

    def close(self):
        try:
            self.send('</stream:stream>')
        except OSError:
            pass
        self.sock.close()


def describe(element):
    if element is None:
        return 'nothing in time'
    return ElementTree.tostring(element, encoding='unicode')[:300]


def bare(jid):
    return (jid or '').split('/', 1)[0]


def error_condition(message):
    error = message.find('{%s}error' % NS_CLIENT)
    if error is not None:
        for child in error:
            if child.tag.startswith('{%s}' % NS_STANZAS) and not child.tag.endswith('}text'):
                return child.tag.split('}', 1)[1]
    return 'error'


def echo(accounts, seconds, ready_file):
    deadline = time.monotonic() + seconds
    sessions = [Session(account['jid'], account['password'], min(deadline, time.monotonic() + 10))
                for account in accounts]
    with open(ready_file, 'w') as ready:
        ready.write(' '.join(session.full_jid for session in sessions) + '\n')

    def answer(session):
        while True:
            message = session.next_element(deadline)
            if message is None:
                return
            body = message.find('{%s}body' % NS_CLIENT)
            if message.tag != '{%s}message' % NS_CLIENT or message.get('type') == 'error' or body is None:
                continue
            session.send("<message to=%s type='chat'><body>%s</body></message>"
                         % (quoteattr(message.get('from')), escape('echo: %s' % body.text)))

    threads = [threading.Thread(target=answer, args=(session,)) for session in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for session in sessions:
        session.close()
    return 0


def send_one(item):
    started = time.monotonic()
    deadline = started + float(item['timeout'])
    result = {'to': item['to']}
    try:
        session = Session(item['jid'], item['password'], deadline)
    except (OSError, XmppError) as error:
        result.update(delivered=False, reason='no session: %s' % error)
        return result
    try:
        session.send("<message to=%s type='chat' id=%s><body>%s</body></message>"
                     % (quoteattr(item['to']), quoteattr(uuid.uuid4().hex), escape(item['body'])))
        while True:
            message = session.next_element(deadline)
            if message is None:
                result.update(delivered=False, reason='no reply within %ss' % item['timeout'])
                break
            if message.tag != '{%s}message' % NS_CLIENT or bare(message.get('from')) != item['to']:
                continue
            if message.get('type') == 'error':
                result.update(delivered=False, reason='error from the server: %s' % error_condition(message))
                break
            body = message.find('{%s}body' % NS_CLIENT)
            if body is not None:
                result.update(delivered=True, reply=body.text)
                break
    except (OSError, XmppError) as error:
        result.update(delivered=False, reason=str(error))
    finally:
        session.close()
    result['seconds'] = round(time.monotonic() - started, 1)
    return result


def send(messages):
    results = [None] * len(messages)

    def one(index):
        results[index] = send_one(messages[index])

    threads = [threading.Thread(target=one, args=(index,)) for index in range(len(messages))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    json.dump(results, sys.stdout)
    return 0


def main():
    if sys.argv[1:2] == ['echo']:
        return echo(json.load(sys.stdin), float(sys.argv[2]), sys.argv[3])
    if sys.argv[1:2] == ['send']:
        return send(json.load(sys.stdin))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main())
