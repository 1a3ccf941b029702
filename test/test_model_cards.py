"""Model cards: loading, validation, the graph check, size policies, the one normalisation.

Models derived from ours with each output convention come back, through their cards, to our
metric depth.
"""

import warnings

import numpy as np
import pytest
import yaml

from monodepth_ros.errors import ConfigError, EngineError, ModelFileError
from monodepth_ros.io.framing import plan_framing, plan_letterbox, plan_long_side
from monodepth_ros.model.cards import PRESETS, ModelCard, card_from_dict, load_card
from monodepth_ros.model.preprocess import normalize, preprocess

NET_W, NET_H = 128, 64


# -- fixtures: our tiny network, exported as ours and as foreign models -------------------------
@pytest.fixture(scope='session')
def tiny_network():
    import torch

    from monodepth_ros.model.network import NetworkConfig, build_network

    torch.manual_seed(0)
    config = NetworkConfig(encoder='tiny', num_bins=16, aspp_channels=8, aspp_dilations=(1, 2),
                           decoder_channels=(8, 8, 8, 8, 8), tiny_channels=(8, 8, 8, 8, 8))
    return build_network(config).eval(), config


@pytest.fixture(scope='session')
def ours_onnx(tiny_network, tmp_path_factory):
    from monodepth_ros.model.export import export_model
    from monodepth_ros.model.metadata import ModelMetadata

    network, config = tiny_network
    metadata = ModelMetadata(input_height=NET_H, input_width=NET_W, num_bins=16,
                             network=config.to_dict())
    path = tmp_path_factory.mktemp('ours') / 'ours.onnx'
    export_model(network, metadata, path, verify=False)
    return path


def export_foreign(module, path, dummy, input_name='image', output_names=('out',)):
    """Export a torch module as a foreign ONNX model (no metadata of ours)."""
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter('ignore')
        torch.onnx.export(module.eval(), (dummy,), str(path), opset_version=17, dynamo=False,
                          input_names=[input_name], output_names=list(output_names))
    return path


