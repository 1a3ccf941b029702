"""Per-class semantics of a model on the synthetic hold-out, through the commands users run.

For each seed S of the hold-out (drives 950-953, never used by a training recipe):

    monodepth synth-bag WORK/gtS --frames 10 --seed S
    monodepth infer-bag WORK/gtS WORK/predS --output-resolution camera --outputs semantics

then the confusion matrix of /monodepth/semantics against the bag's /ground_truth/semantics
(pixels labelled 255, ignore, left out): pixel accuracy, and per class its share of the
labelled pixels, its accuracy (recall) and IoU, as a markdown table.

    .venv/bin/python benchmarks/bench_semantics.py [--model PATH]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np

SEEDS = (950, 951, 952, 953)
PREDICTED_TOPIC = '/monodepth/semantics'
TRUTH_TOPIC = '/ground_truth/semantics'
IGNORE = 255


def semantic_frames(bag: Path, topic: str) -> dict[int, np.ndarray]:
    """Label images of ``topic`` by header stamp (ns)."""
    from monodepth_ros.io.bagio import BagReader
    from monodepth_ros.io.messages import image_to_array, stamp_to_ns

    with BagReader(bag) as reader:
        return {stamp_to_ns(msg.header.stamp): image_to_array(msg)
                for _, _, msg in reader.messages([topic])}


def add_confusion(confusion: np.ndarray, truth: np.ndarray, predicted: np.ndarray) -> None:
    classes = confusion.shape[0]
    if truth.shape != predicted.shape:
        raise ValueError(f'semantics of shape {predicted.shape} against ground truth of shape '
                         f'{truth.shape}: expected camera-resolution output')
    labelled = truth != IGNORE
    # A pixel the output leaves unlabelled (outside the framed band) counts as a miss, in the
    # last column.
    guess = np.minimum(predicted[labelled].astype(np.int64), classes)
    pairs = truth[labelled].astype(np.int64) * (classes + 1) + guess
    confusion += np.bincount(pairs, minlength=classes * (classes + 1)).reshape(classes,
                                                                                classes + 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', type=Path, default=None,
                        help='a .pt or .onnx model (default: the packaged default model)')
    parser.add_argument('--frames', type=int, default=10, help='frames per hold-out drive')
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format='[%(levelname)s] %(name)s: %(message)s')
    from monodepth_ros.cli import main as monodepth
    from monodepth_ros.model.semantics import CITYSCAPES_CLASSES

    classes = len(CITYSCAPES_CLASSES)
    confusion = np.zeros((classes, classes + 1), np.int64)
    model = ['--model', str(args.model)] if args.model else []
    with tempfile.TemporaryDirectory() as work:
        for seed in SEEDS:
            truth_bag, predicted_bag = Path(work) / f'gt{seed}', Path(work) / f'pred{seed}'
            for argv in (['synth-bag', str(truth_bag), '--frames', str(args.frames),
                          '--seed', str(seed), '--no-progress'],
                         ['infer-bag', str(truth_bag), str(predicted_bag), *model,
                          '--output-resolution', 'camera', '--outputs', 'semantics',
                          '--no-progress']):
                if monodepth(argv) != 0:
                    raise SystemExit(f'monodepth {" ".join(argv)} failed')
            truth = semantic_frames(truth_bag, TRUTH_TOPIC)
            predicted = semantic_frames(predicted_bag, PREDICTED_TOPIC)
            if set(truth) != set(predicted):
                raise SystemExit(f'seed {seed}: {len(predicted)} predicted frames for '
                                 f'{len(truth)} ground-truth frames')
            for stamp, labels in truth.items():
                add_confusion(confusion, labels, predicted[stamp])

    labelled = confusion.sum()
    truth_pixels, predicted_pixels = confusion.sum(axis=1), confusion.sum(axis=0)[:classes]
    hits = np.diag(confusion[:, :classes])
    print(f'synthetic hold-out {SEEDS}, {args.frames} frames each: {labelled / 1e6:.2f} M '
          f'labelled pixels, pixel accuracy {hits.sum() / labelled:.3f}; left unlabelled by the '
          f'output: {confusion[:, classes].sum() / labelled:.4f}\n')
    print('| class | share | accuracy | IoU |')
    print('|---|---|---|---|')
    for index, name in enumerate(CITYSCAPES_CLASSES):
        if not truth_pixels[index]:
            continue
        union = truth_pixels[index] + predicted_pixels[index] - hits[index]
        print(f'| {name} | {truth_pixels[index] / labelled:.3f} | '
              f'{hits[index] / truth_pixels[index]:.3f} | {hits[index] / union:.3f} |')
    never = [name for index, name in enumerate(CITYSCAPES_CLASSES)
             if truth_pixels[index] and not predicted_pixels[index]]
    print(f'\nnever predicted: {", ".join(never) or "none"}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
