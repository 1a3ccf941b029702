"""Model cards: how to feed a depth network and how to read what it returns.

Our own ONNX files carry :class:`ModelMetadata`, and their card follows from it
(:meth:`ModelCard.from_metadata`). A foreign ONNX model (Depth Anything, Metric3D, ZoeDepth,
DPT/MiDaS, GLPN...) gets a small YAML card, or one of the :data:`PRESETS`:

.. code-block:: yaml

    preset: depth-anything-v2-relative   # optional: start from a preset, override below
    name: my-model
    input:
      name: pixel_values      # graph input ('' = the graph's only image input)
      layout: NCHW            # NCHW | NHWC
      dtype: float32          # float32 | float16
      channels: RGB           # RGB | BGR
      scale: 1/255            # pixel x scale, then (x - mean) / std per channel
      mean: [0.485, 0.456, 0.406]
      std: [0.229, 0.224, 0.225]
      size: {policy: long-side, long_side: 518, multiple: 14}
      intrinsics: ''          # optional graph input fed K (1x3x3) of the network input
    output:
      name: predicted_depth   # graph output ('' = the graph's first output)
      kind: affine_inverse_depth
      canonical_focal: 0      # pixels, for kind canonical_focal_depth
      confidence: ''          # optional graph output, in [0, 1]
      sky: ''                 # optional graph output: sky where value > sky_threshold
      sky_threshold: 0.5

Size policies (never a stretch; io.framing): ``fixed`` (height x width, the image framed like
ours: any of io.framing.FRAMING_MODES, rows cropped or padded), ``letterbox`` (height x width, the
whole image scaled to fit inside, padded), ``long-side`` (the long side scaled to
``long_side``, each side padded up to a multiple of ``multiple``; the network size then
depends on the camera, so the graph's height and width must be dynamic).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from monodepth_ros.errors import ConfigError, ModelFileError
from monodepth_ros.model.metadata import IMAGENET_MEAN, IMAGENET_STD, ModelMetadata

OUTPUT_KINDS = {
    'metric_depth': 'metres along the optical axis',
    'canonical_focal_depth': 'depth for a canonical focal length: metres = value x fx / '
                             'canonical_focal (fx in pixels of the network input)',
    'metric_inverse_depth': 'inverse metric depth: metres = 1 / value',
    'point_map': 'camera-frame points (x, y, z channels, metres): depth = z',
    'affine_depth': 'affine-invariant depth: metres = s x value + t (s, t unknown)',
    'affine_inverse_depth': 'affine-invariant inverse depth (disparity): 1 / metres = '
                            's x value + t (s, t unknown)',
}
# EngineOutput.depth_kind of each card kind: every metric convention becomes metres.
ENGINE_DEPTH_KIND = {'metric_depth': 'metric', 'canonical_focal_depth': 'metric',
                     'metric_inverse_depth': 'metric', 'point_map': 'metric',
                     'affine_depth': 'affine_depth',
                     'affine_inverse_depth': 'affine_inverse_depth'}
SIZE_POLICIES = ('fixed', 'letterbox', 'long-side')
LAYOUTS = ('NCHW', 'NHWC')
INPUT_DTYPES = ('float32', 'float16')
CHANNEL_ORDERS = ('RGB', 'BGR')
OUR_CARD_NAME = 'monodepth_ros'

# ONNX TensorProto element types of the input dtypes.
_ONNX_DTYPES = {'float32': 1, 'float16': 10}

# Presets from each family's public documentation (input size, normalisation, output kind).
# Tensor names are left '' (the graph's only input, its first output): exports differ.
_IMAGENET = {'scale': '1/255', 'mean': list(IMAGENET_MEAN), 'std': list(IMAGENET_STD)}
_HALF = {'scale': '1/255', 'mean': [0.5, 0.5, 0.5], 'std': [0.5, 0.5, 0.5]}
PRESETS = {
    'depth-anything-v2-relative': {
        'description': 'Depth Anything V2 (relative): ViT, patch 14, ImageNet normalisation, '
                       'affine-invariant inverse depth',
        'input': {**_IMAGENET, 'size': {'policy': 'long-side', 'long_side': 518,
                                        'multiple': 14}},
        'output': {'kind': 'affine_inverse_depth'}},
    'depth-anything-v2-metric-outdoor': {
        'description': 'Depth Anything V2 metric, outdoor (Virtual KITTI 2 fine-tune, up to '
                       '80 m): metric depth',
        'input': {**_IMAGENET, 'size': {'policy': 'long-side', 'long_side': 518,
                                        'multiple': 14}},
        'output': {'kind': 'metric_depth'}},
    'depth-anything-3-metric': {
        'description': 'Depth Anything 3 metric: metres = value x focal / 300',
        'input': {**_IMAGENET, 'size': {'policy': 'long-side', 'long_side': 504,
                                        'multiple': 14}},
        'output': {'kind': 'canonical_focal_depth', 'canonical_focal': 300.0}},
    'metric3d-v2': {
        'description': 'Metric3D v2 (ViT): 616x1064 letterbox, depth for a 1000 px canonical '
                       'focal length',
        'input': {**_IMAGENET, 'size': {'policy': 'letterbox', 'height': 616, 'width': 1064}},
        'output': {'kind': 'canonical_focal_depth', 'canonical_focal': 1000.0}},
    'zoedepth': {
        'description': 'ZoeDepth (NYU/KITTI): mean = std = 0.5, sides multiple of 32, metric '
                       'depth',
        'input': {**_HALF, 'size': {'policy': 'long-side', 'long_side': 512, 'multiple': 32}},
        'output': {'kind': 'metric_depth'}},
    'dpt-midas': {
        'description': 'DPT / MiDaS v3: 384 px, mean = std = 0.5, sides multiple of 32, '
                       'affine-invariant inverse depth',
        'input': {**_HALF, 'size': {'policy': 'long-side', 'long_side': 384, 'multiple': 32}},
        'output': {'kind': 'affine_inverse_depth'}},
    'glpn-kitti': {
        'description': 'GLPN fine-tuned on KITTI: pixels / 255 without mean/std, sides '
                       'multiple of 32, metric depth (up to 80 m)',
        'input': {'scale': '1/255', 'mean': [0.0, 0.0, 0.0], 'std': [1.0, 1.0, 1.0],
                  'size': {'policy': 'long-side', 'long_side': 704, 'multiple': 32}},
        'output': {'kind': 'metric_depth'}},
}

_SECTIONS = {
    'input': {'name', 'layout', 'dtype', 'channels', 'scale', 'mean', 'std', 'size',
              'intrinsics'},
    'output': {'name', 'kind', 'canonical_focal', 'confidence', 'sky', 'sky_threshold',
               'semantics'},
    'size': {'policy', 'height', 'width', 'long_side', 'multiple'},
}


@dataclass(frozen=True)
class ModelCard:
    """How to feed a depth network and read its output (see the module docstring)."""

    name: str = ''
    description: str = ''
    input_name: str = ''
    layout: str = 'NCHW'
    input_dtype: str = 'float32'
    channel_order: str = 'RGB'
    pixel_scale: float = 1.0 / 255.0
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    size_policy: str = 'fixed'
    height: int = 0          # fixed, letterbox
    width: int = 0
    long_side: int = 0       # long-side
    multiple: int = 1
    intrinsics_input: str = ''
    output_name: str = ''
    output_kind: str = 'metric_depth'
    canonical_focal: float = 0.0
    confidence_output: str = ''
    sky_output: str = ''
    sky_threshold: float = 0.5
    semantics_output: str = ''   # class logits (N,C,H,W); ours only
    source: str = ''             # where the card came from (file, preset, our metadata)

    @property
    def depth_kind(self) -> str:
        """``EngineOutput.depth_kind`` of this card's depth: 'metric' or an affine kind."""
        return ENGINE_DEPTH_KIND[self.output_kind]

    @property
    def dynamic_size(self) -> bool:
        """True when the network size follows the camera (long-side policy)."""
        return self.size_policy == 'long-side'

    @property
    def ours(self) -> bool:
        return self.source == OUR_CARD_NAME

    def batch_shape(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The input tensor shape for a width x height network input."""
        if self.layout == 'NHWC':
            return (1, int(height), int(width), 3)
        return (1, 3, int(height), int(width))

    def size_text(self) -> str:
        if self.dynamic_size:
            return f'long side {self.long_side}, sides multiple of {self.multiple}, padded'
        return f'{self.width}x{self.height} ({self.size_policy})'

    @classmethod
    def from_metadata(cls, metadata: ModelMetadata) -> ModelCard:
        """The card of one of our models: everything follows from its metadata."""
        from monodepth_ros.model.metadata import INPUT_NAME, OUTPUT_NAMES

        depth, logits, confidence = OUTPUT_NAMES
        kind = 'canonical_focal_depth' if metadata.canonical_focal > 0 else 'metric_depth'
        return cls(name=OUR_CARD_NAME, description=metadata.description,
                   input_name=INPUT_NAME, mean=tuple(metadata.mean), std=tuple(metadata.std),
                   height=int(metadata.input_height), width=int(metadata.input_width),
                   output_name=depth, output_kind=kind,
                   canonical_focal=float(metadata.canonical_focal),
                   confidence_output=confidence, semantics_output=logits,
                   source=OUR_CARD_NAME)

    def metadata(self) -> ModelMetadata:
        """The ModelMetadata a foreign model runs with downstream (sizes, normalisation...).

        A long-side model gets long_side x long_side as its nominal size; the pipeline plans
        the real size per camera.
        """
        width, height = ((self.long_side, self.long_side) if self.dynamic_size
                         else (self.width, self.height))
        canonical = self.canonical_focal if self.output_kind == 'canonical_focal_depth' else 0.0
        return ModelMetadata(
            input_height=int(height), input_width=int(width), mean=tuple(self.mean),
            std=tuple(self.std), class_names=(), class_colors=(),
            description=self.description or self.name, canonical_focal=float(canonical))

    def describe(self) -> list[str]:
        """Readable lines, for ``inspect-model`` and the logs."""
        lines = [f'card: {self.name or "(unnamed)"} from {self.source or "?"}']
        if self.description:
            lines.append(f'  {self.description}')
        lines += [
            f'  input {self.input_name or "(the only input)"}: {self.layout} '
            f'{self.input_dtype} {self.channel_order}, x {self.pixel_scale:.6g}, mean '
            f'{list(self.mean)}, std {list(self.std)}, size {self.size_text()}',
            f'  output {self.output_name or "(the first output)"}: {self.output_kind} '
            f'({OUTPUT_KINDS[self.output_kind]})']
        if self.output_kind == 'canonical_focal_depth':
            lines.append(f'  canonical focal length: {self.canonical_focal:g} px')
        for label, name in (('intrinsics input', self.intrinsics_input),
                            ('confidence output', self.confidence_output),
                            ('sky output', self.sky_output),
                            ('semantics output', self.semantics_output)):
            lines.append(f'  {label}: {name or "none"}')
        return lines


# -- loading ----------------------------------------------------------------------------------
def _fail(source: str, field: str, value, expected: str):
    raise ConfigError(f'model card {source}: {field} is {value!r}, expected {expected}')


def _number(source, field, value, low=None, integer=False, positive=False):
    """A finite number (``1/255`` style fractions allowed) within the bounds."""
    import math

    number = value
    if isinstance(value, str) and '/' in value:
        top, _, bottom = value.partition('/')
        try:
            number = float(top) / float(bottom)
        except (ValueError, ZeroDivisionError):
            _fail(source, field, value, 'a number (or a fraction like 1/255)')
    if isinstance(number, bool) or not isinstance(number, (int, float, str)):
        _fail(source, field, value, 'a number')
    try:
        number = float(number)
    except ValueError:
        _fail(source, field, value, 'a number')
    if not math.isfinite(number) or (positive and number <= 0) or (
            low is not None and number < low):
        _fail(source, field, value, 'a finite number > 0' if positive or low is None
              else f'a finite number >= {low}')
    if integer:
        if number != int(number):
            _fail(source, field, value, 'a whole number')
        return int(number)
    return number


def _choice(source, field, value, choices):
    if value not in choices:
        _fail(source, field, value, f'one of {list(choices)}')
    return value


def _text(source, field, value):
    if value is None:
        return ''
    if not isinstance(value, str):
        _fail(source, field, value, 'a tensor name (text)')
    return value


def _triple(source, field, value, positive=False):
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        _fail(source, field, value, 'a list of 3 numbers (one per channel)')
    return tuple(_number(source, f'{field}[{index}]', item, positive=positive)
                 for index, item in enumerate(value))


def _section(source, data, name, allowed):
    section = data.get(name) or {}
    if not isinstance(section, dict):
        _fail(source, name, section, 'a mapping of ' + ', '.join(sorted(allowed)))
    unknown = sorted(set(section) - allowed)
    if unknown:
        _fail(source, f'{name}.{unknown[0]}', section[unknown[0]],
              'no such field (known: ' + ', '.join(sorted(allowed)) + ')')
    return section


def _merged(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = _merged(merged[key], value)
        merged[key] = value
    return merged


def card_from_dict(data, source: str) -> ModelCard:
    """Validate a card's mapping (the YAML format) into a ModelCard.

    ConfigError (one line) naming the field, its value and what was expected.
    """
    if not isinstance(data, dict):
        raise ConfigError(f'model card {source}: expected a mapping with input: and output: '
                          f'sections, got {type(data).__name__}')
    unknown = sorted(set(data) - {'preset', 'name', 'description', 'input', 'output'})
    if unknown:
        _fail(source, unknown[0], data[unknown[0]],
              'no such field (known: preset, name, description, input, output)')
    name = data.get('name')
    if data.get('preset') is not None:
        preset = _choice(source, 'preset', data['preset'], PRESETS)
        data = _merged(PRESETS[preset], {k: v for k, v in data.items() if k != 'preset'})
        name = name or preset
    inputs = _section(source, data, 'input', _SECTIONS['input'])
    output = _section(source, data, 'output', _SECTIONS['output'])
    size = _section(source, inputs, 'size', _SECTIONS['size'])
    if 'kind' not in output:
        _fail(source, 'output.kind', None, f'one of {list(OUTPUT_KINDS)}')
    kind = _choice(source, 'output.kind', output['kind'], OUTPUT_KINDS)
    policy = _choice(source, 'input.size.policy', size.get('policy'), SIZE_POLICIES)
    values = dict(
        name=_text(source, 'name', name) or Path(source).stem,
        description=_text(source, 'description', data.get('description')),
        input_name=_text(source, 'input.name', inputs.get('name')),
        layout=_choice(source, 'input.layout', inputs.get('layout', 'NCHW'), LAYOUTS),
        input_dtype=_choice(source, 'input.dtype', inputs.get('dtype', 'float32'),
                            INPUT_DTYPES),
        channel_order=_choice(source, 'input.channels', inputs.get('channels', 'RGB'),
                              CHANNEL_ORDERS),
        pixel_scale=_number(source, 'input.scale', inputs.get('scale', '1/255'),
                            positive=True),
        mean=_triple(source, 'input.mean', inputs.get('mean', list(IMAGENET_MEAN))),
        std=_triple(source, 'input.std', inputs.get('std', list(IMAGENET_STD)), positive=True),
        size_policy=policy,
        intrinsics_input=_text(source, 'input.intrinsics', inputs.get('intrinsics')),
        output_name=_text(source, 'output.name', output.get('name')),
        output_kind=kind,
        confidence_output=_text(source, 'output.confidence', output.get('confidence')),
        sky_output=_text(source, 'output.sky', output.get('sky')),
        sky_threshold=_number(source, 'output.sky_threshold', output.get('sky_threshold', 0.5)),
        semantics_output=_text(source, 'output.semantics', output.get('semantics')),
        source=source)
    if policy == 'long-side':
        values['long_side'] = _number(source, 'input.size.long_side', size.get('long_side'),
                                      integer=True, positive=True)
        values['multiple'] = _number(source, 'input.size.multiple', size.get('multiple', 1),
                                     integer=True, positive=True)
        if values['long_side'] % values['multiple']:
            _fail(source, 'input.size.long_side', values['long_side'],
                  f'a multiple of input.size.multiple ({values["multiple"]})')
    else:
        for field in ('height', 'width'):
            values[field] = _number(source, f'input.size.{field}', size.get(field),
                                    integer=True, positive=True)
    if kind == 'canonical_focal_depth':
        values['canonical_focal'] = _number(source, 'output.canonical_focal',
                                            output.get('canonical_focal'), positive=True)
    return ModelCard(**values)


def load_card(card) -> ModelCard:
    """A ModelCard from a preset name, a YAML file path, or a ModelCard (returned as is)."""
    import yaml

    if isinstance(card, ModelCard):
        return card
    text = str(card)
    if text in PRESETS:
        return card_from_dict({'preset': text}, f'preset {text}')
    path = Path(text)
    if not path.is_file():
        raise ConfigError(f'model card {text!r} is neither a YAML file nor a preset; presets: '
                          + ', '.join(PRESETS))
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ''
        raise ConfigError(f'model card {path}: cannot read it as YAML ({first})') from error
    return card_from_dict(data, str(path))


# -- the card against the ONNX graph ----------------------------------------------------------
def _dims(value) -> list:
    """Dims of a graph value: ints, or None for a named or unknown (dynamic) dim."""
    return [dim.dim_value if dim.HasField('dim_value') else None
            for dim in value.type.tensor_type.shape.dim]


def shape_text(dims) -> str:
    return 'x'.join('?' if size is None else str(size) for size in dims)


def graph_summary(model) -> dict:
    """{'inputs': [(name, dims, dtype)], 'outputs': [...]} of an ONNX model."""
    import onnx

    def rows(values):
        return [(value.name, _dims(value),
                 onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type).name
                 if value.type.tensor_type.elem_type else '?') for value in values]

    initializers = {init.name for init in model.graph.initializer}
    return {'inputs': rows(v for v in model.graph.input if v.name not in initializers),
            'outputs': rows(model.graph.output)}


def check_card(card: ModelCard, model, source: str) -> ModelCard:
    """The card with its tensor names resolved, checked against the graph of ``model``.

    ConfigError (one line) for a missing tensor, another rank, a fixed size that does not fit
    the size policy, an input dtype that differs, or a graph input the card does not feed.
    """
    graph = graph_summary(model)
    inputs = {name: (dims, dtype) for name, dims, dtype in graph['inputs']}
    outputs = {name: (dims, dtype) for name, dims, dtype in graph['outputs']}
    where = f'model card {card.name} on {source}'

    def missing(kind, name, have):
        raise ConfigError(f'{where}: {kind} {name!r} is not in the graph, which has '
                          f'{kind}s {list(have)}')

    image_input = card.input_name
    if not image_input:
        candidates = [name for name in inputs if name != card.intrinsics_input]
        if len(candidates) != 1:
            raise ConfigError(f'{where}: the graph has inputs {list(inputs)}; expected the card '
                              'to name the image input (input.name)')
        image_input = candidates[0]
    if image_input not in inputs:
        missing('input', image_input, inputs)
    if card.intrinsics_input and card.intrinsics_input not in inputs:
        missing('input', card.intrinsics_input, inputs)
    unfed = [name for name in inputs if name not in (image_input, card.intrinsics_input)]
    if unfed:
        raise ConfigError(f'{where}: graph inputs {unfed} are not fed by the card; expected '
                          f'only the image {image_input!r} and at most an intrinsics input')
    dims, dtype = inputs[image_input]
    expected_layout = 'NxCxHxW' if card.layout == 'NCHW' else 'NxHxWxC'
    if len(dims) != 4:
        raise ConfigError(f'{where}: input {image_input!r} has shape {shape_text(dims)}, expected '
                          f'rank 4 ({card.layout}: {expected_layout})')
    channel_axis, height_axis, width_axis = (1, 2, 3) if card.layout == 'NCHW' else (3, 1, 2)
    if dims[channel_axis] not in (None, 3):
        raise ConfigError(f'{where}: input {image_input!r} has shape {shape_text(dims)}, expected '
                          f'3 channels on axis {channel_axis} ({card.layout}: '
                          f'{expected_layout}); check input.layout')
    if dtype != card.input_dtype:
        _fail(where, 'input.dtype', card.input_dtype, f"{dtype!r}, the graph input's type")
    height, width = dims[height_axis], dims[width_axis]
    if card.dynamic_size and (height is not None or width is not None):
        raise ConfigError(f'{where}: input {image_input!r} has the fixed size {shape_text(dims)}, '
                          'but size policy long-side needs a dynamic height and width; '
                          f'expected size policy fixed or letterbox with height {height} and '
                          f'width {width}')
    if not card.dynamic_size and ((height is not None and height != card.height)
                                  or (width is not None and width != card.width)):
        raise ConfigError(f'{where}: input {image_input!r} has shape {shape_text(dims)}, but the '
                          f'card says {card.width}x{card.height} (WxH); expected input.size '
                          f'height {height} and width {width}')
    output_name = card.output_name or next(iter(outputs))
    for label, name in (('output', output_name), ('output', card.confidence_output),
                        ('output', card.sky_output), ('output', card.semantics_output)):
        if name and name not in outputs:
            missing(label, name, outputs)
    out_dims = outputs[output_name][0]
    if card.output_kind == 'point_map':
        if len(out_dims) not in (3, 4) or 3 not in out_dims[-3:]:
            raise ConfigError(f'{where}: output {output_name!r} has shape {shape_text(out_dims)}, '
                              'expected a point map with 3 channels (x, y, z): 1x3xHxW or '
                              '1xHxWx3; check output.kind')
    elif len(out_dims) not in (2, 3, 4) or (len(out_dims) == 4 and out_dims[1] not in (None, 1)
                                            and out_dims[3] not in (None, 1)):
        raise ConfigError(f'{where}: output {output_name!r} has shape {shape_text(out_dims)}, '
                          f'expected one depth channel (HxW, 1xHxW or 1x1xHxW) for kind '
                          f'{card.output_kind}; check output.kind')
    return replace(card, input_name=image_input, output_name=output_name)


def card_for(model, source: str, card=None) -> tuple[ModelCard, ModelMetadata]:
    """(card, metadata) to run the loaded ONNX ``model`` (from file ``source``) with.

    Our own file (with its metadata) needs no card; a foreign one needs ``card`` (a preset
    name, a YAML path or a ModelCard), else a one-line ConfigError saying so.
    """
    from monodepth_ros.model.files import check_onnx_io, has_onnx_metadata, read_onnx_metadata

    if card is None or card == '':
        if not has_onnx_metadata(model):
            raise ModelFileError(f'ONNX file {source} carries no monodepth_ros metadata: a '
                                 'foreign model needs --model-card (node: model_card), a YAML '
                                 'card or a preset: ' + ', '.join(PRESETS))
        metadata = read_onnx_metadata(model, source)
        check_onnx_io(model, source, metadata)
        return check_card(ModelCard.from_metadata(metadata), model, source), metadata
    card = check_card(load_card(card), model, source)
    return card, card.metadata()


def add_model_card_argument(parser) -> None:
    """--model-card, for every command that takes --model (the node's model_card)."""
    parser.add_argument('--model-card', default=None, metavar='CARD',
                        help='how to feed and read a foreign ONNX model: a YAML model card or '
                        f'a preset ({", ".join(PRESETS)}); our own models need none (see '
                        '"monodepth inspect-model")')


def plan_card_framing(card: ModelCard, width: int, height: int, camera=None,
                      mode: str = 'fit-width', anchor: float | None = None):
    """The io.framing plan of a width x height image for the card's size policy.

    ``fixed`` frames like our models (``mode``: io.framing.FRAMING_MODES); ``letterbox``
    and ``long-side`` have their own geometry, ``mode`` does not apply to them.
    """
    from monodepth_ros.io.framing import (
        DEFAULT_ANCHOR,
        plan_framing,
        plan_letterbox,
        plan_long_side,
    )

    anchor = DEFAULT_ANCHOR if anchor is None else anchor
    if card.size_policy == 'long-side':
        return plan_long_side(width, height, card.long_side, card.multiple, camera, anchor)
    if card.size_policy == 'letterbox':
        return plan_letterbox(width, height, (card.width, card.height), camera, anchor)
    canonical = card.canonical_focal if card.output_kind == 'canonical_focal_depth' else 0.0
    if mode == 'canonical-fit' and not card.ours:
        # A foreign card's canonical focal length may be its output's unit rather than a
        # camera its network was trained for: the default framing leaves it at fit-width.
        canonical = 0.0
    return plan_framing(width, height, (card.width, card.height), camera, mode, anchor,
                        canonical)
