"""Search space and subnet architecture: the contract shared by supernet, export, costs and search.

A subnet is MobileNetV2-style: a stem convolution, then stages of inverted-residual blocks
(1x1 expand + ReLU6, kxk depthwise + ReLU6, 1x1 project, residual add when shapes allow), then
global average pooling and a linear classifier. Elastic dimensions: input resolution, per-stage
width multiplier and depth, per-block kernel size and expand ratio.

`SubnetArch` lists only the active blocks, so two archs that compute the same network are equal.
Its id string is shell-safe and diffs well, e.g. ``r24-w50k3e4k5e6-w100k7e3k3e3`` (resolution 24;
stage 0 at width 0.50 with blocks k3e4 and k5e6; stage 1 at width 1.00 with three blocks).

Non-square inputs (spectrograms): `input_width` fixes the width and `resolution` is then the height only.

`layers(space, arch)` is the single description of the static network an arch stands for; the
extracted PyTorch module, the exported TFLite graph and the cost models all follow it.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError


def make_divisible(value: float, divisor: int) -> int:
    """Round to the nearest multiple of `divisor`, never below `divisor` nor 10% under `value`."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return int(new)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow SAME padding (before, after) along one axis: the extra pixel goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


@dataclass(frozen=True)
class StageSpec:
    max_out_channels: int
    stride: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SearchSpace:
    in_channels: int = 1
    num_classes: int = 10
    # A narrow range: with the digits (8x8, upsampled) a wider one (16-32) cost every shared subnet about
    # a point of accuracy, since the same weights must serve feature maps from 1x1 to 2x2 at the last
    # stages; 24-32 still spans 1.8x in activation memory and MACs (see benchmarks/README.md).
    resolutions: tuple[int, ...] = (24, 28, 32)
    stem_channels: int = 16
    # Stride-2 stem: small inputs are upsampled (the built-in digits are 8x8), so halving at once
    # loses nothing and cuts activations (arena, MACs, training time) by 4x.
    stem_stride: int = 2
    stem_kernel: int = 3
    stages: tuple[StageSpec, ...] = (
        StageSpec(24, 2), StageSpec(32, 2), StageSpec(48, 2), StageSpec(64, 1))
    kernel_sizes: tuple[int, ...] = (3, 5, 7)
    expand_ratios: tuple[int, ...] = (3, 4, 6)
    depths: tuple[int, ...] = (2, 3, 4)
    width_mults: tuple[float, ...] = (0.35, 0.5, 0.75, 1.0)
    channel_divisor: int = 8
    # 0: square inputs (resolution x resolution). Otherwise the input width is fixed at this many columns
    # and `resolutions` are heights: a 49x40 spectrogram is resolutions (49,) with input_width 40
    # (resolution elasticity off), or e.g. (41, 45, 49) to keep it elastic along the time axis only.
    input_width: int = 0

    def __post_init__(self):
        def tup(v):
            return tuple(v) if not isinstance(v, tuple) else v
        object.__setattr__(self, "resolutions", tuple(sorted(int(r) for r in self.resolutions)))
        object.__setattr__(self, "kernel_sizes", tuple(sorted(int(k) for k in self.kernel_sizes)))
        object.__setattr__(self, "expand_ratios", tuple(sorted(int(e) for e in self.expand_ratios)))
        object.__setattr__(self, "depths", tuple(sorted(int(d) for d in self.depths)))
        object.__setattr__(self, "width_mults", tuple(sorted(float(w) for w in self.width_mults)))
        object.__setattr__(self, "stages", tuple(
            s if isinstance(s, StageSpec) else StageSpec(**s) for s in tup(self.stages)))
        self.validate()

    # -- validation -------------------------------------------------------------------------------
    def validate(self) -> None:
        def need(cond, field_name, msg):
            if not cond:
                raise ConfigError(f"search space: field '{field_name}' {msg}")
        need(self.in_channels in (1, 3), "in_channels", f"must be 1 or 3, got {self.in_channels}")
        need(self.num_classes >= 2, "num_classes", f"must be >= 2, got {self.num_classes}")
        need(len(self.resolutions) >= 1 and all(r >= 8 for r in self.resolutions),
             "resolutions", f"must be a non-empty list of sizes >= 8, got {list(self.resolutions)}")
        need(all(k % 2 == 1 and k >= 1 for k in self.kernel_sizes) and self.kernel_sizes,
             "kernel_sizes", f"must be odd sizes, got {list(self.kernel_sizes)}")
        need(self.expand_ratios and all(e >= 1 for e in self.expand_ratios),
             "expand_ratios", f"must be integers >= 1, got {list(self.expand_ratios)}")
        need(self.depths and all(d >= 1 for d in self.depths),
             "depths", f"must be integers >= 1, got {list(self.depths)}")
        need(self.width_mults and all(0 < w <= 1.0 for w in self.width_mults),
             "width_mults", f"must lie in (0, 1], got {list(self.width_mults)}")
        need(self.input_width == 0 or self.input_width >= 8, "input_width",
             f"must be 0 (square inputs) or a width >= 8, got {self.input_width}")
        need(len(self.stages) >= 1, "stages", "must hold at least one stage")
        need(self.stem_stride in (1, 2), "stem_stride", f"must be 1 or 2, got {self.stem_stride}")
        for i, s in enumerate(self.stages):
            need(s.stride in (1, 2), f"stages[{i}].stride", f"must be 1 or 2, got {s.stride}")
            need(s.max_out_channels >= self.channel_divisor, f"stages[{i}].max_out_channels",
                 f"must be >= channel_divisor ({self.channel_divisor}), got {s.max_out_channels}")

    # -- derived sizes ----------------------------------------------------------------------------
    @property
    def max_depth(self) -> int:
        return max(self.depths)

    def stage_channels(self, stage: int, width: float) -> int:
        return make_divisible(self.stages[stage].max_out_channels * width, self.channel_divisor)

    def mid_channels(self, in_channels: int, expand: int) -> int:
        return make_divisible(in_channels * expand, self.channel_divisor)

    @property
    def max_stage_channels(self) -> tuple[int, ...]:
        return tuple(self.stage_channels(i, max(self.width_mults)) for i in range(len(self.stages)))

    def input_size(self, resolution: int) -> tuple[int, int]:
        """(height, width) of the input at `resolution`: square unless input_width fixes the width."""
        return int(resolution), int(self.input_width or resolution)

    # -- archs ------------------------------------------------------------------------------------
    def largest(self) -> "SubnetArch":
        d = self.max_depth
        return SubnetArch(
            resolution=max(self.resolutions),
            widths=tuple(max(self.width_mults) for _ in self.stages),
            kernels=tuple(tuple(max(self.kernel_sizes) for _ in range(d)) for _ in self.stages),
            expands=tuple(tuple(max(self.expand_ratios) for _ in range(d)) for _ in self.stages))

    def smallest(self) -> "SubnetArch":
        d = min(self.depths)
        return SubnetArch(
            resolution=min(self.resolutions),
            widths=tuple(min(self.width_mults) for _ in self.stages),
            kernels=tuple(tuple(min(self.kernel_sizes) for _ in range(d)) for _ in self.stages),
            expands=tuple(tuple(min(self.expand_ratios) for _ in range(d)) for _ in self.stages))

    def sample(self, rng: np.random.Generator, *, kernel_sizes=None, expand_ratios=None,
               depths=None, width_mults=None, resolutions=None) -> "SubnetArch":
        """Uniform sample; the keyword sets restrict a dimension (progressive shrinking phases)."""
        ks = tuple(kernel_sizes or self.kernel_sizes)
        es = tuple(expand_ratios or self.expand_ratios)
        ds = tuple(depths or self.depths)
        ws = tuple(width_mults or self.width_mults)
        rs = tuple(resolutions or self.resolutions)
        res = int(rs[rng.integers(len(rs))])
        widths, kernels, expands = [], [], []
        for _ in self.stages:
            d = int(ds[rng.integers(len(ds))])
            widths.append(float(ws[rng.integers(len(ws))]))
            kernels.append(tuple(int(ks[rng.integers(len(ks))]) for _ in range(d)))
            expands.append(tuple(int(es[rng.integers(len(es))]) for _ in range(d)))
        return SubnetArch(res, tuple(widths), tuple(kernels), tuple(expands))

    def check_arch(self, arch: "SubnetArch") -> "SubnetArch":
        """Raise ConfigError naming the first invalid field and the allowed values."""
        def bad(field_name, value, allowed):
            raise ConfigError(f"arch {arch}: field '{field_name}' = {value} is not allowed; "
                              f"allowed values: {list(allowed)}",
                              hint="pick values from the search space (space.json of the supernet)")
        if arch.resolution not in self.resolutions:
            bad("resolution", arch.resolution, self.resolutions)
        n = len(self.stages)
        for name in ("widths", "kernels", "expands"):
            if len(getattr(arch, name)) != n:
                raise ConfigError(f"arch {arch}: field '{name}' has {len(getattr(arch, name))} stages, "
                                  f"the space has {n}")
        for s in range(n):
            if not any(math.isclose(arch.widths[s], w) for w in self.width_mults):
                bad(f"widths[{s}]", arch.widths[s], self.width_mults)
            if len(arch.kernels[s]) != len(arch.expands[s]):
                raise ConfigError(f"arch {arch}: stage {s} lists {len(arch.kernels[s])} kernels but "
                                  f"{len(arch.expands[s])} expand ratios")
            if len(arch.kernels[s]) not in self.depths:
                bad(f"depths[{s}]", len(arch.kernels[s]), self.depths)
            for b, (k, e) in enumerate(zip(arch.kernels[s], arch.expands[s])):
                if k not in self.kernel_sizes:
                    bad(f"kernels[{s}][{b}]", k, self.kernel_sizes)
                if e not in self.expand_ratios:
                    bad(f"expands[{s}][{b}]", e, self.expand_ratios)
        return arch

    # -- serialisation ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["stages"] = [s.to_dict() for s in self.stages]
        for k in ("resolutions", "kernel_sizes", "expand_ratios", "depths", "width_mults"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SearchSpace":
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"search space: unknown field(s) {sorted(unknown)}; "
                              f"known fields: {sorted(known)}")
        try:
            return cls(**d)
        except TypeError as e:
            raise ConfigError(f"search space: {e}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "SearchSpace":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise ConfigError(f"search space: not valid JSON ({e})") from None

    @classmethod
    def load(cls, path: str | Path) -> "SearchSpace":
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"search space file {path} not found")
        try:
            return cls.from_json(path.read_text())
        except ConfigError as e:
            raise ConfigError(f"{path}: {e.message}", e.hint) from None


