#!/usr/bin/env bash
# The project's test command: does its own set-up, then runs every stage.
#   bash scripts/test.sh              all stages
#   bash scripts/test.sh units system only those stages
# Stages: lint, sanity, units, system (real kernels in network namespaces,
# needs root), molecule (podman lab).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bash scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh

stages=("$@")
[ "${#stages[@]}" -gt 0 ] || stages=(lint sanity units system molecule)

# ansible-test wants the collection at .../ansible_collections/lync/xmpp_federation.
collection_tree() {
  local root=${TMPDIR:-/tmp}/lync-xmpp-ansible-test
  local tree=$root/ansible_collections/lync/xmpp_federation
  rm -rf "$root"
  mkdir -p "$tree"
  git ls-files -co --exclude-standard -z | rsync -a --from0 --files-from=- ./ "$tree/"
  echo "$tree"
}

stage_lint() {
  ansible-lint --profile production --offline
}

stage_sanity() {
  local tree; tree=$(collection_tree)
  (cd "$tree" && ansible-test sanity --venv --python 3.11 --color no)
}

stage_units() {
  local tree; tree=$(collection_tree)
  (cd "$tree" && ansible-test units --venv --python 3.11 --color no)
}

stage_system() {
  [ -d tests/system ] || { echo "system: no tests/system"; return 0; }
  python -m pytest -q -p no:cacheprovider tests/system
}

stage_molecule() {
  [ -d molecule ] || { echo "molecule: no scenarios"; return 0; }
  molecule test --all
}

status=0
for stage in "${stages[@]}"; do
  echo "=== stage: $stage ($(date -u +%H:%M:%S))"
  start=$SECONDS
  if "stage_$stage"; then
    echo "=== stage: $stage passed in $((SECONDS - start))s"
  else
    echo "=== stage: $stage FAILED after $((SECONDS - start))s"
    status=1
  fi
done
exit $status
