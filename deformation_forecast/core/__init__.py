"""The science of the plugin: plain functions over numpy arrays and rasterio files.

Nothing in this package imports qgis or tensorflow, so it is tested (and usable) without either.
"""
