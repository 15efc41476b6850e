"""Download HFL's released weights from the Hugging Face hub and convert them in place.

`resolve.resolve("chinese-electra-small")` calls `download_variant` when
$PADDLE_ELECTRA_HOME/chinese-electra-small is absent. Files come from
`{HF_ENDPOINT}/{repo}/resolve/main/{file}` (HF_ENDPOINT defaults to https://huggingface.co; point it
at a mirror if needed) into a temporary folder beside the target, are converted by
conversion.hf.convert_hf (a `.bin` goes through the restricted unpickler, never plain pickle), and
the target appears in one rename. Any network failure raises OSError naming the URL.
"""
from __future__ import annotations

import http.client
import os
import shutil
import socket
import tempfile
import urllib.error
import urllib.request
import warnings

from tqdm import tqdm

from .conversion.hf import HF_BIN, HF_SAFETENSORS, convert_hf

DEFAULT_ENDPOINT = "https://huggingface.co"
CHUNK = 1 << 20


class NotOnHub(OSError):
    """The server answered 404 for this file."""


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")


def _timeout() -> float:
    return float(os.environ.get("PADDLE_ELECTRA_DOWNLOAD_TIMEOUT", "60"))


def fetch(url: str, dest: str):
    """Stream `url` to `dest` with a progress bar; OSError (NotOnHub for 404) on any failure."""
    req = urllib.request.Request(url, headers={"User-Agent": "paddle-electra"})
    try:
        with urllib.request.urlopen(req, timeout=_timeout()) as resp:
            total = resp.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            done = 0
            with open(dest + ".part", "wb") as f, tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                                                       desc=url.rsplit("/", 1)[-1], leave=False) as bar:
                while True:
                    chunk = resp.read(CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
                    done += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        # HF answers 401 + RepoNotFound (not 404) for a repo that does not exist
        code = e.headers.get("X-Error-Code") if e.headers else None
        if e.code == 404 or code in ("RepoNotFound", "EntryNotFound"):
            raise NotOnHub(f"{url}: not found (HTTP {e.code}{' ' + code if code else ''})") from None
        raise OSError(f"{url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise OSError(f"{url}: {e.reason}") from None
    except http.client.HTTPException as e:  # e.g. IncompleteRead, a malformed answer
        raise OSError(f"{url}: {type(e).__name__}: {e}") from None
    except (socket.timeout, TimeoutError):
        raise OSError(f"{url}: timed out after {_timeout():g} s (PADDLE_ELECTRA_DOWNLOAD_TIMEOUT)") from None
    except OSError as e:  # connection reset mid-transfer, disk full, ...
        raise OSError(f"{url}: {e}") from None
    if total is not None and done != total:
        raise OSError(f"{url}: download ended after {done} of {total} bytes")
    os.replace(dest + ".part", dest)


def fetch_repo(repo: str, folder: str, with_vocab: bool = False) -> str:
    """config.json, then model.safetensors or (on 404) pytorch_model.bin of an HF repo into `folder`."""
    os.makedirs(folder, exist_ok=True)
    base = f"{endpoint()}/{repo}/resolve/main"
    fetch(f"{base}/config.json", os.path.join(folder, "config.json"))
    try:
        fetch(f"{base}/{HF_SAFETENSORS}", os.path.join(folder, HF_SAFETENSORS))
    except NotOnHub:
        try:
            fetch(f"{base}/{HF_BIN}", os.path.join(folder, HF_BIN))
        except NotOnHub:
            raise NotOnHub(f"{base}: neither {HF_SAFETENSORS} nor {HF_BIN} found") from None
    if with_vocab:
        try:
            fetch(f"{base}/vocab.txt", os.path.join(folder, "vocab.txt"))
        except NotOnHub:
            pass  # the bundled vocab is used
    return folder


def download_variant(variant, local_dir: str) -> str:
    """Download `variant`'s HF discriminator and generator and write a pretraining dir at `local_dir`
    (discriminator only, with a warning, when the generator repo is missing)."""
    local_dir = os.path.abspath(local_dir)
    parent = os.path.dirname(local_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(local_dir)}.download-", dir=parent)
    try:
        disc = fetch_repo(variant.hf_discriminator, os.path.join(tmp, "discriminator"), with_vocab=True)
        try:
            gen = fetch_repo(variant.hf_generator, os.path.join(tmp, "generator"))
        except NotOnHub as e:
            warnings.warn(f"{variant.hf_generator} not found ({e}); {local_dir} gets the discriminator only")
            gen = None
        return convert_hf(disc, local_dir, generator_dir=gen)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
