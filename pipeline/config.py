"""The one frozen configuration that flows through the pipeline.

`Settings` is what a preset sets: the look and the budget. Every default lives in
`configs/default.toml`; other presets name it in `extends` and change only what differs.
`Job` adds the files of one render to its settings: the clip, and its style, one painting or a
blend of several with weights (`Style`).
"""
from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import typing
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping

from .errors import InputError
from .outputs import is_sequence_pattern, output_stem
from .precision import PRECISIONS

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"

VGG16_LAYERS = tuple(
    f"block{block}_conv{conv}"
    for block, convs in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
    for conv in range(1, convs + 1)
)
VGG_MIN_SIDE = 32  # VGG16's five poolings need at least this many pixels per side
OPTIMIZERS = ("auto", "lbfgs", "scipy-lbfgs", "adam")
XLA = ("off", "on")
INITS = ("content", "previous", "previous-warped", "cold")
FLOW_METHODS = ("dis-fast", "dis-medium", "farneback")
KEEP_COLORS = ("", "luminance", "histogram")
_NOT_NEW = object()


def chosen_optimizer(optimizer: str) -> str:
    """`optimizer`, with "auto" made concrete: the device L-BFGS on any machine. On a GPU SciPy's
    L-BFGS-B would copy the image to the host and back at every evaluation. On a CPU the device one
    rendered three clips with SciPy's stability and fidelity in 20-31 % less time, and its cold frames
    end within the spread SciPy's own show from a start moved by a thousandth of a grey level
    (benchmarks/RESULTS.md, "Optimizers: SciPy against itself"). Work directories that began
    with SciPy's under "auto" go on with it (planning.with_recorded_optimizer)."""
    return "lbfgs" if optimizer == "auto" else optimizer


def _doc(text: str, choices: tuple[str, ...] = (), const: str | None = None, pixels: bool = True,
         before: Any = _NOT_NEW) -> Any:
    """A setting's help; `const` is its value when its flag is given bare; `pixels` False marks
    settings that change how a render runs, not what its frames look like; `before` is the value
    of a setting added later that renders as the program did before it existed: at that value it
    stays out of the identity, so the work directories of earlier renders still resume."""
    return field(metadata={"help": text, "choices": choices, "const": const, "pixels": pixels, "before": before})


