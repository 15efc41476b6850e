"""CPU detection and the MKL vendor setting, with fake /proc/cpuinfo texts of both families so that
every branch runs whichever CPU the tests are on."""
import os
import subprocess
import sys

from paddle_electra import cpu

AMD = """processor	: 0
vendor_id	: AuthenticAMD
cpu family	: 25
model name	: AMD EPYC 7B13
flags		: fpu sse sse2 avx fma avx2 bmi2

processor	: 1
vendor_id	: AuthenticAMD
model name	: AMD EPYC 7B13
flags		: fpu sse sse2 avx fma avx2 bmi2
"""
SAPPHIRE_RAPIDS = """processor	: 0
vendor_id	: GenuineIntel
model name	: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags		: fpu sse avx fma avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_int8
"""
OLD_INTEL = """processor	: 0
vendor_id	: GenuineIntel
model name	: Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz
flags		: fpu sse avx fma avx2
"""


def test_parse_both_families():
    amd, spr, old = (cpu.parse_cpuinfo(t) for t in (AMD, SAPPHIRE_RAPIDS, OLD_INTEL))
    assert (amd.vendor, amd.model, amd.is_amd) == ("AuthenticAMD", "AMD EPYC 7B13", True)
    assert amd.isa == "avx2 fma" and not amd.has_native_bf16 and not amd.has_vnni
    assert not spr.is_amd and spr.has_native_bf16 and spr.has_vnni
    assert spr.isa == "avx2 fma avx512f avx512_vnni avx512_bf16 amx_bf16 amx_int8"
    assert not old.is_amd and not old.has_native_bf16 and old.isa == "avx2 fma"
    assert cpu.parse_cpuinfo("").isa == "no avx2"
    assert "AMD EPYC 7B13" in amd.describe() and "avx2" in amd.describe()


def test_mkl_fix_only_on_amd_and_never_over_the_user():
    amd, intel = cpu.parse_cpuinfo(AMD), cpu.parse_cpuinfo(SAPPHIRE_RAPIDS)
    env = {}
    assert cpu.mkl_vendor_fix(amd, env) == "5" and env == {"MKL_DEBUG_CPU_TYPE": "5"}
    assert "AVX2 path forced" in cpu.mkl_status(amd, env)
    env = {}
    assert cpu.mkl_vendor_fix(intel, env) is None and env == {}
    assert "native" in cpu.mkl_status(intel, env)
    env = {"MKL_DEBUG_CPU_TYPE": "2"}  # the user's own choice stays
    assert cpu.mkl_vendor_fix(amd, env) == "2" and "generic path" in cpu.mkl_status(amd, env)
    env = {"PADDLE_ELECTRA_MKL_AMD_FIX": "0"}
    assert cpu.mkl_vendor_fix(amd, env) is None and "MKL_DEBUG_CPU_TYPE" not in env


def test_import_sets_it_after_paddle_too(tmp_path):
    # MKL reads the variable at its first GEMM, so `import paddle` first is fine
    code = ("import os, paddle, paddle_electra; from paddle_electra.cpu import cpu_info; "
            "print(cpu_info().is_amd, os.environ.get('MKL_DEBUG_CPU_TYPE'))")
    env = {k: v for k, v in os.environ.items() if k not in ("MKL_DEBUG_CPU_TYPE", "PADDLE_ELECTRA_MKL_AMD_FIX")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    is_amd, value = out.stdout.split()[-2:]
    assert value == ("5" if is_amd == "True" else "None")


def test_cpu_info_of_this_machine_reads():
    info = cpu.cpu_info()
    assert isinstance(info.flags, frozenset)
    if os.path.exists("/proc/cpuinfo"):
        assert info.vendor and info.flags


def test_machine_record_names_the_cpu_and_its_state():
    rec = cpu.machine_record()
    info = cpu.cpu_info()
    assert (rec["cpu"], rec["vendor"], rec["isa"]) == (info.model, info.vendor, info.isa)
    assert rec["cpu_flags"] == sorted(info.flags) and rec["mkl"] == cpu.mkl_status(info)
    assert rec["cores"] >= 1 and len(rec["load_average"]) == 3


def test_the_families_met_so_far():
    """The ISA facts the branches read (bf16 inference, int8 weights, the compiled kernels) for each family."""
    from cpus import CPUS
    want = {"intel-sapphire-rapids": (False, True, True), "amd-zen3": (True, False, False),
            "amd-zen4": (True, True, True), "amd-zen5": (True, True, True)}
    assert {n: (c.is_amd, c.has_native_bf16, c.has_vnni) for n, c in CPUS.items()} == want
    assert all({"avx2", "fma"} <= c.flags for c in CPUS.values())
    assert len({c.flags for c in CPUS.values()}) == len(CPUS)
