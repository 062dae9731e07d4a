"""Datasets: the W-TALC annotation files (``annotations``, numpy only), ActivityNet JSON
annotations (``activitynet_json``, numpy only), the safe array loader (``safe_npy``), the packed
feature store (``feature_store``) and per-video feature folders (``feature_folder``), the dataset
served as packed batches (``dataset``, torch; ``json_dataset`` for the JSON layout), a dataset
from one's own labels (``own_labels``) and ``python -m rsnet.data convert | export-json | build``
(``command``).

Importing this package pulls in no torch: the evaluator reads annotations through it.
"""
from ..errors import DataError
from .annotations import (
                          LENGTH_TOLERANCE,
                          Annotations,
                          annotation_folder,
                          check_evaluable,
                          check_lengths,
                          expected_length,
                          load_annotations,
)

__all__ = ["DataError", "LENGTH_TOLERANCE", "Annotations", "annotation_folder", "check_evaluable", "check_lengths",
           "expected_length", "load_annotations"]
