"""ElectraConfig (HF field names) and the registry of HFL's released Chinese ELECTRA variants."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Dict, Optional

CONFIG_NAME = "config.json"
GENERATOR_CONFIG_NAME = "generator_config.json"


class ConfigError(ValueError):
    """A config file or field is missing or wrong."""


# sizes a config may have: wide enough for any ELECTRA (large: 24 layers, 1024 wide), narrow enough
# that a typo (100000 layers, -256) is an error naming the field instead of a hang or a Paddle traceback
_INT_BOUNDS = {
    "vocab_size": (1, 10_000_000), "embedding_size": (1, 65_536), "hidden_size": (1, 65_536),
    "num_hidden_layers": (1, 1000), "num_attention_heads": (1, 1024), "intermediate_size": (1, 262_144),
    "max_position_embeddings": (1, 1_048_576), "type_vocab_size": (1, 1024), "pad_token_id": (0, 10_000_000),
}
MAX_PARAMETERS = 20_000_000_000  # 80 GB of float32


@dataclass
class ElectraConfig:
    vocab_size: int = 21128
    embedding_size: int = 128
    hidden_size: int = 256
    num_hidden_layers: int = 12
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int = 0
    # Everything else found in a config file (architectures, summary_*, label maps, ...)
    # is kept so that a round trip does not lose it.
    extra: Dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        for name, (low, high) in _INT_BOUNDS.items():
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= high:
                raise ConfigError(f"{name} must be an integer in [{low}, {high}], got {v!r}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v < 1.0:
                raise ConfigError(f"{name} must be a probability in [0, 1), got {v!r}")
        if not isinstance(self.layer_norm_eps, (int, float)) or not 0.0 < self.layer_norm_eps < 1.0:
            raise ConfigError(f"layer_norm_eps must be in (0, 1), got {self.layer_norm_eps!r}")
        if not isinstance(self.initializer_range, (int, float)) or not 0.0 <= self.initializer_range <= 10.0:
            raise ConfigError(f"initializer_range must be in [0, 10], got {self.initializer_range!r}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ConfigError(f"pad_token_id {self.pad_token_id} is not an id of the vocabulary (0..{self.vocab_size - 1})")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads {self.num_attention_heads}")
        if self.hidden_act not in ("gelu", "gelu_new", "relu"):
            raise ConfigError(f"hidden_act {self.hidden_act!r} is not supported (gelu, gelu_new, relu)")
        n = self.num_parameters()
        if n > MAX_PARAMETERS:
            raise ConfigError(f"this config has {n / 1e9:.1f}B backbone parameters (hidden_size {self.hidden_size}, "
                              f"num_hidden_layers {self.num_hidden_layers}, intermediate_size "
                              f"{self.intermediate_size}, vocab_size {self.vocab_size}); more than "
                              f"{MAX_PARAMETERS / 1e9:.0f}B is refused as a mistake")

    # --- dict / json ---------------------------------------------------------------------
    @classmethod
    def fields(cls):
        return [f.name for f in dataclasses.fields(cls) if f.name != "extra"]

    def to_dict(self) -> Dict:
        d = dict(self.extra)
        d.update({k: getattr(self, k) for k in self.fields()})
        d.setdefault("model_type", "electra")
        return dict(sorted(d.items()))

    @classmethod
    def from_dict(cls, d: Dict, source: str = "config", embedding_size: Optional[int] = None) -> "ElectraConfig":
        """Build from an HF-style dict. A missing `embedding_size` is taken from the
        `embedding_size` argument (inferred from checkpoint shapes by the caller) or rejected:
        HF's default (128) is silently wrong for base and large."""
        d = dict(d)
        if "embedding_size" not in d:
            if embedding_size is None:
                raise ConfigError(
                    f"{source}: field 'embedding_size' is missing. ELECTRA's embedding width differs from "
                    f"hidden_size for small models (128 vs 256); add it to the config, or convert from a "
                    f"checkpoint so it can be read off the word_embeddings shape.")
            d["embedding_size"] = embedding_size
        known = {k: d.pop(k) for k in cls.fields() if k in d}
        for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
            if k not in known:
                raise ConfigError(f"{source}: required field {k!r} is missing")
        for k, v in known.items():
            want = type(getattr(cls(), k))
            if want is float and isinstance(v, int):
                v = float(v)
            if not isinstance(v, want) or isinstance(v, bool):
                raise ConfigError(f"{source}: field {k!r} should be {want.__name__}, got {v!r}")
            known[k] = v
        try:
            return cls(**known, extra=d)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None

    @classmethod
    def from_json_file(cls, path: str, embedding_size: Optional[int] = None) -> "ElectraConfig":
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        return cls.from_dict(d, source=path, embedding_size=embedding_size)

    def to_json_file(self, path: str):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, ensure_ascii=False)
            f.write("\n")

    def replace(self, **kw) -> "ElectraConfig":
        return dataclasses.replace(self, **kw)

    def num_parameters(self, with_embeddings=True) -> int:
        """Parameter count of the backbone (ElectraModel), computed from the shapes."""
        E, H, I, L = self.embedding_size, self.hidden_size, self.intermediate_size, self.num_hidden_layers
        emb = (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) * E + 2 * E
        proj = E * H + H if E != H else 0
        layer = 4 * (H * H + H) + 2 * H + (H * I + I) + (I * H + H) + 2 * H
        return (emb if with_embeddings else 0) + proj + L * layer


