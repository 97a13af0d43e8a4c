#!/usr/bin/env bash
# All set-up on a fresh Debian machine, as root: system packages, the
# virtualenv in ./.venv with the pinned requirements, and this checkout made
# visible as the collection lync.xmpp_federation. Safe to run again: each step
# is skipped when already done. Extra steps live in scripts/setup.d/*.sh.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

apt_packages=(nftables iptables ipset iproute2 iputils-ping python3-venv podman runc debootstrap git shellcheck openssl)
missing=()
for package in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The virtualenv is rebuilt when requirements-dev.txt changes.
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements-dev.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements-dev.txt
  echo "$want" > "$stamp"
fi

# The checkout itself is the collection: expose it where ansible looks.
mkdir -p .cache/collections/ansible_collections/lync
ln -sfn ../../../.. .cache/collections/ansible_collections/lync/xmpp_federation

for step in scripts/setup.d/*.sh; do
  [ -e "$step" ] || continue
  bash "$step"
done
echo "setup: done"
