#!/usr/bin/env bash
# The podman lab (lab/, molecule/, scripts/lab.sh) builds its networks with
# netavark (lab/containers.conf). podman only needs "a container network
# stack", which apt may satisfy with the CNI plugins instead (setup installs
# without recommends), so ask for netavark by name.
set -euo pipefail
if ! dpkg-query -W -f='${Status}' netavark 2>/dev/null | grep -q 'install ok installed'; then
  echo "setup: installing netavark for the podman lab"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends netavark >/dev/null
fi