def generator_config_for(disc: ElectraConfig, generator_hidden_size: int) -> ElectraConfig:
    """The original's generator: same depth and embedding width, hidden G, heads max(1, G/64), FFN 4G."""
    G = generator_hidden_size
    return disc.replace(hidden_size=G, num_attention_heads=max(1, G // 64), intermediate_size=4 * G,
                        extra={})


@dataclass(frozen=True)
class Variant:
    name: str                     # e.g. chinese-electra-180g-small
    discriminator: ElectraConfig
    generator: ElectraConfig
    hf_discriminator: str         # HF repo id
    hf_generator: str
    tf_zip: Optional[str]         # file name of the released TF checkpoint zip, where HFL publishes it
    size: str                     # small / small-ex / base / large


_SHAPES = {  # size: layers, H, heads, FFN, E, generator hidden G, TF zip shape suffix
    "small": (12, 256, 4, 1024, 128, 64, "L-12_H-256_A-4"),
    "small-ex": (24, 256, 4, 1024, 256, 64, "L-24_H-256_A-4"),
    "base": (12, 768, 12, 3072, 768, 192, "L-12_H-768_A-12"),
    "large": (24, 1024, 16, 4096, 1024, 256, "L-24_H-1024_A-16"),
}


def _build_registry() -> Dict[str, Variant]:
    reg = {}
    families = [("chinese-electra", "chinese_electra", ("small", "small-ex", "base", "large")),
                ("chinese-electra-180g", "chinese_electra_180g", ("small", "small-ex", "base", "large")),
                ("chinese-legal-electra", "chinese_legal_electra", ("small", "base", "large"))]
    for prefix, zip_prefix, sizes in families:
        for size in sizes:
            L, H, A, I, E, G, suffix = _SHAPES[size]
            disc = ElectraConfig(embedding_size=E, hidden_size=H, num_hidden_layers=L,
                                 num_attention_heads=A, intermediate_size=I)
            name = f"{prefix}-{size}"
            reg[name] = Variant(
                name=name, discriminator=disc, generator=generator_config_for(disc, G),
                hf_discriminator=f"hfl/{name}-discriminator", hf_generator=f"hfl/{name}-generator",
                # HFL's README names the zips of the first release only; the 180g and legal ones are
                # shared as Drive/Baidu links whose file names it does not give.
                tf_zip=f"{zip_prefix}_{size.replace('-', '_')}_{suffix}.zip" if prefix == "chinese-electra" else None,
                size=size)
    return reg


VARIANTS: Dict[str, Variant] = _build_registry()


def get_variant(name: str) -> Variant:
    # accept the HF repo spelling too: hfl/chinese-electra-small-discriminator
    key = name.split("/")[-1]
    for suffix in ("-discriminator", "-generator"):
        if key.endswith(suffix):
            key = key[: -len(suffix)]
    if key not in VARIANTS:
        raise KeyError(f"unknown variant {name!r}; registered: {', '.join(VARIANTS)}")
    return VARIANTS[key]
