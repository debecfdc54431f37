"""Accuracy you can check: LFW evaluation, score calibration and the demographic audit report."""
