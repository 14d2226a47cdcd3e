#!/usr/bin/python3
"""Reference implementation of bitsandbytes' NF4 quantization (with double quantization) in plain PyTorch.

It reproduces, with tensor operations, what bitsandbytes' CUDA kernels compute:

* ``kQuantizeBlockwise`` / ``dQuantizeNF4``: per block of ``blocksize`` elements (row-major flattening), the
  float32 absmax; every element is scaled by the float32 reciprocal of the absmax and mapped to a 4-bit code
  with the hard-coded decision tree (a value equal to a threshold goes to the LOWER code; a block whose absmax
  is 0 scales to NaN and every NaN lands on code 0); two codes per byte, first element in the high nibble; an
  odd element count is padded with the code of a 0.0 element.
* double quantization: ``offset = absmax.mean()``, ``absmax - offset`` quantized blockwise (block 256) to 8
  bits with ``dQuantize`` over the signed dynamic map: binary search over the sorted map, then the nearest of
  the two neighbours, where an exact midpoint goes to the EVEN code index (a property of the search);
* dequantization: ``scale = map[q] * nested_absmax + offset`` (float32), ``w = nf4[code] * scale`` (float32),
  then a cast (round to nearest even) to the target dtype.

The dynamic map is derived like ``create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)``. Its
values depend on how ``torch.linspace`` rounds: current PyTorch builds compute each point of a float32
linspace with a single rounding (symmetric from both ends), and that is what the maps stored in real
checkpoints (``nested_quant_map``) hold. Debian's torch 1.13 rounds some points differently, so this script
computes the points itself (float64 arithmetic, one rounding to float32) instead of calling linspace, and
checks the result against the published table in tests/fixtures/nf4/published_dynamic_map.txt.

Usage (Debian's python3-torch: ``apt-get install -y python3-torch``; run with /usr/bin/python3):
    /usr/bin/python3 tools/nf4/nf4_reference.py --out tests/fixtures/nf4 [--device cuda]
    /usr/bin/python3 tools/nf4/nf4_reference.py --check tests/fixtures/nf4 [--device cuda]
``--check`` recomputes every case of an existing fixture folder and prints one PASS/FAIL line.
If the ``bitsandbytes`` package is importable and the device is CUDA, ``--check`` also compares with it.

Fixture format: ``index.json`` lists the cases; each array is a raw little-endian file ``<case>.<array>.bin``
(float32, uint8, or uint16 for bfloat16 bit patterns).
"""
import argparse
import json
import math
import os
import struct
import sys

import torch

NF4_CODE = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]
# The thresholds of bitsandbytes' dQuantizeNF4 decision tree (float literals in the CUDA source), ascending.
NF4_TREE_THRESHOLDS = [
    -0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544, -0.23460740596055984,
    -0.13791173323988914, -0.045525018125772476, 0.03979014977812767, 0.1202552504837513, 0.2035212516784668,
    0.2920137718319893, 0.3893125355243683, 0.5016634166240692, 0.6427869200706482, 0.8614784181118011,
]

HERE = os.path.dirname(os.path.abspath(__file__))
PUBLISHED_MAP = os.path.join(HERE, "..", "..", "tests", "fixtures", "nf4", "published_dynamic_map.txt")


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def decimal_to_f32(text):
    """Round a decimal literal directly to the nearest float32 (ties to even), as a C++/CUDA `...f` literal is.
    Going through a Python float (double) first can round differently: it does for 4 of the 15 NF4 thresholds."""
    from fractions import Fraction
    exact = Fraction(text)
    guess = f32(float(exact))
    if Fraction(guess) == exact or guess == 0.0:
        return guess
    bits = struct.unpack("<I", struct.pack("<f", abs(guess)))[0]
    cands = [math.copysign(struct.unpack("<f", struct.pack("<I", bits + k))[0], guess) for k in (-1, 0, 1)]
    return min(cands, key=lambda c: (abs(Fraction(c) - exact), struct.unpack("<I", struct.pack("<f", abs(c)))[0] & 1))


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def linspace_f32(start, end, steps):
    """float32 linspace as current PyTorch computes it: float32 step, symmetric halves, one rounding per point."""
    s, e = f32(start), f32(end)
    step = f32(f32(e - s) / (steps - 1))
    half = steps // 2
    return [f32(s + step * k) if k < half else f32(e - step * (steps - 1 - k)) for k in range(steps)]


