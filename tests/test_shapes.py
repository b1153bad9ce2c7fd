"""Shapes dataset, judge plumbing and metrics (fast: no trained weights needed except where stated)."""

from __future__ import annotations

import numpy as np
import pytest

from edgediff.shapes import dataset
from edgediff.shapes.metrics import frechet_distance, prompt_accuracy


def test_samples_are_deterministic_and_index_addressable():
    a, specs_a = dataset.batch(7, 10, 5)
    b, specs_b = dataset.batch(7, 10, 5)
    assert np.array_equal(a, b) and specs_a == specs_b
    single, spec = dataset.sample(7, 12)
    assert np.array_equal(single, a[2]) and spec == specs_a[2]
    other, _ = dataset.batch(8, 10, 5)
    assert not np.array_equal(a, other)


def test_images_show_the_captioned_colours():
    images, specs = dataset.batch(3, 0, 40)
    assert images.shape == (40, 64, 64, 3) and images.dtype == np.uint8
    for img, spec in zip(images, specs):
        assert spec.color != spec.background
        corner = img[0, 0] if spec.position != "top left" else img[-1, -1]
        assert np.abs(corner.astype(int) - dataset.PALETTE[spec.background]).max() <= 2
        # The shape's colour covers a sizeable patch (pixels within a small distance of the palette colour).
        near = np.abs(img.astype(int) - dataset.PALETTE[spec.color]).max(-1) <= 8
        assert near.sum() >= 0.5 * dataset.SIZES[spec.size] ** 2 * 0.3


def test_captions_carry_every_attribute_and_parse_back():
    for i in range(50):
        spec = dataset.sample_spec(0, i)
        text = spec.caption
        for word in (spec.shape, spec.color, spec.background, spec.size):
            assert word in text
        parsed = dataset.caption_to_spec(text)
        assert (parsed.shape, parsed.color, parsed.background, parsed.size, parsed.position) == (
            spec.shape, spec.color, spec.background, spec.size, spec.position)
    with pytest.raises(ValueError):
        dataset.caption_to_spec("a photo of a cat")


def test_every_attribute_value_occurs():
    specs = [dataset.sample_spec(1, i) for i in range(600)]
    assert {s.shape for s in specs} == set(dataset.SHAPES)
    assert {s.color for s in specs} == set(dataset.COLORS) == {s.background for s in specs}
    assert {s.size for s in specs} == set(dataset.SIZE_NAMES)
    assert {s.position for s in specs} == set(dataset.POSITIONS)


def test_frechet_distance_matches_closed_form():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4000, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # N(0, I) vs N(m, 4I): |m|^2 + 3 + 12 - 2 * tr(2I) = |m|^2 + 3
    b = rng.standard_normal((4000, 3)) * 2 + np.array([1.0, 0.0, 2.0])
    assert frechet_distance(a, b) == pytest.approx(5.0 + 3.0, rel=0.08)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)
    with pytest.raises(ValueError):
        frechet_distance(a, rng.standard_normal((10, 4)))


def test_prompt_accuracy_requires_all_judged_attributes():
    specs = [dataset.sample_spec(2, i) for i in range(4)]
    labels = {k: np.array([s.labels()[k] for s in specs]) for k in ("shape", "color", "background", "size", "position")}
    assert prompt_accuracy(labels, specs)["prompt_accuracy"] == 1.0
    wrong = {k: v.copy() for k, v in labels.items()}
    wrong["background"][0] = (wrong["background"][0] + 1) % len(dataset.COLORS)
    wrong["size"][:] = (wrong["size"] + 1) % 3  # size is reported, not required
    scores = prompt_accuracy(wrong, specs)
    assert scores["prompt_accuracy"] == 0.75 and scores["size_accuracy"] == 0.0
