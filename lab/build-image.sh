#!/usr/bin/env bash
# Builds the lab's container image, a minimal Debian bookworm, with debootstrap
# from the mirror this machine's own apt sources name, and imports it into
# podman as localhost/lync-xmpp-lab:<hash of this recipe>. The image is built
# only when no image with that tag exists, so a change to this file (the
# recipe) means a new image and an unchanged recipe means none is built.
#   bash lab/build-image.sh          prints the image name on stdout
set -euo pipefail
lab=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$lab")
export CONTAINERS_CONF=$lab/containers.conf

suite=bookworm
# python3 for Ansible and the listeners; nftables and iptables (both the nft
# and the legacy variant ship in the iptables package) for the firewalls;
# iproute2 for addresses and routes; firewalld and ufw for their variants
# (installed, each runs only where the lab starts it). firewalld needs polkitd,
# which needs a logind: debootstrap cannot pick a provider of that virtual
# package, so libpam-systemd is named. prosody and openssl for the real XMPP
# federation and the mutual-TLS endpoint of the internal row; fail2ban for the
# runtime bans firewalld must keep; ipset for partner lists as kernel sets on
# iptables. debootstrap cannot pick providers of virtual packages, so the Lua
# libraries prosody depends on through them (and lua-unbound, which lets it
# resolve peers from a hosts file) are named.
packages=python3,nftables,iptables,iproute2,firewalld,libpam-systemd,ufw,prosody,lua-bitop,lua-sec,lua-socket,lua-unbound,openssl,fail2ban,ipset

recipe_hash=$( { cat "$0"; echo "$suite $packages"; } | sha256sum | cut -c1-12)
image=localhost/lync-xmpp-lab:$recipe_hash

if podman image exists "$image"; then
  echo "$image"
  exit 0
fi

# The mirror of the machine's own apt sources: deb822 files first, then the
# one-line format. Only an entry that carries the release itself counts (not
# -security or -updates).
apt_mirror() {
  local file
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -e "$file" ] || continue
    awk -v suite="$suite" '
      BEGIN { RS = ""; FS = "\n" }
      {
        uris = ""; ok = 0; deb = 0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", $i); split($i, list, /[ \t]+/); uris = list[1] }
          if ($i ~ /^Types:/ && $i ~ /(^|[ \t])deb([ \t]|$)/) deb = 1
          if ($i ~ /^Suites:/) { n = split($i, s, /[ \t]+/); for (j = 2; j <= n; j++) if (s[j] == suite) ok = 1 }
        }
        if (ok && deb && uris != "") { print uris; exit }
      }' "$file"
  done
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -e "$file" ] || continue
    awk -v suite="$suite" '$1 == "deb" {
        i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite) { print $i; exit }
      }' "$file"
  done
}
mirror=$(apt_mirror | head -n1)
if [ -z "$mirror" ]; then
  echo "build-image: no apt source for $suite in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list" >&2
  exit 1
fi

work=$top/.lab/image-build
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
echo "build-image: debootstrap $suite ($packages) for $image" >&2
started=$SECONDS
if ! debootstrap --variant=minbase --include="$packages" "$suite" "$work/rootfs" "$mirror" >"$work.log" 2>&1; then
  tail -n 30 "$work.log" >&2
  echo "build-image: debootstrap failed, full log in $work.log" >&2
  exit 1
fi
# Nothing in the image needs the package caches or documentation.
rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"* \
  "$work/rootfs/usr/share/doc" "$work/rootfs/usr/share/man" "$work/rootfs/usr/share/locale"
tar -C "$work/rootfs" -c . | podman import --quiet \
  --change 'CMD ["/bin/sleep", "infinity"]' - "$image" >/dev/null
echo "build-image: $image built in $((SECONDS - started))s" >&2
# Images of older recipes go, unless a lab still runs on one (podman refuses then).
for old in $(podman images --format '{{.Repository}}:{{.Tag}}' --filter reference=localhost/lync-xmpp-lab); do
  [ "$old" = "$image" ] || podman rmi "$old" >/dev/null 2>&1 || true
done
echo "$image"
