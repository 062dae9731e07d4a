"""Bad input to ``python -m rsnet.evaluate``, case by case."""
import json

import numpy as np

from rsnet.evaluate.command import main as evaluate_main
from rsnet.synthetic import SyntheticSpec, generate


def test_a_video_listed_twice_in_a_detections_file_is_refused_naming_it(tmp_path, capsys):
    """A JSON reader keeps the last entry: the score used to drop (87.50 instead of 100.00) with only
    a warning about a class."""
    root = generate(tmp_path / "data", SyntheticSpec(n_train=2, n_test=2, length_scale=0.15), seed=1)
    folder = root / "Thumos14reduced"
    names = [n.decode() for n in np.load(folder / "videoname.npy", allow_pickle=True)]
    subsets = [s.decode() for s in np.load(folder / "subset.npy", allow_pickle=True)]
    first, second = [name for name, subset in zip(names, subsets) if subset == "test"]
    text = json.dumps({"results": {first: [], second: []}})
    doubled = text.replace(f'"{second}": []', f'"{second}": [], "{second}": []')
    path = tmp_path / "d.json"
    path.write_text(doubled)
    assert evaluate_main(["--detections", str(path), "--annotations", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {path} lists {second!r} twice in one object (a video's detections split over two "
                   f"entries, of which a JSON reader keeps only the last): merge them\n")
