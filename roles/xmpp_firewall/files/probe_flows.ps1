# lync.xmpp_federation verify: every check of this Windows source at once.
# Connects to all of them concurrently (a Socket of the address's own family,
# so IPv6 works on Windows PowerShell 5.1 too), waits once, at most $Timeout
# seconds in all, then optionally proves the protocol behind each open port.
# SPDX-License-Identifier: GPL-3.0-or-later
[CmdletBinding()]
param (
    [object[]]$Checks = @(),
    [ValidateSet('tcp', 'protocol')][string]$Mode = 'tcp',
    [int]$Timeout = 3
)
$ErrorActionPreference = 'Stop'
$Ansible.Changed = $false
$deadline = [DateTime]::UtcNow.AddSeconds($Timeout)
function Get-RemainingMilliseconds { [Math]::Max(0, [int]($deadline - [DateTime]::UtcNow).TotalMilliseconds) }

function Get-FailedConnection($errorRecord) {
    # A .NET exception reaches PowerShell wrapped; the socket's own error code is on the innermost one.
    $failure = $errorRecord.Exception.GetBaseException()
    $code = if ($failure -is [System.Net.Sockets.SocketException]) { [string]$failure.SocketErrorCode } else { $failure.Message }
    $kind = switch ($code) {
        'ConnectionRefused' { 'refused' }
        'HostUnreachable' { 'unreachable' }
        'NetworkUnreachable' { 'unreachable' }
        'TimedOut' { 'timeout' }
        default { 'unreachable' }
    }
    @{ observed = $kind; service = $null; detail = $code }
}

$observed = @{}
$pending = @()
foreach ($check in $Checks) {
    if ($check.transport -ne 'tcp') {
        $observed[$check.id] = @{ observed = 'not-provable'; service = $null; detail = 'a UDP port gives no answer to prove' }
        continue
    }
    try {
        $address = [System.Net.IPAddress]::Parse([string]$check.to)
        $socket = New-Object System.Net.Sockets.Socket($address.AddressFamily, 'Stream', 'Tcp')
        $pending += @{ check = $check; socket = $socket; connect = $socket.BeginConnect($address, [int]$check.port, $null, $null) }
    }
    catch {
        # Refused at once, e.g. no route at all for this family on this host.
        $observed[$check.id] = Get-FailedConnection $_
    }
}

# One bounded wait for all connections together.
while ((Get-RemainingMilliseconds) -gt 0 -and @($pending | Where-Object { -not $_.connect.IsCompleted }).Count -gt 0) {
    Start-Sleep -Milliseconds 25
}

$open = @()
foreach ($attempt in $pending) {
    $id = $attempt.check.id
    if (-not $attempt.connect.IsCompleted) {
        $observed[$id] = @{ observed = 'timeout'; service = $null; detail = "no answer within $Timeout s" }
        $attempt.socket.Close()
        continue
    }
    try {
        $attempt.socket.EndConnect($attempt.connect)
        $observed[$id] = @{ observed = 'open'; service = $null; detail = 'connected' }
        $open += $attempt
    }
    catch {
        $observed[$id] = Get-FailedConnection $_
        $attempt.socket.Close()
    }
}

# The protocol behind each open port, within what is left of the same wait.
foreach ($attempt in $open) {
    $check = $attempt.check
    $result = $observed[$check.id]
    $application = [string]$check.application
    try {
        if ($Mode -ne 'protocol' -or -not $application) { continue }
        $remaining = Get-RemainingMilliseconds
        if ($remaining -le 0) { $result.detail = 'connected; no time left for the protocol probe'; continue }
        $stream = New-Object System.Net.Sockets.NetworkStream($attempt.socket, $false)
        $stream.ReadTimeout = $remaining
        $stream.WriteTimeout = $remaining
        if ($application -match 'MTLS') {
            # The server asks for a client certificate when it calls back with its own certificate in hand.
            $asked = @{ value = $false }
            $select = [System.Net.Security.LocalCertificateSelectionCallback] ({
                    param($tlsSource, $targetHost, $localCertificates, $remoteCertificate, $acceptableIssuers)
                    if ($null -ne $remoteCertificate -or @($acceptableIssuers).Count -gt 0) { $asked.value = $true }
                    return $null
                }.GetNewClosure())
            # A probe, not a trust decision: it sends no data and accepts any server certificate.
            $accept = [System.Net.Security.RemoteCertificateValidationCallback] { return $true }
            $tls = New-Object System.Net.Security.SslStream($stream, $false, $accept, $select)
            $handshake = 'handshake completed'
            # TLS 1.0 to 1.2, whatever this .NET defaults to: Lync servers of every age, and OpenSSL 3 servers.
            $protocols = [System.Security.Authentication.SslProtocols]'Tls, Tls11, Tls12'
            try { $tls.AuthenticateAsClient([string]$check.to, $null, $protocols, $false) }
            catch { $handshake = 'handshake ended: ' + $_.Exception.GetBaseException().Message }
            $result.service = if ($asked.value) { 'client-certificate-requested' } else { 'no-client-certificate-request' }
            $result.detail = $handshake
        }
        elseif ($application -match 'XMPP') {
            $header = "<?xml version='1.0'?><stream:stream xmlns='jabber:server' " +
                "xmlns:stream='http://etherx.jabber.org/streams' version='1.0' to='$($check.to)'>"
            $bytes = [System.Text.Encoding]::UTF8.GetBytes($header)
            $stream.Write($bytes, 0, $bytes.Length)
            $answer = ''
            $buffer = New-Object byte[] 4096
            while ($answer -notmatch '<stream:stream' -and (Get-RemainingMilliseconds) -gt 0) {
                $stream.ReadTimeout = [Math]::Max(1, (Get-RemainingMilliseconds))
                $count = $stream.Read($buffer, 0, $buffer.Length)
                if ($count -le 0) { break }
                $answer += [System.Text.Encoding]::UTF8.GetString($buffer, 0, $count)
            }
            $result.service = if ($answer -match '<stream:stream') { 'xmpp-stream' } else { 'no-xmpp-stream' }
            $result.detail = 'answered {0} bytes' -f $answer.Length
        }
    }
    catch {
        $result.service = if ($application -match 'MTLS') { 'no-client-certificate-request' } else { 'no-xmpp-stream' }
        $result.detail = $_.Exception.GetBaseException().Message
    }
    finally {
        $attempt.socket.Close()
    }
}

$Ansible.Result = $observed
