"""Host check for prediction-host: every trial's oomguard rank 1 is the kernel's global OOM victim."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import prediction_check  # noqa: E402

if __name__ == "__main__":
    prediction_check.run(sys.argv[1], "prediction-host", "host", min_trials=10)
