"""Training SAM 2 on our model: the image and video stages of the SAM 2 paper, on CPU.

``python -m napari_sam2.train`` trains the shipped model from synthetic microscopy;
``napari-sam2 finetune`` adapts a model to a user's labelled stacks.
"""

from .loop import TrainSettings, export_model, train

__all__ = ["TrainSettings", "export_model", "train"]
