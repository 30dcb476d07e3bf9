"""Both CRM plugins loaded into a test as `hub` loads them: their hooks and their commands."""

from __future__ import annotations

from typing import Any

import plugins.amocrm as amocrm_plugin
import plugins.bitrix24 as bitrix24_plugin
from tests.support.cli import cli


def load_crm_plugins(plugin_manager: Any) -> None:
    for plugin, name in ((bitrix24_plugin, "bitrix24"), (amocrm_plugin, "amocrm")):
        plugin_manager.register(plugin, name=name)
        plugin.register_commands(cli)