class Derived:
    """Torch modules around our network, each returning depth in another convention."""

    @staticmethod
    def make(network, kind, factor=1.0, scale=2.0, shift=0.5):
        import torch

        from monodepth_ros.model.metadata import IMAGENET_MEAN, IMAGENET_STD

        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

        class Module(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = network

            def forward(self, image):
                if kind == 'nhwc_bgr':   # (1,H,W,3) BGR in [0, 1]: our input made inside
                    image = (image.permute(0, 3, 1, 2).flip(1) - mean) / std
                depth = self.net(image)['depth']
                if kind == 'inverse':
                    return 1.0 / depth
                if kind == 'affine':       # metres = scale * out + shift
                    return (depth - shift) / scale
                if kind == 'canonical':    # depth of a camera with fx = factor * 1000
                    return depth * factor
                if kind == 'points':       # x, y, z channels; z is the depth
                    return torch.cat([0.5 * depth, -0.25 * depth, depth], dim=1)
                return depth

        return Module()


@pytest.fixture(scope='session')
def derived_models(tiny_network, kitti_frame, tmp_path_factory):
    """Each convention: kind -> (ONNX path, card), with the weights of ours_onnx."""
    import torch

    network, _ = tiny_network
    folder = tmp_path_factory.mktemp('derived')
    rgb, camera = kitti_frame
    fx = plan_framing(rgb.shape[1], rgb.shape[0], (NET_W, NET_H), camera).camera(camera).fx
    base = {'input': {'name': 'image', 'size': {'policy': 'fixed', 'height': NET_H,
                                                'width': NET_W}},
            'output': {'name': 'out'}}
    kinds = {'inverse': {'kind': 'metric_inverse_depth'},
             'affine': {'kind': 'affine_depth'},
             'canonical': {'kind': 'canonical_focal_depth', 'canonical_focal': 1000},
             'points': {'kind': 'point_map'},
             'nhwc_bgr': {'kind': 'metric_depth'}}
    models = {}
    for kind, output in kinds.items():
        module = Derived.make(network, kind, factor=1000.0 / fx)
        shape = (1, NET_H, NET_W, 3) if kind == 'nhwc_bgr' else (1, 3, NET_H, NET_W)
        path = export_foreign(module, folder / f'{kind}.onnx', torch.zeros(shape))
        data = {'name': kind, 'input': dict(base['input']), 'output': {**base['output'],
                                                                        **output}}
        if kind == 'nhwc_bgr':
            data['input'].update(layout='NHWC', channels='BGR', mean=[0, 0, 0], std=[1, 1, 1])
        models[kind] = (path, card_from_dict(data, f'{kind}.yaml'))
    return models


def onnx_engine(path, card=None):
    from monodepth_ros.engines import create_engine

    return create_engine(path, backend='onnxruntime', precision='fp32', card=card)


# -- loading and validation -------------------------------------------------------------------
def test_every_preset_loads_and_describes_itself():
    for name in PRESETS:
        card = load_card(name)
        assert card.name == name and card.source == f'preset {name}'
        text = '\n'.join(card.describe())
        assert card.output_kind in text
    metric3d = load_card('metric3d-v2')
    assert (metric3d.size_policy, metric3d.height, metric3d.width) == ('letterbox', 616, 1064)
    assert metric3d.metadata().canonical_focal == 1000.0
    assert load_card('depth-anything-3-metric').canonical_focal == 300.0
    relative = load_card('depth-anything-v2-relative')
    assert (relative.long_side, relative.multiple) == (518, 14)
    assert relative.depth_kind == 'affine_inverse_depth'


def test_yaml_card_round_trip_and_preset_override(tmp_path):
    path = tmp_path / 'card.yaml'
    path.write_text(yaml.safe_dump({
        'name': 'mine', 'input': {'name': 'x', 'layout': 'NHWC', 'dtype': 'float16',
                                  'channels': 'BGR', 'scale': '1/255', 'mean': [0.5] * 3,
                                  'std': [0.25] * 3,
                                  'size': {'policy': 'long-side', 'long_side': 224,
                                           'multiple': 32},
                                  'intrinsics': 'K'},
        'output': {'name': 'y', 'kind': 'point_map', 'confidence': 'c', 'sky': 's',
                   'sky_threshold': 0.3}}))
    card = load_card(path)
    assert card == ModelCard(
        name='mine', input_name='x', layout='NHWC', input_dtype='float16',
        channel_order='BGR', pixel_scale=1 / 255, mean=(0.5,) * 3, std=(0.25,) * 3,
        size_policy='long-side', long_side=224, multiple=32, intrinsics_input='K',
        output_name='y', output_kind='point_map', confidence_output='c', sky_output='s',
        sky_threshold=0.3, source=str(path))
    override = card_from_dict({'preset': 'zoedepth', 'output': {'name': 'depth'}}, 'z.yaml')
    assert (override.name, override.output_name, override.output_kind,
            override.long_side) == ('zoedepth', 'depth', 'metric_depth', 512)


@pytest.mark.parametrize('data, message', [
    ({'input': {'size': {'policy': 'fixed', 'height': 8, 'width': 8}}},
     "model card c.yaml: output.kind is None, expected one of ['metric_depth', "
     "'canonical_focal_depth', 'metric_inverse_depth', 'point_map', 'affine_depth', "
     "'affine_inverse_depth']"),
    ({'input': {'size': {'policy': 'fixed', 'height': 8, 'width': 8}},
      'output': {'kind': 'disparity'}},
     "model card c.yaml: output.kind is 'disparity', expected one of ['metric_depth', "
     "'canonical_focal_depth', 'metric_inverse_depth', 'point_map', 'affine_depth', "
     "'affine_inverse_depth']"),
    ({'input': {'size': {'policy': 'long-side', 'long_side': 500, 'multiple': 14}},
      'output': {'kind': 'metric_depth'}},
     'model card c.yaml: input.size.long_side is 500, expected a multiple of '
     'input.size.multiple (14)'),
    ({'input': {'mean': [0.5, 0.5], 'size': {'policy': 'fixed', 'height': 8, 'width': 8}},
      'output': {'kind': 'metric_depth'}},
     'model card c.yaml: input.mean is [0.5, 0.5], expected a list of 3 numbers (one per '
     'channel)'),
    ({'input': {'size': {'policy': 'fixed', 'height': 8}}, 'output': {'kind': 'metric_depth'}},
     'model card c.yaml: input.size.width is None, expected a number'),
    ({'input': {'size': {'policy': 'fixed', 'height': 8, 'width': 8}},
      'output': {'kind': 'canonical_focal_depth'}},
     'model card c.yaml: output.canonical_focal is None, expected a number'),
    ({'input': {'size': {'policy': 'fixed', 'height': 8, 'width': 8}, 'colour': 'RGB'},
      'output': {'kind': 'metric_depth'}},
     "model card c.yaml: input.colour is 'RGB', expected no such field (known: channels, "
     'dtype, intrinsics, layout, mean, name, scale, size, std)'),
    ({'preset': 'midas'},
     "model card c.yaml: preset is 'midas', expected one of ['depth-anything-v2-relative', "
     "'depth-anything-v2-metric-outdoor', 'depth-anything-3-metric', 'metric3d-v2', "
     "'zoedepth', 'dpt-midas', 'glpn-kitti']"),
])
def test_bad_cards_give_one_line_errors(data, message):
    with pytest.raises(ConfigError) as error:
        card_from_dict(data, 'c.yaml')
    assert str(error.value) == message


def test_a_card_that_is_neither_file_nor_preset(tmp_path):
    with pytest.raises(ConfigError, match="model card 'nothing.yaml' is neither a YAML file nor "
                       'a preset; presets: depth-anything-v2-relative, '):
        load_card('nothing.yaml')
    broken = tmp_path / 'broken.yaml'
    broken.write_text('input: [unclosed\n')
    with pytest.raises(ConfigError, match=f'model card {broken}: cannot read it as YAML'):
        load_card(broken)


# -- the card against the graph ---------------------------------------------------------------
def test_card_checked_against_the_graph(derived_models):
    path, card = derived_models['inverse']

    def message(**changes):
        from dataclasses import replace

        with pytest.raises(ConfigError) as error:
            onnx_engine(path, replace(card, **changes))
        assert '\n' not in str(error.value)
        return str(error.value)

    where = f'model card inverse on {path}'
    assert message(output_name='depth') == (
        f"{where}: output 'depth' is not in the graph, which has outputs ['out']")
    assert message(input_name='pixel_values') == (
        f"{where}: input 'pixel_values' is not in the graph, which has inputs ['image']")
    assert message(width=100) == (
        f"{where}: input 'image' has shape 1x3x64x128, but the card says 100x64 (WxH); "
        'expected input.size height 64 and width 128')
    assert message(size_policy='long-side', long_side=128, multiple=32) == (
        f"{where}: input 'image' has the fixed size 1x3x64x128, but size policy long-side "
        'needs a dynamic height and width; expected size policy fixed or letterbox with '
        'height 64 and width 128')
    assert message(output_kind='point_map') == (
        f"{where}: output 'out' has shape 1x1x64x128, expected a point map with 3 channels "
        '(x, y, z): 1x3xHxW or 1xHxWx3; check output.kind')
    assert message(layout='NHWC').startswith(
        f"{where}: input 'image' has shape 1x3x64x128, expected 3 channels on axis 3")
    assert message(input_dtype='float16') == (
        f"model card {where}: input.dtype is 'float16', expected 'float32', the graph "
        "input's type")
    # Tensor names left empty resolve to the only input and the first output.
    engine = onnx_engine(path, card.__class__(**{**card.__dict__, 'input_name': '',
                                                 'output_name': ''}))
    assert (engine.card.input_name, engine.card.output_name) == ('image', 'out')


def test_foreign_onnx_without_card_says_to_pass_one(derived_models):
    path, _ = derived_models['inverse']
    with pytest.raises(ModelFileError) as error:
        onnx_engine(path)
    assert str(error.value) == (
        f'ONNX file {path} carries no monodepth_ros metadata: a foreign model needs '
        '--model-card (node: model_card), a YAML card or a preset: ' + ', '.join(PRESETS))


def test_cards_only_for_onnx_files_and_not_on_torch(tmp_path, derived_models):
    from conftest import save_tiny_checkpoint

    from monodepth_ros.engines import create_engine

    checkpoint = save_tiny_checkpoint(tmp_path / 'tiny.pt')
    with pytest.raises(EngineError, match='is one of our checkpoints and needs none'):
        create_engine(checkpoint, backend='onnxruntime', card='zoedepth')
    path, card = derived_models['inverse']
    with pytest.raises(EngineError, match='the torch backend runs our checkpoints only'):
        create_engine(path, backend='torch', card=card)


# -- size policies and normalisation ----------------------------------------------------------
def test_long_side_policy_pads_to_multiples_and_the_camera_follows(kitti_frame):
    rgb, camera = kitti_frame
    framing = plan_long_side(1242, 375, 518, 14, camera)
    assert framing.scaled_size == (518, 156) and framing.network_size == (518, 168)
    network = framing.camera(camera)
    assert network.fx == pytest.approx(camera.fx * 518 / 1242)
    assert framing.valid_mask().sum() == 518 * 156
    # A portrait image: the height is the long side.
    assert plan_long_side(375, 1242, 518, 14).network_size == (168, 518)
    with pytest.raises(ConfigError, match='long side 500 and multiple 14 are invalid'):
        plan_long_side(1242, 375, 500, 14)


def test_letterbox_keeps_the_whole_image(kitti_frame):
    rgb, camera = kitti_frame
    framing = plan_letterbox(1242, 375, (1064, 616), camera)
    assert framing.scaled_size == (1064, 321) and framing.network_size == (1064, 616)
    assert framing.valid_mask().sum() == 1064 * 321   # nothing cropped
    u, v = framing.to_network([0, 1241], [0, 374])
    assert (u >= -0.5).all() and (u <= 1063.5).all() and (v >= -0.5).all()


def test_one_normalisation_for_every_layout():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    nchw = normalize(rgb, mean, std)
    expected = ((rgb / 255.0 - np.array(mean)) / np.array(std)).transpose(2, 0, 1)[None]
    np.testing.assert_allclose(nchw, expected, rtol=1e-5, atol=1e-5)
    from monodepth_ros.model.metadata import ModelMetadata

    ours = preprocess(rgb, ModelMetadata(input_height=6, input_width=10))
    np.testing.assert_array_equal(ours, nchw)
    nhwc_bgr = normalize(rgb, mean[::-1], std[::-1], layout='NHWC', bgr=True)
    np.testing.assert_allclose(nhwc_bgr[0], nchw[0, ::-1].transpose(1, 2, 0), rtol=1e-6)
    half = normalize(rgb, (0, 0, 0), (1, 1, 1), scale=1.0, dtype=np.float16)
    assert half.dtype == np.float16
    np.testing.assert_array_equal(half[0].transpose(1, 2, 0), rgb.astype(np.float16))


# -- derived models: each convention back to our metric depth ---------------------------------
def pipeline_depth(engine, kitti_frame, **config):
    from monodepth_ros.runtime.pipeline import DepthPipeline, PipelineConfig

    rgb, camera = kitti_frame
    pipeline = DepthPipeline(engine, PipelineConfig(**config))
    return pipeline.process_arrays(rgb, camera, {'depth', 'camera_info'})


@pytest.mark.parametrize('kind', ['inverse', 'canonical', 'points', 'nhwc_bgr'])
def test_metric_conventions_come_back_to_our_depth(kind, ours_onnx, derived_models,
                                                   kitti_frame):
    ours = pipeline_depth(onnx_engine(ours_onnx), kitti_frame)
    path, card = derived_models[kind]
    theirs = pipeline_depth(onnx_engine(path, card), kitti_frame)
    assert theirs.framing == ours.framing
    assert theirs.camera.size == ours.camera.size
    np.testing.assert_array_equal(theirs.camera.K, ours.camera.K)
    # Finite where the image is, NaN in the padding, for both.
    np.testing.assert_array_equal(np.isfinite(ours.depth), ours.framing.valid_mask())
    np.testing.assert_allclose(theirs.depth, ours.depth, rtol=1e-4, equal_nan=True)
    assert theirs.depth_scale == (pytest.approx(ours.camera.fx / 1000.0) if kind == 'canonical'
                                  else 1.0)


def test_affine_model_returns_raw_values_that_map_back_to_ours(ours_onnx, derived_models,
                                                              kitti_frame):
    rgb, camera = kitti_frame
    ours_engine = onnx_engine(ours_onnx)
    path, card = derived_models['affine']
    engine = onnx_engine(path, card)
    framing = plan_framing(rgb.shape[1], rgb.shape[0], (NET_W, NET_H), camera)
    batch = preprocess(framing.apply(rgb), ours_engine.metadata)
    ours, theirs = ours_engine.infer(batch), engine.infer(batch)
    assert (ours.depth_kind, theirs.depth_kind) == ('metric', 'affine_depth')
    assert theirs.semantics is None and theirs.confidence is None and theirs.sky is None
    np.testing.assert_allclose(theirs.depth, (ours.depth - 0.5) / 2.0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(2.0 * theirs.depth + 0.5, ours.depth, rtol=1e-5)


def test_foreign_model_without_semantics_or_confidence_produces_the_rest(derived_models,
                                                                         kitti_frame):
    from monodepth_ros.runtime.pipeline import ALL_OUTPUTS, DepthPipeline, PipelineConfig

    path, card = derived_models['inverse']
    rgb, camera = kitti_frame
    pipeline = DepthPipeline(onnx_engine(path, card), PipelineConfig(
        cloud_label=True, cloud_confidence=True, confidence_threshold=0.5,
        output_resolution='camera'))
    assert pipeline.available_outputs == ALL_OUTPUTS - {'semantics', 'semantics_color',
                                                        'confidence'}
    result = pipeline.process_arrays(rgb, camera, ALL_OUTPUTS)
    assert result.depth.shape == (375, 1242)
    assert result.semantics is None and result.semantics_color is None
    assert result.confidence is None
    assert set(result.points) == {'xyz', 'rgb'}
    assert np.isfinite(result.points['xyz']).all(axis=2).sum() > 0


def test_every_command_with_a_model_takes_a_model_card():
    from monodepth_ros.cli import build_parser

    for command in ('infer', 'infer-bag', 'eval-bag', 'build-engine', 'inspect-model'):
        parser, _ = build_parser(command)
        assert '--model-card' in parser.format_help(), command


def test_inspect_model_prints_what_it_finds_and_what_is_missing(ours_onnx, derived_models,
                                                                capsys):
    from monodepth_ros.cli import main

    assert main(['inspect-model', str(ours_onnx)]) == 0
    out = capsys.readouterr().out
    assert 'image  ?x3x64x128  float32' in out and 'depth  ?x1x64x128  float32' in out
    assert 'monodepth_ros metadata: input 128x64' in out
    assert out.strip().endswith('ok: the model runs with this card')
    path, _ = derived_models['inverse']
    assert main(['inspect-model', str(path)]) == 1
    out = capsys.readouterr().out
    assert 'monodepth_ros metadata: none (a foreign model: it runs with a model card)' in out
    assert out.strip().splitlines()[-1].startswith(
        f'problem: ONNX file {path} carries no monodepth_ros metadata')
    assert main(['inspect-model', str(path), '--card', 'metric3d-v2']) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == (f"problem: model card metric3d-v2 on {path}: input 'image' has shape "
                    '1x3x64x128, but the card says 1064x616 (WxH); expected input.size height '
                    '64 and width 128')
