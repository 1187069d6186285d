"""The benchmark harness reports every figure it promises, on real 12 MP photos it makes."""

from PIL import Image

from engine.bench import FULL_SIZE, make_full_size_photos, run_benchmarks


def test_full_size_photos_are_camera_sized_jpegs(tmp_path, shared_data):
    folder = make_full_size_photos(shared_data / "sketchy" / "photos", tmp_path / "big", 2)
    files = sorted(folder.glob("*.jpg"))
    assert len(files) == 2
    with Image.open(files[0]) as img:
        assert img.size == FULL_SIZE and img.format == "JPEG"
    assert files[0].stat().st_size > 1_000_000  # grain keeps them camera-like, not tiny


def test_bench_reports_every_figure(tmp_path, shared_data):
    results = run_benchmarks(
        photos=3,
        sizes=(1000,),
        model_spec="baseline",
        work_dir=tmp_path / "big",
        rebuild_codes=5000,
        source=shared_data / "sketchy" / "photos",
        report=lambda _: None,
    )
    for key in (
        "query_ms_1k_64",
        "query_ms_1k_128",
        "query_expand_ms_1k_64",
        "query_expand_ms_1k_128",
        "query_end_to_end_ms_1k_64",
        "query_end_to_end_expand_ms_1k_64",
        "query_asym_ms_1k_64",
        "query_asym_expand_ms_1k_64",
        "query_encode_ms",
        "query_encode_frozen_ms",
        "query_encode_onnxruntime_ms",
        "query_encode_torchscript_ms",
        "model_photos_per_s_onnxruntime",
        "model_photos_per_s_torchscript",
        "query_normalize_ms",
        "index_rebuild_ms_5k_64",
        "index_rebuild_with_outputs_ms_5k_64",
        "decode_photos_per_s",
        "model_photos_per_s",
        "index_photos_per_s",
        "pipeline_efficiency",
        "index_peak_rss_mb",
    ):
        assert results[key] > 0, key
    assert results["photos"] == 3
    assert results["index_frozen_photo_side"] is False  # 3 photos: the model's own path
    assert results["index_photo_runtime"] is None
    assert results["query_encoder_runtime"] == "onnxruntime"  # the first that builds
    assert results["query_end_to_end_ranks_stored_outputs"] is False  # sign codes: none stored
