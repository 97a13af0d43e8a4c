# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every PowerShell script the role and the playbooks run, parsed with tree-sitter's PowerShell grammar.

No Windows host and no PowerShell are available here, so this is the only place the scripts are read before they
reach a host: a syntax error would otherwise first show on a production Edge. The scripts are found, not listed:
every .ps1 file under roles/ and playbooks/, and every win_powershell task's script in every YAML file there (an
inline script, or the file its lookup names).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

import pytest
import yaml

COLLECTION = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
SEARCHED = ('roles', 'playbooks')
WIN_POWERSHELL = ('ansible.windows.win_powershell', 'win_powershell')
FILE_LOOKUP = re.compile(r"""\A\{\{\s*lookup\(\s*['"](?:ansible\.builtin\.)?file['"]\s*,\s*['"]([^'"]+)['"]\s*\)\s*\}\}\Z""")
# Tasks nest in these keys (blocks, rescue, always); handlers are tasks too.
NESTING = ('block', 'rescue', 'always')

try:
    import tree_sitter
    import tree_sitter_powershell
    PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))
    NO_PARSER = None
except ImportError as error:  # pragma: no cover - depends on the venv
    PARSER = None
    NO_PARSER = ('tree-sitter and tree-sitter-powershell are not installed in this Python (%s): pip install -r '
                 'tests/unit/requirements.txt (ansible-test installs it itself; scripts/setup.sh puts it in .venv)'
                 % error)

needs_parser = pytest.mark.skipif(PARSER is None, reason=NO_PARSER or '')


def syntax_problems(source):
    """[(line, column, kind, text)] of every ERROR or MISSING node; [] when the script parses."""
    if isinstance(source, str):
        source = source.encode('utf-8')
    tree = PARSER.parse(source)
    problems = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == 'ERROR' or node.is_missing:
            kind = 'missing %s' % node.type if node.is_missing else 'unparsable'
            text = source[node.start_byte:node.end_byte].decode('utf-8', 'replace')[:60]
            problems.append((node.start_point[0] + 1, node.start_point[1] + 1, kind, text))
        stack.extend(node.children)
    if tree.root_node.has_error and not problems:
        problems.append((1, 1, 'error', 'the tree reports an error'))
    return sorted(problems)


def _tasks(entries):
    for entry in entries or []:
        if not isinstance(entry, dict):
            continue
        yield entry
        for key in NESTING + ('tasks', 'pre_tasks', 'post_tasks', 'handlers'):
            if isinstance(entry.get(key), list):
                yield from _tasks(entry[key])


def _yaml_files(root=COLLECTION):
    for top in SEARCHED:
        for folder, _dirs, files in os.walk(os.path.join(root, top)):
            for name in sorted(files):
                if name.endswith(('.yml', '.yaml')):
                    yield os.path.join(folder, name)


def _role_files_dir(path, root):
    """roles/NAME/tasks/x.yml -> roles/NAME/files."""
    parts = os.path.relpath(path, root).split(os.sep)
    if parts[0] == 'roles' and len(parts) > 2:
        return os.path.join(root, 'roles', parts[1], 'files')
    return os.path.join(os.path.dirname(path), 'files')


def powershell_scripts(root=COLLECTION):
    """[(label, source text)] of every script: each .ps1 file, each win_powershell task's inline script."""
    found = []
    for top in SEARCHED:
        for folder, _dirs, files in os.walk(os.path.join(root, top)):
            for name in sorted(files):
                if name.lower().endswith('.ps1'):
                    path = os.path.join(folder, name)
                    with open(path, 'rb') as handle:
                        found.append((os.path.relpath(path, root), handle.read().decode('utf-8')))
    for path in _yaml_files(root):
        with open(path) as handle:
            data = yaml.safe_load(handle)
        if not isinstance(data, list):
            continue
        for task in _tasks(data):
            for module in WIN_POWERSHELL:
                arguments = task.get(module)
                if not isinstance(arguments, dict):
                    continue
                label = '%s: %s' % (os.path.relpath(path, root), task.get('name'))
                script = arguments.get('script')
                assert script is not None, '%s runs no script of its own (path: is not checked here)' % label
                looked_up = FILE_LOOKUP.match(script.strip())
                if looked_up:
                    # The file must exist where the role's lookup finds it; its text is parsed as a .ps1 file above.
                    target = os.path.join(_role_files_dir(path, root), looked_up.group(1))
                    assert os.path.isfile(target), '%s: %s does not exist' % (label, target)
                    continue
                assert '{{' not in script, '%s: a templated inline script cannot be parsed; use a file' % label
                found.append((label, script))
    return found


SCRIPTS = powershell_scripts()


def test_the_scripts_are_found():
    labels = [label for label, _text in SCRIPTS]
    for name in ('list_group.ps1', 'apply_group.ps1', 'probe_flows.ps1'):
        assert os.path.join('roles', 'xmpp_firewall', 'files', name) in labels


def test_every_win_powershell_task_is_found_and_its_script_exists():
    # The same walk, counted: the role's listing, its two removal steps, and the verify probe.
    calls = []
    for path in _yaml_files():
        with open(path) as handle:
            data = yaml.safe_load(handle)
        for task in _tasks(data if isinstance(data, list) else []):
            calls.extend(task.get(module) for module in WIN_POWERSHELL if isinstance(task.get(module), dict))
    assert len(calls) >= 4
    assert all(FILE_LOOKUP.match(call['script'].strip()) for call in calls)


@needs_parser
@pytest.mark.parametrize('label, source', SCRIPTS, ids=[label for label, _source in SCRIPTS])
def test_every_script_parses(label, source):
    assert syntax_problems(source) == [], label


@needs_parser
@pytest.mark.parametrize('broken, where', [
    # An unclosed condition: the brace that should close the if is taken as closing the parenthesis.
    ("foreach ($rule in $rules) { if ($rule.Grouping -eq $Group { $rule.Name } }\n", 1),
    # A string that never ends.
    ("$name = 'Lync XMPP Federation\n$other = 1\n", 1),
    # A hashtable without its closing brace, two lines on.
    ("$result = @{\n    ours = $ours\n    policy = @{ modify_state = 1\n", None),
    # A method call whose parenthesis is never closed.
    ("$unique = 'x'\n$policy.Rules.Remove($unique\n$x = 1\n", None),
])
def test_a_broken_script_is_caught(broken, where):
    problems = syntax_problems(broken)
    assert problems, broken
    if where is not None:
        assert problems[0][0] == where


@needs_parser
def test_a_broken_copy_of_a_real_script_is_caught():
    # The real probe script with one closing brace taken out must fail, so the parse test above can fail.
    label, source = [(label, text) for label, text in SCRIPTS if label.endswith('probe_flows.ps1')][0]
    index = source.rindex('}')
    assert syntax_problems(source[:index] + source[index + 1:]) != [], label


def test_inline_scripts_in_yaml_are_extracted(tmp_path):
    # A playbook with an inline script, in a block, is found by the same walk (and its text parsed).
    playbooks = tmp_path / 'playbooks'
    playbooks.mkdir()
    (playbooks / 'inline.yml').write_text(
        '- hosts: all\n  tasks:\n    - name: Outer\n      block:\n        - name: Inline\n'
        '          ansible.windows.win_powershell:\n            script: |\n              $x = 1\n')
    assert powershell_scripts(str(tmp_path)) == [(os.path.join('playbooks', 'inline.yml') + ': Inline', '$x = 1\n')]
