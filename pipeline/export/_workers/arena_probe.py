"""Child process: load a model in the TFLite Micro runtime with one arena size and run inferences.

Run by path (never imported): a too-small arena can segfault the runtime, which must not take the
caller down. argv: MODEL_PATH ARENA_BYTES INPUTS_NPY (int8, N x input shape). Prints one JSON line on
stdout: {"ok", "outputs_sha256", "error"}. The recording allocator's report goes to stderr, where the
parent parses it.
"""
from __future__ import annotations

import hashlib
import json
import sys


def main(model_path: str, arena: int, inputs_path: str) -> int:
    import numpy as np
    from tflite_micro.python.tflite_micro import runtime

    x = np.load(inputs_path)
    try:
        interp = runtime.Interpreter.from_file(model_path, arena_size=arena)
        h = hashlib.sha256()
        for sample in x:
            interp.set_input(sample[None], 0)
            interp.invoke()
            h.update(np.ascontiguousarray(interp.get_output(0)).tobytes())
    except RuntimeError as e:
        print(json.dumps({"ok": False, "error": str(e)}), flush=True)
        return 1
    sys.stdout.write(json.dumps({"ok": True, "outputs_sha256": h.hexdigest()}) + "\n")
    sys.stdout.flush()
    interp.print_allocations()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
