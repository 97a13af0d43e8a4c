#!/usr/bin/env bash
# The main command: on a fresh Debian machine (as root), does all set-up
# (system packages, the venv, the collections, the lab image), starts the lab
# (partner, external firewall, Edge, internal firewall, Front End as podman
# containers on isolated networks, each with an admin's default-drop
# baseline), shows that a real XMPP federation fails against that baseline,
# applies lync.xmpp_federation.site, proves every flow of the collection's
# flow model with real TCP connections (the collection's verify playbook, then
# the lab's full table: documented row, from, to, port, expected, observed,
# including what must stay blocked, foreign rules, counters, and a reload of
# every firewall from its persisted configuration), runs the real federation
# (Prosody on the partner and the Edges, a message each way over s2s with
# dialback, IPv4, IPv6 and through the NAT) and row 3 as mutual TLS (openssl, a client
# certificate required), shows the federation failing with the Edges' outbound
# row left out (dialback), removes everything with lync.xmpp_federation.remove,
# proves the baseline is back and the federation fails again, and tears the
# lab down, leaving nothing running. Exits non-zero with the reason on any
# failure.
#
#   bash scripts/lab.sh                 two Edges (edge1 direct, edge2 published through
#                                       NAT on the external firewall), one Front End,
#                                       IPv4 and IPv6
#   bash scripts/lab.sh --nat --edges 1 extra options go to lab/lab.py up (later ones win)
#                                       (--firewall iptables|firewalld|ufw, --front-ends N, ...)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

say() { echo "=== lab: $* ($(date -u +%H:%M:%S))"; }
fail() { echo "=== lab: FAILED: $*" >&2; exit 1; }

bash scripts/setup.sh || fail "set-up (scripts/setup.sh) did not complete"
# shellcheck source=scripts/env.sh
source scripts/env.sh
export CONTAINERS_CONF=$top/lab/containers.conf

run_dir=$top/.lab/runs/main-$(date -u +%Y%m%dT%H%M%S)-$$
inventory=$run_dir/inventory.yml
started=$SECONDS

# Whatever happened, the lab goes: containers and networks by their recorded names.
tear_down() {
  local status=$?
  say "tearing the lab down"
  if ! python3 lab/lab.py down --run-dir "$run_dir"; then
    echo "=== lab: FAILED: the lab could not be removed completely (see above; run dir $run_dir)" >&2
    exit 1
  fi
  if [ "$status" -eq 0 ]; then
    say "passed in $((SECONDS - started))s; nothing left running"
  fi
  exit "$status"
}
trap tear_down EXIT
trap 'fail "interrupted"' INT TERM

say "building or reusing the image, starting the lab"
python3 lab/lab.py up --run-dir "$run_dir" --inventory "$inventory" --ipv6 --edges 2 --nat-edges 1 "$@" \
  || fail "the lab did not start (see the message above)"

say "before the rules: a real XMPP federation and the gateway's mutual TLS must fail (the admin's baseline)"
python3 lab/lab.py federation --run-dir "$run_dir" --state absent \
  || fail "something got through the admin's baseline before lync.xmpp_federation.site ran (FAIL rows above)"

say "applying lync.xmpp_federation.site"
ansible-playbook lync.xmpp_federation.site --inventory "$inventory" \
  || fail "ansible-playbook lync.xmpp_federation.site failed (see the task output above)"

say "proving the documented flows with lync.xmpp_federation.verify"
ansible-playbook lync.xmpp_federation.verify --inventory "$inventory" \
  || fail "lync.xmpp_federation.verify found a documented flow closed (see its table above)"

say "proving every flow of the flow model and every block with real traffic"
python3 lab/lab.py proof --run-dir "$run_dir" \
  || fail "the lab proof failed (the rows marked FAIL above)"

say "a real XMPP federation: partner to each Edge and back over s2s (dialback), per family and through any NAT; the gateway's mutual TLS"
python3 lab/lab.py federation --run-dir "$run_dir" --state present \
  || fail "the federation or the gateway's mutual TLS failed with the rules applied (FAIL rows above)"

say "a control: without the Edges' outbound row the federation must fail (dialback needs both directions)"
python3 lab/lab.py without-outbound --run-dir "$run_dir" > "$run_dir/without-outbound.json" \
  || fail "the lab could not write the matrix without the outbound row"
ansible-playbook lync.xmpp_federation.site --inventory "$inventory" --extra-vars @"$run_dir/without-outbound.json" \
  || fail "ansible-playbook lync.xmpp_federation.site without the outbound row failed (see the task output above)"
python3 lab/lab.py federation --run-dir "$run_dir" --state absent --s2s-only \
  || fail "the federation got through without the outbound row (FAIL rows above)"
ansible-playbook lync.xmpp_federation.site --inventory "$inventory" \
  || fail "ansible-playbook lync.xmpp_federation.site (the full matrix again) failed (see the task output above)"

say "removing everything of ours with lync.xmpp_federation.remove"
ansible-playbook lync.xmpp_federation.remove --inventory "$inventory" \
  || fail "ansible-playbook lync.xmpp_federation.remove failed (see the task output above)"

say "after remove: the admin's baseline byte for byte, every flow blocked, and the federation fails again"
python3 lab/lab.py proof --run-dir "$run_dir" --state absent \
  || fail "after remove, the baseline is not back or a flow is still open (FAIL rows above)"
python3 lab/lab.py federation --run-dir "$run_dir" --state absent \
  || fail "after remove, something still got through (FAIL rows above)"
