#!/usr/bin/env bash
# The study of docs/study.md, end to end: the paper's ablation on the built-in synthetic faces
# and on ORL (../shared/data/orl), five seeds each, then the report tables and the figures.
#   bash scripts/study.sh [STORE]        (make study; STORE defaults to results/study)
# An interrupted run continues where it stopped (--resume); a finished study is not re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
STORE="${1:-results/study}"
BTNET=.venv/bin/btnet-lab
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 OMP_WAIT_POLICY=PASSIVE

for study in paper_ablation paper_ablation_orl; do
    start=$SECONDS
    "$BTNET" sweep "$study" --storage "$STORE" --resume
    echo "$study: $(( (SECONDS - start) / 60 )) min wall"
done

mkdir -p docs/study
"$BTNET" results report paper_ablation --store "$STORE" -o docs/study/report_synthetic.md
"$BTNET" results report paper_ablation_orl --store "$STORE" -o docs/study/report_orl.md
for study in paper_ablation paper_ablation_orl; do
    "$BTNET" dashboard "$study" --store "$STORE" -o "$STORE/$study.html" --png "$STORE/png/$study"
done
# The four figures docs/study.md shows.
cp "$STORE/png/paper_ablation/forest.png" docs/study/synthetic_forest.png
cp "$STORE/png/paper_ablation/resolution.png" docs/study/synthetic_resolution.png
cp "$STORE/png/paper_ablation/pareto_probe_7.png" docs/study/synthetic_pareto_7.png
cp "$STORE/png/paper_ablation_orl/resolution.png" docs/study/orl_resolution.png
echo "reports in docs/study/, dashboards in $STORE/*.html"
