"""Cost of running a model through a model card: pre/post-processing per 1242x375 frame.

Side by side in one run, the same network (the packaged default model, 96x320 input) opened
two ways with ONNX Runtime:

* ours: its own ONNX export (metadata inside, no card);
* card: the same weights exported as a foreign model, fed NHWC BGR pixels in [0, 1] and
  returning inverse depth, run through its model card (the normalisation, layout and output
  conversion are the card's).

Prints the median of everything but inference (decode, preprocess, scale, postprocess, cloud)
for depth + camera_info + points, and the difference card - ours (target: <= 2 ms). Then, for
information, the same figure for a long-side card (518, multiple of 14, as Depth Anything's
ViT needs: a 1242x375 frame becomes 518x168) on a stand-in graph with dynamic height and width
whose inference is negligible, with a metric and an affine-invariant output (the affine one
through the scale stage with a fixed scale and shift).

Usage: python benchmarks/bench_model_cards.py [--frames 60]   (--frames 2: a quick check)
"""

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from bench_pipeline import kitti_like_messages

from monodepth_ros.io import messages
from monodepth_ros.runtime.pipeline import STAGES, DepthPipeline, PipelineConfig
from monodepth_ros.runtime.scale import ScaleSettings

OUTPUTS = {'depth', 'camera_info', 'points'}


