"""Runs ``streamvggt`` (or ``reconstruct()``) and kills the process with SIGKILL at a chosen point of its saves,
the way an out-of-memory kill or a pre-empted job would: the library has no test hooks, this script patches it.

Usage: python tests/resume_launcher.py POINT N (cli ARGS... | api JSON)
Environment: RESUME_KILL_ONLY=TEXT counts only the saves into a state folder whose path holds TEXT.
POINT: "save" (at the start of the N-th save, before anything of it is written), "switch" (in the N-th save,
once its generation is complete, just before CURRENT names it: a kill during a save), or "never".
"""

from __future__ import annotations

import json
import os
import signal
import sys


def main() -> None:
    point, count, kind, *rest = sys.argv[1:]
    target = int(count)
    import streamvggt.io.run_state as run_state

    calls = {"save": 0}
    original_save = run_state.RunStateStore.save
    original_replace = run_state.os.replace

    only = os.environ.get("RESUME_KILL_ONLY")  # count only the saves of stores whose folder holds this text

    def save(self, meta, groups=None):
        if only is not None and only not in str(self.root):
            return original_save(self, meta, groups)
        calls["save"] += 1
        if point == "save" and calls["save"] == target:
            os.kill(os.getpid(), signal.SIGKILL)
        return original_save(self, meta, groups)

    def replace(source, destination):
        if point == "switch" and calls["save"] == target and str(destination).endswith(run_state.POINTER):
            os.kill(os.getpid(), signal.SIGKILL)
        return original_replace(source, destination)

    run_state.RunStateStore.save = save
    run_state.os.replace = replace
    if kind == "cli":
        from streamvggt.cli import main as cli

        sys.exit(cli(rest))
    from streamvggt.pipeline.reconstructor import reconstruct

    keywords = json.loads(rest[0])
    reconstruct(keywords.pop("source"), keywords.pop("output"), keywords.pop("model"), **keywords)


if __name__ == "__main__":
    main()
