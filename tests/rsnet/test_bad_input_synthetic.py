"""Bad input to ``python -m rsnet.synthetic``, case by case: never delete what the package did not write."""
from rsnet.synthetic import SyntheticSpec
from rsnet.synthetic.command import main as synthetic_main
from rsnet.synthetic.writer import generate

SMALL = SyntheticSpec(n_train=2, n_test=2, length_scale=0.15)


def test_a_second_run_refuses_to_delete_a_file_the_user_put_in_the_dataset(tmp_path, capsys):
    """A second run used to replace the whole folder, the user's file with it."""
    root = generate(tmp_path / "data", SMALL, seed=0)
    mine = root / "Thumos14reduced" / "my-notes.txt"
    mine.write_text("mine")
    before = sorted(p.name for p in mine.parent.iterdir())
    assert synthetic_main(["--out", str(root), "--preset", "default"]) == 2
    assert capsys.readouterr().err == (
        f"error: {mine.parent} holds files python -m rsnet.synthetic did not write there (my-notes.txt): refused, "
        f"since replacing the dataset would delete them; move them, choose another --out, or add --overwrite to "
        f"delete them\n")
    assert mine.read_text() == "mine" and sorted(p.name for p in mine.parent.iterdir()) == before
    mine.unlink()
    generate(root, SMALL, seed=1)  # only its own files there: replaced
    assert generate(root, SMALL, seed=2, overwrite=True) == root
