# shellcheck shell=bash
# Sourced by the project's scripts: the venv and the collection path.
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$top/.venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$top/.cache/collections"
export ANSIBLE_ROLES_PATH="$top/roles"
export PYTHONPATH="$top/.cache/collections${PYTHONPATH:+:$PYTHONPATH}"
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0
