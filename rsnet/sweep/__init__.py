"""The sweep engine behind ``python -m rsnet.ablate``: many runs of ``python -m rsnet.train``.

A sweep is a list of cells, each one run's config in its own folder of the sweep folder
(``cells``): the paper's studies or any grid of config keys (``grid``), times the seeds. A
launcher trains the cells not yet finished, on this machine or as a Slurm job array through
submitit (``launchers``, ``slurm``); a rerun reads finished runs back and resumes interrupted ones
from their checkpoints. ``status`` tells each cell's state from its folder and the scheduler;
``compare`` writes the table of the scores against a reference row.

The engine knows runs only through their folders (config.json, metrics.jsonl, checkpoint.pt) and
the command ``python -m rsnet.train``: it never imports the model, the data or the trainer.
"""