@dataclass(frozen=True)
class Settings:
    size: int = _doc("long side of the output in pixels; 0 keeps the source size (never upscales)")
    content_layers: tuple[str, ...] = _doc("VGG16 layers for the content loss", VGG16_LAYERS)
    style_layers: tuple[str, ...] = _doc("VGG16 layers for the Gram-matrix style loss", VGG16_LAYERS)
    content_weight: float = _doc("weight of the content loss (each loss term is normalized to O(1))")
    style_weight: float = _doc("weight of the style loss")
    tv_weight: float = _doc("weight of the total-variation smoothness loss")
    temporal_weight: float = _doc("weight of the occlusion-masked temporal loss; 0 turns it off")
    style_scale: float = _doc("style image long side as a multiple of the frame's long side")
    keep_colors: str = _doc("keep the clip's colours: 'luminance' stylizes the brightness and keeps each source "
                            "frame's chroma; 'histogram' first gives the style image the colour statistics of the "
                            "render's first frame; '' off; a bare --keep-colors means luminance",
                            KEEP_COLORS, const="luminance", before="")
    optimizer: str = _doc("optimizer of the stylized image: 'lbfgs' and 'adam' run in TensorFlow, many iterations "
                          "per call; 'scipy-lbfgs' is SciPy's L-BFGS-B on the host, copying the image out at every "
                          "evaluation; 'auto' is 'lbfgs', or the optimizer the work directory began with",
                          OPTIMIZERS)
    xla: str = _doc("compile the loss and its gradient with XLA (jit_compile); slower on a CPU (an evaluation "
                    "took 1.27x as long at 128 px, 1.08x at 256 px), unmeasured on a GPU", XLA, pixels=False)
    precision: str = _doc("number format of the VGG features: 'mixed' computes them in bfloat16 on GPUs that have it "
                          "(compute capability 8.0+), the image and the losses staying float32; on a CPU or an "
                          "older GPU it renders in float32, with a note", PRECISIONS, before="float32")
    learning_rate: float = _doc("Adam step size in 0-255 pixel units (ignored by L-BFGS)")
    first_frame_iterations: int = _doc("loss evaluations budget of a cold frame (the first, or after a scene cut) "
                                       "at full size")
    coarse_levels: int = _doc("a cold frame is first stylized at this many coarser sizes, each half the next "
                              "(none below a 32-pixel side), each starting the next: cheap evaluations settle the "
                              "painting's layout, so the full-size frame starts near where the chain goes; 0 off")
    coarse_iterations: int = _doc("loss evaluations budget at each coarser size")
    frame_iterations: int = _doc("loss evaluations budget of every later frame")
    stop_tolerance: float = _doc("stop early when the loss falls by less than this fraction ...")
    stop_window: int = _doc("... over this many iterations")
    temporal_frames: int = _doc("earlier frames the temporal loss holds each frame to, at distances 1, 2, 4, … "
                                "(Ruder et al.'s long-term loss): each pulls only where no nearer one is reliable, "
                                "so content that comes back looks as it did; 1 is the previous frame alone")
    scene_cut: float = _doc("start a frame cold, like the first, when the flow from the frame before is reliable "
                            "on less than this share of its pixels (a scene cut); 0 never")
    init: str = _doc("how frames after the first start; 'cold': each like the first (no chain, no temporal "
                     "loss: the per-frame baseline that `eval --baseline` compares with)", INITS)
    flow: str = _doc("optical flow method for warm start and temporal loss", FLOW_METHODS)
    chunk_size: int = _doc("frames per chunk when a clip is split across workers (Ray)")
    overlap: int = _doc("warm-up frames before each chunk; the border frames are re-optimized between both chains (stitch)")
    video_chroma: str = _doc("H.264 chroma: 4:2:0 plays everywhere; 4:4:4 keeps stroke colours steady "
                             "(E_warp 1.09x the frames' against 1.83x) but Apple's players refuse it",
                             ("4:2:0", "4:4:4"), pixels=False)
    chains: int = _doc("render the clip as this many chunks side by side on this machine, the frames they "
                       "optimize evaluated through VGG16 as one batch (a GPU renders several frames per step); "
                       "borders stitched as a farm's; 1 one chain (Ray and farm ranges "
                       "render each chunk as its own task)", before=1)
    ray: str = _doc("render chunks on Ray: '' off, 'local' a cluster on this machine, or a cluster "
                    "address ('auto', 'ray://host:10001'); a bare --ray means local", const="local", pixels=False)

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            _check_setting(item, getattr(self, item.name))

    def to_dict(self) -> dict[str, Any]:
        return {name: list(v) if isinstance(v, tuple) else v for name, v in dataclasses.asdict(self).items()}

    @property
    def warmup_frames(self) -> int:
        """Frames a chunk renders before its own to start its chain: none without a chain (init
        cold), so a farm-rendered cold baseline has neither warm-ups nor stitches."""
        return 0 if self.init == "cold" else self.overlap

    def frame_settings(self) -> dict[str, Any]:
        """The settings the frames depend on: what a resume must match."""
        fields = Settings.__dataclass_fields__
        return {name: value for name, value in self.to_dict().items()
                if fields[name].metadata["pixels"] and value != fields[name].metadata["before"]}


def _check_setting(item: dataclasses.Field, value: Any) -> None:
    choices = item.metadata["choices"]
    values = value if isinstance(value, tuple) else (value,)
    if choices and any(v not in choices for v in values):
        raise InputError(f"setting {item.name}: {value!r} is not among {', '.join(choices)}")
    if item.name == "scene_cut" and value > 1:
        raise InputError(f"setting scene_cut: {value} is a share of the pixels, at most 1")
    if item.name in ("chunk_size", "temporal_frames", "chains") and value < 1:
        raise InputError(f"setting {item.name}: {value} must be at least 1")
    if isinstance(value, tuple) and not value and item.name != "content_layers":
        raise InputError(f"setting {item.name}: needs at least one layer")
    if isinstance(value, (int, float)) and value < 0:
        raise InputError(f"setting {item.name}: {value} must not be negative")


@dataclass(frozen=True)
class Style:
    """One painting of a job's style and its share of the Gram targets (a job's shares sum to 1)."""

    path: Path
    weight: float = 1.0

    def __str__(self) -> str:
        return str(self.path) if self.weight == 1 else f"{self.path}:{self.weight:g}"


# A weight is a plain decimal number after the last ':' ("a.jpg:0.7", "a.jpg:1e-1"); "C:\\x.jpg",
# "takes/12:30/a.jpg" and "a:b.jpg" have none, so a ':' elsewhere in a path is never split.
_WEIGHT_SUFFIX = re.compile(r"^(?P<path>.+):(?P<weight>[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)$")


def parse_style(text: str, base: Path | None = None) -> Style:
    """'a.jpg:0.7' -> Style(a.jpg, 0.7); 'a.jpg' -> weight 1. Only a trailing ':number' is a
    weight, and not when the whole text names an existing file. Paths are relative to `base`."""
    match = _WEIGHT_SUFFIX.match(text)
    whole = Path(text) if base is None else base / text
    if match is None or whole.is_file():
        return Style(whole)
    path = Path(match["path"]) if base is None else base / match["path"]
    return Style(path, float(match["weight"]))


