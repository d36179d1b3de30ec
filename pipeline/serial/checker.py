"""On-board accuracy check: send the test split through the input contract, compare with host TFLM.

Every sample's result is appended to check.jsonl as it arrives; a rerun with the same model and data
skips finished samples. The log and report at the top of the output folder belong to the model checked
last; checking another model there first moves them to `checks/<model hash16>-<data>/` (and brings that
model's earlier ones back), so no result is ever overwritten. One check at a time per folder (a lock). The report (check_report.json) gives on-device top-1, agreement with the host
int8 result (argmax and exact logits), latency (cycles -> ms), throughput, link retries and errors.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from .._io import append_jsonl, folder_lock, read_json, read_jsonl, write_json
from ..boards import Board, load_board
from ..contract import InputContract
from ..errors import AccuracyGateError, ArtifactError, DataError, ModelMismatchError, SerialLinkError
from ..tflite.model_info import ModelInfo, inspect_tflite
from .client import DeviceError, ProtocolClient
from .link import open_port
from .reference import TflmRunner

LOG_NAME, REPORT_NAME = "check.jsonl", "check_report.json"
KEEP_LOGITS = 256  # logits up to this many classes are kept in the log


def require_int8_classifier(model_path, model: ModelInfo, num_classes: int | None = None) -> None:
    """Refuse, before anything is sent or written, a model the check cannot judge: float or int16 tensors,
    or an output that does not give one logit per class of the dataset."""
    if model.input.dtype != "INT8" or model.output.dtype != "INT8":
        raise ArtifactError(f"{model_path}: input/output are {model.input.dtype.lower()}/"
                            f"{model.output.dtype.lower()}; the serial check needs a full-int8 model",
                            hint="export with `ofa-mcu export` (full-int8 input and output)")
    if num_classes is not None and model.output.num_elements != num_classes:
        raise DataError(f"{model_path}: the model has {model.output.num_elements} outputs but the dataset has "
                        f"{num_classes} classes", hint="check the model against the dataset it was trained on")


def load_contract(model_path: str | os.PathLike, model: ModelInfo) -> InputContract:
    """The contract from export_report.json beside the model, else from the model's input quantization."""
    shape = model.input.shape
    if len(shape) != 4 or shape[0] != 1:
        raise ArtifactError(f"{model_path}: input shape {shape} is not (1, H, W, C)",
                            hint="the serial check handles image classifiers with NHWC input")
    report = Path(model_path).with_name("export_report.json")
    if report.exists():
        d = read_json(report)
        if "input_contract" in d:
            c = InputContract.from_dict(d["input_contract"])
            if c.shape != tuple(shape):
                raise ArtifactError(f"{report}: input contract shape {c.shape} does not match the model's "
                                    f"input {tuple(shape)}", hint="re-run the export for this model")
            return c
    return InputContract(shape[1], shape[2], shape[3], model.input.scale, model.input.zero_point)


def _stats(a: np.ndarray) -> dict:
    if a.size == 0:
        return {}
    return {"mean": float(a.mean()), "median": float(np.median(a)), "p90": float(np.percentile(a, 90)),
            "min": float(a.min()), "max": float(a.max())}


def _progress(total: int, initial: int, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, unit="sample", desc="check", file=sys.stderr,
                disable=not enabled, dynamic_ncols=True, leave=False)


