"""On-board accuracy check: send the test data through the input contract, compare with host TFLM.

Every sample's result is appended to check.jsonl as it arrives; a rerun with the same model and data
skips finished samples. The log and report at the top of the output folder belong to the model checked
last; checking another model there first moves them to `checks/<model hash16>-<data>/` (and brings that
model's earlier ones back), so no result is ever overwritten. One check at a time per folder (a lock). The report (check_report.json) gives on-device top-1, agreement with the host
int8 result (argmax and exact logits), latency (cycles -> ms), throughput, link retries and errors.
Which samples, which contract and which metric (top-1, or anomaly-score agreement for an autoencoder)
is decided in inputs.py before the first sample is sent; the report names the metric.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np

from .. import artifacts
from .._io import append_jsonl, folder_lock, read_jsonl
from ..boards import Board, load_board
from ..errors import AccuracyGateError, ModelMismatchError, UsageError
from ..tflite.model_info import ModelInfo, inspect_tflite
from .client import DeviceError, ProtocolClient
from .eembc import EembcError
from .inputs import SCORE_RTOL, CheckData, check_data, load_contract, score_record  # noqa: F401 (load_contract: API)
from .link import open_port
from .reference import TflmRunner
from .sim import SimOptions

LOG_NAME, REPORT_NAME = "check.jsonl", artifacts.path("check report", ".").name
_NP_DTYPES = {"INT8": np.int8, "INT16": np.int16}
KEEP_LOGITS = 256  # logits up to this many classes are kept in the log


def _stats(a: np.ndarray) -> dict:
    if a.size == 0:
        return {}
    return {"mean": float(a.mean()), "median": float(np.median(a)), "p90": float(np.percentile(a, 90)),
            "min": float(a.min()), "max": float(a.max())}


def run_check(port, model_path, data_spec: str, *, out_dir=None, baud: int | None = None,
              board: Board | str | None = None, gate: float = 0.99, limit: int | None = None, seed: int = 0,
              timeout_s: float = 0.5, retries: int = 10, sim_options=None, progress: bool | None = None,
              metric: str = "auto", protocol: str = "binary", log=print) -> dict:
    """Check `model_path` on the device at `port` (spec string or an open pyserial port); return the report.

    Raises InputContractError (before anything is sent) if the data does not fit the model input,
    ModelMismatchError if the firmware runs another model, AccuracyGateError (after writing the report) if
    the share of samples agreeing with the host on the metric (argmax, or anomaly score) is below `gate`.
    `protocol` "eembc" speaks the MLPerf Tiny runner's text protocol (eembc.py) instead of the binary one.
    """
    if protocol not in ("binary", "eembc"):
        raise UsageError(f"--protocol {protocol}: choose binary or eembc")
    model_path = Path(model_path)
    model = inspect_tflite(model_path)
    board = load_board(board) if isinstance(board, str) else board
    baud = baud or (board.serial_baud if board else 115200)
    out_dir = Path(out_dir) if out_dir is not None else model_path.parent
    data = check_data(model_path, model, data_spec, seed=seed, metric=metric)
    n = len(data) if limit is None else min(int(limit), len(data))
    with folder_lock(out_dir, "check"):
        return _run_locked(port, model_path, model, data_spec, data, n, out_dir, baud, board, gate, seed,
                           timeout_s, retries, sim_options, progress, log, protocol)


def _run_locked(port, model_path, model, data_spec, data: CheckData, n, out_dir, baud, board, gate, seed,
                timeout_s, retries, sim_options, progress, log, protocol) -> dict:
    ref = TflmRunner(model_path, model)  # refuses ops TFLM lacks before anything is written
    contract, fingerprint = data.contract, data.fingerprint
    out_dtype = np.dtype(_NP_DTYPES[model.output.dtype]).newbyteorder("<")
    log_path = out_dir / LOG_NAME
    done = _resume(log_path, model, data_spec, fingerprint, log)
    if not log_path.exists():
        append_jsonl(log_path, {"kind": "header", "model_sha256": model.sha256, "model": str(model_path),
                                "data": data_spec, "data_fingerprint": fingerprint, "seed": seed,
                                **data.describe()})
    todo = [i for i in range(n) if i not in done]

    own_port = isinstance(port, str)
    if protocol == "eembc" and port == "sim":
        sim_options = dataclasses.replace(sim_options or SimOptions(baud=baud, board=board.id if board else None),
                                          protocol="eembc")
    ser = open_port(port, baud, board, model=model_path, sim_options=sim_options) if own_port else port
    emulator = ser.describe() if hasattr(ser, "describe") else None  # --port qemu: machine and ELF
    if protocol == "eembc":
        from .eembc import EembcClient
        client = EembcClient(ser, model=model, timeout_s=max(timeout_s, 5.0), retries=retries)
    else:
        client = ProtocolClient(ser, timeout_s=timeout_s, retries=retries)
    sim = getattr(ser, "sim", None)  # closing the port stops (and detaches) a virtual board
    errors: list[str] = []
    t_start = time.monotonic()
    try:
        info = client.hello()
        if protocol == "eembc" and not info.model_hash:  # MLPerf Tiny reference firmware: no hash line
            log(f"check: the device does not report its model's hash (m-model-[{client.model_name}]); "
                f"comparing its outputs with {model_path.name} without proving it runs that model")
        elif info.model_hash != model.hash16:
            raise ModelMismatchError(
                f"the device runs model {info.model_hash} but {model_path.name} is {model.hash16} "
                f"(first 16 bytes of sha256)",
                hint="flash the firmware generated from this model (ofa-mcu codegen + make flash), or pass "
                     "the .tflite the firmware was built from")
        if info.input_bytes != model.input.nbytes or info.input_dtype != contract.input_dtype:
            raise ModelMismatchError(f"the device expects {info.input_bytes} {info.input_dtype} input bytes, "
                                     f"the contract gives {model.input.nbytes} {contract.input_dtype}")
        if info.output_bytes != model.output.nbytes or info.output_dtype != model.output.dtype.lower():
            raise ModelMismatchError(f"the device announces a {info.output_bytes}-byte {info.output_dtype} "
                                     f"output, the model has {model.output.nbytes} {model.output.dtype.lower()} bytes",
                                     hint="the firmware is corrupt or was built from another model; rebuild and flash it")
        if todo:
            log(f"check: {len(todo)} of {n} samples to send" + (f" ({len(done)} already in {log_path})"
                                                                 if done else ""))
        from ..progress import Progress

        # a bar on a terminal; in a log or behind a pipe a plain line every 10 s (a bar there is one
        # endless line of carriage returns)
        bar = Progress("check", n, initial=n - len(todo), unit="sample", leave=False,
                       enabled=sys.stderr.isatty() if progress is None else progress)
        try:
            for i in todo:
                xq = data.quantized(i)
                x = np.ascontiguousarray(xq).astype(xq.dtype.newbyteorder("<")).tobytes()
                host = np.frombuffer(ref.run(x), dtype=out_dtype)
                rec = {"kind": "sample", "i": i, "index": int(data.indices[i]),
                       "label": int(data.labels[i]) if data.labels is not None else None,
                       "host_top1": int(host.argmax())}
                t0 = time.monotonic()
                try:
                    client.send_input(x)
                    res = client.invoke()
                except (DeviceError, EembcError) as e:  # this sample failed on the device; the link is fine
                    rec.update(error=str(e), argmax_agree=False, exact=False)
                    errors.append(f"sample {i}: {e}")
                else:
                    dev = np.frombuffer(res.output, dtype=out_dtype) if len(res.output) % out_dtype.itemsize == 0 \
                        else np.frombuffer(res.output, dtype=np.uint8)
                    rec.update(score_record(data.metric, model, xq, dev, host),
                               cycles=int(res.cycles), wall_ms=round((time.monotonic() - t0) * 1e3, 3))
                    if dev.size <= KEEP_LOGITS:
                        rec["output"] = dev.tolist()
                append_jsonl(log_path, rec)
                done[i] = rec
                bar.update(len(done), f"{len(done)}/{n} samples")
        finally:
            bar.close()
    finally:
        session_s = time.monotonic() - t_start
        link = client.stats.to_dict()
        client.close() if own_port else client.detach()
    report = _report(model_path, model, data_spec, fingerprint, data, info, board, port, baud, n, done,
                     session_s, len(todo), link, errors, gate, sim)
    report["emulator"] = emulator
    artifacts.write("check report", out_dir, report)
    log(report["summary"])
    if not report["gate"]["passed"]:
        raise AccuracyGateError(
            f"{report['gate']['metric']} {report['gate']['value']:.2%} is below the gate {gate:.2%} "
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


def _report(model_path, model, data_spec, fingerprint, data: CheckData, info, board, port, baud, n, done,
            session_s, sent, link, errors, gate, sim) -> dict:
    recs = [done[i] for i in sorted(done) if i < n]
    ok = [r for r in recs if "error" not in r]
    top1 = data.metric == "top1"
    agree = np.array([r["argmax_agree"] for r in recs], dtype=bool)  # the metric's per-sample verdict
    exact = np.array([r["exact"] for r in recs], dtype=bool)
    cycles = np.array([r["cycles"] for r in ok], dtype=np.float64)
    clock = info.cycle_hz or (board.clock_hz if board else 0)
    source = "simulated" if info.simulated else ("timer" if info.cycles_from_timer else "cycle counter")
    if info.counts_instructions:  # QEMU -icount: executed instructions, neither cycles nor time of a real core
        source = "instructions (QEMU -icount)"
    ms = cycles / clock * 1e3 if clock and not info.counts_instructions else np.array([])
    m = len(recs)
    agreement = {"metric": data.metric, "samples_agreeing": float(agree.mean()) if m else 0.0,
                 "exact_logits": float(exact.mean()) if m else 0.0,
                 "exact_expected": info.reference_kernels,
                 "max_abs_logit_diff": max((r.get("max_abs_diff") or 0 for r in ok), default=0),
                 "disagreeing_samples": int((~agree).sum()),
                 "first_disagreements": [r["i"] for r in recs if not r["argmax_agree"]][:20]}
    accuracy = None
    if top1:
        agreement["argmax"] = agreement["samples_agreeing"]
        labels = np.array([r["label"] for r in recs])
        dev_top1 = np.array([r.get("device_top1", -1) for r in recs])
        host_top1 = np.array([r["host_top1"] for r in recs])
        accuracy = {"device_top1": float((dev_top1 == labels).mean()) if m else 0.0,
                    "host_top1": float((host_top1 == labels).mean()) if m else 0.0}
    else:
        agreement["anomaly_score"] = agreement["samples_agreeing"]
        scored = [r for r in ok if "device_score" in r]
        if scored:
            d = np.array([r["device_score"] for r in scored])
            h = np.array([r["host_score"] for r in scored])
            agreement["score"] = {"device_mean": float(d.mean()), "host_mean": float(h.mean()),
                                  "max_abs_diff": float(np.abs(d - h).max()), "rtol": SCORE_RTOL}
        agreement["output_mse_vs_host_max"] = max((r.get("output_mse_vs_host", 0.0) for r in ok), default=0.0)
    gate_name = "argmax agreement" if top1 else "anomaly-score agreement"
    report = {
        "model": str(model_path), "model_sha256": model.sha256, "model_hash16": model.hash16,
        "data": data_spec, "data_fingerprint": fingerprint, "input": data.describe(), "metric": data.metric,
        "split": data.describe()["split"],
        "resolution": data.contract.height if data.kind == "image" else None,
        "board": board.id if board else info.board_id, "measured_on": info.measured_on, "device": info.to_dict(),
        "port": port if isinstance(port, str) else getattr(port, "port", str(port)), "baud": baud,
        "protocol": "eembc" if info.protocol_version == 0 else "binary",
        "samples": m, "samples_requested": n, "complete": m == n,
        "accuracy": accuracy,
        "agreement": agreement,
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
        "gate": {"metric": gate_name, "min": gate, "value": agreement["samples_agreeing"],
                 "passed": bool(m and agree.mean() >= gate)},
    }
    if info.counts_instructions and cycles.size:
        lat = f"{np.median(cycles) / 1e6:.3g} M instructions median (not cycles)"
    else:
        lat = f"{np.median(ms):.3g} ms median ({source})" if ms.size else "latency n/a"
    thr = report["throughput"]["samples_per_s"]
    if top1:
        head = (f"top-1 {accuracy['device_top1']:.2%} (host {accuracy['host_top1']:.2%}), "
                f"argmax agreement {agreement['argmax']:.2%}")
    else:
        sc = agreement.get("score")
        head = (f"metric mse: anomaly-score agreement {agreement['anomaly_score']:.2%}"
                + (f" (mean score device {sc['device_mean']:.4g}, host {sc['host_mean']:.4g})" if sc else ""))
    report["summary"] = (
        f"check: {m}/{n} samples on {report['board']} ({info.measured_on}): {head}, "
        f"exact {'logits' if top1 else 'outputs'} {agreement['exact_logits']:.2%}, {lat}"
        + (f", {thr:g} samples/s" if thr else "")
        + f", {link['retries']} retries, {link['resets']} resets, {len(errors)} errors -> "
        + ("PASS" if report["gate"]["passed"] else "FAIL") + f" (gate {gate:.0%})")
    return report
