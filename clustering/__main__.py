"""``python -m clustering``: the CLI, and a clean exit for every process of a torchrun run."""

import os
import sys
import traceback

from clustering.cli import main

try:
    code = main()
except Exception:  # a crash: the traceback and exit 1 in every case, also under torchrun
    traceback.print_exc()
    code = 1
if int(os.environ.get("WORLD_SIZE", "1")) > 1:
    # Under torchrun the process group is destroyed and the run's files are closed by now, but
    # C++ objects of torch.distributed (the gloo backend's and the rendezvous store's threads) can
    # still be alive; at interpreter finalisation their static destructors run in an unspecified
    # order and, intermittently, destroy a joinable std::thread: "terminate called without an
    # active exception", SIGABRT, and torchrun reports a failed job for a finished run. Nothing
    # is left to finalise that the run needs, so leave without finalisation, with the run's code.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
raise SystemExit(code)
