"""Verify holds one chunk interpreter at a time (edgediff.runtime.chunk_stream) on a real chunked LiteRT UNet.

Why: full-size SDXL's 8 UNet chunks opened together in XNNPACK took verify to 21 GB. The count comes from the
runtime's own register of open interpreters (weak references to the ai_edge_litert Interpreter objects), so an
interpreter that stays alive past its chunk is counted; the default chain is measured too, so the count can fail.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgediff import phases, verify
from edgediff.backends.litert import LiteRTBackend, LiteRTOptions
from edgediff.runtime import chunk_stream
from edgediff.runtime.sessions import open_session
from tests.test_litert import mini_unet_component, needs_litert

pytestmark = [needs_litert, pytest.mark.usefixtures("one_thread")]
CHUNKS, SAMPLES = 3, 2


@pytest.fixture(scope="module")
def chunked(tmp_path_factory):
    component = mini_unet_component()
    backend, options = LiteRTBackend(), LiteRTOptions(chunks=CHUNKS, threads=1)
    artifact = backend.lower(component, options, "fp32", tmp_path_factory.mktemp("chunked"))
    assert len(artifact.chunks) == CHUNKS
    return component, artifact, backend.session_options(options)


def test_verify_opens_one_chunk_interpreter_at_a_time_with_the_chains_numbers(chunked):
    component, artifact, options = chunked
    references = verify.component_references([component], SAMPLES)
    limits = {"unet": verify.Thresholds(40.0, 0.9999)}
    live = chunk_stream.live("litert")
    phases.release_memory()
    assert len(live) == 0

    live.reset()  # the runtime's default chain (generate's sampling loop) holds every chunk at once
    chained = open_session(artifact, "litert", options)
    assert live.most == CHUNKS and len(live) == CHUNKS
    expected = verify.check_references("unet", references["unet"], chained.run, limits["unet"])
    outputs = [chained.run(inputs)["noise_pred"] for inputs, _ in references["unet"]]
    del chained
    phases.release_memory()
    assert len(live) == 0

    live.reset()  # verify: chunk i closed before chunk i + 1 opens, on every sample
    (result,) = verify.verify_artifacts([component], {"unet": artifact}, "litert", options, limits, SAMPLES,
                                        references=references)
    assert (live.most, live.opened, len(live)) == (1, CHUNKS * SAMPLES, 0)
    assert result.status == "passed" and result.metrics == expected.metrics, (result, expected)

    live.reset()  # a Pending check (end to end, guidance) goes through phases.OneAtATime: the same
    streamed = phases.finish(phases.Pending(("unet",), lambda calls: {
        "noise_pred": [calls["unet"](inputs)["noise_pred"] for inputs, _ in references["unet"]]}),
        {"unet": artifact}, "litert", options)
    assert (live.most, live.opened, len(live)) == (1, CHUNKS * SAMPLES, 0)
    for mine, theirs in zip(streamed["noise_pred"], outputs):
        assert np.array_equal(mine, theirs)  # bit for bit: the same interpreters on the same inputs


def test_streamed_chain_keeps_only_what_later_chunks_read(chunked):
    _, artifact, options = chunked
    session = open_session(artifact, "litert", phases.one_chunk_at_a_time(options))
    assert isinstance(session, chunk_stream.StreamedChain)
    keep = session._keep
    assert keep[-1] == {"noise_pred"}
    for index in range(CHUNKS - 1):  # everything a later chunk reads is kept after chunk `index`, nothing more
        later = {t.name for part in artifact.chunks[index + 1:] for t in part.inputs} | {"noise_pred"}
        assert keep[index] == later