def create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
    data = []
    non_sign_bits = total_bits - 1
    additional_items = 2 ** (non_sign_bits - max_exponent_bits) - 1
    i = 0
    for i in range(max_exponent_bits):
        items = int(2 ** (i + non_sign_bits - max_exponent_bits) + 1 if signed
                    else 2 ** (i + non_sign_bits - max_exponent_bits + 1) + 1)
        b = torch.tensor(linspace_f32(0.1, 1.0, items), dtype=torch.float32)
        means = (b[:-1] + b[1:]) / 2.0
        scaled = (torch.tensor(f32(10.0 ** (-(max_exponent_bits - 1) + i)), dtype=torch.float32) * means)
        data += scaled.tolist()
        if signed:
            data += (-scaled).tolist()
    if additional_items > 0:
        b = torch.tensor(linspace_f32(0.1, 1.0, additional_items + 1), dtype=torch.float32)
        means = (b[:-1] + b[1:]) / 2.0
        scaled = torch.tensor(f32(10.0 ** (-(max_exponent_bits - 1) + i)), dtype=torch.float32) * means
        data += scaled.tolist()
        if signed:
            data += (-scaled).tolist()
    data.append(0.0)
    data.append(1.0)
    assert len(data) == 2 ** total_bits
    data += [0.0] * (256 - len(data))
    data.sort()
    return torch.tensor(data, dtype=torch.float32)


# ---------------------------------------------------------------- scalar emulations of the CUDA device functions
def d_quantize_nf4_scalar(x):
    """Literal transcription of the decision tree's semantics (x > t at every node); NaN fails every test."""
    t = nf4_thresholds_f32()
    if x > t[7]:
        if x > t[11]:
            if x > t[13]:
                return 15 if x > t[14] else 14
            return 13 if x > t[12] else 12
        if x > t[9]:
            return 11 if x > t[10] else 10
        return 9 if x > t[8] else 8
    if x > t[3]:
        if x > t[5]:
            return 7 if x > t[6] else 6
        return 5 if x > t[4] else 4
    if x > t[1]:
        return 3 if x > t[2] else 2
    return 1 if x > t[0] else 0


def d_quantize_scalar(code, x):
    """Emulation of bitsandbytes' dQuantize<0> (binary search + nearest neighbour), float32 arithmetic."""
    pivot, upper_pivot, lower_pivot = 127, 255, 0
    lower, upper = -1.0, 1.0
    val = code[pivot]
    i = 64
    while i > 0:
        if x > val:
            lower_pivot, lower = pivot, val
            pivot += i
        else:
            upper_pivot, upper = pivot, val
            pivot -= i
        val = code[pivot]
        i >>= 1
    if upper_pivot == 255:
        upper = code[upper_pivot]
    if lower_pivot == 0:
        lower = code[lower_pivot]
    if x > val:
        mid = f32(f32(upper + val) * 0.5)
        return upper_pivot if x > mid else pivot
    mid = f32(f32(lower + val) * 0.5)
    return lower_pivot if x < mid else pivot


# ---------------------------------------------------------------- vectorized reference
def _blocks(flat, blocksize):
    n = flat.numel()
    nb = (n + blocksize - 1) // blocksize
    padded = torch.zeros(nb * blocksize, dtype=torch.float32, device=flat.device)
    padded[:n] = flat
    return padded.view(nb, blocksize), nb


def nf4_thresholds_f32():
    """The tree's thresholds exactly as the CUDA kernel holds them (float literals rounded directly to float32)."""
    return [decimal_to_f32(repr(v)) for v in NF4_TREE_THRESHOLDS]


def quantize_nf4(weight, blocksize):
    flat = weight.reshape(-1).to(torch.float32)
    n = flat.numel()
    blocks, nb = _blocks(flat, blocksize)
    absmax = blocks.abs().amax(dim=1)
    inv = torch.reciprocal(absmax)
    scaled = (blocks * inv[:, None]).reshape(-1)
    thr = torch.tensor(nf4_thresholds_f32(), dtype=torch.float32, device=flat.device)
    codes = (scaled[:, None] > thr[None, :]).sum(dim=1).to(torch.uint8)  # NaN -> 0
    codes = codes[: n + (n % 2)]
    packed = (codes[0::2] * 16 + codes[1::2]).to(torch.uint8).unsqueeze(1)
    return packed, absmax


