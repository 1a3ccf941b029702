"""Foreign depth models through their cards, engines, pipeline, infer-bag and the node's core.

Real architectures of the ``transformers`` library (DPT, Depth Anything, GLPN) built from small
config objects with random weights (nothing is downloaded), exported to ONNX at small sizes.
"""

import warnings

import cv2
import numpy as np
import pytest

from monodepth_ros.errors import ConfigError
from monodepth_ros.model.cards import card_from_dict, plan_card_framing
from monodepth_ros.runtime.pipeline import ALL_OUTPUTS, DepthPipeline, PipelineConfig

transformers = pytest.importorskip('transformers')


class PredictedDepth:
    """``pixel_values`` in, ``predicted_depth`` out: how these models are commonly exported."""

    @staticmethod
    def export(model, path, height, width, dynamic=False):
        import torch

        class Module(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, pixel_values):
                return self.model(pixel_values=pixel_values).predicted_depth

        axes = ({'pixel_values': {2: 'height', 3: 'width'},
                 'predicted_depth': {1: 'height', 2: 'width'}} if dynamic else None)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter('ignore')
            torch.onnx.export(Module().eval(), (torch.rand(1, 3, height, width),), str(path),
                              opset_version=17, dynamo=False, input_names=['pixel_values'],
                              output_names=['predicted_depth'], dynamic_axes=axes)
        return path


@pytest.fixture(scope='session')
def foreign_models(tmp_path_factory):
    """Three architectures, three size policies: name -> (ONNX path, card)."""
    import torch
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTConfig,
        DPTForDepthEstimation,
        GLPNConfig,
        GLPNForDepthEstimation,
    )

    folder = tmp_path_factory.mktemp('foreign')
    torch.manual_seed(0)
    dpt = DPTForDepthEstimation(DPTConfig(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
        image_size=64, patch_size=16, backbone_out_indices=[0, 1, 2, 3],
        neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16,
        reassemble_factors=[4, 2, 1, 0.5])).eval()
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                            intermediate_size=64, image_size=56, patch_size=14,
                            out_features=['stage1', 'stage2', 'stage3', 'stage4'],
                            reshape_hidden_states=False)
    depth_anything = DepthAnythingForDepthEstimation(DepthAnythingConfig(
        backbone_config=backbone, neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16,
        head_hidden_size=8, reassemble_hidden_size=32, patch_size=14,
        depth_estimation_type='metric', max_depth=80)).eval()
    glpn = GLPNForDepthEstimation(GLPNConfig(
        num_encoder_blocks=4, depths=[1, 1, 1, 1], sr_ratios=[8, 4, 2, 1],
        hidden_sizes=[8, 16, 32, 32], num_attention_heads=[1, 1, 2, 2],
        decoder_hidden_size=16, max_depth=80)).eval()
    return {
        # DPT/MiDaS: fixed 64x64, framed like ours (fit-width), affine inverse depth.
        'dpt': (PredictedDepth.export(dpt, folder / 'dpt.onnx', 64, 64),
                card_from_dict({'preset': 'dpt-midas', 'input': {'size': {
                    'policy': 'fixed', 'height': 64, 'width': 64}}}, 'dpt.yaml')),
        # Depth Anything metric: fixed 56x84 letterboxed, metric depth.
        'depth-anything': (
            PredictedDepth.export(depth_anything, folder / 'da.onnx', 56, 84),
            card_from_dict({'preset': 'depth-anything-v2-metric-outdoor', 'input': {'size': {
                'policy': 'letterbox', 'height': 56, 'width': 84}}}, 'da.yaml')),
        # GLPN: dynamic size, long side 96 padded to multiples of 32, metric depth.
        'glpn': (PredictedDepth.export(glpn, folder / 'glpn.onnx', 64, 96, dynamic=True),
                 card_from_dict({'preset': 'glpn-kitti', 'input': {'size': {
                     'policy': 'long-side', 'long_side': 96, 'multiple': 32}}}, 'glpn.yaml')),
    }


def engine_for(foreign_models, name):
    from monodepth_ros.engines import create_engine

    path, card = foreign_models[name]
    return create_engine(path, backend='onnxruntime', precision='fp32', card=card)


