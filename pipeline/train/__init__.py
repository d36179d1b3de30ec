"""Progressive-shrinking training, BN re-calibration and evaluation of the OFA supernet.

    sn_dir = train_supernet(TrainConfig(data="builtin:digits", out="runs/digits"))
    supernet = load_supernet(sn_dir)
    model = calibrated_subnet(supernet, arch, load_dataset("builtin:digits"))   # static, eval mode
    acc = evaluate(model, test.x, test.y)
"""
from __future__ import annotations

from .bn import calibrate_bn
from .evaluate import calibrated_subnet, calibration_images, evaluate, predict_logits, to_input
from .loop import TrainConfig, final_summary_line, train_supernet
from .schedule import DIMS, Phase, Schedule, default_schedule

__all__ = ["calibrate_bn", "calibrated_subnet", "calibration_images", "evaluate", "predict_logits",
           "to_input", "TrainConfig", "final_summary_line", "train_supernet", "DIMS", "Phase", "Schedule",
           "default_schedule"]
