"""Piccolo app config, so ``piccolo migrations forwards ordnung`` works too."""

from __future__ import annotations

import os

from piccolo.conf.apps import AppConfig

from ordnung.core.persistence.tables import ALL_TABLES

APP_CONFIG = AppConfig(
    app_name="ordnung",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "versions"),
    table_classes=list(ALL_TABLES),
    migration_dependencies=[],
    commands=[],
)
