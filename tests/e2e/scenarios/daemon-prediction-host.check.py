"""Host check for daemon-prediction-host: in every trial (a global OOM, no swap) the daemon's
kernel_oom_kill line says prediction "match" and names, as predicted, the pid the kernel killed (read
independently from kmsg); the daemon, at oom_score_adj -1000, survived every OOM and stopped on SIGTERM
with exit 0 within 1 s."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import daemon_check  # noqa: E402

if __name__ == "__main__":
    daemon_check.run_prediction(sys.argv[1], "daemon-prediction-host", "host", min_trials=10,
                                self_protection=True)
