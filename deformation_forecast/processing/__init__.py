"""Processing algorithms: thin adapters from QGIS parameters to the core and the worker.

Every module named ``alg_*.py`` here holds algorithm classes (subclasses of
:class:`~deformation_forecast.processing.base.DeformationAlgorithm`); the provider finds them.
"""
