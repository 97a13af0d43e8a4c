#!/usr/bin/env bash
# A second ansible-core, the oldest the collection supports, in a virtualenv of
# its own: scripts/test.sh runs sanity and units under it as well as under the
# newest one in ./.venv. Rebuilt when its requirements file changes.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
requirements=tests/requirements-ansible-core-2.16.txt
venv=.cache/venv-ansible-core-2.16
stamp=$venv/.requirements.sha256
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ ! -x "$venv/bin/ansible-test" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: creating $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r "$requirements"
  echo "$want" > "$stamp"
fi
