"""Run a generated firmware image in qemu-system-arm with its UART on a pseudo-terminal.

QEMU starts halted (-S) with the monitor on stdin, so the host can open the pty before the firmware
prints anything, then `cont` starts the CPU. `-icount shift=0` makes the SysTick count instructions
deterministically (instructions, not Cortex-M cycles).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

from ..errors import ToolMissingError


def start_qemu(elf: str | Path, machine: str = "mps2-an386", *, timeout_s: float = 20.0):
    """QEMU halted with its UART on a pty; returns (process, pty path). Write `cont` to start the CPU."""
    qemu = shutil.which("qemu-system-arm")
    if qemu is None:
        raise ToolMissingError("qemu-system-arm not found",
                               hint="sudo apt-get install --no-install-recommends qemu-system-arm")
    proc = subprocess.Popen([qemu, "-M", machine, "-display", "none", "-icount", "shift=0", "-S",
                             "-monitor", "stdio", "-serial", "pty", "-kernel", str(elf)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        m = re.search(r"char device redirected to (/dev/pts/\d+)", line)
        if m:
            return proc, m.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("QEMU did not report its pseudo-terminal")


def stop_qemu(proc) -> None:
    try:
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        proc.wait(timeout=10)
    except Exception:  # noqa: BLE001 - a wedged QEMU is killed below
        pass
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


def invoke_once(elf: str | Path, machine: str = "mps2-an386") -> bool:
    """Boot `elf`, do HELLO, one zero input and INVOKE; False if the firmware answers with an error
    (e.g. its arena is too small)."""
    import serial

    from ..serial.client import DeviceError, ProtocolClient

    proc, pty = start_qemu(elf, machine)
    try:
        port = serial.Serial(pty, baudrate=115200, timeout=0.05)
        proc.stdin.write("cont\n")
        proc.stdin.flush()
        client = ProtocolClient(port, timeout_s=2.0, retries=3, invoke_timeout_s=60.0)
        try:
            info = client.hello()
            client.send_input(bytes(info.input_bytes))
            client.invoke()
            return True
        except DeviceError:
            return False
        finally:
            client.close()
    finally:
        stop_qemu(proc)


def build_with_arena(fw_dir: str | Path, tflm_dir: str | None, arena_bytes: int | None) -> Path:
    """`make app.elf` in a generated folder with the tensor arena overridden (ARENA_BYTES, a compile-time
    define of arena.cc: only arena.o is rebuilt). Returns the ELF; a failed build raises with make's output."""
    fw = Path(fw_dir)
    for stale in (fw / "build" / "arena.o", fw / "app.elf"):
        stale.unlink(missing_ok=True)
    args = ["make", "-C", str(fw), "app.elf"] + ([f"TFLM_DIR={tflm_dir}"] if tflm_dir else []) \
        + ([f"ARENA_BYTES={arena_bytes}"] if arena_bytes else [])
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"make failed in {fw}:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return fw / "app.elf"


def min_arena_on_target(fw_dir: str | Path, machine: str, tflm_dir: str | None, upper_bytes: int, *,
                        step: int = 16, log=lambda _m: None) -> tuple[int, int]:
    """The smallest tensor arena (to `step` bytes) the generated firmware runs its model in on the emulated
    core: bisection over ARENA_BYTES builds, each booted in QEMU and asked for one inference (a too-small
    arena makes the firmware refuse INVOKE). The search starts at `upper_bytes` (the reserved size) and walks
    down (or up, if it does not run) in growing gaps, then bisects. Returns (minimum, probes)."""
    def runs(n_steps: int) -> bool:
        ok = invoke_once(build_with_arena(fw_dir, tflm_dir, n_steps * step), machine)
        log(f"  arena {n_steps * step:>8} B: {'runs' if ok else 'fails'}")
        return ok

    hi = -(-upper_bytes // step)  # in steps: hi runs, lo fails (or is 0)
    probes, gap = 1, 16  # 256 B first: the slack the arena rule aims for
    if not runs(hi):  # `upper_bytes` is too small: walk up in growing gaps until a size runs
        lo = hi
        while True:
            hi, gap = hi + gap, gap * 4
            probes += 1
            if hi * step > 64 * upper_bytes + (1 << 20):
                raise RuntimeError(f"the firmware does not run on {machine} with up to {hi * step} B of arena")
            if runs(hi):
                break
            lo = hi
        gap = 0
    while gap:  # walk down in growing gaps until a size fails
        lo = max(hi - gap, 0)
        if lo == 0:
            break
        probes += 1
        if not runs(lo):
            break
        hi, gap = lo, gap * 4
    while hi - lo > 1:
        mid = (lo + hi) // 2
        probes += 1
        lo, hi = (lo, mid) if runs(mid) else (mid, hi)
    return hi * step, probes
