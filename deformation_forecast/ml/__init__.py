"""TensorFlow/Keras side of the plugin. Imported ONLY in the worker process.

Entry point: ``python -m deformation_forecast.ml <command> --params PARAMS.json``; the worker
prints one JSON object per line on stdout (see :mod:`deformation_forecast.ml.protocol`).
Never import this package from a QGIS process: TensorFlow's protobuf clashes with QGIS's and
aborts the program (protobuf clash; see the README's "Installing into your QGIS").
"""
