"""paddle-electra: Chinese ELECTRA (HFL's released models) for PaddlePaddle dygraph.

GPU users: install `paddlepaddle-gpu` first (see paddlepaddle.org.cn for the CUDA
build that matches your driver); when it is present this package does not ask
for the CPU `paddlepaddle` wheel.
"""
import os
from importlib import metadata

from setuptools import find_packages, setup


def _paddle_requirement():
    # paddlepaddle and paddlepaddle-gpu provide the same `paddle` module; asking
    # for the CPU wheel on a GPU machine would install a second, clashing copy.
    try:
        metadata.version("paddlepaddle-gpu")
        return "paddlepaddle-gpu>=3.0"
    except metadata.PackageNotFoundError:
        return "paddlepaddle>=3.0,<3.4"


# 1.27+ needs protobuf>=4.25, which paddlehub 2.4's pin (<3.21) excludes
ONNXRUNTIME = "onnxruntime>=1.16,<1.27"
HUB = [
    "paddlehub==2.4.0",
    "paddlenlp==2.8.1",
    # the pins paddlehub 2.4 / paddlenlp 2.8 need on Python 3.11
    "protobuf>=3.20,<3.21",
    "huggingface_hub<0.26",
    "aistudio-sdk<0.2",
    # paddlenlp imports `datasets` (needs pyarrow>=21); pyarrow 23+ refuses numpy 1.x
    "pyarrow>=21,<23",
    # paddlehub asks for any gradio; without a pin pip backtracks through ~100 releases (~6 GB of
    # downloads) to the newest one that agrees with huggingface_hub<0.26. 5.x needs Python 3.10+.
    "gradio==5.1.0; python_version>='3.10'",
    # engine="auto" on CPU measures Paddle Inference against ONNX Runtime on our ONNX export (paddle2onnx comes
    # with paddlehub) and keeps the faster (docs/inference.md)
    ONNXRUNTIME,
    # what ONNX Runtime's own Python modules import and its wheel does not bring (1.26): the transformers
    # optimizer (the attention fusion) imports sympy, the quantizer (precision="int8") ml_dtypes
    "sympy>=1.12",
    "ml_dtypes>=0.3.1",
    # the third engine "auto" measures (fp32 and bf16, on the same ONNX graph); where it wins and what it adds
    # to the install: docs/inference.md
    "openvino>=2025.0,<2027",
    # `serve`'s HTTP server, in one process and in each gunicorn worker (paddle_electra/serving.py): one
    # event loop receives the requests, whole ones go to threads, so idle and slow clients hold none
    "waitress>=3.0,<4",
]
TEST = [
    "pytest>=7",
    "pytest-timeout",
    "hypothesis>=6.100",  # the fuzz / property suites
    # reference stack for the parity tests (TF checkpoints, HF transformers 4.x)
    "tensorflow-cpu>=2.15,<2.16",
    "torch==2.13.0",  # pip takes the CPU build of exactly this version from local disk here
    "transformers>=4.30,<5",
    # the ONNX export test (tests/test_inference_onnx.py)
    ONNXRUNTIME,
]
# the peers the benchmarks measure against in the same run
# (ONNX Runtime, with its transformers optimizer, comes with HUB)
BENCH = HUB + ["torch==2.13.0", "transformers>=4.30,<5", "matplotlib"]

def _shared_files():
    """The demo's sample and the PaddleHub module sources, installed under <prefix>/share/paddle-electra
    so that `paddle-electra demo` runs from an installed package (paddle_electra/demo.py finds them)."""
    out = {}
    for top in ("demo_data", "hub_modules"):
        for folder, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            if files:
                out[os.path.join("share", "paddle-electra", folder)] = [os.path.join(folder, f) for f in sorted(files)]
    return sorted(out.items())


setup(
    name="paddle-electra",
    version="0.1.0",
    description="Chinese ELECTRA (HFL) for PaddlePaddle: exact model, converters, RTD pretraining, fine-tuning, PaddleHub modules",
    long_description=open("README.md", encoding="utf-8").read() if os.path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["paddle_electra", "paddle_electra.*"]),
    package_data={"paddle_electra": ["vocab.txt", "csrc/*.cc"]},
    include_package_data=True,
    data_files=_shared_files(),
    install_requires=[
        _paddle_requirement(),
        "numpy>=1.21,<2",
        "safetensors>=0.4",
        "crc32c>=2.3",  # checks TF checkpoint bytes (conversion.tf_checkpoint) without TensorFlow
        "tokenizers>=0.15",
        "tqdm>=4.60",
        "visualdl>=2.5",
        "psutil>=5.8",  # the pretraining trainer finds the network interface of the launcher's address
        # fine-tuning metrics: NER chunk F1, and the CMRC 2018 scorer's word tokenizer (no data download)
        "seqeval>=1.2",
        "nltk>=3.8",
    ],
    extras_require={"hub": HUB, "test": TEST, "bench": BENCH},
    entry_points={"console_scripts": ["paddle-electra=paddle_electra.cli:main"]},
    license="Apache-2.0",
)
