"""The machine a benchmark's figures were measured on, named in every bench's header and JSON: the same bench can
take twice as long on another CPU with as many cores, and what bf16 and int8 gain depends on its matmul instructions
(AMX tiles, AVX-512 VNNI and BF16)."""

from __future__ import annotations

from pathlib import Path

import torch

MATMUL_FLAGS = ("amx_tile", "amx_int8", "amx_bf16", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni")


def machine() -> dict:
    """The CPU's model and matmul instruction sets (Linux's /proc/cpuinfo), the ISA torch's CPU kernels dispatch to,
    torch's CPU threads and the GPU, if any."""
    fields = {}
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []:
        if not line.strip():
            break  # the first processor's block speaks for all
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    flags = set(fields.get("flags", "").split())
    cpu = fields.get("model name", "unknown")
    if "cpu family" in fields:  # a virtual machine may name only the vendor; family and model tell generations apart
        cpu += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    return {
        "cpu": cpu,
        "cpu_matmul_flags": [flag for flag in MATMUL_FLAGS if flag in flags],
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def describe(figures: dict) -> str:
    """machine()'s figures as one header line."""
    flags = ", ".join(figures["cpu_matmul_flags"]) or "none"
    gpu = f"; GPU {figures['gpu']}" if figures["gpu"] else ""
    return (
        f"measured on: CPU {figures['cpu']}, {figures['torch_cpu_capability']} kernels, matmul flags: {flags}; "
        f"{figures['cpu_threads']} torch threads{gpu}"
    )