def export_card_variant(folder: Path) -> tuple[Path, dict]:
    """The default network as a foreign model (NHWC BGR in [0, 1], inverse depth) and its card."""
    import torch

    from monodepth_ros.model.checkpoint import load_model
    from monodepth_ros.model.files import default_model_path

    network, metadata = load_model(str(default_model_path()))
    mean = torch.tensor(metadata.mean).view(1, 3, 1, 1)
    std = torch.tensor(metadata.std).view(1, 3, 1, 1)

    class Foreign(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = network

        def forward(self, pixels):
            image = (pixels.permute(0, 3, 1, 2).flip(1) - mean) / std
            return 1.0 / self.net(image)['depth']

    path = folder / 'foreign.onnx'
    height, width = metadata.input_height, metadata.input_width
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter('ignore')
        torch.onnx.export(Foreign().eval(), (torch.zeros(1, height, width, 3),), str(path),
                          opset_version=17, dynamo=False, input_names=['pixels'],
                          output_names=['inverse_depth'])
    card = {'name': 'default-as-foreign',
            'input': {'name': 'pixels', 'layout': 'NHWC', 'channels': 'BGR', 'mean': [0, 0, 0],
                      'std': [1, 1, 1], 'size': {'policy': 'fixed', 'height': height,
                                                 'width': width}},
            'output': {'name': 'inverse_depth', 'kind': 'metric_inverse_depth'}}
    return path, card


def export_dynamic_stand_in(folder: Path) -> Path:
    """A graph with dynamic height and width: depth = 1 + channel mean (inference ~ free)."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node('ReduceMean', ['pixel_values', 'axes'], ['mean'], keepdims=0),
             helper.make_node('Abs', ['mean'], ['magnitude']),
             helper.make_node('Add', ['magnitude', 'one'], ['predicted_depth'])]
    graph = helper.make_graph(
        nodes, 'stand_in',
        [helper.make_tensor_value_info('pixel_values', TensorProto.FLOAT, [1, 3, 'h', 'w'])],
        [helper.make_tensor_value_info('predicted_depth', TensorProto.FLOAT, [1, 'h', 'w'])],
        [helper.make_tensor('axes', TensorProto.INT64, [1], [1]),
         helper.make_tensor('one', TensorProto.FLOAT, [], [1.0])])
    path = folder / 'stand_in.onnx'
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 18)]), str(path))
    return path


def all_but_inference(pipelines: dict, types, image, info, frames: int) -> dict:
    """Per pipeline name, ms per frame of every stage but inference.

    The pipelines run frame by frame in turn, so that all see the same machine load.
    """
    totals = {name: [] for name in pipelines}
    for frame in range(frames + 3):
        for name, pipeline in pipelines.items():
            pipeline.process_messages(types, image, info, OUTPUTS)
            if frame >= 3:   # after the warm-up
                totals[name].append(sum(pipeline.last_timings.get(stage, 0.0)
                                        for stage in STAGES if stage != 'inference'))
    return {name: np.asarray(values) for name, values in totals.items()}


def output_decoding(engine, frames: int) -> np.ndarray:
    """Milliseconds of reading the outputs through the card (inside ``infer``: timed apart)."""
    from monodepth_ros.engines.base import outputs_from_card

    card = engine.card
    batch = np.zeros(card.batch_shape(card.width, card.height), dtype=np.float32)
    names = engine._output_names
    arrays = dict(zip(names, engine.session.run(names, {card.input_name: batch})))
    times = []
    for _ in range(frames):
        start = time.perf_counter()
        outputs_from_card(card, arrays, (card.width, card.height))
        times.append((time.perf_counter() - start) * 1e3)
    return np.asarray(times)


def main() -> None:
    from monodepth_ros.engines import create_engine
    from monodepth_ros.model.cards import card_from_dict
    from monodepth_ros.model.files import default_model_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=60, help='timed frames per row')
    args = parser.parse_args()
    types = messages.MessageTypes.rosbags('humble')
    image, info = kitti_like_messages(types)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        foreign, card = export_card_variant(folder)
        ours = create_engine(str(default_model_path()), backend='onnxruntime', precision='fp32')
        theirs = create_engine(foreign, backend='onnxruntime', precision='fp32',
                               card=card_from_dict(card, 'default-as-foreign'))
        # Ours runs once and without ground contact, as the card does: the comparison is
        # the card's reading of the same network.
        as_card = PipelineConfig(far_pass_focal=0.0, ground_contact=False)
        rows = all_but_inference({'ours': DepthPipeline(ours, as_card),
                                  'card': DepthPipeline(theirs)},
                                 types, image, info, args.frames)
        decoding = {'ours': output_decoding(ours, args.frames),
                    'card': output_decoding(theirs, args.frames)}
        stand_in = export_dynamic_stand_in(folder)
        long_side = {'input': {'name': 'pixel_values', 'size': {
            'policy': 'long-side', 'long_side': 518, 'multiple': 14}}}
        long_side_pipelines = {}
        # far_pass_focal 0: ours runs once, as a foreign model does (the comparison is the card).
        for kind, config in (('metric_depth', PipelineConfig(far_pass_focal=0.0)),
                             ('affine_inverse_depth', PipelineConfig(scale=ScaleSettings(
                                 mode='fixed', value=0.05, shift=0.01)))):
            stand_card = card_from_dict({**long_side, 'output': {'kind': kind}}, kind)
            engine = create_engine(stand_in, backend='onnxruntime', precision='fp32',
                                   card=stand_card)
            long_side_pipelines[f'long-side 518/14, {kind}'] = DepthPipeline(engine, config)
        rows.update(all_but_inference(long_side_pipelines, types, image, info, args.frames))
    print(f'1242x375 rgb8 frame + CameraInfo, outputs depth, camera_info, points; '
          f'{args.frames} frames a row; ms of everything but inference')
    for name, times in rows.items():
        times = np.asarray(times)
        print(f'  {name:<40} median {np.median(times):6.2f}  p99 '
              f'{np.percentile(times, 99):6.2f}')
    for name, times in decoding.items():
        print(f'  output decoding in the engine, {name:<9}       median '
              f'{np.median(times):6.2f}')
    extra = (np.median(rows['card']) + np.median(decoding['card'])
             - np.median(rows['ours']) - np.median(decoding['ours']))
    print(f'card - ours, output decoding included (same network, same run): {extra:+.2f} ms '
          'median (target <= 2 ms)')


if __name__ == '__main__':
    main()
