"""Meta-training with Accelerate: arguments and shipped configs, the loop, stages, checkpoints, calibration, the final report."""
