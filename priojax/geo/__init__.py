"""The GeoTIFF feature: reading scenes and footprints (raster.py), scene
manifests (manifest.py), dataset layouts expanded into manifests
(layouts.py), the TFDS builder of chips (builder.py), the export of a round's
selection for annotators (export.py) and the import of their polygons
(annotations.py)."""
