"""Datasets: the W-TALC annotation files (``annotations``, numpy only), the safe array loader
(``safe_npy``), the packed feature store (``feature_store``), the dataset served as packed
batches (``dataset``, torch) and ``python -m rsnet.data convert`` (``convert``).

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
