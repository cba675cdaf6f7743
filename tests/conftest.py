from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLE_CLIP = REPO / "samples" / "realshort.mp4"
SAMPLE_STYLE = REPO / "samples" / "kandinsky.jpg"
SAMPLE_STYLE_2 = REPO / "samples" / "starry-night.jpg"


@pytest.fixture(scope="session")
def vgg_weights():
    from pipeline.weights import load_vgg16_weights

    return load_vgg16_weights()
