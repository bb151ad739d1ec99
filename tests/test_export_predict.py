"""Exported models: TorchScript and ONNX parity, `crossmed predict` on real files, PHI refusal, the MLflow model, its
registry entry and `mlflow models serve`, the MONAI bundle with MONAI's own tools, and the model card."""

import base64
import json
import shutil
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import onnx
import pandas as pd
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from conftest import REPO, SHARED
from crossmed.errors import ConfigError
from crossmed.export.torchscript import ParityError
from crossmed.inference.exported import ExportedModel
from crossmed.inference.predict import predict_files
from crossmed.ports import free_port

CLI = [sys.executable, "-m", "crossmed.cli"]


def _export(study) -> Path:
    return Path(study.paths.models) / "export"


def _deidentified_dicoms(study, site: str, count: int) -> list[Path]:
    return sorted((Path(study.paths.deidentified) / site).rglob("*.dcm"))[:count]


def _evaluated(study, set_name: str) -> pd.Series:
    table = pd.read_csv(Path(study.paths.experiments) / "evaluation" / f"predictions_{set_name}.csv", dtype={"image_id": str})
    return table.set_index("image_id")["probability"]


def _run(args, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, **kwargs)


def test_onnx_has_a_dynamic_batch_and_matches_on_validation(trained_study):
    model_dir = _export(trained_study) / "model"
    description = json.loads((model_dir / "model.json").read_text())
    assert description["files"] == {"torchscript": "model.ts", "onnx": "model.onnx"}
    assert description["parity"]["onnx"] == {"images": description["parity"]["onnx"]["images"], "tolerance": 1e-4, "passed": True}
    assert description["parity"]["onnx"]["images"] > 0
    graph = onnx.load(str(model_dir / "model.onnx"))
    assert graph.opset_import[0].version >= 18 and graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    assert description["recipe"]["kind"] == "grid" and description["recipe"]["image_size"] == trained_study.data.image_size
    images = np.load(Path(trained_study.paths.processed) / "images.npy")[:5]
    torchscript, onnx_model = ExportedModel.load(model_dir), ExportedModel.load(model_dir, "onnx")
    for batch in (images[:1], images):  # any batch size
        assert np.abs(torchscript.probabilities(batch) - onnx_model.probabilities(batch)).max() < 1e-4


def test_predict_cli_equals_the_validated_model_and_writes_saliency(trained_study, tmp_path):
    files = _deidentified_dicoms(trained_study, "EE", 3)
    result = _run([*CLI, "predict", str(_export(trained_study)), *map(str, files), "--saliency", str(tmp_path / "cam")])
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    evaluated = _evaluated(trained_study, "external_test")
    threshold = json.loads(Path(trained_study.paths.operating_point).read_text())["threshold"]
    for path, line in zip(files, lines):
        p = line["probabilities"]["opacity"]
        assert p == pytest.approx(evaluated[path.stem], abs=2e-6), "raw DICOM in, the evaluated probability out"
        assert line["predicted"] == ("opacity" if p >= threshold else "no_opacity") and line["threshold"] == threshold
        assert Path(line["saliency"]).stat().st_size > 1000
    onnx_result = predict_files(ExportedModel.load(_export(trained_study) / "model", "onnx"), files[:1])[0]
    assert onnx_result["probabilities"]["opacity"] == pytest.approx(lines[0]["probabilities"]["opacity"], abs=1e-4)


def _phi_behind_the_flag(study, path: Path) -> Path:
    """Write a de-identified file given back a real name, ID and birth date, with an RRN and a phone in its comments."""
    from crossmed.national_ids import make_korean_rrn

    ds = pydicom.dcmread(_deidentified_dicoms(study, "KR", 1)[0])
    assert ds.PatientIdentityRemoved == "YES"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Hong^Gildong", "KW63034978", "19800101"
    ds.ImageComments = f"RRN {make_korean_rrn(__import__('datetime').date(1980, 1, 1), True, 1234)}, tel +82 10 1234 5678"
    ds.save_as(path)
    return path


