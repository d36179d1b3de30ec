"""The serial check end to end on the virtual board: a real pseudo-terminal, the firmware's protocol.c
through ctypes on the device side, TFLite Micro for inference, the Python host client on the other side."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import serial

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import int8_tflite_from_keras, make_tiny_int8_tflite  # noqa: E402

from pipeline._io import read_jsonl  # noqa: E402
from pipeline.data import load_dataset  # noqa: E402
from pipeline.errors import AccuracyGateError, ModelMismatchError, SerialLinkError  # noqa: E402
from pipeline.tflite.model_info import inspect_tflite  # noqa: E402
from pipeline.serial import check, open_port  # noqa: E402
from pipeline.serial.checker import load_contract  # noqa: E402
from pipeline.serial.client import ProtocolClient  # noqa: E402
from pipeline.serial.latency import op_macs  # noqa: E402
from pipeline.serial.reference import TflmRunner  # noqa: E402
from pipeline.serial.sim import SimOptions, VirtualBoard  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BAUD = 921600  # fast pacing keeps the suite short; bench_link.py measures 115200 too
TIMEOUT = 0.2
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def make_trained_digits_tflite(path: Path, seed: int = 0) -> Path:
    """A small conv net trained for a few seconds on the digits train split, converted to full int8.

    An untrained fixture model predicts one class for every input, which would make argmax agreement
    trivially 100%; a trained one spreads its answers over the classes."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TensorFlow was already initialised by an earlier test in this process: keep its threads
    tf.keras.utils.set_random_seed(seed)  # keras initialisers and shuffling only read the global seed
    train = load_dataset("builtin:digits").split("train", resolution=8)
    model = tf.keras.Sequential([
        tf.keras.Input((8, 8, 1), batch_size=None),
        tf.keras.layers.Conv2D(8, 3, padding="same", activation=tf.nn.relu6),
        tf.keras.layers.DepthwiseConv2D(3, padding="same", activation=tf.nn.relu6),
        tf.keras.layers.Conv2D(16, 1, activation=tf.nn.relu6),
        tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Dense(10)])
    data = int8_tflite_from_keras(model, train.x[:64], train=(train.x, train.y), epochs=40)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    a = make_trained_digits_tflite(d / "a" / "model_int8.tflite")
    b, _ = make_tiny_int8_tflite(d / "b.tflite", seed=1)
    return {"a": a, "b": b}


@pytest.fixture(scope="module")
def host_truth(models):
    """Host TFLM top-1 and logits on the digits test split, computed here independently of the checker."""
    model = inspect_tflite(models["a"])
    contract = load_contract(models["a"], model)
    split = load_dataset("builtin:digits").split("test", resolution=8)
    runner = TflmRunner(models["a"])
    logits = np.stack([np.frombuffer(runner.run(contract.quantize(x).tobytes()), np.int8) for x in split.x])
    return {"logits": logits, "top1": float((logits.argmax(1) == split.y).mean()), "n": len(split)}


def _samples(out: Path) -> dict[int, dict]:
    return {r["i"]: r for r in read_jsonl(out / "check.jsonl") if r.get("kind") == "sample"}


def _sim(**kw) -> SimOptions:
    return SimOptions(baud=BAUD, **kw)


