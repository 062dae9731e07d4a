"""The W-TALC loader: packed batches, fixed-length training sampling, the packed feature store, and
a clear error naming the file for every bad input."""
import os
import re
import warnings

import numpy as np
import pytest
import torch

from rsnet.data import DataError, check_evaluable, load_annotations
from rsnet.data.command import main as data_main
from rsnet.data.convert import convert
from rsnet.data.dataset import WTALCDataset, hold_out, stratified_snippets
from rsnet.data.feature_store import write_store
from rsnet.synthetic import SyntheticSpec, generate

TINY = SyntheticSpec(n_train=6, n_test=5, length_scale=0.15)


@pytest.fixture
def tiny_root(tmp_path):
    return generate(tmp_path / "tiny", TINY, seed=1)


def _feature_file(root):
    return root / "Thumos14reduced" / "Thumos14reduced-I3D-JOINTFeatures.npy"


def _rewrite_features(root, edit):
    path = _feature_file(root)
    feats = np.load(path, allow_pickle=True)
    feats = edit(feats)
    np.save(path, feats, allow_pickle=True)


def _shifted(feats):
    for f in feats:
        f += 1
    return feats


def test_loads_and_packs(tiny_root):
    ds = WTALCDataset(tiny_root)
    assert len(ds.train_indices) == 6 and len(ds.test_indices) == 5
    batch = next(ds.train_batches(epoch=0, seed=0, batch_size=4))
    lengths = ds.lengths(batch.index.numpy())
    assert batch.x.shape == (lengths.sum(), 2048) and batch.x.dtype == torch.float32
    assert batch.cu_seqlens.tolist() == [0, *np.cumsum(lengths).tolist()]
    assert torch.equal(batch.labels, torch.from_numpy(ds.annotations.video_labels[batch.index.numpy()]))
    assert (batch.labels.sum(1) >= 1).all()


def _batches(ds):
    return list(ds.train_batches(epoch=1, seed=0, batch_size=4)) + list(ds.test_batches(3))


def test_features_kept_as_tensors_pack_the_same_batches(tiny_root):
    """keep_features_on stores device tensors; packing them gives the batches packing numpy gives."""
    ds = WTALCDataset(tiny_root)
    expected = _batches(ds)
    assert not ds.keep_features_on("cpu")  # only CUDA devices hold them
    ds.features = [torch.from_numpy(f) for f in ds.features]  # what keep_features_on does on a GPU
    for got, want in zip(_batches(ds), expected, strict=True):
        assert torch.equal(got.x, want.x) and torch.equal(got.cu_seqlens, want.cu_seqlens)
        assert torch.equal(got.labels, want.labels) and torch.equal(got.index, want.index)


@pytest.mark.gpu
def test_features_kept_on_the_gpu(tiny_root):
    ds = WTALCDataset(tiny_root)
    expected = _batches(ds)
    assert ds.keep_features_on("cuda") and ds.features[0].is_cuda
    assert not ds.keep_features_on("cuda")  # already there
    for got, want in zip(_batches(ds), expected, strict=True):
        got = got.to("cuda")
        assert got.x.is_cuda and torch.equal(got.x.cpu(), want.x)
        assert got.cu_seqlens.tolist() == want.cu_seqlens.tolist()


def test_sampler_is_seeded_per_epoch(tiny_root):
    ds = WTALCDataset(tiny_root)
    order = lambda epoch, seed: torch.cat([b.index for b in ds.train_batches(epoch, seed, 4)]).tolist()
    assert order(3, 0) == order(3, 0)
    assert order(3, 0) != order(4, 0)  # a new permutation every epoch
    assert order(3, 0) != order(3, 1)  # and for every seed
    assert sorted(order(3, 0)) == sorted(ds.train_indices.tolist())


def test_stratified_snippets_draw_one_snippet_per_equal_bin():
    rng = np.random.default_rng(0)
    assert stratified_snippets(7, 7, rng).tolist() == list(range(7))
    assert stratified_snippets(3, 60, rng).tolist() == [0, 1, 2]  # a shorter video stays whole
    draws = np.stack([stratified_snippets(103, 10, rng) for _ in range(400)])
    edges = np.arange(11) * 103 // 10
    assert ((draws >= edges[:-1]) & (draws < edges[1:])).all()  # sorted, one per bin
    for k in range(10):  # every snippet of a bin is drawn
        assert set(draws[:, k].tolist()) == set(range(edges[k], edges[k + 1]))