def quantize_blockwise_8bit(values, code, blocksize):
    flat = values.reshape(-1).to(torch.float32)
    n = flat.numel()
    blocks, nb = _blocks(flat, blocksize)
    absmax = blocks.abs().amax(dim=1)
    scaled = (blocks * torch.reciprocal(absmax)[:, None]).reshape(-1)[:n]
    mids = (code[:-1] + code[1:]) * 0.5
    idx = torch.bucketize(scaled, mids, right=False)  # mids[i-1] < x <= mids[i]
    tie = (idx < 255) & (scaled == mids[idx.clamp(max=254)]) & (idx % 2 == 1)
    idx = torch.where(tie, idx + 1, idx)
    idx = torch.where(torch.isnan(scaled), torch.zeros_like(idx), idx)
    return idx.to(torch.uint8), absmax


def double_quantize(absmax, code, nested_blocksize=256):
    offset = absmax.mean()
    q, nested_absmax = quantize_blockwise_8bit(absmax - offset, code, nested_blocksize)
    return q, nested_absmax, offset


def dequantize_absmax(q, nested_absmax, offset, code, nested_blocksize=256):
    n = q.numel()
    vals = code[q.long()]
    nb = nested_absmax.numel()
    padded = torch.zeros(nb * nested_blocksize, dtype=torch.float32, device=q.device)
    padded[:n] = vals
    out = (padded.view(nb, nested_blocksize) * nested_absmax[:, None]).reshape(-1)[:n]
    return out + offset


