# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Real connections for verify: what a source observes on each of its checks, all at once and bounded.

One observation per check, as a dict:

    observed   open         the TCP handshake completed
               refused      the far end (or a firewall with a TCP reset) refused it
               timeout      nothing answered within the timeout: dropped on the way, or no host
               unreachable  no route, or an ICMP unreachable / a local firewall said no (EHOSTUNREACH,
                            ENETUNREACH, EACCES, EPERM)
               not-provable a UDP flow: a connect proves nothing about it
    service    with the protocol probe, on an open connection, what answered:
                 xmpp-stream / no-xmpp-stream                      (an XMPP row: an s2s stream header)
                 client-certificate-requested / no-client-certificate-request   (an MTLS row: the TLS
                 handshake's CertificateRequest)
               else None
    detail     a short text: the error, or what the protocol probe saw

The MTLS probe offers TLS 1.2 only: there the server's CertificateRequest travels in the clear, so the probe
can see it without a client certificate and without finishing the handshake (TLS 1.3 encrypts it).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import socket
import ssl
import struct
import time
from concurrent.futures import ThreadPoolExecutor

OBSERVED_OPEN = 'open'
OBSERVED_REFUSED = 'refused'
OBSERVED_TIMEOUT = 'timeout'
OBSERVED_UNREACHABLE = 'unreachable'
OBSERVED_NOT_PROVABLE = 'not-provable'
OBSERVATIONS = (OBSERVED_OPEN, OBSERVED_REFUSED, OBSERVED_TIMEOUT, OBSERVED_UNREACHABLE, OBSERVED_NOT_PROVABLE)

SERVICE_XMPP = 'xmpp-stream'
SERVICE_NO_XMPP = 'no-xmpp-stream'
SERVICE_MTLS = 'client-certificate-requested'
SERVICE_NO_MTLS = 'no-client-certificate-request'
# What a protocol probe must find for each kind of application.
SERVICE_EXPECTED = {'mtls': SERVICE_MTLS, 'xmpp': SERVICE_XMPP}

PROBE_TCP = 'tcp'
PROBE_PROTOCOL = 'protocol'
PROBES = (PROBE_TCP, PROBE_PROTOCOL)
MAX_WORKERS = 64
# Enough for a stream header and features, or a TLS server's first flight with a certificate chain.
READ_LIMIT = 65536

UNREACHABLE_ERRNOS = (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES, errno.EPERM, errno.EADDRNOTAVAIL)

TLS_HANDSHAKE = 22
TLS_ALERT = 21
TLS_CERTIFICATE_REQUEST = 13
TLS_SERVER_HELLO_DONE = 14


def application_kind(application):
    """'mtls', 'xmpp' or None: what a protocol probe checks for a row's application text."""
    text = (application or '').upper()
    if 'MTLS' in text:
        return 'mtls'
    if text.startswith('XMPP'):
        return 'xmpp'
    return None


def _observation(observed, service=None, detail=''):
    return {'observed': observed, 'service': service, 'detail': detail}


def _classify(error):
    if isinstance(error, socket.timeout):
        return OBSERVED_TIMEOUT
    if isinstance(error, ConnectionRefusedError):
        return OBSERVED_REFUSED
    if getattr(error, 'errno', None) in UNREACHABLE_ERRNOS:
        return OBSERVED_UNREACHABLE
    return OBSERVED_UNREACHABLE


def _read_until(sock, deadline, done):
    """Bytes read until done(data) is true, the peer closes, READ_LIMIT is reached or the deadline passes."""
    data = b''
    while not done(data) and len(data) < READ_LIMIT:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(4096)
        except (socket.timeout, OSError):
            break
        if not chunk:
            break
        data += chunk
    return data


def xmpp_stream_probe(sock, to, deadline):
    """(service, detail): does an XMPP server answer an s2s stream header?"""
    header = ("<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
              "xmlns:stream='http://etherx.jabber.org/streams' version='1.0' to='%s'>" % to)
    sock.sendall(header.encode('ascii'))

    def header_complete(seen):
        return b'<stream:stream' in seen and b'>' in seen.split(b'<stream:stream', 1)[1]

    data = _read_until(sock, deadline, header_complete)
    text = data[:160].decode('utf-8', 'replace').replace('\n', ' ')
    if b'<stream:stream' in data:
        return SERVICE_XMPP, 'answered with an XMPP stream header'
    return SERVICE_NO_XMPP, 'no XMPP stream header in the answer (%d bytes%s)' % (len(data), ': %r' % text if text else '')


def _client_hello():
    """A TLS 1.2 ClientHello, made by this Python's own TLS library, for a handshake the probe never finishes."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if hasattr(ssl, 'TLSVersion'):
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
    else:  # Python 3.6
        context.options |= ssl.OP_NO_TLSv1 | ssl.OP_NO_TLSv1_1 | getattr(ssl, 'OP_NO_TLSv1_3', 0)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    connection = context.wrap_bio(incoming, outgoing, server_side=False)
    try:
        connection.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def handshake_messages(data):
    """([(type, body)] of the TLS handshake messages in these records, alert description or None).

    Records of other content types are skipped; a message split across records is joined; a truncated one is
    left out.
    """
    stream, alert, offset = b'', None, 0
    while offset + 5 <= len(data):
        content_type, _version, length = struct.unpack('!BHH', data[offset:offset + 5])
        body = data[offset + 5:offset + 5 + length]
        offset += 5 + length
        if content_type == TLS_HANDSHAKE:
            stream += body
        elif content_type == TLS_ALERT and len(body) >= 2 and alert is None:
            alert = body[1]
    messages, position = [], 0
    while position + 4 <= len(stream):
        kind = stream[position]
        length = int.from_bytes(stream[position + 1:position + 4], 'big')
        if position + 4 + length > len(stream):
            break
        messages.append((kind, stream[position + 4:position + 4 + length]))
        position += 4 + length
    return messages, alert


def mtls_probe(sock, deadline):
    """(service, detail): does the TLS server ask for a client certificate in its first flight?"""
    sock.sendall(_client_hello())

    def flight_complete(seen):
        messages, alert = handshake_messages(seen)
        return alert is not None or any(kind == TLS_SERVER_HELLO_DONE for kind, _body in messages)

    data = _read_until(sock, deadline, flight_complete)
    messages, alert = handshake_messages(data)
    kinds = [kind for kind, _body in messages]
    if TLS_CERTIFICATE_REQUEST in kinds:
        return SERVICE_MTLS, 'the TLS server asked for a client certificate'
    if alert is not None:
        return SERVICE_NO_MTLS, 'the TLS server sent alert %d instead of a TLS 1.2 handshake' % alert
    if TLS_SERVER_HELLO_DONE in kinds:
        return SERVICE_NO_MTLS, 'the TLS server finished its first flight without asking for a client certificate'
    return SERVICE_NO_MTLS, 'no TLS 1.2 handshake in the answer (%d bytes)' % len(data)


def probe(check, mode, timeout):
    """The observation of one check: a dict with 'to', 'port', 'transport' and optionally 'application'."""
    if check.get('transport', 'tcp') != 'tcp':
        return _observation(OBSERVED_NOT_PROVABLE, detail='a %s flow cannot be proven by a connect'
                            % check.get('transport'))
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((check['to'], int(check['port'])), timeout=timeout)
    except (OSError, socket.timeout) as error:
        return _observation(_classify(error), detail=str(error) or type(error).__name__)
    try:
        kind = application_kind(check.get('application')) if mode == PROBE_PROTOCOL else None
        if kind is None:
            return _observation(OBSERVED_OPEN, detail='connected')
        try:
            if kind == 'mtls':
                service, detail = mtls_probe(sock, deadline)
            else:
                service, detail = xmpp_stream_probe(sock, check['to'], deadline)
        except (OSError, socket.timeout) as error:
            service, detail = (SERVICE_NO_MTLS if kind == 'mtls' else SERVICE_NO_XMPP), 'connected, then: %s' % error
        return _observation(OBSERVED_OPEN, service, detail)
    finally:
        sock.close()


def probe_all(checks, mode, timeout, workers=MAX_WORKERS):
    """One observation per check, in the checks' order; the checks run concurrently, at most `workers` at a time.

    Each check is bounded by `timeout` (connect plus protocol exchange), so the whole call takes at most about
    ceil(len(checks) / workers) * timeout.
    """
    if not checks:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(checks)))) as pool:
        return list(pool.map(lambda check: probe(check, mode, timeout), checks))
