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
    # each above glibc's largest mmap threshold (32 MiB), and each smaller than the block freed before
    # it, so it fits there even if a small object took a corner of that block
    for mib in (46, 44, 42, 40, 38):
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
    """Five tensors of 46 down to 38 MiB allocated and freed after a freed 48 MiB one: fresh pages
    each time by default (about 10,000 faults a tensor); none once freed memory is kept."""
    default = minor_faults("")
    kept = minor_faults("from rsnet.host_memory import keep_freed_memory\nassert keep_freed_memory()")
    assert default > 5 * 10_000, default
    assert kept < 1_000, (kept, default)


def test_every_command_keeps_freed_memory(monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(True))
    assert cli.command(lambda argv: 0)([]) == 0
    assert calls == [True]


def test_the_setting_is_glibcs_mallopt():
    """On Linux (glibc) both mallopt calls succeed."""
    from rsnet.host_memory import keep_freed_memory
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's mallopt: Linux only")
    assert keep_freed_memory() is True
