"""Show what an ONNX model takes and returns, the model card in effect, and what is missing.

Prints the graph's inputs and outputs (names, shapes, element types; ``?`` is a dynamic
dimension), our metadata when the file is one of ours, then the card that would run it (ours
follows from the metadata; a foreign model needs ``--card``: a YAML card or a preset) and
whether it fits the graph. Exit status 0 when the model can run as shown, 1 when something is
missing or inconsistent (the last line says what).
"""

from __future__ import annotations

from monodepth_ros.errors import ConfigError, ModelFileError


def add_arguments(parser) -> None:
    from monodepth_ros.model.cards import PRESETS

    parser.add_argument('model', help='ONNX file (ours, or a foreign one)')
    parser.add_argument('--card', '--model-card', dest='card', default=None, metavar='CARD',
                        help='model card to check against the graph: a YAML file or a preset '
                        f'({", ".join(PRESETS)})')


def inspect_lines(model, source: str, card=None) -> tuple[list[str], str | None]:
    """(lines describing the loaded ONNX ``model``, the problem or None)."""
    from monodepth_ros.model.cards import card_for, graph_summary, shape_text
    from monodepth_ros.model.files import has_onnx_metadata, read_onnx_metadata

    graph = graph_summary(model)
    lines = [f'model: {source}']
    for label in ('inputs', 'outputs'):
        lines.append(f'{label}:')
        lines += [f'  {name}  {shape_text(dims)}  {dtype}' for name, dims, dtype in graph[label]]
    if has_onnx_metadata(model):
        try:
            meta = read_onnx_metadata(model, source)
        except ModelFileError as error:
            return lines, str(error)
        lines.append(f'monodepth_ros metadata: input {meta.input_width}x{meta.input_height}, '
                     f'depth {meta.depth_min:g}..{meta.depth_max:g} m, {len(meta.class_names)} '
                     f'classes, canonical focal {meta.canonical_focal:g} px'
                     + (f' ({meta.description})' if meta.description else ''))
    else:
        lines.append('monodepth_ros metadata: none (a foreign model: it runs with a model card)')
    try:
        resolved, _ = card_for(model, source, card)
    except (ConfigError, ModelFileError) as error:
        return lines, str(error)
    lines += resolved.describe()
    return lines, None


def run(args) -> int:
    from monodepth_ros.model.files import load_onnx_model

    model = load_onnx_model(args.model)
    lines, problem = inspect_lines(model, str(args.model), args.card)
    print('\n'.join(lines))
    if problem:
        print(f'problem: {problem}')
        return 1
    print('ok: the model runs with this card')
    return 0