@pytest.mark.parametrize('name, network_size, kind', [
    ('dpt', (64, 64), 'affine_inverse_depth'),
    ('depth-anything', (84, 56), 'metric'),
    ('glpn', (96, 32), 'metric'),
])
def test_foreign_model_through_card_engine_and_pipeline(foreign_models, kitti_frame, name,
                                                        network_size, kind):
    rgb, camera = kitti_frame
    engine = engine_for(foreign_models, name)
    assert engine.card.depth_kind == kind
    framing = plan_card_framing(engine.card, 1242, 375, camera)
    assert framing.network_size == network_size
    if kind == 'metric':
        pipeline = DepthPipeline(engine, PipelineConfig())
        result = pipeline.process_arrays(rgb, camera, ALL_OUTPUTS)
        assert result.framing == framing
        assert result.depth.shape == network_size[::-1]
        # NaN exactly in the padding; the CameraInfo is the framed camera.
        np.testing.assert_array_equal(np.isfinite(result.depth), framing.valid_mask())
        np.testing.assert_allclose(result.camera.K, framing.camera(camera).K)
        assert result.semantics is None and result.confidence is None
        assert result.points['xyz'].shape == network_size[::-1] + (3,)
        at_camera = DepthPipeline(engine, PipelineConfig(output_resolution='camera'))
        assert at_camera.process_arrays(rgb, camera, {'depth'}).depth.shape == (375, 1242)
    else:   # affine: the engine's raw values (the metric scale is the scale stage's job)
        batch_rgb = framing.apply(rgb)
        from monodepth_ros.model.preprocess import preprocess_for_card

        out = engine.infer(preprocess_for_card(batch_rgb, engine.card))
        assert out.depth_kind == kind and out.depth.shape == network_size[::-1]
        assert np.isfinite(out.depth).all()


def test_dynamic_size_follows_each_camera(foreign_models, kitti_frame):
    from monodepth_ros.io.camera import CameraModel

    rgb, camera = kitti_frame
    pipeline = DepthPipeline(engine_for(foreign_models, 'glpn'))
    portrait = CameraModel.from_intrinsics(300.0, 300.0, 119.5, 159.5, 240, 320)
    for image, cam, size in ((rgb, camera, (96, 32)),
                             (cv2.resize(rgb, (240, 320)), portrait, (96, 96))):
        result = pipeline.process_arrays(image, cam, {'depth', 'camera_info'})
        assert result.framing.network_size == size
        assert (result.camera.width, result.camera.height) == size
        assert result.depth.shape == size[::-1]
        np.testing.assert_array_equal(np.isfinite(result.depth),
                                      result.framing.valid_mask())


def test_a_preset_whose_size_does_not_fit_the_export(foreign_models):
    from monodepth_ros.engines import create_engine

    path, _ = foreign_models['depth-anything']
    with pytest.raises(ConfigError) as error:
        create_engine(path, backend='onnxruntime', card='depth-anything-v2-metric-outdoor')
    assert str(error.value) == (
        f"model card depth-anything-v2-metric-outdoor on {path}: input 'pixel_values' has the "
        'fixed size 1x3x56x84, but size policy long-side needs a dynamic height and width; '
        'expected size policy fixed or letterbox with height 56 and width 84')


def test_node_core_runs_a_foreign_model_with_its_card(foreign_models, tmp_path):
    import yaml
    from test_node_core import ALL_SUBSCRIBED, make_core, now_fn
    from test_pipeline import STAMP_NS, gradient_image, image_msg, info_msg

    from monodepth_ros.io.messages import MessageTypes

    types = MessageTypes.rosbags('humble')
    path, _ = foreign_models['glpn']
    card = tmp_path / 'glpn.yaml'
    card.write_text(yaml.safe_dump({'preset': 'glpn-kitti', 'input': {'size': {
        'policy': 'long-side', 'long_side': 96, 'multiple': 32}}}))
    core, logger, _ = make_core(types, path, model_card=str(card))
    core.on_camera_info(info_msg(types))
    core.on_image(image_msg(types, gradient_image()), received_ns=STAMP_NS + 1_000_000)
    out = core.process_next(ALL_SUBSCRIBED, now_fn(), timeout=0)
    assert set(out) == {'depth', 'camera_info', 'points'}
    assert (out['depth'].width, out['depth'].height) == (96, 64)   # 256x128 -> 96x48, padded
    assert (out['camera_info'].width, out['camera_info'].height) == (96, 64)
    assert logger.of('info')[-1] == (f'model {path} has no confidence, semantics, '
                                     'semantics_color output: those topics are not published')
    assert core.diagnostics().values['model_input'] == (
        'long side 96, sides multiple of 32, padded')


def test_infer_bag_writes_only_what_a_foreign_model_has(foreign_models, kitti_bag, tmp_path):
    from monodepth_ros.bagtools.infer_bag import infer_bag
    from monodepth_ros.io import topics

    bag, _ = kitti_bag
    pipeline = DepthPipeline(engine_for(foreign_models, 'depth-anything'))
    summary = infer_bag(bag, tmp_path / 'out', pipeline, progress=False)
    assert summary.frames > 0 and summary.errors == 0
    assert summary.topics == sorted(topics.OUTPUT_PREFIX + topics.OUTPUT_SUFFIXES[key]
                                    for key in ('depth', 'camera_info', 'points'))
