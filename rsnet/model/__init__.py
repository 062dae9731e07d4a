"""The RSKP model: the head (``head``), the model and its branches (``rskp``), the variants of
supplementary Tables 2 and 3 (``variants``), both memory banks behind one interface (``banks``),
the losses (``losses``) and inference with its one fusion rule (``predict``).

It imports no dataset, checkpoint, trainer or command.
"""
from .banks import MemoryBank, VideoBank, make_bank
from .head import Prediction, PredictionModule
from .losses import LossTerms, rskp_loss
from .predict import BRANCHES, check_branches, predict_batches, predict_packed
from .rskp import RSKP, MemoryRead, RSKPOutput

__all__ = ["MemoryBank", "VideoBank", "make_bank", "Prediction", "PredictionModule", "LossTerms", "rskp_loss",
           "BRANCHES", "check_branches", "predict_batches", "predict_packed", "RSKP", "MemoryRead", "RSKPOutput"]