def run_check(port, model_path, data_spec: str, *, out_dir=None, baud: int | None = None,
              board: Board | str | None = None, gate: float = 0.99, limit: int | None = None, seed: int = 0,
              timeout_s: float = 0.5, retries: int = 10, sim_options=None, progress: bool | None = None,
              log=print) -> dict:
    """Check `model_path` on the device at `port` (spec string or an open pyserial port); return the report.

    Raises ModelMismatchError if the firmware runs another model, AccuracyGateError (after writing the
    report) if the argmax agreement is below `gate`.
    """
    from ..data import load_dataset

    model_path = Path(model_path)
    model = inspect_tflite(model_path)
    require_int8_classifier(model_path, model)
    board = load_board(board) if isinstance(board, str) else board
    baud = baud or (board.serial_baud if board else 115200)
    out_dir = Path(out_dir) if out_dir is not None else model_path.parent
    contract = load_contract(model_path, model)
    if contract.height != contract.width:
        raise DataError(f"the model input is {contract.height}x{contract.width}; the dataset loader resizes "
                        f"to square resolutions only")
    ds = load_dataset(data_spec, seed=seed)
    if ds.channels != contract.channels:
        raise DataError(f"{data_spec} has {ds.channels} channel(s) but the model takes {contract.channels}",
                        hint="use the dataset the model was trained on (e.g. builtin:digits-rgb for 3 channels)")
    require_int8_classifier(model_path, model, ds.num_classes)
    split = ds.split("test", resolution=contract.height)
    n = len(split) if limit is None else min(int(limit), len(split))
    fingerprint = ds.fingerprint()
    with folder_lock(out_dir, "check"):
        return _run_locked(port, model_path, model, data_spec, ds, split, n, fingerprint, contract, out_dir,
                           baud, board, gate, seed, timeout_s, retries, sim_options, progress, log)


def _run_locked(port, model_path, model, data_spec, ds, split, n, fingerprint, contract, out_dir, baud, board,
                gate, seed, timeout_s, retries, sim_options, progress, log) -> dict:
    ref = TflmRunner(model_path, model)  # refuses ops TFLM lacks before anything is written
    log_path = out_dir / LOG_NAME
    done = _resume(log_path, model, data_spec, fingerprint, log)
    if not log_path.exists():
        append_jsonl(log_path, {"kind": "header", "model_sha256": model.sha256, "model": str(model_path),
                                "data": data_spec, "data_fingerprint": fingerprint, "seed": seed,
                                "split": "test", "resolution": contract.height})
    todo = [i for i in range(n) if i not in done]

    own_port = isinstance(port, str)
    ser = open_port(port, baud, board, model=model_path, sim_options=sim_options) if own_port else port
    emulator = ser.describe() if hasattr(ser, "describe") else None  # --port qemu: machine and ELF
    client = ProtocolClient(ser, timeout_s=timeout_s, retries=retries)
    sim = getattr(ser, "sim", None)  # closing the port stops (and detaches) a virtual board
    errors: list[str] = []
    t_start = time.monotonic()
    try:
        info = client.hello()
        if info.model_hash != model.hash16:
            raise ModelMismatchError(
                f"the device runs model {info.model_hash} but {model_path.name} is {model.hash16} "
                f"(first 16 bytes of sha256)",
                hint="flash the firmware generated from this model (ofa-mcu codegen + make flash), or pass "
                     "the .tflite the firmware was built from")
        if info.input_bytes != int(np.prod(contract.shape)) or info.input_dtype != contract.input_dtype:
            raise ModelMismatchError(f"the device expects {info.input_bytes} {info.input_dtype} input bytes, "
                                     f"the contract gives {int(np.prod(contract.shape))} {contract.input_dtype}")
        if info.output_bytes != model.output.nbytes or info.output_dtype != model.output.dtype.lower():
            raise ModelMismatchError(f"the device announces a {info.output_bytes}-byte {info.output_dtype} "
                                     f"output, the model has {model.output.nbytes} {model.output.dtype.lower()} bytes",
                                     hint="the firmware is corrupt or was built from another model; rebuild and flash it")
        if todo:
            log(f"check: {len(todo)} of {n} samples to send" + (f" ({len(done)} already in {log_path})"
                                                                 if done else ""))
        bar = _progress(n, n - len(todo), sys.stderr.isatty() if progress is None else progress)
        try:
            for i in todo:
                x = contract.quantize(split.x[i]).tobytes()
                host = np.frombuffer(ref.run(x), dtype=np.int8)
                rec = {"kind": "sample", "i": i, "index": int(split.indices[i]), "label": int(split.y[i]),
                       "host_top1": int(host.argmax())}
                t0 = time.monotonic()
                try:
                    client.send_input(x)
                    res = client.invoke()
                except DeviceError as e:  # this sample failed on the device; the link is fine
                    rec.update(error=str(e), argmax_agree=False, exact=False)
                    errors.append(f"sample {i}: {e}")
                else:
                    dev = np.frombuffer(res.output, dtype=np.int8)
                    same_len = dev.shape == host.shape
                    rec.update(device_top1=int(dev.argmax()) if dev.size else -1,
                               argmax_agree=bool(same_len and dev.argmax() == host.argmax()),
                               exact=bool(same_len and np.array_equal(dev, host)),
                               max_abs_diff=int(np.abs(dev.astype(int) - host.astype(int)).max()) if same_len else None,
                               cycles=int(res.cycles), wall_ms=round((time.monotonic() - t0) * 1e3, 3))
                    if dev.size <= KEEP_LOGITS:
                        rec["output"] = dev.tolist()
                append_jsonl(log_path, rec)
                done[i] = rec
                bar.update(1)
        finally:
            bar.close()
    finally:
        session_s = time.monotonic() - t_start
        link = client.stats.to_dict()
        client.close() if own_port else client.detach()
    report = _report(model_path, model, data_spec, fingerprint, contract, info, board, port, baud, n, done,
                     session_s, len(todo), link, errors, gate, sim)
    report["emulator"] = emulator
    write_json(out_dir / REPORT_NAME, report)
    log(report["summary"])
    if report["agreement"]["argmax"] < gate:
        raise AccuracyGateError(
            f"argmax agreement {report['agreement']['argmax']:.2%} is below the gate {gate:.2%} "
            f"({report['agreement']['disagreeing_samples']} disagreeing samples; see {out_dir / REPORT_NAME})",
            hint="exact disagreement points to a firmware/host kernel difference or a wrong input contract")
    return report


