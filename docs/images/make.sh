#!/usr/bin/env bash
# The README's pictures (and docs/results.md's), from the default main job. Run from the repository root:
#   bash docs/images/make.sh            # trains runs/rskp first unless it holds a finished run
#   bash docs/images/make.sh RUN_DIR    # pictures of another run of the default synthetic data
# After a change to training, retrain: python -m rsnet.train --out runs/rskp --overwrite
set -euo pipefail
run=${1:-runs/rskp}
video=video_test_0000076  # two classes (CliffDiving, Diving), as the supplementary's Figure 4
[ -f "$run/results.md" ] || python -m rsnet.train --out "$run"
python -m rsnet.plot cas --checkpoint "$run/checkpoint.pt" --video "$video" --out docs/images/cas.png --dpi 80
python -m rsnet.plot embedding --checkpoint "$run/checkpoint.pt" --video "$video" --out docs/images/embedding.png --dpi 80
python -m rsnet.plot curves "$run" --out docs/images/curves.png --dpi 80
python -m rsnet.plot bank --checkpoint "$run/checkpoint.pt" --out docs/images/bank.png --dpi 80
