"""Vision experts: backbones, few-shot and zero-shot experts, fusion and calibration."""
