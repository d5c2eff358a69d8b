"""The napari side of napari-sam2: one small module per concern, widgets thin over ``engine``.

- ``stack``: an Image layer seen as frames along a video axis (no Qt)
- ``prompt_layers``: Points / Shapes layers <-> ``io.Prompt`` (no Qt)
- ``tasks``: long jobs as generators in thread workers (or synchronously), progress, cancel
- ``viewer_layers``: the preview / result Labels layers, slicing along the video axis
- ``candidates``: the 3 masks of an ambiguous click
- ``propagation``: what a direction means, and the propagation job
- ``commit``: the overlap rule and undo of a commit into the result Labels layer
- ``model_picker``: model name / checkpoint file and device pickers, the loading job
- ``segmenter``: the working state (model, session, layers) and the actions; no widgets
- ``widget``: the dock widget, thin controls over the segmenter
"""