def test_full_check_reports_host_accuracy_exactly(models, host_truth, tmp_path):
    rep = check("sim", models["a"], "builtin:digits", out_dir=tmp_path, board="qemu-mps2-an386", gate=0.99,
                timeout_s=TIMEOUT, sim_options=_sim(board="qemu-mps2-an386"), log=lambda *_: None)
    assert rep["samples"] == host_truth["n"] and rep["complete"]
    assert rep["accuracy"]["device_top1"] == host_truth["top1"] == rep["accuracy"]["host_top1"]
    assert rep["agreement"]["argmax"] == 1.0 and rep["agreement"]["exact_logits"] == 1.0
    recs = _samples(tmp_path)
    dev = np.array([recs[i]["output"] for i in range(host_truth["n"])], dtype=np.int8)
    assert np.array_equal(dev, host_truth["logits"])
    assert len(np.unique(dev.argmax(1))) == 10 and host_truth["top1"] > 0.7  # agreement is not trivial
    assert rep["latency"]["source"] == "simulated" and rep["latency"]["ms"]["median"] > 0
    assert rep["latency"]["clock_hz"] == 25_000_000
    assert rep["link"]["requests"] == {"HELLO": 1, "SET_INPUT": host_truth["n"], "INVOKE": host_truth["n"]}
    on_disk = json.loads((tmp_path / "check_report.json").read_text())
    assert on_disk["summary"] == rep["summary"] and "PASS" in rep["summary"]


def test_corrupted_bytes_and_resets_change_nothing(models, host_truth, tmp_path):
    n = 120
    clean = check("sim", models["a"], "builtin:digits", out_dir=tmp_path / "clean", limit=n, timeout_s=TIMEOUT,
                  sim_options=_sim(), log=lambda *_: None)
    noisy = check("sim", models["a"], "builtin:digits", out_dir=tmp_path / "noisy", limit=n, timeout_s=TIMEOUT,
                  sim_options=_sim(corrupt_rate=0.01, reset_after=(150, 330), seed=7), log=lambda *_: None)
    sim = noisy["virtual_board"]["stats"]
    assert sim["corrupted"] > 50 and sim["resets"] == 2 and noisy["link"]["resets"] == 2
    assert noisy["link"]["retries"] > 0
    for key in ("samples", "accuracy", "agreement"):
        assert noisy[key] == clean[key]
    a, b = _samples(tmp_path / "clean"), _samples(tmp_path / "noisy")
    assert sorted(a) == sorted(b) == list(range(n))  # nothing lost, nothing twice
    assert all(a[i]["output"] == b[i]["output"] == host_truth["logits"][i].tolist() for i in range(n))
    assert sim["invokes"] <= n + 2  # a retried INVOKE is answered from the cache; only a reset reruns one


def test_dropped_bytes_and_delays_change_nothing(models, host_truth, tmp_path):
    n = 40
    rep = check("sim", models["a"], "builtin:digits", out_dir=tmp_path, limit=n, timeout_s=TIMEOUT,
                sim_options=_sim(drop_rate=0.01, delay_ms=5, seed=3), log=lambda *_: None)
    assert rep["virtual_board"]["stats"]["dropped"] > 0 and rep["agreement"]["exact_logits"] == 1.0
    recs = _samples(tmp_path)
    assert all(recs[i]["output"] == host_truth["logits"][i].tolist() for i in range(n))


def test_progress_in_a_log_is_lines_not_a_bar(models, tmp_path, capsys):
    """Behind a pipe or in a log file (stderr is not a terminal) the check prints whole lines, never
    tqdm's carriage-return redraws (a demo log once held one 40 kB line of them)."""
    check("sim", models["a"], "builtin:digits", out_dir=tmp_path, limit=12, timeout_s=TIMEOUT, progress=True,
          sim_options=_sim(), log=lambda *_: None)
    err = capsys.readouterr().err
    assert "\r" not in err
    assert "check: 1/12 samples" in err and "check: 12/12 samples" in err


