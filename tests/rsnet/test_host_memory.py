"""rsnet.host_memory: freed blocks come back without page faults, and every command turns it on."""
import subprocess
import sys
import textwrap

import pytest

from rsnet import cli

FAULTS_AFTER_FREE = """
import resource, sys
import torch
{setup}
def faults():
    del_first = torch.ones(48 * 2**20 // 4)  # 48 MiB, freed: room for the next
    del del_first
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for mib in (40, 44, 36, 46, 40):  # each above glibc's largest mmap threshold (32 MiB)
        t = torch.ones(mib * 2**20 // 4)
        del t
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults(), faults()  # the heap settles: small objects may land between the big blocks at first
print(faults())
"""


def minor_faults(setup: str) -> int:
    proc = subprocess.run([sys.executable, "-c", FAULTS_AFTER_FREE.format(setup=textwrap.dedent(setup))],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split()[-1])


@pytest.mark.slow  # two interpreters importing torch
def test_kept_memory_is_reused_without_page_faults():
    """Five tensors of 36-46 MiB allocated and freed after a freed 48 MiB one: fresh pages each
    time by default (about 10,000 faults a tensor); once freed memory is kept they reuse it (0
    faults here, one tensor's worth in a CI venv where small objects split the freed block)."""
    default = minor_faults("")
    kept = minor_faults("from rsnet.host_memory import keep_freed_memory\nassert keep_freed_memory()")
    assert default > 5 * 10_000, default
    assert kept < default / 3, (kept, default)  # at most one of the five tensors faulted in


def test_every_command_keeps_freed_memory(monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(True))
    assert cli.command(lambda argv: 0)([]) == 0
    assert calls == [True]


def test_the_setting_is_glibcs_mallopt():
    """On Linux (glibc) the call succeeds; it is made once per process."""
    from rsnet.host_memory import keep_freed_memory
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's mallopt: Linux only")
    assert keep_freed_memory() is True
    assert keep_freed_memory.cache_info().currsize == 1
