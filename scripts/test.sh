#!/usr/bin/env bash
# The project's test command: does its own set-up, then runs every stage.
#   bash scripts/test.sh              all stages
#   bash scripts/test.sh units system only those stages
# Stages: lint, build, importer (galaxy-importer on the artifact), ee (execution
# environment contexts), docs (antsibull-docs and antsibull-changelog lint),
# sanity and units (each under the newest and the oldest supported
# ansible-core), system (real kernels in network namespaces, needs root),
# molecule (podman lab).
# The stage_* functions are called by name ("stage_$stage"), which shellcheck cannot follow:
# shellcheck disable=SC2317
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bash scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh

stages=("$@")
[ "${#stages[@]}" -gt 0 ] || stages=(lint build importer ee docs sanity units system molecule)

# ansible-test wants the collection at .../ansible_collections/lync/xmpp_federation.
# The copy holds the checkout's tracked and untracked-but-not-ignored files
# (so .venv, .cache and lab artefacts stay out) and lives outside any git
# checkout, where ansible-test lists the files it finds instead of asking git.
collection_tree() {
  local root=${TMPDIR:-/tmp}/lync-xmpp-ansible-test
  local tree=$root/ansible_collections/lync/xmpp_federation
  rm -rf "$root"
  mkdir -p "$tree"
  git ls-files -co --exclude-standard -z \
    | tar --null --files-from=- --ignore-failed-read -cf - \
    | tar -C "$tree" -xf -
  # The collections galaxy.yml depends on sit next to ours, where ansible-test
  # looks for them (set-up extracts them into .cache/collections).
  local dependency
  for dependency in $(python -c 'import yaml; print(" ".join(yaml.safe_load(open("galaxy.yml"))["dependencies"]))'); do
    local source=.cache/collections/ansible_collections/${dependency/.//}
    [ -d "$source" ] || { echo "collection_tree: $dependency is not in .cache/collections" >&2; continue; }
    mkdir -p "$root/ansible_collections/${dependency%%.*}"
    cp -a "$source" "$root/ansible_collections/${dependency/.//}"
  done
  echo "$tree"
}

# ansible-test --venv bootstraps pip in each new venv with a get-pip script it
# downloads from a CI file host that is out of reach here (only the package
# index is). When that script is not cached yet, cache a stand-in that does the
# same with the interpreter's own ensurepip and then pip-installs the pip
# version ansible-test asks for (from the package index, as usual).
ansible_test_pip_bootstrap() {
  local python=$1
  local cache=$HOME/.ansible/test/cache
  local version
  version=$("$python" -c 'from ansible_test._internal.python_requirements import get_venv_packages as p; print(p(type("P", (), {"version": "3.11"})())["pip"])')
  local script=$cache/get_pip_${version//./_}.py
  [ -s "$script" ] && return 0
  mkdir -p "$cache"
  cat > "$script" <<'PY'
# Stand-in for get-pip.py, written by lync.xmpp_federation's scripts/test.sh:
# ensurepip, then "pip install" of the packages ansible-test names.
import subprocess
import sys

packages = [arg for arg in sys.argv[1:] if arg not in ('--no-setuptools', '--no-wheel')]
subprocess.check_call([sys.executable, '-m', 'ensurepip', '--default-pip'], stdout=subprocess.DEVNULL)
subprocess.check_call([sys.executable, '-m', 'pip', 'install', '--quiet', '--upgrade'] + packages)
PY
}

stage_lint() {
  ansible-lint --profile production --offline
}

# ansible-test runs on the copy only: the checkout's collection path must not
# shadow it. The first argument is the virtualenv whose ansible-core runs it:
# .venv holds the newest ansible-core that installs here (requirements-dev.txt),
# .cache/venv-ansible-core-2.16 the oldest the collection supports
# (meta/runtime.yml; tests/requirements-ansible-core-2.16.txt).
ansible_test() {
  local venv=$1; shift
  local tree; tree=$(collection_tree)
  ansible_test_pip_bootstrap "$venv/bin/python"
  local version; version=$("$venv/bin/ansible" --version) || return 1
  echo "ansible-test $1 under ${version%%$'\n'*}"
  (cd "$tree" && env -u PYTHONPATH -u ANSIBLE_COLLECTIONS_PATH PATH="$venv/bin:$PATH" \
     ansible-test "$@" --venv --python 3.11 --color no)
}

ansible_core_venvs=("$top/.venv" "$top/.cache/venv-ansible-core-2.16")

# Runs one ansible-test command under each ansible-core, timing each.
ansible_test_each_core() {
  local venv start status=0
  for venv in "${ansible_core_venvs[@]}"; do
    start=$SECONDS
    if ansible_test "$venv" "$@"; then
      echo "ansible-test $1: passed under $(basename "$venv") in $((SECONDS - start))s"
    else
      echo "ansible-test $1: FAILED under $(basename "$venv") after $((SECONDS - start))s"
      status=1
    fi
  done
  return "$status"
}

stage_sanity() {
  ansible_test_each_core sanity
}

stage_units() {
  ansible_test_each_core units
}

# The collection artifact: build it, look inside, install it where nothing
# else is, and use it from there (documentation and the filter on the example
# inventory, computed on the control node).
stage_build() {
  local work; work=$(mktemp -d "${TMPDIR:-/tmp}/lync-xmpp-build.XXXXXX")
  local status=0
  build_and_check "$work" || status=1
  rm -rf "$work"
  return "$status"
}

build_and_check() {
  local work=$1
  ansible-galaxy collection build --output-path "$work/dist" . >/dev/null || return 1
  local tarball; tarball=$(ls "$work"/dist/lync-xmpp_federation-*.tar.gz) || return 1
  # One listing, grepped from a file: "tar | grep -q" dies of SIGPIPE under pipefail.
  tar -tzf "$tarball" > "$work/contents.txt" || return 1
  echo "build: $(basename "$tarball"), $(du -k "$tarball" | cut -f1) KiB, $(wc -l < "$work/contents.txt") entries"
  local unwanted
  unwanted=$(grep -E '^(\./)?(tests|molecule|lab|bench|scripts|\.venv|\.cache|\.git|\.ci|\.lab|requirements-dev\.txt)(/|$)|__pycache__|\.pyc$' "$work/contents.txt" || true)
  if [ -n "$unwanted" ]; then
    echo "build: the artifact holds files that are not the collection:"; echo "$unwanted"; return 1
  fi
  local wanted
  for wanted in MANIFEST.json FILES.json meta/runtime.yml plugins/filter/host_rules.py plugins/filter/flows.py \
                plugins/module_utils/flows.py playbooks/plan.yml \
                plugins/module_utils/rule_model.py plugins/module_utils/matrix.py roles/xmpp_firewall/defaults/main.yml \
                roles/xmpp_firewall/README.md COPYING LICENSES/GPL-3.0-or-later.txt requirements.txt \
                meta/execution-environment.yml docs/docsite/links.yml; do
    grep -qx "$wanted" "$work/contents.txt" || { echo "build: $wanted is missing from the artifact"; return 1; }
  done
  # The licence travels with the code: every SPDX-License-Identifier in the
  # artifact names a licence whose text is in its LICENSES/.
  mkdir -p "$work/unpacked" && tar -C "$work/unpacked" -xzf "$tarball" || return 1
  python - "$work/unpacked" <<'PY' || return 1
import os
import re
import sys

root = sys.argv[1]
named, problems = {}, []
for folder, _dirs, files in os.walk(root):
    for name in files:
        path = os.path.join(folder, name)
        with open(path, 'rb') as handle:
            text = handle.read().decode('utf-8', 'replace')
        for identifier in re.findall(r'SPDX-License-Identifier: *([A-Za-z0-9.+-]+)', text):
            named.setdefault(identifier, os.path.relpath(path, root))
if not named:
    problems.append('no file carries an SPDX-License-Identifier')
for identifier, example in sorted(named.items()):
    if not os.path.isfile(os.path.join(root, 'LICENSES', identifier + '.txt')):
        problems.append('%s (named in %s) has no LICENSES/%s.txt' % (identifier, example, identifier))
gpl = open(os.path.join(root, 'LICENSES', 'GPL-3.0-or-later.txt')).read()
if 'GNU GENERAL PUBLIC LICENSE' not in gpl or 'Version 3, 29 June 2007' not in gpl or 'END OF TERMS AND CONDITIONS' not in gpl:
    problems.append('LICENSES/GPL-3.0-or-later.txt is not the full GPL version 3 text')
if open(os.path.join(root, 'COPYING')).read() != gpl:
    problems.append('COPYING differs from LICENSES/GPL-3.0-or-later.txt')
if problems:
    sys.exit('build: ' + '; '.join(problems))
print('build: the artifact carries the licence text of every SPDX identifier in it (%s)' % ', '.join(sorted(named)))
PY
  # Only the installed copy is visible from here on: the checkout is the
  # collection through PYTHONPATH and .cache/collections, so both go.
  (
    cd "$work" || exit 1
    unset PYTHONPATH
    export ANSIBLE_COLLECTIONS_PATH=$work/collections
    # --offline --no-deps: there is no Galaxy server; the dependencies
    # (Windows path only) come from set-up, not from here.
    ansible-galaxy collection install --offline --no-deps -p "$work/collections" "$tarball" >/dev/null || exit 1
    local installed=$work/collections/ansible_collections/lync/xmpp_federation
    ansible-doc -t filter lync.xmpp_federation.host_rules > "$work/host_rules.txt" || exit 1
    grep -q "$installed/plugins/filter/host_rules.py" "$work/host_rules.txt" \
      || { echo "build: ansible-doc did not read the installed collection"; exit 1; }
    if ! grep -q 'partner_networks' "$work/host_rules.txt" || ! grep -q 'EXAMPLES' "$work/host_rules.txt"; then
      echo "build: ansible-doc of the filter lacks its options or examples"; exit 1
    fi
    ansible all -i "$top/inventory/example" -m ansible.builtin.debug \
      -e "@$installed/roles/xmpp_firewall/defaults/main.yml" \
      -a 'msg={{ xmpp_firewall_matrix | lync.xmpp_federation.host_rules(inventory_hostname, hostvars, groups) | map(attribute="name") | join(" ") }}' \
      > "$work/rules.txt" 2>&1
    grep -A3 '^fw-ext01 | SUCCESS' "$work/rules.txt" > "$work/fw-ext01.txt"
    grep -q '"msg": ".*xmpp-s2s-inbound-dnat-edge02-ipv4' "$work/fw-ext01.txt" \
      || { echo "build: the installed filter did not compute the example's rules:"; cat "$work/rules.txt"; exit 1; }
    echo "build: installed; ansible-doc renders the filter; the installed filter computes the example's rules"
    # The preview Galaxy and AWX users get: the installed plan playbook, on an inventory none of whose hosts exists.
    ansible-playbook -i "$top/inventory/example" lync.xmpp_federation.plan -e "xmpp_firewall_plan_file=$work/plan.csv" \
      > "$work/plan.txt" 2>&1 || { echo "build: the installed plan playbook failed:"; cat "$work/plan.txt"; exit 1; }
    if ! grep -q '^"fw-ext01","xmpp-s2s-inbound-dnat-edge02-ipv4",' "$work/plan.csv" \
       || ! grep -q '^"xmpp-gateway-internal","reverse","edge02",' "$work/plan.csv"; then
      echo "build: the installed plan playbook wrote no rules or flows:"; cat "$work/plan.txt" "$work/plan.csv"; exit 1
    fi
    echo "build: the installed plan playbook wrote the example's rules and flows without connecting to any host"
    linux_only_run "$work" || exit 1
  )
}

# A Linux-only estate with ansible-core alone: only the installed artifact is on
# the collection path (no ansible.windows, no community.windows), and the
# playbooks site (twice: the second run changes nothing) and remove run for
# real against two network namespaces standing in for a Linux Edge and a Linux
# external firewall (persist=false: nothing is written outside the namespaces);
# the verify playbook must load too.
# Needs root, ip and nft, as the system stage does.
linux_only_run() {
  local work=$1
  # ansible-doc exits 0 on a plugin it cannot find; -j prints {} for it.
  local windows_docs
  windows_docs=$(ansible-doc -j -t module community.windows.win_firewall_rule ansible.windows.win_powershell 2>/dev/null) || return 1
  if [ "$(printf '%s' "$windows_docs" | tr -d '[:space:]')" != '{}' ]; then
    echo "build: the Windows collections are visible, so this is no ansible-core-only run"; return 1
  fi
  [ "$(id -u)" = 0 ] || { echo "build: the Linux-only run needs root (network namespaces)"; return 1; }
  local edge=lync-build-$$-edge firewall=lync-build-$$-fw namespace status=0
  for namespace in "$edge" "$firewall"; do
    ip netns add "$namespace" || return 1
    printf '#!/bin/sh\nexec ip netns exec %s /usr/bin/python3 "$@"\n' "$namespace" > "$work/python-$namespace"
    chmod +x "$work/python-$namespace"
  done
  cat > "$work/linux-only.yml" <<YAML
all:
  vars:
    ansible_connection: local
  children:
    lync_edge:
      hosts:
        edge01:
          ansible_python_interpreter: $work/python-$edge
          lync_edge_external_ip: [198.51.100.10, "2001:db8:10::10"]
          lync_edge_internal_ip: 198.51.100.140
    lync_external_firewall:
      hosts:
        fw-ext01:
          ansible_python_interpreter: $work/python-$firewall
YAML
  run_linux_only "$work" "$edge" "$firewall" || status=1
  for namespace in "$edge" "$firewall"; do
    ip netns delete "$namespace" || status=1
  done
  return "$status"
}

run_linux_only() {
  local work=$1 edge=$2 firewall=$3 start
  # Wall-clock seconds to a tenth since $1 (microseconds, from bash's own EPOCHREALTIME).
  elapsed() { local tenths=$(( (${EPOCHREALTIME/[.,]/} - $1) / 100000 )); printf '%d.%d' $((tenths / 10)) $((tenths % 10)); }
  local playbook=(ansible-playbook -i "$work/linux-only.yml" -e xmpp_firewall_persist=false)
  start=${EPOCHREALTIME/[.,]/}
  "${playbook[@]}" lync.xmpp_federation.site > "$work/site1.txt" 2>&1 \
    || { echo "build: the Linux-only site run failed:"; cat "$work/site1.txt"; return 1; }
  if ! grep -Eq '^edge01 +: ok=[0-9]+ +changed=[1-9]' "$work/site1.txt" \
     || ! grep -Eq '^fw-ext01 +: ok=[0-9]+ +changed=[1-9]' "$work/site1.txt"; then
    echo "build: the Linux-only site run did not change both hosts:"; cat "$work/site1.txt"; return 1
  fi
  # Whole listings into files, then grep: "nft | grep -q" can die of SIGPIPE under pipefail.
  ip netns exec "$edge" nft list ruleset > "$work/edge.nft" && ip netns exec "$firewall" nft list ruleset > "$work/fw.nft" || return 1
  if ! grep -q 'dport 5269' "$work/edge.nft" || ! grep -q 'dport 23456' "$work/edge.nft" || ! grep -q 'dport 5269' "$work/fw.nft"; then
    echo "build: after the Linux-only site run, the namespaces lack the documented ports:"; cat "$work/edge.nft" "$work/fw.nft"; return 1
  fi
  local first; first=$(elapsed "$start")
  start=${EPOCHREALTIME/[.,]/}
  "${playbook[@]}" lync.xmpp_federation.site > "$work/site2.txt" 2>&1 \
    || { echo "build: the second Linux-only site run failed:"; cat "$work/site2.txt"; return 1; }
  if ! grep -Eq '^edge01 +: ok=[0-9]+ +changed=0 ' "$work/site2.txt" \
     || ! grep -Eq '^fw-ext01 +: ok=[0-9]+ +changed=0 ' "$work/site2.txt"; then
    echo "build: the second Linux-only site run was not a no-op:"; cat "$work/site2.txt"; return 1
  fi
  local second; second=$(elapsed "$start")
  # What a site no-op costs beside a play of one task on the same hosts.
  printf -- '- hosts: all\n  gather_facts: false\n  tasks:\n    - name: One task\n      ansible.builtin.ping:\n' > "$work/one-task.yml"
  start=${EPOCHREALTIME/[.,]/}
  ansible-playbook -i "$work/linux-only.yml" "$work/one-task.yml" > "$work/one-task.txt" 2>&1 \
    || { echo "build: a one-task play failed:"; cat "$work/one-task.txt"; return 1; }
  local one_task; one_task=$(elapsed "$start")
  "${playbook[@]}" lync.xmpp_federation.remove > "$work/remove.txt" 2>&1 \
    || { echo "build: the Linux-only remove run failed:"; cat "$work/remove.txt"; return 1; }
  ip netns exec "$edge" nft list ruleset > "$work/edge.nft" && ip netns exec "$firewall" nft list ruleset > "$work/fw.nft" || return 1
  if grep -qi 'lync' "$work/edge.nft" "$work/fw.nft"; then
    echo "build: the Linux-only remove run left rules of ours:"; cat "$work/edge.nft" "$work/fw.nft"; return 1
  fi
  ansible-playbook -i "$work/linux-only.yml" --syntax-check lync.xmpp_federation.verify > "$work/verify.txt" 2>&1 \
    || { echo "build: with ansible-core alone, the verify playbook does not load:"; cat "$work/verify.txt"; return 1; }
  echo "build: a Linux-only estate with ansible-core alone: site applied (${first}s), re-run without change (${second}s; a one-task play: ${one_task}s), removed; verify loads"
}

# The gate of Galaxy and Automation Hub: galaxy-importer on the built artifact,
# as those servers import it (ansible-doc of every plugin, ansible-lint with the
# production profile, flake8 on every Python file, the metadata and README
# checks), configured by tests/galaxy-importer.cfg, without a container engine.
# Any warning or error it logs fails the stage.
stage_importer() {
  local work; work=$(mktemp -d "${TMPDIR:-/tmp}/lync-xmpp-importer.XXXXXX")
  local status=0
  import_artifact "$work" || status=1
  rm -rf "$work"
  return "$status"
}

import_artifact() {
  local work=$1
  ansible-galaxy collection build --output-path "$work" . >/dev/null || return 1
  local tarball; tarball=$(ls "$work"/lync-xmpp_federation-*.tar.gz) || return 1
  local status=0
  # Only the artifact: neither the checkout's collection path nor its PYTHONPATH.
  (cd "$work" && env -u PYTHONPATH -u ANSIBLE_COLLECTIONS_PATH GALAXY_IMPORTER_CONFIG="$top/tests/galaxy-importer.cfg" \
     python -m galaxy_importer.main "$tarball") > "$work/importer.txt" 2>&1 || status=$?
  local reported
  reported=$(grep -E '^(WARNING|ERROR|CRITICAL)' "$work/importer.txt" || true)
  if [ "$status" != 0 ] || [ -n "$reported" ] || ! grep -qx 'Importer processing completed successfully' "$work/importer.txt"; then
    echo "importer: galaxy-importer (exit $status) reports:"; cat "$work/importer.txt"; return 1
  fi
  # What the servers would show: docs of every plugin, the role's README.
  python - "$work/importer_result.json" <<'PY' || return 1
import json
import sys

result = json.load(open(sys.argv[1]))
problems, shown = [], []
for content in result['docs_blob']['contents']:
    kind, name = content['content_type'], content['content_name']
    if kind in ('module', 'filter', 'lookup', 'inventory', 'callback', 'connection', 'test'):
        doc = (content.get('doc_strings') or {}).get('doc') or {}
        if not doc.get('version_added'):
            problems.append('%s %s: no documentation with version_added' % (kind, name))
    if kind == 'role' and not content.get('readme_html'):
        problems.append('role %s: no README' % name)
    shown.append('%s %s' % (kind, name))
if not result['docs_blob']['collection_readme'].get('html'):
    problems.append('the collection README did not render')
if problems:
    sys.exit('importer: ' + '; '.join(problems))
print('importer: imported without warnings: %s' % ', '.join(shown))
PY
}

# Execution environments (AWX / Automation Platform), without a container
# engine: ansible-builder creates the build context of the shipped definition,
# execution-environment/execution-environment.yml (no image is built); then
# the steps of an image build that need no container run here on the built
# artifact: the context of a definition that installs it from its tarball, its
# galaxy step (ansible-galaxy on the context's requirements.yml) and its
# introspection, which must find the collection's Python requirements
# (meta/execution-environment.yml -> requirements.txt).
stage_ee() {
  local work; work=$(mktemp -d "${TMPDIR:-/tmp}/lync-xmpp-ee.XXXXXX")
  local status=0
  ee_contexts "$work" || status=1
  rm -rf "$work"
  return "$status"
}

ee_contexts() {
  local work=$1
  ansible-builder create -f execution-environment/execution-environment.yml -c "$work/context" > "$work/create.txt" 2>&1 \
    || { echo "ee: ansible-builder create failed:"; cat "$work/create.txt"; return 1; }
  if grep -q WARNING "$work/create.txt"; then echo "ee: ansible-builder warns:"; cat "$work/create.txt"; return 1; fi
  python - "$work/context" requirements.txt <<'PY' || return 1
import os
import sys

import yaml

context, collection_requirements = sys.argv[1], sys.argv[2]
problems = []
if 'ansible-galaxy collection install' not in open(os.path.join(context, 'Containerfile')).read():
    problems.append('the Containerfile installs no collection')
galaxy = yaml.safe_load(open(os.path.join(context, '_build', 'requirements.yml')))
if 'lync.xmpp_federation' not in [entry['name'] for entry in galaxy.get('collections', [])]:
    problems.append('its galaxy requirements do not install lync.xmpp_federation')
python = [line.strip() for line in open(os.path.join(context, '_build', 'requirements.txt')) if line.strip()]
wanted = [line.strip() for line in open(collection_requirements) if line.strip() and not line.startswith('#')]
problems.extend('its Python requirements lack %s' % each for each in wanted if each not in python)
if problems:
    sys.exit('ee: the context of execution-environment/execution-environment.yml: ' + '; '.join(problems))
PY
  # The same EE, installing the collection from the tarball just built.
  (unset PYTHONPATH ANSIBLE_COLLECTIONS_PATH
   ansible-galaxy collection build --output-path "$work" . >/dev/null) || return 1
  local tarball; tarball=$(basename "$(ls "$work"/lync-xmpp_federation-*.tar.gz)") || return 1
  cat > "$work/from-tarball.yml" <<YAML
version: 3
images:
  base_image:
    name: ee-base:latest
additional_build_files:
  - src: $work/$tarball
    dest: collections
dependencies:
  galaxy:
    collections:
      - name: collections/$tarball
        type: file
YAML
  ansible-builder create -f "$work/from-tarball.yml" -c "$work/tarball-context" > "$work/create.txt" 2>&1 \
    || { echo "ee: ansible-builder create (from the tarball) failed:"; cat "$work/create.txt"; return 1; }
  # The image build's galaxy step, as its Containerfile runs it (in _build; no
  # Galaxy server here, so without the dependencies), then its introspection.
  (cd "$work/tarball-context/_build" && env -u PYTHONPATH -u ANSIBLE_COLLECTIONS_PATH \
     ansible-galaxy collection install --offline --no-deps -r requirements.yml -p "$work/ee-collections") > "$work/galaxy.txt" 2>&1 \
    || { echo "ee: the context's galaxy step failed:"; cat "$work/galaxy.txt"; return 1; }
  ansible-builder introspect "$work/ee-collections" > "$work/introspect.txt" 2>&1 \
    || { echo "ee: ansible-builder introspect failed:"; cat "$work/introspect.txt"; return 1; }
  local requirement
  while read -r requirement; do
    case $requirement in ''|'#'*) continue ;; esac
    grep -qF -- "- '$requirement  # from collection lync.xmpp_federation'" "$work/introspect.txt" \
      || { echo "ee: introspection of the installed artifact lacks $requirement:"; cat "$work/introspect.txt"; return 1; }
  done < requirements.txt
  echo "ee: contexts created (the shipped definition; one from the tarball, whose galaxy step installs it and whose introspection finds $(grep -c 'from collection lync.xmpp_federation' "$work/introspect.txt") Python requirements of the collection)"
}

# The collection's documentation as the Ansible docsite renders it:
# antsibull-docs lint-collection-docs (every plugin's and the role's docs, the
# extra docs in docs/docsite/, links.yml, references to this collection and to
# the collections it depends on), and the changelog fragments as
# antsibull-changelog will release them.
stage_docs() {
  antsibull-docs lint-collection-docs --plugin-docs --check-extra-docs-refs \
    --validate-collection-refs all --disallow-unknown-collection-refs . || return 1
  antsibull-changelog lint || return 1
  echo "docs: antsibull-docs lint-collection-docs and antsibull-changelog lint found nothing"
}

stage_system() {
  [ -d tests/system ] || { echo "system: no tests/system"; return 0; }
  python -m pytest -q -p no:cacheprovider tests/system
}

# Every molecule scenario on the podman lab (lab/lab.py), one after the
# other; one image build serves them all. Each scenario's time is printed.
stage_molecule() {
  [ -d molecule ] || { echo "molecule: no scenarios"; return 0; }
  export CONTAINERS_CONF=$top/lab/containers.conf
  bash lab/build-image.sh >/dev/null || { echo "molecule: the lab image could not be built"; return 1; }
  local scenario start status=0 summary=()
  for scenario in molecule/*/molecule.yml; do
    scenario=$(basename "$(dirname "$scenario")")
    start=$SECONDS
    if molecule --base-config molecule/base.yml test --scenario-name "$scenario"; then
      summary+=("$scenario passed in $((SECONDS - start))s")
    else
      summary+=("$scenario FAILED after $((SECONDS - start))s")
      status=1
    fi
  done
  printf 'molecule: %s\n' "${summary[@]}"
  return "$status"
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