def test_killed_check_resumes_without_resending(models, host_truth, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "pipeline.cli", "check", "--port", "sim", "--model", str(models["a"]),
           "--data", "builtin:digits", "--out", str(out), "--baud", "115200", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(_samples(out) if (out / "check.jsonl").exists() else {}) < 30:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(_samples(out))
    assert 30 <= done < host_truth["n"]
    rep = check("sim", models["a"], "builtin:digits", out_dir=out, timeout_s=TIMEOUT, sim_options=_sim(),
                log=lambda *_: None)
    remaining = host_truth["n"] - done
    assert rep["link"]["requests"]["SET_INPUT"] == remaining == rep["throughput"]["session_samples"]
    assert rep["virtual_board"]["stats"]["invokes"] == remaining  # no finished sample is run again
    assert rep["samples"] == host_truth["n"] and rep["accuracy"]["device_top1"] == host_truth["top1"]
    assert rep["agreement"]["exact_logits"] == 1.0
    # a different model in the same folder starts afresh, keeping the old log and report under checks/
    msgs = []
    check("sim", models["b"], "builtin:digits", out_dir=out, limit=5, timeout_s=TIMEOUT, sim_options=_sim(),
          log=msgs.append, gate=0.0)
    kept = list(out.glob("checks/*/check.jsonl"))
    assert any("kept in checks/" in m for m in msgs) and len(kept) == 1
    assert len([r for r in read_jsonl(kept[0]) if r.get("kind") == "sample"]) == host_truth["n"]
    assert len(_samples(out)) == 5


def test_wrong_model_on_the_device_is_refused(models, tmp_path):
    with VirtualBoard(models["b"], _sim()) as vb:
        port = serial.Serial(vb.port_path, BAUD)
        try:
            with pytest.raises(ModelMismatchError) as e:
                check(port, models["a"], "builtin:digits", out_dir=tmp_path, timeout_s=TIMEOUT, log=lambda *_: None)
        finally:
            port.close()
    a, b = inspect_tflite(models["a"]).hash16, inspect_tflite(models["b"]).hash16
    assert a in str(e.value) and b in str(e.value) and e.value.exit_code == 10
    assert not _samples(tmp_path)  # nothing was recorded against the wrong firmware


def test_missing_port_lists_available_ports(models, tmp_path):
    with pytest.raises(SerialLinkError) as e:
        check("/dev/ofa-mcu-no-such-port", models["a"], "builtin:digits", out_dir=tmp_path, log=lambda *_: None)
    assert "/dev/ofa-mcu-no-such-port" in str(e.value)
    from pipeline.serial.link import describe_ports
    listed = describe_ports()
    assert e.value.hint.startswith("available ports: " if listed else "no serial ports")
    assert all(p in e.value.hint for p in listed)


class _FakeUsbPort:
    """Test fixture: the fields of a pyserial ListPortInfo that auto-detection reads."""

    def __init__(self, device, vid, pid, description="fixture"):
        self.device, self.vid, self.pid, self.description = device, vid, pid, description


def test_auto_port_selects_by_vid_pid_and_lists_candidates(monkeypatch):
    from pipeline.serial import link
    real = link.describe_ports()  # the real enumeration runs on this machine too
    assert isinstance(real, list)
    ports = [_FakeUsbPort("/dev/ttyACM0", 0x0483, 0x374B), _FakeUsbPort("/dev/ttyACM1", 0x2E8A, 0x000A),
             _FakeUsbPort("/dev/ttyS0", None, None)]
    monkeypatch.setattr(link.list_ports, "comports", lambda: ports)
    assert link.find_port(link.load_board("rpi-pico")) == "/dev/ttyACM1"
    assert link.find_port(link.load_board("nucleo-f746zg")) == "/dev/ttyACM0"
    with pytest.raises(SerialLinkError) as e:  # two known boards attached, none named
        link.find_port(None)
    assert "/dev/ttyACM0" in str(e.value) and "/dev/ttyACM1" in str(e.value)
    with pytest.raises(SerialLinkError) as e:
        link.find_port(link.load_board("nucleo-h743zi2"))  # 0483:374E is not attached
    assert "/dev/ttyS0" in e.value.hint and "/dev/ttyACM0" in e.value.hint


def test_garbage_before_hello_is_skipped(models):
    noise = b"\r\nbootloader v1.2\r\n\x00\x05junk\x00\xff\xfe" + bytes(range(1, 200))
    with VirtualBoard(models["a"], _sim(boot_text=noise)) as vb:
        port = serial.Serial(vb.port_path, BAUD)
        port.write(b"line noise from the host side \xff\x01\x02")  # and the device's buffer is dirty too
        time.sleep(0.05)
        client = ProtocolClient(port, timeout_s=TIMEOUT)
        try:
            info = client.hello()
            assert info.model_hash == inspect_tflite(models["a"]).hash16 and info.simulated
            x = bytes(range(64))
            client.send_input(x)
            assert client.invoke().output == TflmRunner(models["a"]).run(x)
        finally:
            client.close()
        assert vb.device.counters["frames_bad"] >= 1  # the device saw and dropped the host-side noise


def test_gate_failure_exits_non_zero_with_report(models, tmp_path):
    runner = TflmRunner(models["a"])
    calls = {"n": 0}

    def faulty_firmware(x: bytes) -> bytes:
        """Test fixture: a 'firmware' whose every 4th result has a different argmax."""
        calls["n"] += 1
        out = np.frombuffer(runner.run(x), np.int8).copy()
        if calls["n"] % 4 == 0:
            top = int(out.argmax())
            out[(top + 1) % out.size], out[top] = 127, -128
        return out.tobytes()

    with VirtualBoard(models["a"], _sim(), invoke=faulty_firmware) as vb:
        port = serial.Serial(vb.port_path, BAUD)
        try:
            with pytest.raises(AccuracyGateError) as e:
                check(port, models["a"], "builtin:digits", out_dir=tmp_path, limit=40, timeout_s=TIMEOUT,
                      log=lambda *_: None)
        finally:
            port.close()
    rep = json.loads((tmp_path / "check_report.json").read_text())
    assert e.value.exit_code == 7 and not rep["gate"]["passed"] and "FAIL" in rep["summary"]
    assert rep["agreement"]["argmax"] < 0.99 and rep["agreement"]["disagreeing_samples"] >= 8


def test_cli_check_gate_and_profile(models, tmp_path):
    from pipeline.cli import main
    rc = main(["check", "--port", "sim", "--model", str(models["a"]), "--data", "builtin:digits", "--out",
               str(tmp_path), "--limit", "10", "--baud", str(BAUD), "--timeout", str(TIMEOUT), "--no-progress"])
    assert rc == 0 and (tmp_path / "check_report.json").exists()
    rc = main(["check", "--port", "/dev/ofa-mcu-no-such-port", "--model", str(models["a"]), "--data",
               "builtin:digits", "--out", str(tmp_path)])
    assert rc == 10
    out = tmp_path / "prof.json"
    rc = main(["profile", "--port", "sim", "--model", str(models["a"]), "--board", "nucleo-f746zg", "--out",
               str(out), "--baud", str(BAUD), "--timeout", str(TIMEOUT)])
    assert rc == 0
    prof = json.loads(out.read_text())
    model = inspect_tflite(models["a"])
    assert prof["format"] == "ofa-mcu-op-profile" and prof["board"] == "nucleo-f746zg"
    assert prof["clock_hz"] == 216_000_000 and prof["simulated"] and prof["cycle_source"] == "simulated"
    assert [o["op_type"] for o in prof["ops"]] == [o.name for o in model.ops]
    assert [o["macs"] for o in prof["ops"]] == [op_macs(model, o) for o in model.ops]
    assert all(o["cycles"] > 0 and len(o["cycles_runs"]) == 3 for o in prof["ops"])
    assert prof["total_cycles"] == sum(o["cycles"] for o in prof["ops"])
    # the file is the latency model's input as it stands: fitting it reproduces the cycles it holds
    from pipeline.boards import load_board
    from pipeline.costs import fit_latency
    lm = fit_latency(prof["ops"], load_board("nucleo-f746zg"))
    for o in prof["ops"]:
        pred = lm.op_cycles(o["class"], o.get("elements", o["macs"]))
        assert abs(pred - o["cycles"]) <= 0.01 * o["cycles"]


def test_board_sim_command_serves_a_pty(models):
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "board-sim", "--model", str(models["a"]),
                             "--board", "rpi-pico", "--baud", str(BAUD), "--duration", "60"],
                            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        path = proc.stdout.readline().strip()
        assert path.startswith("/dev/"), proc.stderr.read()
        client = ProtocolClient(open_port(path, BAUD), timeout_s=TIMEOUT)
        try:
            info = client.hello()
            assert info.board_id == "rpi-pico" and info.cycle_hz == 133_000_000
            x = bytes(np.random.default_rng(5).integers(0, 256, 64, dtype=np.uint8))
            client.send_input(x)
            res = client.invoke()
            assert res.output == TflmRunner(models["a"]).run(x) and res.cycles > 0
            ops = client.profile()
            assert [o.op_name for o in ops] == [o.name for o in inspect_tflite(models["a"]).ops]
        finally:
            client.close()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert "1 inferences" in err


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_board_sim_stops_on_its_signal_even_when_started_with_sigint_ignored(models, stop):
    """A background job of a non-interactive shell (or a parent that ignores SIGINT) starts with SIGINT
    ignored; board-sim must still stop cleanly on it (and on SIGTERM), printing its closing statistics."""
    def ignore_sigint():
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "board-sim", "--model", str(models["a"]),
                             "--board", "rpi-pico", "--duration", "60"], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=ignore_sigint)
    try:
        assert proc.stdout.readline().startswith("/dev/")
        proc.send_signal(stop)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert "board-sim: 0 frames in, 0 inferences" in err, err


