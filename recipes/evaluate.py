"""Evaluate a classifier's explanations: localisation, faithfulness, consistency and accuracy, as one JSON + table.

Runs on one CPU (`python recipes/evaluate.py ...`), several processes (`torchrun --nproc_per_node 2
recipes/evaluate.py ...`) or GPUs (`accelerate launch recipes/evaluate.py ...`); every process evaluates a share of
the images and the per-image values are gathered, so the numbers do not depend on the number of processes.

Example:
    python recipes/evaluate.py --model resnet50_cgc.in1k --dataset coco --split val2014 --source /data/coco \
        --methods gradcam hirescam --metrics pg spg ch --out results/resnet50_cgc.json
"""

import logging
import sys

from consistentzoo.metrics.cli import build_parser, run_evaluate

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    sys.exit(run_evaluate(build_parser().parse_args()))