def test_dicom_with_phi_is_refused(trained_study, tmp_path):
    raw = sorted((Path(trained_study.paths.raw) / "KR").rglob("*.dcm"))[0]
    result = _run([*CLI, "predict", str(_export(trained_study)), str(raw)])
    (line,) = map(json.loads, result.stdout.splitlines())
    assert result.returncode == 3 and line["refused"] == "phi" and "not de-identified" in line["error"]
    assert "Patient Identity Removed" in line["error"] and "probabilities" not in line
    flagged = pydicom.dcmread(_deidentified_dicoms(trained_study, "KR", 1)[0])
    flagged.PatientBirthDate = "19700101"  # marked as de-identified, but a date of birth came back
    flagged.save_as(tmp_path / "birthdate.dcm")
    model = ExportedModel.load(_export(trained_study))
    from crossmed.inference.phi import PHIError

    with pytest.raises(PHIError, match="PatientBirthDate present"):
        predict_files(model, [tmp_path / "birthdate.dcm"])
    with pytest.raises(PHIError, match="CT_small.dcm: refused"):
        predict_files(model, [get_testdata_file("CT_small.dcm")])  # pydicom's test file with a patient's name
    # The flag says YES; the content says otherwise: the gate reads the content.
    behind = _phi_behind_the_flag(trained_study, tmp_path / "flagged.dcm")
    result = _run([*CLI, "predict", str(_export(trained_study)), str(behind), "--saliency", str(tmp_path / "cam")])
    assert result.returncode == 3 and not (tmp_path / "cam").exists()
    (line,) = map(json.loads, result.stdout.splitlines())
    for finding in ("PatientName holds", "PatientID holds", "PatientBirthDate present", "ImageComments holds",
                    "korean_rrn", "phone"):
        assert finding in line["error"]
    for value in ("Hong", "KW63034978", "1234 5678"):  # findings name attributes, not values
        assert value not in result.stdout and value not in result.stderr


def test_inputs_that_would_exhaust_or_mislead_are_refused(trained_study, tmp_path):
    from crossmed.errors import InputError
    from test_deid_adversarial import _deflated_bomb

    model = ExportedModel.load(_export(trained_study))
    bomb = _deflated_bomb(tmp_path / "bomb.dcm", 300)
    with pytest.raises(InputError, match="inflates beyond"):
        predict_files(model, [bomb])
    images = np.load(Path(trained_study.paths.processed) / "images.npy")[:2].copy()
    images[1, 0, 3, 3] = np.nan
    np.save(tmp_path / "nan.npy", images)
    result = _run([*CLI, "predict", str(_export(trained_study)), str(tmp_path / "nan.npy")])
    (line,) = [json.loads(text, parse_constant=pytest.fail) for text in result.stdout.splitlines()]  # strict JSON
    assert result.returncode == 2 and "NaN or infinite" in line["error"] and "probabilities" not in line


def test_png_arrays_and_bad_files(trained_study, tmp_path):
    model = ExportedModel.load(_export(trained_study))
    images = np.load(Path(trained_study.paths.processed) / "images.npy")[:3]
    np.save(tmp_path / "stack.npy", images)
    picture = ((images[0, 0] - images[0, 0].min()) / np.ptp(images[0, 0]) * 255).astype(np.uint8)
    Image.fromarray(picture).save(tmp_path / "picture.png")
    Image.fromarray(picture).save(tmp_path / "picture.jpg", quality=95)
    results = predict_files(model, [tmp_path / "stack.npy", tmp_path / "picture.png", tmp_path / "picture.jpg"])
    assert [r["file"] for r in results] == [f"{tmp_path / 'stack.npy'}[{i}]" for i in range(3)] + [
        str(tmp_path / "picture.png"), str(tmp_path / "picture.jpg")]
    assert results[4]["probabilities"]["opacity"] == pytest.approx(results[3]["probabilities"]["opacity"], abs=0.05)
    expected = model.probabilities(images)  # a prepared image passes through the recipe unchanged
    assert np.allclose([r["probabilities"]["opacity"] for r in results[:3]], expected[:, 1], atol=1e-5)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    from crossmed.errors import InputError

    with pytest.raises(InputError, match="broken.png"):
        predict_files(model, [tmp_path / "broken.png"])
    with pytest.raises(InputError, match="unknown image type"):
        predict_files(model, [tmp_path / "stack.npy", Path(__file__)])


