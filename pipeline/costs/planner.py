"""TFLite Micro's GreedyMemoryPlanner, re-done in Python so an arena can be predicted without a runtime.

Source followed line by line: tensorflow/tflite-micro
tensorflow/lite/micro/memory_planner/greedy_memory_planner.cc (CalculateOffsetsIfNeeded,
GetMaximumMemorySize) and micro_allocation_info.cc (lifetimes):

- buffers are listed in tensor-index order, then scratch buffers in request order;
- the planner fills its sort array from the tail (so it starts in *reverse* add order) and then
  bubble-sorts by size, descending and stable: among equal sizes the later-added buffer goes first;
- each buffer goes at the lowest offset, walking the placed buffers in offset order, where the gap
  after the buffers that overlap it in time is large enough; lifetimes are inclusive;
- a new entry is linked after every placed entry whose offset is <= its own;
- the head size is the largest offset + size.
Sizes passed in must already be aligned (TFLM aligns every planned buffer to 16 bytes).
"""
from __future__ import annotations

from bisect import bisect_right
from typing import Sequence


def greedy_plan(sizes: Sequence[int], firsts: Sequence[int], lasts: Sequence[int]) -> tuple[int, list[int]]:
    """Return (arena head bytes, offset per buffer) exactly as TFLM's greedy planner computes them."""
    n = len(sizes)
    if n == 0:
        return 0, []
    order = sorted(range(n - 1, -1, -1), key=lambda i: -sizes[i])
    offsets = [0] * n
    # Placed buffers sorted by offset: parallel lists keep the inner loop cheap.
    p_off: list[int] = []
    p_end: list[int] = []
    p_first: list[int] = []
    p_last: list[int] = []
    for i in order:
        size, first, last = sizes[i], firsts[i], lasts[i]
        candidate = 0
        for j in range(len(p_off)):
            if p_first[j] > last or first > p_last[j]:
                continue
            if p_off[j] - candidate >= size:
                break
            if p_end[j] > candidate:
                candidate = p_end[j]
        offsets[i] = candidate
        at = bisect_right(p_off, candidate)
        p_off.insert(at, candidate)
        p_end.insert(at, candidate + size)
        p_first.insert(at, first)
        p_last.insert(at, last)
    return max(p_end), offsets