def archive_dir(out_dir: Path, model_sha256: str, data_fingerprint: str) -> Path:
    """Where the log and report of one (model, data) pair are kept while another pair is checked."""
    import hashlib

    data = hashlib.sha256(str(data_fingerprint).encode()).hexdigest()[:8]
    return out_dir / "checks" / f"{str(model_sha256)[:16]}-{data}"


def _swap(src_dir: Path, dst_dir: Path) -> None:
    """Move check.jsonl and check_report.json from src_dir to dst_dir (atomic renames, same file system)."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    for name in (LOG_NAME, REPORT_NAME):
        if (src_dir / name).exists():
            os.replace(src_dir / name, dst_dir / name)


def _resume(log_path: Path, model: ModelInfo, data_spec: str, fingerprint: str, log) -> dict[int, dict]:
    out_dir = log_path.parent
    recs = read_jsonl(log_path)
    head = recs[0] if recs and recs[0].get("kind") == "header" else {}
    if recs and not (head.get("model_sha256") == model.sha256 and head.get("data_fingerprint") == fingerprint):
        # Another model's (or data's) results: keep them under checks/, never overwrite them.
        keep = archive_dir(out_dir, head.get("model_sha256", "unknown"), head.get("data_fingerprint", ""))
        _swap(out_dir, keep)
        why = ("another model" if head.get("model_sha256") != model.sha256 else "other data")
        log(f"check: {log_path} was written for {why} ({str(head.get('model_sha256', '?'))[:16]} / "
            f"{head.get('data', '?')}); kept in {keep.relative_to(out_dir)}/")
        recs = []
    if not recs:
        mine = archive_dir(out_dir, model.sha256, fingerprint)
        if (mine / LOG_NAME).exists():  # this model was checked here before: pick up where it stopped
            _swap(mine, out_dir)
            log(f"check: resuming this model's earlier log from {mine.relative_to(out_dir)}/")
            recs = read_jsonl(log_path)
    return {r["i"]: r for r in recs[1:] if r.get("kind") == "sample"} if recs else {}


def _report(model_path, model, data_spec, fingerprint, contract, info, board, port, baud, n, done,
            session_s, sent, link, errors, gate, sim) -> dict:
    recs = [done[i] for i in sorted(done) if i < n]
    ok = [r for r in recs if "error" not in r]
    labels = np.array([r["label"] for r in recs])
    dev_top1 = np.array([r.get("device_top1", -1) for r in recs])
    host_top1 = np.array([r["host_top1"] for r in recs])
    agree = np.array([r["argmax_agree"] for r in recs], dtype=bool)
    exact = np.array([r["exact"] for r in recs], dtype=bool)
    cycles = np.array([r["cycles"] for r in ok], dtype=np.float64)
    clock = info.cycle_hz or (board.clock_hz if board else 0)
    source = "simulated" if info.simulated else ("timer" if info.cycles_from_timer else "cycle counter")
    if info.counts_instructions:  # QEMU -icount: executed instructions, neither cycles nor time of a real core
        source = "instructions (QEMU -icount)"
    ms = cycles / clock * 1e3 if clock and not info.counts_instructions else np.array([])
    m = len(recs)
    report = {
        "model": str(model_path), "model_sha256": model.sha256, "model_hash16": model.hash16,
        "data": data_spec, "data_fingerprint": fingerprint, "split": "test", "resolution": contract.height,
        "board": board.id if board else info.board_id, "measured_on": info.measured_on, "device": info.to_dict(),
        "port": port if isinstance(port, str) else getattr(port, "port", str(port)), "baud": baud,
        "samples": m, "samples_requested": n, "complete": m == n,
        "accuracy": {"device_top1": float((dev_top1 == labels).mean()) if m else 0.0,
                     "host_top1": float((host_top1 == labels).mean()) if m else 0.0},
        "agreement": {"argmax": float(agree.mean()) if m else 0.0,
                      "exact_logits": float(exact.mean()) if m else 0.0,
                      "exact_expected": info.reference_kernels,
                      "max_abs_logit_diff": max((r.get("max_abs_diff") or 0 for r in ok), default=0),
                      "disagreeing_samples": int((~agree).sum()),
                      "first_disagreements": [r["i"] for r in recs if not r["argmax_agree"]][:20]},
        "latency": ({"source": source, "measured_on": info.measured_on, "simulated": False,
                     "instructions": _stats(cycles), "cycles": {}, "ms": {}}
                    if info.counts_instructions else
                    {"source": source, "measured_on": info.measured_on, "simulated": info.simulated,
                     "clock_hz": clock, "cycles": _stats(cycles), "ms": _stats(ms)}),
        "throughput": {"session_samples": sent, "session_wall_s": round(session_s, 3),
                       "samples_per_s": round(sent / session_s, 2) if session_s > 0 and sent else None},
        "link": link,
        "virtual_board": ({**sim.describe(), "stats": dict(sim.stats.__dict__)} if sim is not None else None),
        "errors": errors,
        "gate": {"metric": "argmax agreement", "min": gate, "passed": bool(m and agree.mean() >= gate)},
    }
    if info.counts_instructions and cycles.size:
        lat = f"{np.median(cycles) / 1e6:.3g} M instructions median (not cycles)"
    else:
        lat = f"{np.median(ms):.3g} ms median ({source})" if ms.size else "latency n/a"
    thr = report["throughput"]["samples_per_s"]
    report["summary"] = (
        f"check: {m}/{n} samples on {report['board']} ({info.measured_on}): top-1 {report['accuracy']['device_top1']:.2%} "
        f"(host {report['accuracy']['host_top1']:.2%}), argmax agreement {report['agreement']['argmax']:.2%}, "
        f"exact logits {report['agreement']['exact_logits']:.2%}, {lat}"
        + (f", {thr:g} samples/s" if thr else "")
        + f", {link['retries']} retries, {link['resets']} resets, {len(errors)} errors -> "
        + ("PASS" if report["gate"]["passed"] else "FAIL") + f" (gate {gate:.0%})")
    return report