def style_blend(styles: "Path | str | Style | typing.Iterable[Path | str | Style]") -> tuple[Style, ...]:
    """The styles of a job with their weights normalized to sum 1. A path alone is one style of
    weight 1. A negative or non-finite weight, or weights that sum to 0, are refused naming the files."""
    items = [styles] if isinstance(styles, (str, Path, Style)) else list(styles)
    blend = [item if isinstance(item, Style) else Style(Path(item)) for item in items]
    if not blend:
        raise InputError("no style image given")
    for style in blend:
        if not isinstance(style.weight, (int, float)) or isinstance(style.weight, bool) or \
                not math.isfinite(style.weight) or style.weight < 0:
            raise InputError(f"{style.path}: style weight {style.weight!r} must be a number, 0 or more (like a.jpg:0.7)")
    total = sum(style.weight for style in blend)
    if total <= 0:
        raise InputError(f"{', '.join(str(s.path) for s in blend)}: the style weights sum to 0; give one a weight above 0")
    if total == 1:  # already normalized: kept bit for bit, so normalizing twice changes no identity
        return tuple(blend)
    return tuple(Style(style.path, style.weight / total) for style in blend)


@dataclass(frozen=True)
class Job:
    """One render: which clip, which style, where to, and how."""

    video: Path
    style: tuple[Style, ...]  # a blend, weights summing to 1; a bare Path (or list of them) is accepted and converted
    settings: Settings
    output: Path | None = None  # None: `<video>.stylized.mp4` beside the input
    # Frame numbers as the source counts them: a video from 0, an image sequence from its first
    # file's number (1001...). planning.plan turns them into positions 0..N-1 in the clip.
    start: int | None = None  # None: the first frame
    end: int | None = None  # exclusive; None: to the last frame
    weights: Path | None = None  # None: search (see weights.py)
    workdir: Path | None = None  # None: `<output name>.work` beside the output
    overwrite: bool = False  # replace an existing output that this render's work directory did not write
    wait: bool = False  # wait for another render holding the work directory instead of refusing
    fps: Fraction | None = None  # frame rate of an image-sequence input; None: 24 (a video keeps its own)
    bit_depth: int = 8  # of PNG/TIFF sequence outputs: 8 or 16 (16: the optimizer's float result, to 1/257 of a level)

    def __post_init__(self) -> None:
        object.__setattr__(self, "style", style_blend(self.style))

    @property
    def style_paths(self) -> tuple[Path, ...]:
        return tuple(style.path for style in self.style)

    @property
    def output_path(self) -> Path:
        return self.output or self.video.with_name(f"{self.video.stem}.stylized.mp4")

    @property
    def output_is_sequence(self) -> bool:
        """Only an output the user names can be an image-sequence pattern."""
        return self.output is not None and is_sequence_pattern(self.output)

    @property
    def workdir_path(self) -> Path:
        output = self.output_path
        return self.workdir or output.with_name(f"{output_stem(output, self.output_is_sequence)}.work")


def frame_rate(value: Any) -> Fraction:
    """24, 23.976, "25" or "24000/1001" -> an exact Fraction above 0; ValueError otherwise."""
    try:
        rate = None if isinstance(value, bool) else Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        rate = None
    if rate is None or rate <= 0:
        raise ValueError(f"{value!r} is not a frame rate like 24 or 24000/1001 (above 0)")
    return rate


def setting_types() -> dict[str, type]:
    """The Python type of every setting (tuples of str are `tuple`)."""
    hints = typing.get_type_hints(Settings)
    return {name: (tuple if typing.get_origin(hint) is tuple else hint) for name, hint in hints.items()}


def preset_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = CONFIGS_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in CONFIGS_DIR.glob("*.toml")))
        raise InputError(f"{path}: no such preset (built-in presets: {known})")
    return path


def read_preset(name_or_path: str | Path) -> dict[str, Any]:
    """The preset's values merged over the presets it extends."""
    path = preset_path(name_or_path)
    try:
        values = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise InputError(f"{path}: not a readable TOML preset ({error})") from None
    parent = values.pop("extends", None)
    return {**(read_preset(parent) if parent else {}), **values}


def make_settings(preset: str | Path = "default", overrides: Mapping[str, Any] | None = None) -> Settings:
    """Settings from a preset with some values replaced; unknown or mistyped keys are refused."""
    values = {**read_preset(preset), **(overrides or {})}
    types = setting_types()
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise InputError(f"{preset}: unknown setting(s) {', '.join(unknown)}")
    missing = sorted(set(types) - set(values))
    if missing:
        raise InputError(f"{preset}: missing setting(s) {', '.join(missing)}")
    return Settings(**{name: _coerce(name, value, types[name]) for name, value in values.items()})


def _coerce(name: str, value: Any, kind: type) -> Any:
    try:
        if kind is tuple:
            return tuple(value.split(",") if isinstance(value, str) else value)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        raise InputError(f"setting {name}: {value!r} is not a valid {kind.__name__}") from None
