# lync.xmpp_federation: changes the named rule objects of our group, and only
# those; another group's rule is never renamed, changed or removed.
# -Remove: INetFwRules.Remove takes a name, which a rule of another group may
# share; so each object of ours is first given a name nothing else has, then
# removed by that name.
# -Reset: puts back what win_firewall_rule does not document, to what a new
# rule has: all interface types, no edge traversal, no security flags.
# SPDX-License-Identifier: GPL-3.0-or-later
[CmdletBinding(SupportsShouldProcess = $true)]
param (
    [Parameter(Mandatory = $true)][string]$Group,
    [string[]]$Remove = @(),
    [string[]]$Reset = @()
)
$ErrorActionPreference = 'Stop'
$Ansible.Changed = $false

# PowerShell hashtables compare keys without case, as the firewall compares names.
$toRemove = @{}
foreach ($name in $Remove) { $toRemove[$name] = $true }
$toReset = @{}
foreach ($name in $Reset) { $toReset[$name] = $true }
$policy = New-Object -ComObject HNetCfg.FwPolicy2
$removed = @()
$reset = @()
foreach ($rule in @($policy.Rules)) {
    if ($rule.Grouping -ne $Group) { continue }
    $name = [string]$rule.Name
    if ($toRemove.ContainsKey($name)) {
        if ($PSCmdlet.ShouldProcess("$name (group $Group)", 'Remove firewall rule')) {
            $unique = '{0} [removing {1}]' -f $name, [guid]::NewGuid()
            $rule.Name = $unique
            $policy.Rules.Remove($unique)
        }
        $removed += $name
        $Ansible.Changed = $true
    }
    elseif ($toReset.ContainsKey($name)) {
        if ($PSCmdlet.ShouldProcess("$name (group $Group)", 'Reset interface types, edge traversal and security')) {
            $rule.InterfaceTypes = 'All'
            if ($null -ne $rule.EdgeTraversalOptions) { $rule.EdgeTraversalOptions = 0 }
            if ($null -ne $rule.SecureFlags) { $rule.SecureFlags = 0 }
        }
        $reset += $name
        $Ansible.Changed = $true
    }
}
$Ansible.Result = @{ removed = $removed; reset = $reset }
# What --diff shows, in win_firewall_rule's own style.
$lines = @($removed | ForEach-Object { "-[$_]" }) + @($reset | ForEach-Object { "[$_]`n+InterfaceTypes='All'`n+EdgeTraversalOptions='0'`n+SecureFlags='0'" })
if ($lines.Count -gt 0) { $Ansible.Diff = @{ prepared = ($lines -join "`n") + "`n" } }