def test_a_batch_predicts_every_good_file_and_reports_each_bad_one(trained_study, tmp_path):
    good = _deidentified_dicoms(trained_study, "EE", 2)
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(good[1], folder / "sub" / "b.dcm")
    (folder / "notes.txt").write_text("not an image")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    raw = sorted((Path(trained_study.paths.raw) / "KR").rglob("*.dcm"))[0]
    arguments = [good[0], tmp_path / "broken.png", tmp_path / "missing.dcm", raw, folder, tmp_path / "empty"]
    (tmp_path / "empty").mkdir()
    result = _run([*CLI, "predict", str(_export(trained_study)), *map(str, arguments)])
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(good[0]), str(tmp_path / "broken.png"), str(tmp_path / "missing.dcm"),
                                                str(raw), str(folder / "sub" / "b.dcm"), str(tmp_path / "empty")]
    assert [("error" in line, line.get("refused")) for line in lines] == [
        (False, None), (True, None), (True, None), (True, "phi"), (False, None), (True, None)]
    assert lines[2]["error"] == "file not found" and "no image files" in lines[5]["error"]
    evaluated = _evaluated(trained_study, "external_test")
    assert lines[4]["probabilities"]["opacity"] == pytest.approx(evaluated[good[1].stem], abs=2e-6)
    assert result.returncode == 3, "non-zero when any file failed (3: one was refused for PHI)"
    only_bad = _run([*CLI, "predict", str(_export(trained_study)), str(tmp_path / "broken.png"), str(good[0])])
    assert only_bad.returncode == 2 and len(only_bad.stdout.splitlines()) == 2


def test_arguments_are_checked_before_the_model_loads(trained_study, tmp_path):
    check = ("import json, sys\nfrom crossmed.cli import main\ncode = main(sys.argv[1:])\n"
             "print(json.dumps({'code': code, 'torch': 'torch' in sys.modules}))")
    missing_model = _run([sys.executable, "-c", check, "predict", str(tmp_path / "nowhere"), str(tmp_path / "x.dcm")])
    assert json.loads(missing_model.stdout.splitlines()[-1]) == {"code": 2, "torch": False}
    assert "no exported model description" in missing_model.stderr
    missing_files = _run([sys.executable, "-c", check, "predict", str(_export(trained_study)), str(tmp_path / "x.dcm")])
    lines = [json.loads(line) for line in missing_files.stdout.splitlines()]
    assert lines == [{"file": str(tmp_path / "x.dcm"), "error": "file not found"}, {"code": 2, "torch": False}]


