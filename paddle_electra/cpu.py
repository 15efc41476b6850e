"""What CPU this is (vendor, model, ISA flags), and the one setting Paddle's bundled MKL needs on AMD.

Paddle's CPU wheel links MKL 2019 (paddle/libs/libmklml_intel.so). That MKL picks its GEMM code by
CPU vendor, not by ISA: on AMD it takes a generic SSE path. `MKL_DEBUG_CPU_TYPE=5` tells it to use
its AVX2 code. MKL reads the variable at its first GEMM (not when the library loads), so setting it
at `import paddle_electra` works even after `import paddle`, as long as nothing has multiplied a
matrix yet. Measured on AMD EPYC (Zen 3, 2 cores), `paddle.matmul` of 2048^2 fp32 matrices: 53
GFLOP/s without it, 167 with it, PyTorch 2.13 in the same run 180 (benchmarks/gemm_throughput.py).
On Intel the variable is not set: MKL already takes its best path there (and 5 would cap an
AVX-512 CPU at AVX2). MKL 2020.1 and later ignore the variable; that is harmless.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import FrozenSet, Mapping, MutableMapping, Optional

CPUINFO = "/proc/cpuinfo"
MKL_ENV = "MKL_DEBUG_CPU_TYPE"
MKL_AVX2 = "5"
# set to 0 to leave MKL's vendor dispatch alone
OPT_OUT_ENV = "PADDLE_ELECTRA_MKL_AMD_FIX"


@dataclasses.dataclass(frozen=True)
class CpuInfo:
    vendor: str  # "GenuineIntel", "AuthenticAMD", ... ("" where unknown)
    model: str
    flags: FrozenSet[str]

    @property
    def is_amd(self) -> bool:
        return self.vendor == "AuthenticAMD"

    @property
    def isa(self) -> str:
        """The vector extensions that matter here, e.g. 'avx2 fma' or 'avx512f avx512_bf16 amx_bf16'."""
        keep = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx_vnni")
        return " ".join(f for f in keep if f in self.flags) or "no avx2"

    @property
    def has_native_bf16(self) -> bool:
        return bool(self.flags & {"avx512_bf16", "amx_bf16"})

    @property
    def has_vnni(self) -> bool:
        """int8 dot-product instructions (oneDNN's fast int8 GEMM)."""
        return bool(self.flags & {"avx512_vnni", "avx_vnni", "amx_int8"})

    def describe(self) -> str:
        return f"{self.model or 'unknown CPU'} ({self.vendor or 'unknown vendor'}; {self.isa})"


def parse_cpuinfo(text: str) -> CpuInfo:
    """The first processor's vendor, model name and flags from the text of /proc/cpuinfo."""
    fields = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor is enough: all cores of a machine are alike here
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return CpuInfo(vendor=fields.get("vendor_id", ""), model=fields.get("model name", ""),
                   flags=frozenset(fields.get("flags", "").split()))


@functools.lru_cache(maxsize=None)
def cpu_info(path: str = CPUINFO) -> CpuInfo:
    """This machine's CPU; an empty CpuInfo where /proc/cpuinfo cannot be read (not Linux)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_cpuinfo(f.read())
    except OSError:
        import platform
        return CpuInfo(vendor="", model=platform.processor(), flags=frozenset())


def mkl_vendor_fix(info: Optional[CpuInfo] = None,
                   environ: Optional[MutableMapping[str, str]] = None) -> Optional[str]:
    """Set MKL_DEBUG_CPU_TYPE=5 in `environ` (default: this process) on AMD unless the user set it
    or opted out with PADDLE_ELECTRA_MKL_AMD_FIX=0. Returns the value now in force (None: unset)."""
    info = cpu_info() if info is None else info
    environ = os.environ if environ is None else environ
    if info.is_amd and MKL_ENV not in environ and environ.get(OPT_OUT_ENV, "1") != "0":
        environ[MKL_ENV] = MKL_AVX2
    return environ.get(MKL_ENV)


def mkl_status(info: Optional[CpuInfo] = None, environ: Optional[Mapping[str, str]] = None) -> str:
    """One line for logs and benchmark records: what MKL was told."""
    info = cpu_info() if info is None else info
    environ = os.environ if environ is None else environ
    value = environ.get(MKL_ENV)
    if not info.is_amd:
        return f"MKL vendor dispatch: native ({info.vendor or 'unknown vendor'})"
    if value == MKL_AVX2:
        return "MKL vendor dispatch: AVX2 path forced on AMD (MKL_DEBUG_CPU_TYPE=5)"
    return (f"MKL vendor dispatch: generic path on AMD (MKL_DEBUG_CPU_TYPE={value!r}); about 3x slower "
            f"GEMMs: export MKL_DEBUG_CPU_TYPE=5 before starting Python")


def machine_record() -> dict:
    """What a benchmark's JSON line says of the machine it ran on: CPU model, vendor, ISA and all
    flags, the MKL setting, usable cores and the load average at the time of the call."""
    info = cpu_info()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return {"cpu": info.model, "vendor": info.vendor, "isa": info.isa, "cpu_flags": sorted(info.flags),
            "mkl": mkl_status(info), "cores": cores, "load_average": os.getloadavg()}

