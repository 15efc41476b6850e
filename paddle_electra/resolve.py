"""Names -> folders, the top of the loading stack: a folder as is; a registered variant name (or its
HF repo id) from $PADDLE_ELECTRA_HOME/<name>, downloading and converting HFL's HF weights there when
the network allows; else an error saying what to do.

paddle_electra/__init__.py registers `resolve` as the resolver of every model's from_pretrained
(modeling_utils.set_resolver), so the loading base class needs no import of this layer.
"""
from __future__ import annotations

import os

from .config import CONFIG_NAME, get_variant
from .io import package_home


def resolve(name_or_path: str, download: bool = True) -> str:
    if os.path.isdir(name_or_path):
        return name_or_path
    try:
        variant = get_variant(name_or_path)
    except KeyError:
        raise FileNotFoundError(
            f"{name_or_path!r} is neither a folder nor a registered variant "
            f"(see `paddle-electra list`)") from None
    local = os.path.join(package_home(), variant.name)
    if os.path.exists(os.path.join(local, CONFIG_NAME)):
        return local
    errors = []
    if download:
        # here, not at the top: the downloader brings the converters, which import paddle and the models
        from .hf_download import download_variant
        try:
            return download_variant(variant, local)
        except OSError as e:
            errors.append(str(e))
    raise FileNotFoundError(
        f"weights for {variant.name} are not at {local}"
        + (f" and could not be downloaded ({errors[0]})" if errors else "") + ".\n"
        f"Convert the released checkpoint there, either the TF checkpoint ({variant.tf_zip or 'from HFL'}):\n"
        f"  paddle-electra convert tf --checkpoint <unzipped folder> --model {variant.name} --output {local}\n"
        f"or the HF repos {variant.hf_discriminator} / {variant.hf_generator}:\n"
        f"  paddle-electra convert hf --input <discriminator folder> --generator <generator folder> --output {local}\n"
        f"(or set PADDLE_ELECTRA_HOME to the folder that holds {variant.name}/).")

