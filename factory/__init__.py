"""How the shipped model was made: its training, averaging, presence calibration,
evaluation, and the check of its lineage record (factory/README.md). Not part of the
package (the wheel ships ``src/napari_sam2`` only); run from the repository root, e.g.
``python -m factory.train``."""