def dequantize_nf4(packed, absmax, shape, blocksize, dtype):
    n = 1
    for s in shape:
        n *= s
    p = packed.reshape(-1).to(torch.int64)
    codes = torch.stack([p // 16, p % 16], dim=1).reshape(-1)[:n]
    nf4 = torch.tensor(NF4_CODE, dtype=torch.float32, device=packed.device)
    vals = nf4[codes]
    nb = absmax.numel()
    padded = torch.zeros(nb * blocksize, dtype=torch.float32, device=packed.device)
    padded[:n] = vals
    out = (padded.view(nb, blocksize) * absmax[:, None]).reshape(-1)[:n]
    return out.reshape(shape).to(dtype)


def quant_state_json(shape, blocksize, dtype_name, offset):
    # bitsandbytes: json.dumps of the non-tensor items of QuantState.as_dict, in this key order.
    d = {"quant_type": "nf4", "blocksize": blocksize, "dtype": dtype_name, "shape": list(shape),
         "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": offset}
    return json.dumps(d)


# ---------------------------------------------------------------- self checks
def self_checks(code, device):
    problems = []
    nf4 = torch.tensor(NF4_CODE, dtype=torch.float32)
    mids = ((nf4[:-1] + nf4[1:]) / 2).tolist()
    tree = nf4_thresholds_f32()
    differ = [i for i in range(15) if mids[i] != tree[i]]
    print(f"info: NF4 tree thresholds (float32 literals) differ from recomputed float32 midpoints at {differ}")
    if any(abs(f32_bits(abs(mids[i])) - f32_bits(abs(tree[i]))) != 1 for i in differ):
        problems.append("NF4 tree thresholds differ from midpoints by more than one ulp")
    if len(NF4_CODE) != 16 or NF4_CODE[7] != 0.0 or sorted(NF4_CODE) != NF4_CODE:
        problems.append("NF4 table shape/order")
    # packing fact: codes (15, 0) -> 0xF0
    p, _ = quantize_nf4(torch.tensor([1.0, -1.0], device=device), 64)
    if int(p[0, 0]) != 0xF0:
        problems.append("packing: first element must be the high nibble")
    # the vectorized NF4 rule equals the literal tree on random values, thresholds and their neighbours
    g = torch.Generator().manual_seed(7)
    xs = (torch.rand(4000, generator=g) * 2.2 - 1.1).tolist()
    for t in tree:
        xs += [t, struct.unpack("<f", struct.pack("<I", f32_bits(t) + 1))[0],
               struct.unpack("<f", struct.pack("<I", f32_bits(t) - 1))[0]]
    xs += [float("nan"), 0.0, -0.0, 1.0, -1.0]
    thr = torch.tensor(tree, dtype=torch.float32)
    xt = torch.tensor(xs, dtype=torch.float32)
    vec = (xt[:, None] > thr[None, :]).sum(dim=1).tolist()
    lit = [d_quantize_nf4_scalar(float(v)) for v in xt.tolist()]
    if vec != lit:
        problems.append("vectorized NF4 rule differs from the decision tree")
    # the vectorized 8-bit rule equals dQuantize on random values, every midpoint and code value
    codel = code.tolist()
    m8 = ((code[:-1] + code[1:]) * 0.5).tolist()
    ys = (torch.rand(6000, generator=g) * 2.0 - 1.0).tolist() + m8 + codel + [-1.0, 1.0]
    yt = torch.tensor(ys, dtype=torch.float32)
    # feed already-normalized values: a block whose absmax is exactly 1.0 keeps them unchanged
    vec8 = []
    for start in range(0, yt.numel(), 255):
        chunk = torch.cat([yt[start:start + 255], torch.tensor([1.0])])
        q, _ = quantize_blockwise_8bit(chunk, code, 256)
        vec8 += q[:-1][: yt[start:start + 255].numel()].tolist()
    lit8 = [d_quantize_scalar(codel, float(v)) for v in yt.tolist()]
    if vec8 != lit8:
        bad = sum(1 for a, b in zip(vec8, lit8) if a != b)
        problems.append(f"vectorized 8-bit rule differs from dQuantize at {bad} values")
    if d_quantize_scalar(codel, float("nan")) != 0:
        problems.append("dQuantize(NaN) != 0")
    if os.path.exists(PUBLISHED_MAP):
        pub = [float(l) for l in open(PUBLISHED_MAP) if l.strip() and not l.startswith("#")]
        pub32 = torch.tensor(pub, dtype=torch.float32)
        if not torch.equal(pub32, code.cpu()):
            problems.append(f"dynamic map differs from the published table at {(pub32 != code.cpu()).sum().item()} values")
        lin = torch.linspace(0.1, 1, 65, dtype=torch.float32).tolist()
        own = linspace_f32(0.1, 1.0, 65)
        print(f"info: this torch {torch.__version__} linspace(0.1,1,65) differs from single-rounding points at "
              f"{sum(1 for a, b in zip(lin, own) if a != b)} of 65 positions (not used)")
    return problems


# ---------------------------------------------------------------- cases
def make_cases():
    g = torch.Generator().manual_seed(1234)
    cases = []

    def add(name, tensor, blocksize=64):
        cases.append((name, tensor.to(torch.float32).contiguous(), blocksize))

    add("normal_32x128", torch.randn(32, 128, generator=g) * 0.02)
    add("uniform_48x64", torch.rand(48, 64, generator=g) * 6.0 - 3.0)
    # values exactly on NF4 thresholds x absmax (power-of-two absmax keeps products exact), and code values
    thr = torch.tensor(nf4_thresholds_f32(), dtype=torch.float32)
    nf4 = torch.tensor(NF4_CODE, dtype=torch.float32)
    mids = (nf4[:-1] + nf4[1:]) / 2
    rows = []
    for a in (1.0, 0.25, 8.0, 0.37, 3.3):
        block = torch.cat([torch.tensor([a]), thr * a, nf4 * a, -thr * a, thr * a * 0.999])
        block = torch.cat([block, torch.zeros(64 - block.numel())])[:64]
        rows.append(block)
    for a in (1.0, 2.0):
        block = torch.cat([torch.tensor([a]), mids * a, -mids * a, nf4 * a])
        rows.append(torch.cat([block, torch.zeros(64 - block.numel())]))
    add("midpoints_7x64", torch.stack(rows))
    z = torch.randn(4, 64, generator=g)
    z[1] = 0.0
    z[2, :40] = 0.0
    z[3, 10] = -0.0
    add("zeros_4x64", z)
    e = torch.empty(4, 64)
    e[0] = 0.5
    e[1] = -2.0
    e[2] = 1e-3
    e[3, :32] = 7.0
    e[3, 32:] = -7.0
    add("equal_blocks_4x64", e)
    x = torch.randn(4, 64, generator=g)
    x[0, 5] = 3.0e38
    x[1] *= 1e-30
    x[2, 0] = -1e20
    x[3] *= 1e10
    add("extremes_4x64", x)
    add("odd_7x37", torch.randn(7, 37, generator=g))
    add("nested_multi_9000_bs32", torch.randn(9000, generator=g) * torch.linspace(0.01, 2.0, 9000), 32)
    add("bf16_values_16x64", (torch.randn(16, 64, generator=g) * 0.05).to(torch.bfloat16).to(torch.float32))
    add("block4096_32x128", torch.randn(32, 128, generator=g), 4096)
    add("block128_24x80", torch.randn(24, 80, generator=g) * 0.1, 128)
    return cases


def blockwise8_case(code):
    g = torch.Generator().manual_seed(99)
    mids = ((code[:-1] + code[1:]) * 0.5)
    pool = torch.cat([mids, code, torch.rand(500, generator=g) * 2 - 1])
    blocks = []
    for start in range(0, pool.numel(), 255):
        chunk = pool[start:start + 255]
        blocks.append(torch.cat([chunk, torch.ones(1), torch.zeros(255 - chunk.numel())]))
    values = torch.cat(blocks)
    codel = code.tolist()
    codes = torch.tensor([d_quantize_scalar(codel, float(v)) for v in values.tolist()], dtype=torch.uint8)
    vec, _ = quantize_blockwise_8bit(values, code, 256)
    assert torch.equal(vec, codes), "vectorized 8-bit rule differs from dQuantize"
    return values, codes


def compute_case(tensor, blocksize, code, device):
    w = tensor.to(device)
    packed, absmax = quantize_nf4(w, blocksize)
    q, nested_absmax, offset = double_quantize(absmax, code.to(device))
    absmax_dq = dequantize_absmax(q, nested_absmax, offset, code.to(device))
    shape = list(tensor.shape)
    out = {
        "packed": packed.cpu(), "absmax": absmax.cpu(), "absmax_u8": q.cpu(), "nested_absmax": nested_absmax.cpu(),
        "offset": offset.reshape(1).cpu(),
        "deq_f32": dequantize_nf4(packed, absmax, shape, blocksize, torch.float32).cpu(),
        "deq_bf16": dequantize_nf4(packed, absmax, shape, blocksize, torch.bfloat16).cpu(),
        "deq_dq_f32": dequantize_nf4(packed, absmax_dq, shape, blocksize, torch.float32).cpu(),
        "deq_dq_bf16": dequantize_nf4(packed, absmax_dq, shape, blocksize, torch.bfloat16).cpu(),
    }
    return out


def tensor_bytes(t):
    t = t.contiguous().cpu()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    if t.dtype == torch.uint8:
        return bytes(t.reshape(-1).tolist())
    fmt = {torch.float32: "f", torch.int16: "h"}[t.dtype]
    vals = t.reshape(-1).tolist()
    return struct.pack("<%d%s" % (len(vals), fmt), *vals)


DTYPES = {"packed": "uint8", "absmax": "float32", "absmax_u8": "uint8", "nested_absmax": "float32",
          "offset": "float32", "deq_f32": "float32", "deq_bf16": "bfloat16", "deq_dq_f32": "float32",
          "deq_dq_bf16": "bfloat16", "input": "float32"}


def write_fixtures(out_dir, device):
    os.makedirs(out_dir, exist_ok=True)
    code = create_dynamic_map()
    index = {"generator": "tools/nf4/nf4_reference.py", "torch": torch.__version__, "device": device,
             "nf4_code": NF4_CODE,
             "nf4_thresholds_f32_bits": [f32_bits(v) for v in nf4_thresholds_f32()], "dynamic_map_f32_bits": [f32_bits(v) for v in code.tolist()], "cases": []}
    for name, tensor, bs in make_cases():
        res = compute_case(tensor, bs, code, device)
        res["input"] = tensor
        files = {}
        for key, t in res.items():
            fname = f"{name}.{key}.bin"
            data = tensor_bytes(t)
            tmp = os.path.join(out_dir, fname + ".tmp")
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, os.path.join(out_dir, fname))
            files[key] = {"file": fname, "dtype": DTYPES[key], "count": t.numel()}
        offset = res["offset"][0].item()
        index["cases"].append({"name": name, "shape": list(tensor.shape), "blocksize": bs, "nested_blocksize": 256,
                               "offset_f32_bits": f32_bits(offset),
                               "quant_state_json": quant_state_json(tensor.shape, bs, "float32", offset),
                               "files": files})
    # 8-bit blockwise rule on its own: every midpoint and code value of the dynamic map and random values, in
    # blocks of 256 whose absmax is exactly 1.0, with the codes of the literal dQuantize emulation.
    b8_in, b8_codes = blockwise8_case(code)
    for key, t in (("input", b8_in), ("codes", b8_codes)):
        fname = f"blockwise8.{key}.bin"
        with open(os.path.join(out_dir, fname + ".tmp"), "wb") as fh:
            fh.write(tensor_bytes(t))
        os.replace(os.path.join(out_dir, fname + ".tmp"), os.path.join(out_dir, fname))
    index["blockwise8"] = {"blocksize": 256, "count": b8_in.numel(), "input": "blockwise8.input.bin",
                           "codes": "blockwise8.codes.bin"}
    tmp = os.path.join(out_dir, "index.json.tmp")
    with open(tmp, "w") as fh:
        json.dump(index, fh, indent=1)
    os.replace(tmp, os.path.join(out_dir, "index.json"))
    total = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
    print(f"wrote {len(index['cases'])} cases to {out_dir} ({total} bytes)")


def read_array(path, dtype, count):
    raw = open(path, "rb").read()
    if dtype == "uint8":
        return torch.tensor(list(raw), dtype=torch.uint8)
    if dtype == "float32":
        return torch.tensor(struct.unpack("<%df" % count, raw), dtype=torch.float32)
    if dtype == "bfloat16":
        return torch.tensor(struct.unpack("<%dh" % count, raw), dtype=torch.int16).view(torch.bfloat16)
    raise ValueError(dtype)


def bit_equal(a, b):
    a, b = a.reshape(-1).cpu(), b.reshape(-1).cpu()
    if a.numel() != b.numel():
        return False
    if a.dtype == torch.float32:
        return torch.equal(a.view(torch.int32), b.view(torch.int32))
    if a.dtype == torch.bfloat16:
        return torch.equal(a.view(torch.int16), b.view(torch.int16))
    return torch.equal(a, b)


def check_fixtures(fdir, device):
    index = json.load(open(os.path.join(fdir, "index.json")))
    code = create_dynamic_map()
    failures = []
    if [f32_bits(v) for v in code.tolist()] != index["dynamic_map_f32_bits"]:
        failures.append("dynamic_map")
    try:
        import bitsandbytes.functional as bnbf  # noqa
        have_bnb = device.startswith("cuda")
    except Exception:
        have_bnb = False
    bnb_note = "bitsandbytes: not available"
    bnb_fail = []
    for case in index["cases"]:
        files = case["files"]
        inp = read_array(os.path.join(fdir, files["input"]["file"]), "float32", files["input"]["count"])
        inp = inp.reshape(case["shape"])
        res = compute_case(inp, case["blocksize"], code, device)
        for key, t in res.items():
            exp = read_array(os.path.join(fdir, files[key]["file"]), files[key]["dtype"], files[key]["count"])
            if not bit_equal(t, exp):
                failures.append(f"{case['name']}.{key}")
        if have_bnb:
            w = inp.to(device)
            packed, st = bnbf.quantize_4bit(w, blocksize=case["blocksize"], compress_statistics=True, quant_type="nf4")
            packed_p, st_p = bnbf.quantize_4bit(w, blocksize=case["blocksize"], compress_statistics=False, quant_type="nf4")
            exp = {key: read_array(os.path.join(fdir, files[key]["file"]), files[key]["dtype"], files[key]["count"])
                   for key in files}
            if not bit_equal(packed.reshape(-1), exp["packed"]):
                bnb_fail.append(f"{case['name']}.packed")
            if not bit_equal(st_p.absmax, exp["absmax"]):
                bnb_fail.append(f"{case['name']}.absmax")
            if not bit_equal(st.absmax, exp["absmax_u8"]):
                bnb_fail.append(f"{case['name']}.absmax_u8")
            if not bit_equal(st.state2.absmax, exp["nested_absmax"]):
                bnb_fail.append(f"{case['name']}.nested_absmax")
            if not bit_equal(st.offset.reshape(1), exp["offset"]):
                bnb_fail.append(f"{case['name']}.offset")
            if not bit_equal(st.state2.code, code):
                bnb_fail.append(f"{case['name']}.nested_quant_map")
            deq = bnbf.dequantize_4bit(packed, st).float()
            if not bit_equal(deq, exp["deq_dq_f32"]):
                bnb_fail.append(f"{case['name']}.deq_dq_f32")
    if have_bnb:
        bnb_note = "bitsandbytes: " + ("all equal" if not bnb_fail else "differs: " + ", ".join(bnb_fail))
    status = "PASS" if not failures else "FAIL"
    print(f"{status}: {len(index['cases'])} cases, {len(failures)} mismatches on {device} (torch {torch.__version__})"
          + ("" if not failures else ": " + ", ".join(failures)) + f"; {bnb_note}")
    return not failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--check")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    if not a.out and not a.check:
        ap.error("give --out DIR or --check DIR")
    problems = self_checks(create_dynamic_map(), a.device)
    if problems:
        print("FAIL: self-check: " + "; ".join(problems))
        sys.exit(1)
    if a.out:
        write_fixtures(a.out, a.device)
    if a.check:
        sys.exit(0 if check_fixtures(a.check, a.device) else 1)


if __name__ == "__main__":
    main()