_ARCH_RE = re.compile(r"^r(\d+)((?:-w\d+(?:k\d+e\d+)+)+)$")
_STAGE_RE = re.compile(r"-w(\d+)((?:k\d+e\d+)+)")
_BLOCK_RE = re.compile(r"k(\d+)e(\d+)")


def _arch_int(value, field_name: str) -> int:
    """An integer field of an arch: ints (or floats with no fraction, as JSON may give), nothing else.
    int(7.9) would silently export kernel 7; a string or bool is a mistake in the file, not a number."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            (not isinstance(value, numbers.Integral) and not float(value).is_integer()):
        raise ConfigError(f"arch field '{field_name}' = {value!r} is not an integer",
                          hint="resolution, kernels and expands are whole numbers, e.g. 24, [3, 5], [4, 6]")
    return int(value)


def _arch_width(value) -> float:
    import math
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)) \
            or float(value) <= 0:
        raise ConfigError(f"arch field 'widths' = {value!r} is not a positive finite number",
                          hint="widths are multipliers such as 0.5, 0.75, 1.0")
    return round(float(value), 4)


def _arch_seq(value, field_name: str) -> tuple:
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        raise ConfigError(f"arch field '{field_name}' = {value!r} is not a list",
                          hint="kernels and expands are lists of per-stage lists, widths a list of numbers")
    return tuple(value)


@dataclass(frozen=True)
class SubnetArch:
    resolution: int
    widths: tuple[float, ...]
    kernels: tuple[tuple[int, ...], ...]
    expands: tuple[tuple[int, ...], ...]

    def __post_init__(self):
        object.__setattr__(self, "resolution", _arch_int(self.resolution, "resolution"))
        object.__setattr__(self, "widths", tuple(_arch_width(w) for w in _arch_seq(self.widths, "widths")))
        for name in ("kernels", "expands"):
            object.__setattr__(self, name, tuple(tuple(_arch_int(v, name) for v in _arch_seq(st, name))
                                                 for st in _arch_seq(getattr(self, name), name)))

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(len(s) for s in self.kernels)

    def __str__(self) -> str:
        parts = [f"r{self.resolution}"]
        for w, ks, es in zip(self.widths, self.kernels, self.expands):
            parts.append(f"w{round(w * 100)}" + "".join(f"k{k}e{e}" for k, e in zip(ks, es)))
        return "-".join(parts)

    @property
    def id(self) -> str:
        return str(self)

    @classmethod
    def parse(cls, text: str) -> "SubnetArch":
        """Parse an id string (``r24-w50k3e4k5e6-...``) or a JSON object."""
        text = text.strip()
        if text.startswith("{"):
            try:
                return cls.from_dict(json.loads(text))
            except (json.JSONDecodeError, TypeError, KeyError, AttributeError) as e:
                raise ConfigError(f"arch JSON is invalid: {e}",
                                  hint="expected keys resolution, widths, kernels, expands") from None
        m = _ARCH_RE.match(text)
        if not m:
            raise ConfigError(f"'{text}' is not an arch id",
                              hint="an id looks like r24-w50k3e4k5e6-w100k7e3k3e3 "
                                   "(resolution, then per stage: width percent and k<kernel>e<expand> per block)")
        widths, kernels, expands = [], [], []
        for sm in _STAGE_RE.finditer(m.group(2)):
            widths.append(int(sm.group(1)) / 100.0)
            blocks = _BLOCK_RE.findall(sm.group(2))
            kernels.append(tuple(int(k) for k, _ in blocks))
            expands.append(tuple(int(e) for _, e in blocks))
        return cls(int(m.group(1)), tuple(widths), tuple(kernels), tuple(expands))

    def to_dict(self) -> dict:
        return {"id": str(self), "resolution": self.resolution, "widths": list(self.widths),
                "kernels": [list(s) for s in self.kernels], "expands": [list(s) for s in self.expands]}

    @classmethod
    def from_dict(cls, d: dict) -> "SubnetArch":
        return cls(d["resolution"], tuple(d["widths"]), tuple(tuple(s) for s in d["kernels"]),
                   tuple(tuple(s) for s in d["expands"]))


# -- the static network an arch stands for --------------------------------------------------------
@dataclass(frozen=True)
class Layer:
    """One op of the static network, in the order the exported graph runs it.

    kind: 'conv' (stem, kxk), 'pw_expand' (1x1 + ReLU6), 'dw' (kxk depthwise + ReLU6),
    'pw_project' (1x1, linear), 'add' (residual), 'pool' (global average), 'fc' (classifier).
    Shapes are (H, W, C) without the batch. `pad` is (top, bottom, left, right) TF-SAME padding.
    `residual_from` on an 'add' names the index of the layer whose input is added back.
    """
    kind: str
    name: str
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    kernel: int = 1
    stride: int = 1
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)
    relu6: bool = False
    residual_from: int | None = None

    @property
    def macs(self) -> int:
        h, w, c = self.out_shape
        cin = self.in_shape[2]
        if self.kind in ("conv", "pw_expand", "pw_project"):
            return h * w * c * cin * self.kernel * self.kernel
        if self.kind == "dw":
            return h * w * c * self.kernel * self.kernel
        if self.kind == "fc":
            return cin * c
        return 0

    @property
    def params(self) -> int:
        cin, c = self.in_shape[2], self.out_shape[2]
        if self.kind in ("conv", "pw_expand", "pw_project"):
            return cin * c * self.kernel * self.kernel + c
        if self.kind == "dw":
            return c * self.kernel * self.kernel + c
        if self.kind == "fc":
            return cin * c + c
        return 0


def _conv_out(size: int, stride: int) -> int:
    return math.ceil(size / stride)


def layers(space: SearchSpace, arch: SubnetArch) -> list[Layer]:
    """The static network for `arch`, op by op (BatchNorm folded, as in the exported model)."""
    space.check_arch(arch)
    out: list[Layer] = []
    h, w = space.input_size(arch.resolution)
    c = space.in_channels
    k, s = space.stem_kernel, space.stem_stride
    ph, pw = same_padding(h, k, s), same_padding(w, k, s)
    oh, ow = _conv_out(h, s), _conv_out(w, s)
    out.append(Layer("conv", "stem", (h, w, c), (oh, ow, space.stem_channels), k, s,
                     (*ph, *pw), relu6=True))
    h, w, c = oh, ow, space.stem_channels
    for si, stage in enumerate(space.stages):
        cout = space.stage_channels(si, arch.widths[si])
        for bi, (k, e) in enumerate(zip(arch.kernels[si], arch.expands[si])):
            s = stage.stride if bi == 0 else 1
            block_in = len(out)
            name = f"s{si}b{bi}"
            mid = space.mid_channels(c, e)
            if e != 1:
                out.append(Layer("pw_expand", f"{name}.expand", (h, w, c), (h, w, mid), relu6=True))
            ph, pw = same_padding(h, k, s), same_padding(w, k, s)
            oh, ow = _conv_out(h, s), _conv_out(w, s)
            out.append(Layer("dw", f"{name}.dw", (h, w, mid if e != 1 else c), (oh, ow, mid if e != 1 else c),
                             k, s, (*ph, *pw), relu6=True))
            out.append(Layer("pw_project", f"{name}.project", (oh, ow, mid if e != 1 else c), (oh, ow, cout)))
            if s == 1 and c == cout:
                out.append(Layer("add", f"{name}.add", (oh, ow, cout), (oh, ow, cout),
                                 residual_from=block_in))
            h, w, c = oh, ow, cout
    out.append(Layer("pool", "pool", (h, w, c), (1, 1, c)))
    out.append(Layer("fc", "classifier", (1, 1, c), (1, 1, space.num_classes)))
    return out


def macs(space: SearchSpace, arch: SubnetArch) -> int:
    return sum(layer.macs for layer in layers(space, arch))


def params(space: SearchSpace, arch: SubnetArch) -> int:
    return sum(layer.params for layer in layers(space, arch))


def spectrogram_fields(height: int, width: int) -> dict:
    """SearchSpace fields for a fixed-size spectrogram input (resolution elasticity off)."""
    return {"resolutions": (int(height),), "input_width": int(width)}


# -- the default space for a dataset ----------------------------------------------------------------
MAX_DEFAULT_RESOLUTION = 96   # larger images are downscaled (with a message): 96 px at the widest
                              # geometry below already needs ~660 KiB of SRAM, the largest boards' size
# From 48 px up the network is widened (stem 32; stages 32/48/64/80 at width 1.0) so the largest subnet
# needs more SRAM than the smallest board has (255 KiB at 48 px, 360 KiB at 64, 660 KiB at 96, firmware
# arena + app buffers) while the smallest (0.35 width, depth 2, 2/3 of the native size) stays under
# 150 KiB. Smaller images keep the narrower default geometry: at <= 32 px every subnet of either
# geometry fits 232 KiB, and the wide one costs ~2x the training compute.
WIDE_GEOMETRY = {"stem_channels": 32,
                 "stages": (StageSpec(32, 2), StageSpec(48, 2), StageSpec(64, 2), StageSpec(80, 1))}


def default_resolutions(native: int) -> tuple[int, ...]:
    """Elastic input sizes for images of `native` px (the larger side): the native size on top (capped
    at MAX_DEFAULT_RESOLUTION), then about 5/6 and 2/3 of it. Tiny images (< 24 px, the 8x8 digits)
    are upsampled to the 24-32 px the stride-16 network needs."""
    top = min(int(native), MAX_DEFAULT_RESOLUTION)
    if top <= 32:
        return (24, 28, 32)
    q = 8 if top >= 48 else 4
    top = top // q * q
    return tuple(sorted({max(24, int(round(top * f / q)) * q) for f in (2 / 3, 5 / 6)} | {top}))


def default_space(native_hw: tuple[int, int], in_channels: int, num_classes: int) -> SearchSpace:
    """The default space for square-resized images of `native_hw` (height, width) pixels."""
    res = default_resolutions(max(native_hw))
    geometry = WIDE_GEOMETRY if max(res) >= 48 else {}
    return SearchSpace(in_channels=in_channels, num_classes=num_classes, resolutions=res, **geometry)


def resolution_note(space: SearchSpace, native_hw: tuple[int, int]) -> str | None:
    """A message when the space's largest input is smaller than the data (images are downscaled), else None."""
    h, w = int(native_hw[0]), int(native_hw[1])
    top_h, top_w = space.input_size(max(space.resolutions))
    if top_h < h or top_w < w:
        return (f"images are {h}x{w} px but the search space's largest input is {top_h}x{top_w} px: "
                f"every image is downscaled (set \"resolutions\" in a --space file to keep more pixels)")
    return None
