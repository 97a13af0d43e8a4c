#!/usr/bin/env bash
# Collections the role and the lab need, without a Galaxy server: they are
# taken out of the PyPI `ansible` wheel (pinned below) into the collection
# path. Only the named folders are extracted; the wheel stays in pip's cache.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
ansible_wheel_version=12.3.0
collections=(community/windows ansible/windows containers/podman)
target=.cache/collections/ansible_collections
stamp=$target/.from-ansible-$ansible_wheel_version

if [ -f "$stamp" ]; then
  exit 0
fi
wheels=.cache/wheels
mkdir -p "$wheels"
if ! ls "$wheels"/ansible-"$ansible_wheel_version"-*.whl >/dev/null 2>&1; then
  echo "setup: downloading the ansible $ansible_wheel_version wheel for ${collections[*]}"
  .venv/bin/pip download -q --no-deps --only-binary :all: -d "$wheels" "ansible==$ansible_wheel_version"
fi
.venv/bin/python - "$wheels"/ansible-"$ansible_wheel_version"-*.whl "$target" "${collections[@]}" <<'PY'
import os
import shutil
import sys
import zipfile

wheel, target, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
for name in wanted:
    shutil.rmtree(os.path.join(target, name), ignore_errors=True)
with zipfile.ZipFile(wheel) as archive:
    for member in archive.namelist():
        parts = member.split('/')
        if len(parts) > 3 and parts[0] == 'ansible_collections' and '/'.join(parts[1:3]) in wanted:
            archive.extract(member, os.path.dirname(target))
for name in wanted:
    if not os.path.isdir(os.path.join(target, name)):
        sys.exit('setup: %s is not in %s' % (name, wheel))
PY
touch "$stamp"
echo "setup: collections ${collections[*]} from ansible $ansible_wheel_version"
