"""Fine-tuning SAM 2 on labelled stacks: ``napari-sam2 finetune`` and its Python API.

The image and video stages of the SAM 2 paper, on CPU: :mod:`~napari_sam2.finetune.steps`
(one step of each, with :mod:`~napari_sam2.finetune.losses` and the simulated user's
:mod:`~napari_sam2.finetune.prompts`), :mod:`~napari_sam2.finetune.data` (batches and
clips cut from labelled arrays), :mod:`~napari_sam2.finetune.loop` (schedule, resumable
checkpoints, log, export). :func:`finetune` (:mod:`~napari_sam2.finetune.arrays`) trains
a loaded model on arrays, :func:`~napari_sam2.finetune.files.finetune_files` on image and
label files as the command line does. The same loop trained the shipped model from
synthetic data (``factory/`` in the repository, not installed).
"""

from .arrays import FINETUNE_SETTINGS, LabelledStack, finetune
from .loop import TrainSettings, export_model, train

__all__ = ["FINETUNE_SETTINGS", "LabelledStack", "TrainSettings", "export_model", "finetune", "train"]
