# -*- coding: utf-8 -*-
# Copyright (c) 2026, lync.xmpp_federation contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests never take the machine's real host lock: a run on this machine (a system test, the lab) would
wait for them, and they for it."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.lync.xmpp_federation.plugins.module_utils import backend, detect


@pytest.fixture(autouse=True)
def private_host_lock(tmp_path, monkeypatch):
    path = str(tmp_path / 'host.lock')
    monkeypatch.setattr(detect, 'HOST_LOCK_PATH', path)
    monkeypatch.setattr(backend.Backend, 'lock_path', path)
    return path