def test_fixed_length_training_batches_are_the_sampled_snippets(tiny_root):
    """max_seqlen samples each long training video, from (seed, epoch, video) whatever the batching;
    short videos, the test split and the unsampled dataset stay whole."""
    whole = WTALCDataset(tiny_root)
    ds = WTALCDataset(tiny_root, max_seqlen=20)
    lengths = dict(zip(ds.train_indices.tolist(), ds.lengths(ds.train_indices).tolist()))
    assert min(lengths.values()) < 20 < max(lengths.values())

    def snippets(epoch, seed, batch_size):
        out = {}
        for batch in ds.train_batches(epoch, seed, batch_size):
            cu = batch.cu_seqlens.tolist()
            for k, v in enumerate(batch.index.tolist()):
                x, full = batch.x[cu[k]:cu[k + 1]], torch.from_numpy(ds.features[v])
                rows = [int(torch.nonzero((full == row).all(1))[0]) for row in x]  # which snippets were packed
                assert torch.equal(x, full[rows])
                out[v] = rows
        return out

    drawn = snippets(epoch=2, seed=0, batch_size=4)
    assert {v: len(r) for v, r in drawn.items()} == {v: min(n, 20) for v, n in lengths.items()}
    assert all(r == sorted(r) and len(set(r)) == len(r) for r in drawn.values())
    assert drawn == snippets(epoch=2, seed=0, batch_size=3)  # deterministic, whatever the batch size
    assert drawn != snippets(epoch=3, seed=0, batch_size=4) and drawn != snippets(epoch=2, seed=1, batch_size=4)
    for got, want in zip(ds.test_batches(3), whole.test_batches(3), strict=True):
        assert torch.equal(got.x, want.x)
    long_video = max(lengths, key=lengths.get)
    whole_batch = next(b for b in whole.train_batches(2, 0, 10))
    assert whole_batch.x.shape[0] == sum(lengths.values()) and len(drawn[long_video]) == 20


def test_a_negative_max_seqlen_is_refused(tiny_root):
    with pytest.raises(DataError, match="max_seqlen must be >= 0"):
        WTALCDataset(tiny_root, max_seqlen=-1)


def test_test_split_in_annotation_order(tiny_root):
    ds = WTALCDataset(tiny_root)
    assert torch.cat([b.index for b in ds.test_batches(2)]).tolist() == ds.test_indices.tolist()


def test_missing_file_is_named(tiny_root):
    (tiny_root / "Thumos14reduced" / "segments.npy").unlink()
    with pytest.raises(DataError, match="segments.npy"):
        WTALCDataset(tiny_root)


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(DataError, match="dataset folder not found"):
        WTALCDataset(tmp_path)


def test_corrupt_file_is_named(tiny_root):
    (tiny_root / "Thumos14reduced" / "duration.npy").write_bytes(b"not a numpy file")
    with pytest.raises(DataError, match="duration.npy"):
        WTALCDataset(tiny_root)


def test_arrays_of_different_lengths(tiny_root):
    path = tiny_root / "Thumos14reduced" / "duration.npy"
    np.save(path, np.load(path)[:-1])
    with pytest.raises(DataError, match="duration.npy has 10 entries"):
        WTALCDataset(tiny_root)


def test_wrong_feature_width(tiny_root):
    _rewrite_features(tiny_root, lambda f: np.array([v[:, :1024] for v in f] + [None], dtype=object)[:-1])
    with pytest.raises(DataError, match=r"expected \(T, 2048\)"):
        WTALCDataset(tiny_root)


def test_nan_features(tiny_root):
    def poison(feats):
        feats[2][0, 5] = np.nan
        return feats
    _rewrite_features(tiny_root, poison)
    with pytest.raises(DataError, match="video 2 has NaN"):
        WTALCDataset(tiny_root)