@pytest.fixture(scope="module")
def big_model(tmp_path_factory):
    """Input 32x32x3 (12 SET_INPUT frames) and 300 logits (more than one RESULT page)."""
    path, _ = make_tiny_int8_tflite(tmp_path_factory.mktemp("big") / "big.tflite", resolution=32, channels=3,
                                    num_classes=300)
    return path


def test_large_input_and_output_pages_under_faults(big_model):
    runner = TflmRunner(big_model)
    rng = np.random.default_rng(11)
    with VirtualBoard(big_model, _sim(corrupt_rate=0.002, drop_rate=0.001, window=4, seed=2)) as vb:
        client = ProtocolClient(serial.Serial(vb.port_path, BAUD), timeout_s=TIMEOUT)
        try:
            info = client.hello()
            assert info.input_bytes == 3072 and info.output_bytes == 300 and info.window == 4
            for _ in range(6):
                x = rng.integers(-128, 128, size=3072, dtype=np.int8).tobytes()
                client.send_input(x)
                assert client.invoke().output == runner.run(x)
            assert client.stats.requests.get("READ_OUTPUT", 0) >= 6
        finally:
            client.close()
        assert vb.stats.invokes <= 6 + client.stats.resets


def test_input_contract_comes_from_the_export_report(models, tmp_path):
    import shutil

    from pipeline._io import write_json
    from pipeline.contract import InputContract
    from pipeline.errors import ArtifactError

    model_path = tmp_path / "model_int8.tflite"
    shutil.copy(models["a"], model_path)
    model = inspect_tflite(model_path)
    derived = load_contract(model_path, model)  # no report: from the model's input quantization
    assert (derived.input_scale, derived.input_zero_point) == (model.input.scale, model.input.zero_point)
    exported = InputContract(8, 8, 1, model.input.scale, model.input.zero_point, pixel_scale=1 / 128,
                             pixel_offset=-1.0)
    write_json(tmp_path / "export_report.json", {"input_contract": exported.to_dict()})
    assert load_contract(model_path, model) == exported and exported.lut != derived.lut
    write_json(tmp_path / "export_report.json",
               {"input_contract": InputContract(16, 16, 1, 0.1, 0).to_dict()})
    with pytest.raises(ArtifactError, match="does not match"):
        load_contract(model_path, model)
