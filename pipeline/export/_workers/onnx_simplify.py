"""Child process: onnxsim.simplify(IN) -> OUT.

onnxsim segfaults when TensorFlow is already loaded in the same process (their bundled protobuf/onnx
native libraries clash), and a pytest session or a deploy may well have loaded TensorFlow. Run by
path: `python onnx_simplify.py IN.onnx OUT.onnx`; exit 0 on success, 2 when onnxsim could not validate
the result, 1 with the error on stderr otherwise.
"""
from __future__ import annotations

import os
import sys


def main(src: str, dst: str) -> int:
    import onnx
    import onnxsim

    simplified, ok = onnxsim.simplify(onnx.load(src))
    if not ok:
        return 2
    tmp = dst + ".tmp"
    onnx.save(simplified, tmp)
    os.replace(tmp, dst)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