def test_empty_video(tiny_root):
    def empty(feats):
        feats[1] = np.zeros((0, 2048), dtype=np.float32)
        return feats
    _rewrite_features(tiny_root, empty)
    with pytest.raises(DataError, match="video 1 is empty"):
        WTALCDataset(tiny_root)


def test_video_count_mismatch(tiny_root):
    _rewrite_features(tiny_root, lambda f: f[:-1])
    with pytest.raises(DataError, match="holds 10 videos but the annotations list 11"):
        WTALCDataset(tiny_root)


def test_label_not_in_class_list(tiny_root):
    path = tiny_root / "Thumos14reduced" / "labels_all.npy"
    labels = np.load(path, allow_pickle=True)
    labels[0] = ["Breakdancing"]
    np.save(path, labels, allow_pickle=True)
    with pytest.raises(DataError, match="'Breakdancing', not in classlist"):
        WTALCDataset(tiny_root)


def _edit_annotation(root, name, edit):
    path = root / "Thumos14reduced" / f"{name}.npy"
    values = np.load(path, allow_pickle=True)
    edit(values)
    np.save(path, values, allow_pickle=True)


def _video_name(root, v):
    return np.load(root / "Thumos14reduced" / "videoname.npy")[v].decode()


def test_a_segment_that_ends_before_it_starts_names_the_video(tiny_root):
    """Such a segment used to load silently and change the mAP."""
    test_video = int(np.flatnonzero(np.load(tiny_root / "Thumos14reduced" / "subset.npy") == b"test")[0])

    def reverse_first(segments):
        segments[test_video] = [[e, s] if k == 0 else [s, e] for k, (s, e) in enumerate(segments[test_video])]

    _edit_annotation(tiny_root, "segments", reverse_first)
    name = _video_name(tiny_root, test_video)
    with pytest.raises(DataError, match=f"segments.npy: video {name} has segment 0 = .* ends before it starts"):
        load_annotations(tiny_root / "Thumos14reduced")


def _ambiguous_line(line):
    def write(folder):
        with open(folder / "Ambiguous_test.txt", "a") as f:
            f.write("\n" + line + "\n")
    return write


def _set_first(name, value):
    def edit(folder):
        values = np.load(folder / f"{name}.npy", allow_pickle=True)
        values[0] = value
        np.save(folder / f"{name}.npy", values, allow_pickle=True)
    return edit


def _duration(edit):
    def write(folder):
        np.save(folder / "duration.npy", edit(np.load(folder / "duration.npy").reshape(-1)))
    return write


@pytest.mark.parametrize("damage, message", [
    (_ambiguous_line("video_test_0000001 12,5 13.0"),
     r"Ambiguous_test.txt:\d+: video video_test_0000001 has segments that are not \(start, end\) pairs of numbers"),
    (_ambiguous_line("video_test_0000001 13.0 12.5"),
     r"Ambiguous_test.txt:\d+: video video_test_0000001 has segment 0 = \[13.0, 12.5\] s, which ends before it starts"),
    (lambda folder: (folder / "Ambiguous_test.txt").write_bytes(b"video_test_0000001 1 2\n\xff\xfe 3 4\n"),
     "Ambiguous_test.txt is not a text file"),
    (_duration(lambda d: np.stack([d, d], 1)), r"duration.npy has shape \(11, 2\): expected one duration in seconds per video"),
    (_duration(lambda d: np.where(np.arange(len(d)) == 3, np.nan, d)), r"duration.npy: video \S+ has duration nan"),
    (_duration(lambda d: np.where(np.arange(len(d)) == 3, 0.0, d)), r"duration.npy: video \S+ has duration 0.0"),
    (_set_first("labels_all", 3.0), r"labels_all.npy: video \S+ has 3.0, not a list of class names"),
    (_set_first("labels", b"Diving"), r"labels.npy: video \S+ has b'Diving', not a list of class names"),
    (lambda folder: np.save(folder / "subset.npy", np.array(b"test")), "subset.npy holds a single value, not a list"),
], ids=["ambiguous-comma", "ambiguous-reversed", "ambiguous-binary", "duration-pairs", "duration-nan", "duration-zero",
        "labels_all-number", "labels-string", "subset-scalar"])
