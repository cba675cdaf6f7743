from pathlib import Path

import pytest

from pipeline.config import Job, Style, make_settings, parse_style, read_preset, style_blend
from pipeline.errors import InputError


def test_presets_extend_the_default():
    default, preview = read_preset("default"), read_preset("preview")
    assert set(preview) == set(default)
    assert preview["size"] < default["size"] and preview["style_weight"] == default["style_weight"]


@pytest.mark.parametrize("name", ["preview", "final"])
def test_a_builtin_preset_differs_from_default_in_exactly_its_own_keys(name):
    import dataclasses

    preset_file = {key: value for key, value in _toml(name).items() if key != "extends"}
    settings, default = make_settings(name), make_settings("default")
    changed = {f.name for f in dataclasses.fields(settings) if getattr(settings, f.name) != getattr(default, f.name)}
    assert changed == set(preset_file)
    assert all(getattr(settings, key) == value for key, value in preset_file.items())


def _toml(name: str) -> dict:
    import tomllib

    from pipeline.config import CONFIGS_DIR

    return tomllib.loads((CONFIGS_DIR / f"{name}.toml").read_text())


def test_overrides_are_typed_and_checked():
    settings = make_settings("default", {"style_weight": "20", "style_layers": "block1_conv1,block2_conv1"})
    assert settings.style_weight == 20.0 and settings.style_layers == ("block1_conv1", "block2_conv1")
    with pytest.raises(InputError, match="optimizer"):
        make_settings("default", {"optimizer": "sgd"})
    with pytest.raises(InputError, match="block9_conv1"):
        make_settings("default", {"content_layers": "block9_conv1"})
    with pytest.raises(InputError, match="size"):
        make_settings("default", {"size": -5})
    with pytest.raises(InputError, match="colour"):
        make_settings("default", {"colour": 1})


def test_preset_from_a_path_and_a_missing_one(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('extends = "preview"\nstyle_weight = 3.0\n')
    settings = make_settings(path)
    assert settings.style_weight == 3.0 and settings.size == read_preset("preview")["size"]
    with pytest.raises(InputError, match="no such preset"):
        make_settings("nonexistent")


def test_default_output_and_workdir_sit_beside_the_input(tmp_path):
    job = Job(video=tmp_path / "clip.mp4", style=tmp_path / "s.jpg", settings=make_settings())
    assert job.output_path == tmp_path / "clip.stylized.mp4"
    assert job.workdir_path == tmp_path / "clip.stylized.work"
    sequence = Job(video=job.video, style=job.style, settings=job.settings, output=tmp_path / "out.%04d.png")
    assert sequence.workdir_path == tmp_path / "out.work"


@pytest.mark.parametrize("text, path, weight", [
    ("a.jpg:0.7", "a.jpg", 0.7),
    ("a.jpg", "a.jpg", 1.0),
    ("a.jpg:2", "a.jpg", 2.0),
    ("a.jpg:.5", "a.jpg", 0.5),
    ("takes/12:30/a.jpg:0.25", "takes/12:30/a.jpg", 0.25),  # ':' in a folder: only a trailing number splits
    ("takes/12:30/a.jpg", "takes/12:30/a.jpg", 1.0),
    ("C:\\paintings\\a.jpg", "C:\\paintings\\a.jpg", 1.0),  # a drive letter is not a weight
    ("C:\\paintings\\a.jpg:0.3", "C:\\paintings\\a.jpg", 0.3),
    ("a:b.jpg", "a:b.jpg", 1.0),
])
def test_a_style_argument_splits_only_a_trailing_weight(text, path, weight):
    assert parse_style(text) == Style(Path(path), weight)


def test_a_file_whose_name_ends_in_a_number_after_a_colon_is_a_path(tmp_path):
    odd = tmp_path / "take:2"
    odd.write_bytes(b"")
    assert parse_style(str(odd)) == Style(odd, 1.0)


def test_style_weights_are_normalized_and_bad_ones_refused_naming_the_file():
    blend = style_blend([parse_style("a.jpg:3"), parse_style("b.jpg:1")])
    assert blend == (Style(Path("a.jpg"), 0.75), Style(Path("b.jpg"), 0.25))
    assert style_blend([parse_style("a.jpg"), parse_style("b.jpg")])[1].weight == 0.5
    with pytest.raises(InputError, match=r"^a\.jpg: style weight -0\.5 must be"):
        style_blend([parse_style("a.jpg:-0.5"), parse_style("b.jpg")])
    with pytest.raises(InputError, match="a.jpg, b.jpg: the style weights sum to 0"):
        style_blend([parse_style("a.jpg:0"), parse_style("b.jpg:0")])
    with pytest.raises(InputError, match="b.jpg: style weight nan"):
        style_blend([Style(Path("a.jpg")), Style(Path("b.jpg"), float("nan"))])


def test_a_job_takes_a_path_as_one_style_of_weight_one(tmp_path):
    job = Job(video=tmp_path / "clip.mp4", style=tmp_path / "s.jpg", settings=make_settings())
    assert job.style == (Style(tmp_path / "s.jpg", 1.0),) and job.style_paths == (tmp_path / "s.jpg",)


def test_keep_colors_is_a_checked_setting_with_a_bare_flag():
    assert make_settings("default").keep_colors == ""
    assert make_settings("default", {"keep_colors": "histogram"}).keep_colors == "histogram"
    with pytest.raises(InputError, match="keep_colors"):
        make_settings("default", {"keep_colors": "sepia"})
    import cli

    assert cli.build_parser().parse_args(["v.mp4", "--style", "s.jpg", "--keep-colors"]).keep_colors == "luminance"
