import pytest

from pipeline.config import Job, make_settings, read_preset
from pipeline.errors import InputError


def test_presets_extend_the_default():
    default, preview = read_preset("default"), read_preset("preview")
    assert set(preview) == set(default)
    assert preview["size"] < default["size"] and preview["style_weight"] == default["style_weight"]


@pytest.mark.parametrize("name", ["preview", "default", "final"])
def test_every_builtin_preset_is_valid(name):
    assert make_settings(name).size >= 0


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