def test_a_malformed_annotation_file_is_named(tiny_root, damage, message):
    """Each used to be a traceback (ValueError, TypeError) or, for a duration that is not a positive
    number, a dataset whose length checks pass whatever the lengths."""
    damage(tiny_root / "Thumos14reduced")
    with pytest.raises(DataError, match=message):
        load_annotations(tiny_root / "Thumos14reduced")


def test_a_test_video_with_classes_but_no_segment_names_the_video(tiny_root):
    """It used to drop out of the detection mAP silently while counting in the classification mAP."""
    test_video = int(np.flatnonzero(np.load(tiny_root / "Thumos14reduced" / "subset.npy") == b"test")[0])

    def drop(values):
        values[test_video] = []

    _edit_annotation(tiny_root, "segments", drop)
    _edit_annotation(tiny_root, "labels", drop)
    load_annotations(tiny_root / "Thumos14reduced")  # the annotations themselves load: training videos may lack segments
    with pytest.raises(DataError, match=f"video {_video_name(tiny_root, test_video)} \\(test\\) has classes .* but no segment"):
        WTALCDataset(tiny_root)


def test_test_features_of_the_wrong_length_are_refused_at_load(tiny_root):
    test_video = int(np.flatnonzero(np.load(tiny_root / "Thumos14reduced" / "subset.npy") == b"test")[0])

    def halve(feats):
        feats[test_video] = feats[test_video][: len(feats[test_video]) // 2]
        return feats

    _rewrite_features(tiny_root, halve)
    with pytest.raises(DataError, match=f"video {_video_name(tiny_root, test_video)}: features of"):
        WTALCDataset(tiny_root)


def test_held_out_features_of_the_wrong_length_are_refused_at_load(tiny_root):
    """They used to be refused at the first evaluation of the held-out videos, after training."""
    video = int(WTALCDataset(tiny_root, held_out_fraction=0.34, held_out_seed=1).held_out_indices[0])

    def halve(feats):
        feats[video] = feats[video][: len(feats[video]) // 2]
        return feats

    _rewrite_features(tiny_root, halve)
    WTALCDataset(tiny_root)  # without a held-out fraction, a training video: its length is not evaluated
    with pytest.raises(DataError, match=f"video {_video_name(tiny_root, video)}: features of"):
        WTALCDataset(tiny_root, held_out_fraction=0.34, held_out_seed=1)


def test_unknown_dataset_name(tiny_root):
    with pytest.raises(DataError, match="unknown dataset"):
        WTALCDataset(tiny_root, dataset="Thumos15")


def test_reads_the_real_thumos14_annotations(shared_data):
    ann = load_annotations(shared_data / "Thumos14reduced-Annotations")
    assert len(ann) == 412 and len(ann.indices("validation")) == 200 and len(ann.indices("test")) == 212
    assert len(ann.class_names) == 20 and ann.video_labels[ann.indices("validation")].sum(1).min() >= 1
    assert sum(len(s) for s in ann.segments) == sum(len(s) for s in ann.segment_labels)


def test_the_real_test_videos_pass_the_evaluation_checks(shared_data):
    """video_test_0000270 has segments but no video-level label: the official evaluators score its
    segments (detection counts videos with segments), so it must stay accepted."""
    ann = load_annotations(shared_data / "Thumos14reduced-Annotations")
    check_evaluable(ann, ann.indices("test"))
    anet = load_annotations(shared_data / "ActivityNet1.2-Annotations")
    assert len(anet) == 7202 and len(anet.class_names) == 100
    assert sum(len(s) for s in anet.segments) == 10733
    check_evaluable(anet, anet.indices("validation"))


def test_reads_activitynet12_in_the_same_layout(tiny_root, tmp_path):
    """ActivityNet1.2 in W-TALC's layout: 100 classes, subsets 'training' and 'validation'."""
    src = tiny_root / "Thumos14reduced"
    dst = tmp_path / "anet" / "ActivityNet1.2"
    dst.mkdir(parents=True)
    for path in src.iterdir():
        name = path.name.replace("Thumos14reduced", "ActivityNet1.2")
        (dst / name).write_bytes(path.read_bytes())
    classes = np.load(src / "classlist.npy")
    extra = np.array([f"Activity{i:03d}".encode() for i in range(100 - len(classes))])
    np.save(dst / "classlist.npy", np.concatenate([classes, extra]).astype("S32"))
    subset = np.load(src / "subset.npy")
    np.save(dst / "subset.npy", np.where(subset == b"validation", b"training", b"validation").astype("S10"))
    ds = WTALCDataset(tmp_path / "anet", dataset="ActivityNet1.2")
    assert ds.n_classes == 100 and len(ds.train_indices) == 6 and len(ds.test_indices) == 5
    assert next(ds.test_batches(5)).labels.shape == (5, 100)


def _activitynet_root(shared_data, tmp_path, feature_dim):
    """ROOT/ActivityNet1.2/ with the real annotations (no Ambiguous_test.txt; url.npy) and random
    features of int(duration x 25/16) snippets per video, as W-TALC's ActivityNet1.2 files hold."""
    dataset_dir = tmp_path / "anet" / "ActivityNet1.2"
    dataset_dir.mkdir(parents=True)
    for path in (shared_data / "ActivityNet1.2-Annotations").iterdir():
        (dataset_dir / path.name).write_bytes(path.read_bytes())
    durations = np.load(dataset_dir / "duration.npy")
    rng = np.random.default_rng(0)
    features = np.empty(len(durations), dtype=object)
    features[:] = [rng.random((int(d * 25 / 16), feature_dim), dtype=np.float32) for d in durations]
    np.save(dataset_dir / "ActivityNet1.2-I3D-JOINTFeatures.npy", features, allow_pickle=True)
    return dataset_dir.parent, features


def test_loads_the_real_activitynet12_annotations_with_features(shared_data, tmp_path):
    root, features = _activitynet_root(shared_data, tmp_path, feature_dim=3)
    assert not (root / "ActivityNet1.2" / "Ambiguous_test.txt").exists()
    ds = WTALCDataset(root, dataset="ActivityNet1.2", feature_dim=3)
    assert ds.n_classes == 100 and len(ds.train_indices) == 4819 and len(ds.test_indices) == 2383
    assert ds.annotations.ambiguous == {}
    assert all(np.array_equal(got, want) for got, want in zip(ds.features, features, strict=True))
    batch = next(ds.test_batches(7))
    assert batch.x.shape == (sum(len(f) for f in features[ds.test_indices[:7]]), 3)
    assert batch.labels.shape == (7, 100) and (batch.labels.sum(1) >= 1).all()


@pytest.mark.parametrize("name", ["labels_all.npy", "segments.npy", "ActivityNet1.2-I3D-JOINTFeatures.npy"])
def test_a_missing_activitynet12_file_is_named(shared_data, tmp_path, name):
    root, _ = _activitynet_root(shared_data, tmp_path, feature_dim=1)
    (root / "ActivityNet1.2" / name).unlink()
    with pytest.raises(DataError, match=f"missing file: .*ActivityNet1.2/{name}"):
        WTALCDataset(root, dataset="ActivityNet1.2", feature_dim=1)


# --- the packed feature store ------------------------------------------------------------------------


def _store(root):
    return root / "Thumos14reduced" / "Thumos14reduced-I3D-JOINTFeatures.store"


def test_the_store_holds_the_wtalc_features_bit_for_bit(tiny_root, capsys):
    whole = WTALCDataset(tiny_root)
    assert data_main(["convert", str(tiny_root)]) == 0
    assert str(_store(tiny_root)) in capsys.readouterr().out
    packed = np.load(_store(tiny_root) / "features.npy", allow_pickle=False)
    offsets = np.load(_store(tiny_root) / "offsets.npy", allow_pickle=False)
    assert packed.dtype == np.float32 and offsets.dtype == np.int64
    assert offsets.tolist() == [0, *np.cumsum([len(f) for f in whole.features]).tolist()]
    assert np.array_equal(packed, np.concatenate(whole.features))
    stored = WTALCDataset(tiny_root)
    assert all(isinstance(f, np.memmap) for f in stored.features)  # read from the store, not the pickle
    for got, want in zip(stored.features, whole.features, strict=True):
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    for got, want in zip(_batches(stored), _batches(whole), strict=True):
        assert torch.equal(got.x, want.x) and torch.equal(got.cu_seqlens, want.cu_seqlens)


def test_a_stale_store_is_detected_and_the_wtalc_file_read(tiny_root):
    convert(tiny_root, "Thumos14reduced")
    _rewrite_features(tiny_root, _shifted)  # same size, other values
    with pytest.warns(UserWarning, match="converted from another version of Thumos14reduced-I3D-JOINTFeatures.npy"):
        ds = WTALCDataset(tiny_root)
    assert not isinstance(ds.features[0], np.memmap)
    assert np.array_equal(ds.features[0], np.load(_feature_file(tiny_root), allow_pickle=True)[0])
    convert(tiny_root, "Thumos14reduced")
    source = _feature_file(tiny_root)
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched, same bytes: still current
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(WTALCDataset(tiny_root).features[0], np.memmap)


def test_a_store_without_its_source_file_is_read(tiny_root):
    expected = WTALCDataset(tiny_root).features
    convert(tiny_root, "Thumos14reduced")
    _feature_file(tiny_root).unlink()
    got = WTALCDataset(tiny_root).features
    assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))


