"""The bundled model's weights file (``napari-sam2-cells.pt``); the generators moved to ``napari_sam2.synthetic``."""
