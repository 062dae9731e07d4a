"""bench.test_pass_profile: both implementations' profiles of a tiny test pass."""
import torch

from bench import test_pass_profile


def test_prints_a_profile_of_each_implementation(capsys):
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        assert test_pass_profile.main(["--scale", "0.002", "--rows", "5"]) == 0
    finally:  # main sets them for the process, as bench.train_speed does
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    out = capsys.readouterr().out
    assert "official-style" in out and "rskp (ops=reference)" in out
    assert out.count("aten::addmm") >= 2  # the embedding's GEMM in both profiles