def _set_value(path, row, value):
    packed = np.load(path, mmap_mode="r+")
    packed[row, 5] = value
    packed.flush()


@pytest.mark.parametrize("damage, message", [
    (lambda store: np.save(store / "offsets.npy", np.array([0, 5], dtype=np.int64)), "offsets.npy holds int64 \\(2,\\)"),
    (lambda store: np.save(store / "offsets.npy", np.load(store / "offsets.npy")[::-1].copy()), "does not cut"),
    (lambda store: _set_value(store / "features.npy", 17, np.nan), "features.npy has NaN or infinite features near row 0"),
    (lambda store: (store / "source.json").write_text("{}"), "source.json is not a store's source record"),
])
def test_a_damaged_store_is_named(tiny_root, damage, message):
    convert(tiny_root, "Thumos14reduced")
    damage(_store(tiny_root))
    with pytest.raises(DataError, match=message):
        WTALCDataset(tiny_root)


def test_convert_user_errors_are_one_line(tmp_path, capsys):
    assert data_main(["convert", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: dataset folder not found: {tmp_path / 'Thumos14reduced'} (expected ROOT/Thumos14reduced/ in the W-TALC layout)"]


def test_a_failed_store_write_leaves_nothing(tmp_path):
    def videos():
        yield np.zeros((2, 3), dtype=np.float32)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_store(tmp_path / "x.store", [2, 4], 3, videos(), source=None)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="video 1 has shape \\(3, 3\\)"):
        write_store(tmp_path / "x.store", [2, 4], 3, [np.zeros((2, 3), np.float32), np.zeros((3, 3), np.float32)], None)
    assert list(tmp_path.iterdir()) == []


def test_a_store_in_a_feature_cache_holds_the_wtalc_features_bit_for_bit(tiny_root, tmp_path, capsys):
    cache = tmp_path / "cache"
    whole = WTALCDataset(tiny_root)
    assert data_main(["convert", str(tiny_root), "--feature-cache", str(cache)]) == 0
    (store,) = cache.iterdir()
    assert str(store) in capsys.readouterr().out and not _store(tiny_root).exists()  # nothing beside the data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stored = WTALCDataset(tiny_root, feature_cache=cache)
    assert all(isinstance(f, np.memmap) for f in stored.features)
    for got, want in zip(stored.features, whole.features, strict=True):
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    no_store = re.escape(f"{tmp_path / 'empty'} holds no store of {_feature_file(tiny_root)}")
    with pytest.warns(UserWarning, match=no_store):
        assert not isinstance(WTALCDataset(tiny_root, feature_cache=tmp_path / "empty").features[0], np.memmap)


def test_two_roots_with_a_dataset_of_the_same_name_share_a_feature_cache_apart(tmp_path):
    cache = tmp_path / "cache"
    roots = [generate(tmp_path / name, TINY, seed=seed) for name, seed in (("a", 1), ("b", 2))]
    stores = [convert(root, "Thumos14reduced", feature_cache=cache) for root in roots]
    assert stores[0] != stores[1] and sorted(cache.iterdir()) == sorted(stores)
    for root in roots:
        want = np.load(_feature_file(root), allow_pickle=True)
        got = WTALCDataset(root, feature_cache=cache).features
        assert isinstance(got[0], np.memmap)
        assert all(a.dtype == b.dtype and a.tobytes() == b.tobytes() for a, b in zip(got, want, strict=True))


def test_a_stale_store_in_the_feature_cache_is_not_read(tiny_root, tmp_path):
    cache = tmp_path / "cache"
    convert(tiny_root, "Thumos14reduced", feature_cache=cache)
    _rewrite_features(tiny_root, _shifted)
    want = np.load(_feature_file(tiny_root), allow_pickle=True)[0]
    with pytest.warns(UserWarning, match="converted from another version of Thumos14reduced-I3D-JOINTFeatures.npy"):
        ds = WTALCDataset(tiny_root, feature_cache=cache)
    assert not isinstance(ds.features[0], np.memmap) and np.array_equal(ds.features[0], want)
    convert(tiny_root, "Thumos14reduced")  # a current store beside the data is read in its place
    with pytest.warns(UserWarning, match=re.escape(f"{cache}") + ".* was converted from another version"):
        ds = WTALCDataset(tiny_root, feature_cache=cache)
    assert isinstance(ds.features[0], np.memmap) and np.array_equal(ds.features[0], want)


def test_convert_in_a_read_only_data_folder_names_it_and_writes_nothing(tiny_root, tmp_path, capsys):
    folder = tiny_root / "Thumos14reduced"
    before = sorted(folder.iterdir())
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("chmod does not make a folder read-only for this user (root)")
        assert data_main(["convert", str(tiny_root)]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [
            f"error: cannot write in {folder}: give --feature-cache DIR to write the store in DIR instead"]
        assert data_main(["convert", str(tiny_root), "--feature-cache", str(folder / "cache")]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [
            f"error: cannot create the feature cache {folder / 'cache'}: Permission denied"]
        assert sorted(folder.iterdir()) == before
        assert data_main(["convert", str(tiny_root), "--feature-cache", str(tmp_path / "cache")]) == 0
        assert isinstance(WTALCDataset(tiny_root, feature_cache=tmp_path / "cache").features[0], np.memmap)
    finally:
        folder.chmod(0o755)


def test_hold_out_takes_each_class_share_at_random_and_deterministically():
    labels = np.zeros((40, 4), dtype=np.float32)
    labels[np.arange(40), np.arange(40) % 4] = 1  # 10 videos per class
    labels[5, 2] = 1  # a second class: stratified by the first
    indices = np.arange(3, 40)  # 37 training videos: 10, 9, 9, 9 per class (class 0 loses 0, class 1 loses 1 ...)
    kept, held = hold_out(labels, indices, 0.2, seed=0)
    assert sorted(np.concatenate([kept, held]).tolist()) == indices.tolist() and not set(kept) & set(held)
    assert 7 <= len(held) <= 8  # 20 % of 37
    per_class = np.bincount(labels[held].argmax(1), minlength=4)
    assert per_class.min() >= 1 and per_class.max() <= 3  # every class gives its share
    again_kept, again_held = hold_out(labels, indices, 0.2, seed=0)
    assert again_held.tolist() == held.tolist()
    assert any(hold_out(labels, indices, 0.2, seed=s)[1].tolist() != held.tolist() for s in range(1, 4))
    assert hold_out(labels, indices, 0.0, seed=0)[1].tolist() == []
    with pytest.raises(DataError, match="must be in \\[0, 1\\)"):
        hold_out(labels, indices, 1.0, seed=0)


def test_held_out_videos_leave_the_training_batches(tiny_root):
    ds = WTALCDataset(tiny_root, held_out_fraction=0.34, held_out_seed=1)
    whole = WTALCDataset(tiny_root)
    assert len(ds.held_out_indices) == 2 and len(ds.train_indices) == 4
    assert sorted([*ds.train_indices, *ds.held_out_indices]) == whole.train_indices.tolist()
    trained = torch.cat([b.index for b in ds.train_batches(0, 0, 3)]).tolist()
    assert sorted(trained) == ds.train_indices.tolist()
    with pytest.raises(DataError, match="holds out none"):
        WTALCDataset(tiny_root, held_out_fraction=0.1)
