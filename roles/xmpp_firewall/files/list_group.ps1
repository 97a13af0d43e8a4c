# lync.xmpp_federation: read, change nothing. Lists the rule objects of our
# group, the rules outside it that share a name with one of ours, and whether
# rules of the local store take effect at all (Group Policy may override them,
# a profile may block all inbound traffic). The role's filter decides.
# SPDX-License-Identifier: GPL-3.0-or-later
[CmdletBinding()]
param (
    [Parameter(Mandatory = $true)][string]$Group,
    [string[]]$Names = @()
)
$ErrorActionPreference = 'Stop'
$Ansible.Changed = $false

# Settings of INetFwRule3 (Windows Server 2012 and later) that win_firewall_rule
# cannot set: a rule of ours that carries one is replaced, not edited.
$unownedSettings = @('LocalAppPackageId', 'LocalUserOwner', 'LocalUserAuthorizedList',
    'RemoteUserAuthorizedList', 'RemoteMachineAuthorizedList')

$policy = New-Object -ComObject HNetCfg.FwPolicy2
$allRules = @($policy.Rules)

# PowerShell hashtables compare keys without case, as the firewall compares names.
$ourNames = @{}
foreach ($name in $Names) { $ourNames[$name] = $true }
$ours = @()
foreach ($rule in $allRules) {
    if ($rule.Grouping -ne $Group) { continue }
    $ourNames[$rule.Name] = $true
    $settings = @{}
    foreach ($setting in $unownedSettings) {
        if ($rule.$setting) { $settings[$setting] = [string]$rule.$setting }
    }
    # Properties win_firewall_rule does not document; $null where this Windows lacks them.
    $ours += @{
        name = [string]$rule.Name
        description = [string]$rule.Description
        interface_types = [string]$rule.InterfaceTypes
        edge_traversal = $rule.EdgeTraversalOptions
        secure_flags = $rule.SecureFlags
        settings = $settings
    }
}

$namesakes = @()
foreach ($rule in $allRules) {
    if ($rule.Grouping -ne $Group -and $ourNames.ContainsKey([string]$rule.Name)) {
        $namesakes += @{ name = [string]$rule.Name; group = [string]$rule.Grouping; direction = [int]$rule.Direction }
    }
}

# NET_FW_PROFILE_TYPE2: 1 domain, 2 private, 4 public.
$profiles = @{}
foreach ($profileType in @(@('domain', 1), @('private', 2), @('public', 4))) {
    $profiles[$profileType[0]] = @{
        enabled = [bool]$policy.FirewallEnabled($profileType[1])
        block_all_inbound = [bool]$policy.BlockAllInboundTraffic($profileType[1])
    }
}

$Ansible.Result = @{
    ours = $ours
    namesakes = $namesakes
    policy = @{
        # NET_FW_MODIFY_STATE: 0 ok, 1 Group Policy overrides local rules, 2 inbound blocked.
        modify_state = [int]$policy.LocalPolicyModifyState
        current_profiles = [int]$policy.CurrentProfileTypes
        profiles = $profiles
    }
}
