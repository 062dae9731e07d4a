"""ActivityNet's official temporal detection evaluator, ported to Python 3 as a test oracle.

Source: activitynet/ActivityNet, ``Evaluation/eval_detection.py`` and ``Evaluation/utils.py`` at
commit 82304fa9f4a7219421df13dae6347a445c4cf5bc (the repository's HEAD, 2021-01-06; the last
change to eval_detection.py is ebc8aebb4018a758c4efb35bb7ab547d31b1eb1e, 2018-05-04, "assigns a
zero AP score for the missing class label"). The algorithm is kept loop for loop: the ground
truth and prediction tables in the same row order, ``argsort()[::-1]`` on the scores of a class
and on the tIoUs of a prediction, the same lock/true-positive/false-positive loops, the same
cumulative sums, the VOC 2011 interpolated AP of ``interpolated_prec_rec`` and the tIoU of
``segment_iou``. It is an oracle for ``tests/bench/test_activitynet_oracle.py``: faithful, not fast.
Checked once against the original itself (pandas 3.1.1, numpy 2.4.6, Python 3.11, edited only for
print, iteritems, np.float, urllib2 and joblib) on that test's random ActivityNet1.2 and THUMOS14
files: the same mAP per threshold, bit for bit.

Changes, every one of them:

Python 3
- ``print`` statements became ``print()`` calls; ``dict.iteritems()`` became ``dict.items()``;
  ``xrange`` became ``range``; ``np.float`` (removed from numpy) became ``float``, its meaning.
- Dict iteration follows insertion order in Python 3 and hash order in Python 2. It decides the
  row order of the tables, which only matters where ``argsort`` meets equal values (equal scores,
  equal tIoUs): here the order is that of the dicts given, which is the order of the JSON file
  ``json.load`` reads.

In-memory input, no network
- ``ANETdetection`` takes the ground truth and the predictions as the dicts ``json.load`` would
  return for the two files (``{"database": ..., "taxonomy": ..., "version": ...}`` and
  ``{"results": ..., "version": ..., "external_data": ...}``) instead of file names.
- No blocked-video list is fetched (``get_blocked_videos`` called a web API, and
  ``check_status=False`` skipped it); ``blocked_videos`` may be passed, default none.
- joblib's ``Parallel`` over classes became a plain loop over the same calls (same results).
- The "No predictions of label" warning is printed only when ``verbose`` (the original printed
  it always).

pandas (not a dependency of rskp's tests) replaced by ``_Table``, numpy columns in row order
- ``DataFrame(dict)`` -> ``_Table(dict)``; ``groupby(col).get_group(key).reset_index(drop=True)``
  -> ``rows_where(col, key)`` (the group's rows in table order, renumbered from 0);
  ``df.empty`` -> ``len(table) == 0``; ``df.loc[idx].reset_index(drop=True)`` -> ``take(idx)``;
  ``df.iterrows()`` -> ``range(len(table))`` with the row's columns read by index;
  ``groupby('video-id')`` + ``get_group`` + ``reset_index()`` -> ``video_rows``: the rows of the
  video in table order, whose positions are the ``'index'`` column that ``reset_index()`` adds;
  the exception of a missing group -> ``None``.
- The per-class groups are looked up with ``rows_where`` as ``get_group`` did; a class without
  predictions still gives the empty table (and the warning) of ``_get_predictions_with_label``.

The MIT License (MIT)

Copyright (c) 2015 ActivityNet

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""
from __future__ import annotations

import numpy as np


class _Table:
    """The few pandas DataFrame operations the evaluator uses, on numpy columns in row order."""

    def __init__(self, columns: dict):
        # pandas makes a float64 column of Python floats, int64 of ints, object of strings
        self.columns = {name: np.asarray(values) if len(values) else np.zeros(0) for name, values in columns.items()}

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def take(self, rows) -> "_Table":
        """``df.loc[rows].reset_index(drop=True)``."""
        rows = np.asarray(rows, dtype=np.int64)
        return _Table({name: col[rows] for name, col in self.columns.items()})

    def rows_where(self, name: str, key) -> "_Table":
        """``df.groupby(name).get_group(key).reset_index(drop=True)``, or an empty table."""
        return self.take(np.flatnonzero(self.columns[name] == key))

    def video_rows(self) -> dict:
        """``df.groupby('video-id')``: video id -> its row positions in table order (the group's
        ``reset_index()['index']``)."""
        groups: dict = {}
        for position, video in enumerate(self.columns["video-id"].tolist()):
            groups.setdefault(video, []).append(position)
        return {video: np.array(rows, dtype=np.int64) for video, rows in groups.items()}


class ANETdetection(object):

    GROUND_TRUTH_FIELDS = ['database', 'taxonomy', 'version']
    PREDICTION_FIELDS = ['results', 'version', 'external_data']

    def __init__(self, ground_truth, prediction,
                 ground_truth_fields=GROUND_TRUTH_FIELDS,
                 prediction_fields=PREDICTION_FIELDS,
                 tiou_thresholds=np.linspace(0.5, 0.95, 10),
                 subset='validation', verbose=False,
                 blocked_videos=()):
        if not ground_truth:
            raise IOError('Please input a valid ground truth file.')
        if not prediction:
            raise IOError('Please input a valid prediction file.')
        self.subset = subset
        self.tiou_thresholds = tiou_thresholds
        self.verbose = verbose
        self.gt_fields = ground_truth_fields
        self.pred_fields = prediction_fields
        self.ap = None
        self.blocked_videos = list(blocked_videos)
        # Import ground truth and predictions.
        self.ground_truth, self.activity_index = self._import_ground_truth(ground_truth)
        self.prediction = self._import_prediction(prediction)

        if self.verbose:
            print('[INIT] Loaded annotations from {} subset.'.format(subset))
            nr_gt = len(self.ground_truth)
            print('\tNumber of ground truth instances: {}'.format(nr_gt))
            nr_pred = len(self.prediction)
            print('\tNumber of predictions: {}'.format(nr_pred))
            print('\tFixed threshold for tiou score: {}'.format(self.tiou_thresholds))

    def _import_ground_truth(self, data):
        """Checks that the ground truth (the dict of the json file) is well formatted, and returns
        the ground truth instances (table) and the activity classes (dict: label -> index)."""
        # Checking format
        if not all([field in data.keys() for field in self.gt_fields]):
            raise IOError('Please input a valid ground truth file.')

        # Read ground truth data.
        activity_index, cidx = {}, 0
        video_lst, t_start_lst, t_end_lst, label_lst = [], [], [], []
        for videoid, v in data['database'].items():
            if self.subset != v['subset']:
                continue
            if videoid in self.blocked_videos:
                continue
            for ann in v['annotations']:
                if ann['label'] not in activity_index:
                    activity_index[ann['label']] = cidx
                    cidx += 1
                video_lst.append(videoid)
                t_start_lst.append(float(ann['segment'][0]))
                t_end_lst.append(float(ann['segment'][1]))
                label_lst.append(activity_index[ann['label']])

        ground_truth = _Table({'video-id': video_lst,
                               't-start': t_start_lst,
                               't-end': t_end_lst,
                               'label': label_lst})
        return ground_truth, activity_index

    def _import_prediction(self, data):
        """Checks that the predictions (the dict of the json file) are well formatted, and returns
        the prediction instances (table). A label outside the ground truth's classes raises
        KeyError, as in the original."""
        # Checking format...
        if not all([field in data.keys() for field in self.pred_fields]):
            raise IOError('Please input a valid prediction file.')

        # Read predictions.
        video_lst, t_start_lst, t_end_lst = [], [], []
        label_lst, score_lst = [], []
        for videoid, v in data['results'].items():
            if videoid in self.blocked_videos:
                continue
            for result in v:
                label = self.activity_index[result['label']]
                video_lst.append(videoid)
                t_start_lst.append(float(result['segment'][0]))
                t_end_lst.append(float(result['segment'][1]))
                label_lst.append(label)
                score_lst.append(result['score'])
        prediction = _Table({'video-id': video_lst,
                             't-start': t_start_lst,
                             't-end': t_end_lst,
                             'label': label_lst,
                             'score': score_lst})
        return prediction

    def _get_predictions_with_label(self, prediction_by_label, label_name, cidx):
        """Get all predicitons of the given label. Return empty table if there
        is no predcitions with the given label.
        """
        rows = prediction_by_label.rows_where('label', cidx)
        if len(rows) == 0:
            if self.verbose:  # the original prints it always; a test would drown in it
                print('Warning: No predictions of label \'%s\' were provdied.' % label_name)
            return _Table({})
        return rows

    def wrapper_compute_average_precision(self):
        """Computes average precision for each class in the subset.
        """
        ap = np.zeros((len(self.tiou_thresholds), len(self.activity_index)))

        # Adaptation to query faster
        ground_truth_by_label = self.ground_truth
        prediction_by_label = self.prediction

        results = [compute_average_precision_detection(
                       ground_truth=ground_truth_by_label.rows_where('label', cidx),
                       prediction=self._get_predictions_with_label(prediction_by_label, label_name, cidx),
                       tiou_thresholds=self.tiou_thresholds,
                   ) for label_name, cidx in self.activity_index.items()]

        for i, cidx in enumerate(self.activity_index.values()):
            ap[:, cidx] = results[i]

        return ap

    def evaluate(self):
        """Evaluates a prediction file. For the detection task we measure the
        interpolated mean average precision to measure the performance of a
        method.
        """
        self.ap = self.wrapper_compute_average_precision()

        self.mAP = self.ap.mean(axis=1)
        self.average_mAP = self.mAP.mean()

        if self.verbose:
            print('[RESULTS] Performance on ActivityNet detection task.')
            print('\tAverage-mAP: {}'.format(self.average_mAP))


def compute_average_precision_detection(ground_truth, prediction, tiou_thresholds=np.linspace(0.5, 0.95, 10)):
    """Compute average precision (detection task) between ground truth and
    predictions tables. If multiple predictions occurs for the same
    predicted segment, only the one with highest score is matches as
    true positive. This code is greatly inspired by Pascal VOC devkit.

    Parameters
    ----------
    ground_truth : _Table
        Required fields: ['video-id', 't-start', 't-end']
    prediction : _Table
        Required fields: ['video-id, 't-start', 't-end', 'score']
    tiou_thresholds : 1darray, optional
        Temporal intersection over union threshold.

    Outputs
    -------
    ap : float
        Average precision score.
    """
    ap = np.zeros(len(tiou_thresholds))
    if len(prediction) == 0:
        return ap

    npos = float(len(ground_truth))
    lock_gt = np.ones((len(tiou_thresholds), len(ground_truth))) * -1
    # Sort predictions by decreasing score order.
    sort_idx = prediction.columns['score'].argsort()[::-1]
    prediction = prediction.take(sort_idx)

    # Initialize true positive and false positive vectors.
    tp = np.zeros((len(tiou_thresholds), len(prediction)))
    fp = np.zeros((len(tiou_thresholds), len(prediction)))

    # Adaptation to query faster
    ground_truth_gbvn = ground_truth.video_rows()
    gt_segments = np.stack([ground_truth.columns['t-start'], ground_truth.columns['t-end']], axis=1)
    pred_segments = np.stack([prediction.columns['t-start'], prediction.columns['t-end']], axis=1)

    # Assigning true positive to truly grount truth instances.
    for idx in range(len(prediction)):
        # Check if there is at least one ground truth in the video associated.
        this_gt_index = ground_truth_gbvn.get(prediction.columns['video-id'][idx])
        if this_gt_index is None:
            fp[:, idx] = 1
            continue

        tiou_arr = segment_iou(pred_segments[idx], gt_segments[this_gt_index])
        # We would like to retrieve the predictions with highest tiou score.
        tiou_sorted_idx = tiou_arr.argsort()[::-1]
        for tidx, tiou_thr in enumerate(tiou_thresholds):
            for jdx in tiou_sorted_idx:
                if tiou_arr[jdx] < tiou_thr:
                    fp[tidx, idx] = 1
                    break
                if lock_gt[tidx, this_gt_index[jdx]] >= 0:
                    continue
                # Assign as true positive after the filters above.
                tp[tidx, idx] = 1
                lock_gt[tidx, this_gt_index[jdx]] = idx
                break

            if fp[tidx, idx] == 0 and tp[tidx, idx] == 0:
                fp[tidx, idx] = 1

    tp_cumsum = np.cumsum(tp, axis=1).astype(float)
    fp_cumsum = np.cumsum(fp, axis=1).astype(float)
    recall_cumsum = tp_cumsum / npos

    precision_cumsum = tp_cumsum / (tp_cumsum + fp_cumsum)

    for tidx in range(len(tiou_thresholds)):
        ap[tidx] = interpolated_prec_rec(precision_cumsum[tidx, :], recall_cumsum[tidx, :])

    return ap


# ----------------------------------------------------------------------------------------------
# Evaluation/utils.py (get_blocked_videos, a web API call, left out)


def interpolated_prec_rec(prec, rec):
    """Interpolated AP - VOCdevkit from VOC 2011.
    """
    mprec = np.hstack([[0], prec, [0]])
    mrec = np.hstack([[0], rec, [1]])
    for i in range(len(mprec) - 1)[::-1]:
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.where(mrec[1::] != mrec[0:-1])[0] + 1
    ap = np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx])
    return ap


def segment_iou(target_segment, candidate_segments):
    """Compute the temporal intersection over union between a
    target segment and all the test segments.

    Parameters
    ----------
    target_segment : 1d array
        Temporal target segment containing [starting, ending] times.
    candidate_segments : 2d array
        Temporal candidate segments containing N x [starting, ending] times.

    Outputs
    -------
    tiou : 1d array
        Temporal intersection over union score of the N's candidate segments.
    """
    tt1 = np.maximum(target_segment[0], candidate_segments[:, 0])
    tt2 = np.minimum(target_segment[1], candidate_segments[:, 1])
    # Intersection including Non-negative overlap score.
    segments_intersection = (tt2 - tt1).clip(0)
    # Segment union.
    segments_union = (candidate_segments[:, 1] - candidate_segments[:, 0]) \
        + (target_segment[1] - target_segment[0]) - segments_intersection
    # Compute overlap as the ratio of the intersection
    # over union of two segments.
    tIoU = segments_intersection.astype(float) / segments_union
    return tIoU


def wrapper_segment_iou(target_segments, candidate_segments):
    """Compute intersection over union btw segments
    Parameters
    ----------
    target_segments : ndarray
        2-dim array in format [m x 2:=[init, end]]
    candidate_segments : ndarray
        2-dim array in format [n x 2:=[init, end]]
    Outputs
    -------
    tiou : ndarray
        2-dim array [n x m] with IOU ratio.
    Note: It assumes that candidate-segments are more scarce that target-segments
    """
    if candidate_segments.ndim != 2 or target_segments.ndim != 2:
        raise ValueError('Dimension of arguments is incorrect')

    n, m = candidate_segments.shape[0], target_segments.shape[0]
    tiou = np.empty((n, m))
    for i in range(m):
        tiou[:, i] = segment_iou(target_segments[i, :], candidate_segments)

    return tiou
