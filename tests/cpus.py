"""Fixed /proc/cpuinfo texts of the CPU families this project's machines have had, so that a test of an
ISA-dependent branch runs every branch on whichever CPU it is on (and "another CPU" is one of these, never
this machine's flags with one added). Flags cut to those that matter here plus a few common ones."""
from paddle_electra.cpu import parse_cpuinfo

_COMMON = "fpu sse sse2 ssse3 sse4_1 sse4_2 popcnt aes xsave avx f16c fma bmi1 avx2 bmi2"


def _text(vendor, family, model_name, flags):
    return (f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel name\t: {model_name}\n"
            f"flags\t\t: {_COMMON} {flags}\n\nprocessor\t: 1\nvendor_id\t: {vendor}\n")


CPUINFO = {
    # Intel Xeon Sapphire Rapids: AVX-512, VNNI, AVX512-BF16, AMX
    "intel-sapphire-rapids": _text("GenuineIntel", 6, "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz",
                                   "avx512f avx512dq avx512bw avx512vl avx512_vnni avx_vnni avx512_bf16 amx_bf16 "
                                   "amx_tile amx_int8"),
    # AMD EPYC Zen 3: AVX2 + FMA only
    "amd-zen3": _text("AuthenticAMD", 25, "AMD EPYC 7B13", ""),
    # AMD EPYC Zen 4: AVX-512, VNNI, AVX512-BF16, no AMX
    "amd-zen4": _text("AuthenticAMD", 25, "AMD EPYC 9B14",
                      "avx512f avx512dq avx512bw avx512vl avx512_vnni avx512_bf16"),
    # AMD EPYC Zen 5 (family 26): as Zen 4 plus AVX-VNNI and vp2intersect, no AMX
    "amd-zen5": _text("AuthenticAMD", 26, "AMD EPYC",
                      "avx512f avx512dq avx512bw avx512vl avx512_vnni avx_vnni avx512_bf16 avx512_vp2intersect"),
}
CPUS = {name: parse_cpuinfo(text) for name, text in CPUINFO.items()}


def another_cpu(here):
    """A family of CPUS whose flags differ from `here`'s (this machine's, usually)."""
    return next(c for c in CPUS.values() if c.flags != here.flags)
