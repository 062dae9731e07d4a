"""Video files to the two-stream I3D snippet features the model trains on.

``python -m rsnet.extract VIDEO_OR_DIR... --out FEATURES_DIR --rgb-weights RGB.pt --flow-weights FLOW.pt``
writes one ``VIDEO_ID.npy`` (T, 2048) float32 per video, RGB 1024 then flow 1024, the folder
``rsnet.infer --features`` reads; ``extract_videos`` is the same as a function. The recipe, its
sources, the flow methods and the speed are in docs/extract.md.

Importing this package loads neither PyAV, OpenCV nor torchvision (the ``[extract]`` extra): they
are imported where a video is decoded or a flow computed, so that a missing extra is one error line.
"""
from .pipeline import ExtractionError, Recipe, extract_videos

__all__ = ["ExtractionError", "Recipe", "extract_videos"]
