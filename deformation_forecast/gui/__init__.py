"""Desktop-only parts: docks, map tools, styling, settings. Never imported under qgis_process."""
