"""Detection and classification mAP of RSKP (CVPR 2022), vectorized, number for number.

``evaluate(video_scores, cas, annotations, indices)`` gives what the official RSKP evaluator gives
on the same predictions, without its per-proposal Python loops (``tests/rsnet/test_evaluate.py`` holds
the agreement, ``python -m bench.eval_speed`` measures the speed). The
runs of every (video, class, threshold) come from one pass over the threshold levels of all class
activation sequences; each distinct run is scored once, with numpy's own float32 means on the same
values; the NMS is resolved in a few rounds over the overlapping pairs of all (video, class) groups
at once; the matching runs over classes and IoU thresholds together with integer-interval
arithmetic. Where the official code's order depends on ``np.argsort`` ties (equal scores), the same
``np.argsort`` is called on the same array, so the order is numpy's, whatever its sort kernel.

The RSKP protocol (``protocol="rskp"``), as the official code does it
---------------------------------------------------------------------
- Videos: the evaluated videos that have at least one ground-truth segment; classes: those in
  their ground truth, in the order of their sorted names.
- Proposals of class c in video i, none if ``video_scores[i, c] < 0.1``: for each threshold
  ``theta`` in ``np.arange(0.001, 0.040, 0.002)``, the maximal runs ``[s, e)`` of
  ``CAS[:, c] > theta`` with ``e - s >= 2``; score ``mean(CAS[s:e+1]) - mean(outer)`` (the inner
  mean reaches one snippet past the run, as the official code does; the outer snippets are
  ``[max(0, int(s - L/4)), s)`` and ``[e+1, min(T-1, int(e + L/4 + 1)))`` with ``L = e - s``, mean 0
  when empty); stored as ``(s, e+1, score)``. Means are numpy's, in the CAS dtype (float32).
- NMS per (video, class), threshold 0.5: ``np.argsort`` of the scores, the last remaining one is
  kept and drops every remaining j with ``overlap / (e_j - s_j + 1) > 0.5``, ``overlap =
  max(0, min(e_k, e_j) - max(s_k, s_j) + 1)`` (the other proposal's length + 1, not the union).
- Per class, the kept proposals of all videos are sorted by ``np.argsort(-score)``, those that
  share a snippet with an ambiguous segment of their video (``Ambiguous_test.txt``, rounded to
  snippets like the ground truth) removed, and sorted again the same way.
- Matching at IoU theta: ground truth ``range(round(start*f), round(end*f))`` with ``f = 25/16``
  (``10/4`` for UNT features), prediction ``range(s, e+1)``, IoU of the two integer sets; each
  prediction in order takes the remaining ground truth of its video and class with the highest
  IoU >= theta (the first one on ties), which is then removed. Every ground truth counts as a
  positive, also one no prediction can reach (zero-length after rounding, past the video's end).
- AP: VOC (precision made non-increasing from the right, summed over the recall steps), 0 when
  there is no true positive. A class without any proposal left makes the official code return 0
  for the whole threshold: reproduced, with a warning naming the class; ``lenient=True`` counts
  that class's AP as 0 instead. ``dmap`` is 100 x the mean AP over the classes.
- Classification mAP: per class, videos by ``np.argsort(-score)``, AP = sum of the precisions at
  the positives / number of positives (float32 precisions, as the official code), mean x 100
  over the classes that have a positive video (the official code would give NaN otherwise).

How the two protocols differ
----------------------------
``protocol="rskp"`` reproduces the official RSKP evaluator, which inherits W-TALC's THUMOS14
conventions; ``protocol="anet"`` scores the same proposals the way ActivityNet's
``eval_detection.py`` scores detections. Same in both: the proposals' runs, scores and NMS, the
ambiguous filter, the greedy matching (each prediction, best score first, takes the unmatched
ground truth of its video and class with the highest IoU >= theta) and the all-point interpolated
AP over the precision envelope. Different:

- Which classes a video proposes. rskp: those scoring at least 0.1. anet: the same, and a video
  where none does proposes its best-scoring class, as the ActivityNet-capable codebases (ACM-Net,
  CO2-Net, DELU) do: with 100 classes a video's scores are often all below 0.1.

- Time and IoU. rskp compares snippet-index sets: the ground truth is rounded to snippets
  (``round(t * 25/16)``) and the proposal ``[s, e+1)`` carries one extra snippet, so an IoU is a
  ratio of integer counts, and a segment shorter than half a snippet can round to nothing. anet
  works in seconds: a proposal is ``[s, e+1] * 16/25`` s (snippet x seconds per snippet, the
  seconds ``rsnet.infer`` writes), a detections file's segment is taken as written, and the IoU is
  the continuous temporal IoU with the unrounded ground truth.
- Equal scores. rskp ranks a class's proposals as the RSKP evaluator does: ``np.argsort(-score)``,
  the ambiguous filter, ``np.argsort(-score)`` again. anet applies the filter, then ranks as
  ActivityNet's code ranks its table: ``np.argsort(score)[::-1]`` on the class's detections in
  their order (the proposals' order, which ``rsnet.infer`` writes; a detections file's own order).
  numpy's sort is not stable, so equal scores land where that call puts them, under each protocol.
- Ties. Under both, a prediction equally close to two ground truths takes the first listed
  (ActivityNet's code leaves that to ``np.argsort``). The ambiguous filter is rskp's snippet rule.
- A class without a single proposal. rskp returns 0 for the whole IoU threshold (the official
  code's early return; ``lenient=True`` turns that off); anet counts that class's AP as 0 and
  averages as usual, like ActivityNet.
- Thresholds. rskp is defined at 0.1:0.1:0.7 (configurable for exploration); anet defaults to the
  same for comparability and is meant to take ``iou_thresholds`` (``ACTIVITYNET_IOUS``,
  0.5:0.05:0.95, what a training run with ``--protocol anet`` reports, as on ActivityNet1.2).

Command line: ``python -m rsnet.evaluate --predictions P.npz --annotations DIR [--protocol
rskp|anet] [--lenient] [--subset S] [--out R.json]``; ``--detections D.json`` instead of
``--predictions`` scores a detections file in the ActivityNet results format (``python -m
rsnet.infer`` writes one) with the same matching and AP (``evaluate_detections``).

The package: ``checks`` (the inputs), ``classification`` (cmAP), ``proposals`` (runs, scores, NMS),
``matching`` (ranking, the ambiguous filter, matching, AP: ``evaluate`` and ``detections``),
``detections_file`` (``evaluate_detections``), ``command`` (the command line). It imports no torch.
"""
from ..protocols import ACTIVITYNET_IOUS, CLASS_THRESHOLD, DEFAULT_IOUS, PROTOCOL_IOUS, PROTOCOLS, best_class_of
from .classification import classification_map
from .command import command_line
from .detections_file import evaluate_detections, load_detections
from .matching import detections, evaluate
from .result import EvalResult

__all__ = ["ACTIVITYNET_IOUS", "CLASS_THRESHOLD", "DEFAULT_IOUS", "PROTOCOL_IOUS", "PROTOCOLS", "best_class_of",
           "classification_map", "command_line", "evaluate_detections", "load_detections", "detections", "evaluate",
           "EvalResult"]