def test_mlflow_model_takes_image_bytes_in_a_fresh_process_and_is_registered(trained_study):
    folder = _export(trained_study) / "mlflow_model"
    dicom = _deidentified_dicoms(trained_study, "EE", 1)[0]
    script = ("import sys, json, mlflow, pandas as pd\n"
              "model = mlflow.pyfunc.load_model(sys.argv[1])\n"
              "out = model.predict(pd.DataFrame({'image': [open(sys.argv[2], 'rb').read()]}))\n"
              "print(json.dumps({'inputs': [c.name for c in model.metadata.signature.inputs.inputs], "
              "'row': out.iloc[0].to_dict()}))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the model brings its own crossmed code
    done = subprocess.run([sys.executable, "-c", script, str(folder), str(dicom)], capture_output=True, text=True, env=env,
                          cwd=folder.parent, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.splitlines()[-1])
    assert answer["inputs"] == ["image"] and {"p_no_opacity", "p_opacity", "predicted", "threshold"} <= set(answer["row"])
    assert answer["row"]["p_opacity"] == pytest.approx(_evaluated(trained_study, "external_test")[dicom.stem], abs=2e-6)
    client = mlflow.MlflowClient(trained_study.mlflow.tracking_uri)
    versions = client.search_model_versions(f"name='{trained_study.export.registered_name}'")
    tags = versions[0].tags
    metrics = json.loads(Path(trained_study.paths.metrics).read_text())
    assert float(tags["threshold"]) == json.loads((folder.parent / "model" / "model.json").read_text())[
        "operating_point"]["threshold"]
    assert tags["internal_test.auc"].startswith(str(metrics["internal_test"]["auc"]))
    assert len(tags["data.sha256"]) == 64 and tags["training_run"] == versions[0].run_id
    assert "operating threshold" in versions[0].description and client.get_registered_model(versions[0].name).description
    model_id = client.get_run(versions[0].run_id).data.tags["model.id"]
    version = client.get_model_version(versions[0].name, versions[0].version)
    assert model_id in (version.model_id, version.source.removeprefix("models:/")), "the version is the run's logged model"
    assert "MLmodel" in {f.path for f in client.list_logged_model_artifacts(model_id)}
    served = mlflow.pyfunc.load_model(f"models:/{versions[0].name}/{versions[0].version}")
    assert served.metadata.signature.inputs.inputs[0].name == "image"


def test_perturbed_artifacts_fail_the_parity_check(trained_study, tmp_path):
    import torch

    from crossmed.model.checkpoint import load_trained_network
    from crossmed.export.onnx_export import check_onnx_parity
    from crossmed.export.torchscript import check_parity

    net, _ = load_trained_network(trained_study.paths.checkpoint, torch.device("cpu"))
    model_dir, images = _export(trained_study) / "model", np.load(Path(trained_study.paths.processed) / "images.npy")[:8]
    assert check_onnx_parity(net, model_dir / "model.onnx", images, 1e-4) <= 1e-4
    graph = onnx.load(str(model_dir / "model.onnx"))
    weights = max(graph.graph.initializer, key=lambda t: np.prod(t.dims))  # the largest weight tensor
    array = onnx.numpy_helper.to_array(weights).copy()
    array.flat[:: max(1, array.size // 50)] += 0.5
    weights.CopyFrom(onnx.numpy_helper.from_array(array, weights.name))
    onnx.save(graph, str(tmp_path / "perturbed.onnx"))
    with pytest.raises(ParityError, match="perturbed.onnx"):
        check_onnx_parity(net, tmp_path / "perturbed.onnx", images, 1e-4)
    scripted = torch.jit.load(str(model_dir / "model.ts"))
    with torch.no_grad():
        next(scripted.parameters()).add_(0.5)
    scripted.save(str(tmp_path / "perturbed.ts"))
    with pytest.raises(ParityError, match="perturbed.ts"):
        check_parity(net, tmp_path / "perturbed.ts", images, 1e-5)


@pytest.mark.slow
def test_mlflow_models_serve_answers_invocations(trained_study, tmp_path):
    port, dicom = free_port(), _deidentified_dicoms(trained_study, "EE", 1)[0]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "MLFLOW_TRACKING_URI": trained_study.mlflow.tracking_uri}
    server = subprocess.Popen([*CLI, "serve", str(_export(trained_study) / "mlflow_model"), "-p", str(port),
                               "--max-request-mb", "1"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        body = json.dumps({"dataframe_split": {"columns": ["image"],
                                               "data": [[base64.b64encode(dicom.read_bytes()).decode()]]}}).encode()
        deadline, answer = time.time() + 120, None
        while time.time() < deadline and answer is None:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": "application/json"})
                answer = json.loads(urllib.request.urlopen(request, timeout=30).read())
            except OSError:
                assert server.poll() is None, "the server stopped"
                time.sleep(1)
        assert answer is not None, "no answer within 120 s"
        prediction = answer["predictions"][0]
        readme = (REPO / "README.md").read_text()
        sample = json.loads(next(l for l in readme.splitlines() if l.startswith('# {"predictions"'))[2:])
        assert set(sample["predictions"][0]) == set(prediction), "the README shows what the server answers"
        assert prediction["p_opacity"] == pytest.approx(_evaluated(trained_study, "external_test")[dicom.stem], abs=2e-6)
        from test_deid_adversarial import _deflated_bomb

        (tmp_path / "garbage.bin").write_bytes(b"\x00garbage" * 100)
        (tmp_path / "text.png").write_bytes(b"a text file named like a picture")
        expected = {"flagged": (400, "not de-identified"), "bomb": (400, "inflates beyond"),
                    "garbage": (400, "not a DICOM, PNG, JPEG, NIfTI or .npy image"), "text": (400, "not a DICOM, PNG")}
        for name, path in (("flagged", _phi_behind_the_flag(trained_study, tmp_path / "flagged.dcm")),
                           ("bomb", _deflated_bomb(tmp_path / "bomb.dcm", 300)), ("garbage", tmp_path / "garbage.bin"),
                           ("text", tmp_path / "text.png")):
            payload = path.read_bytes()
            body = json.dumps({"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(payload).decode()]]}})
            request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", body.encode(),
                                             {"Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=60)
            text = refused.value.read().decode()
            assert (refused.value.code, expected[name][1] in json.loads(text)["message"]) == (expected[name][0], True), text
            assert "Traceback" not in text and "stack_trace" not in text and "/tmp" not in text and str(REPO) not in text
            assert "Hong" not in text and "KW63034978" not in text
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)  # 2 MiB declared, none of it sent:
        connection.putrequest("POST", "/invocations")  # the answer comes before the body is read
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(2 * 2**20))
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 413 and "over the 1 MiB limit" in json.loads(response.read())["message"]
        connection.close()
        assert server.poll() is None, "the server survives refused requests"
    finally:
        os.killpg(server.pid, 15)
        server.wait(30)


def test_verify_bundle_without_a_schema_says_where_to_get_it_and_creates_nothing(trained_study, tmp_path):
    bundle = _export(trained_study) / "bundle"
    result = _run([*CLI, "verify-bundle", str(bundle), "--schema", str(tmp_path / "schemas" / "meta.json")], cwd=tmp_path)
    assert result.returncode == 2 and "meta_schema_20240725.json" in result.stderr and "--schema FILE" in result.stderr
    assert list(tmp_path.iterdir()) == [], "no folder or partial download left behind"
    if (SHARED / "monai" / "meta_schema_20240725.json").is_file():
        ok = _run([*CLI, "verify-bundle", str(bundle), "--schema", str(SHARED / "monai" / "meta_schema_20240725.json")])
        assert ok.returncode == 0 and "verified with no error" in ok.stdout


@pytest.mark.skipif(not (SHARED / "monai" / "meta_schema_20240725.json").is_file(), reason="../shared/monai schema absent")
def test_monai_bundle_passes_verify_metadata_and_runs(trained_study, tmp_path):
    bundle = _export(trained_study) / "bundle"
    verified = _run([sys.executable, "-m", "monai.bundle", "verify_metadata", "--meta_file", str(bundle / "configs" / "metadata.json"),
                     "--filepath", str(SHARED / "monai" / "meta_schema_20240725.json")])
    assert verified.returncode == 0 and "metadata is verified with no error" in verified.stdout + verified.stderr
    dicom = _deidentified_dicoms(trained_study, "EE", 1)[0]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the bundle brings its own crossmed
    ran = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs" / "inference.json"),
                          "--image", str(dicom)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    printed = json.loads(ran.stdout[ran.stdout.index("["):])
    assert printed[0]["probabilities"]["opacity"] == pytest.approx(_evaluated(trained_study, "external_test")[dicom.stem], abs=2e-6)


def test_model_card_states_use_data_evaluation_and_versions(trained_study):
    export = _export(trained_study)
    text, html = (export / "model_card.md").read_text(), (export / "model_card.html").read_text()
    for section in ("## Intended use", "## Not intended for", "## Data", "## Evaluation", "## Calibration",
                    "## Sites and subgroups", "## Limitations", "## Versions"):
        assert section in text
    metrics = json.loads(Path(trained_study.paths.metrics).read_text())["external_test"]
    assert f"{metrics['auc']:.3f} ({metrics['auc_ci_low']:.3f} to {metrics['auc_ci_high']:.3f})" in text
    description = json.loads((export / "model" / "model.json").read_text())
    assert f"{description['operating_point']['threshold']:.4f}" in text and description["training"]["data_sha256"] in text
    assert "by device" in text and "Basic Profile" in text and "<h2>Evaluation</h2>" in html


def test_failed_parity_or_bad_format_writes_nothing(trained_study, tmp_path):
    from omegaconf import OmegaConf

    from crossmed.stages import export as export_stage

    cfg = OmegaConf.merge(trained_study, {"export": {"onnx_parity_atol": -1.0, "register": False}})
    cfg.paths.export = str(tmp_path / "export")
    with pytest.raises(ParityError, match="onnxruntime probabilities differ"):
        export_stage.run(cfg)
    assert not (tmp_path / "export").exists() and not list(tmp_path.iterdir()), "nothing half-written"
    cfg = OmegaConf.merge(trained_study, {"export": {"formats": ["torchscript", "tflite"]}, "paths": {"export": str(tmp_path / "export")}})
    with pytest.raises(ConfigError, match="export.formats"):
        export_stage.run(cfg)
