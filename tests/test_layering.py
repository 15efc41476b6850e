"""The import graph of paddle_electra: no cycle (function-level imports included), the loading stack
in its layers (io <- modeling_utils <- modeling, heads <- conversion <- resolve, hf_download), the
inference package in the order of its pipeline, and the lowest layer importable without paddle."""
import ast
import os
import subprocess
import sys

PKG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "paddle_electra")


def _modules():
    mods = {}
    for dirpath, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(dirpath, f), os.path.dirname(PKG))[:-3].replace(os.sep, ".")
                mods[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = os.path.join(dirpath, f)
    return mods


def _imports(name, path, mods):
    """{imported paddle_electra module: 'top' | 'function'} for one module."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
    top_level = {id(n) for n in tree.body} | {id(n) for s in tree.body if isinstance(s, (ast.If, ast.Try))
                                               for n in ast.walk(s)}
    out = {}
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
        for t in targets:
            while t and t not in mods:
                t = t.rpartition(".")[0]
            if t and t != name and t != "paddle_electra":  # a package's __init__ runs first anyway
                where = "top" if id(node) in top_level else "function"
                if out.get(t) != "top":
                    out[t] = where
    return out


def _graph():
    mods = _modules()
    return {m: _imports(m, p, mods) for m, p in mods.items()}


def _cycle(graph):
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in graph.get(m, {}):
            if state.get(t) == "open":
                return stack[stack.index(t):] + [t]
            if t not in state:
                found = visit(t)
                if found:
                    return found
        state[m] = "done"
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_no_import_cycle():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b": "top"}, "b": {"c": "function"}, "c": {"a": "top"}}) == ["a", "b", "c", "a"]


def test_loading_stack_layers():
    graph = _graph()
    layers = [["paddle_electra.config"], ["paddle_electra.io", "paddle_electra.io.torch_pickle"],
              ["paddle_electra.modeling_utils"], ["paddle_electra.modeling", "paddle_electra.heads"],
              [m for m in graph if m.startswith("paddle_electra.conversion.")],
              ["paddle_electra.resolve", "paddle_electra.hf_download"]]
    rank = {m: i for i, layer in enumerate(layers) for m in layer}
    wrong = [f"{m} imports {t}" for m in rank for t in graph[m] if t in rank and rank[t] > rank[m]]
    assert not wrong, wrong


def test_io_layer_imports_no_paddle_and_no_model():
    code = ("import sys, paddle_electra.io, paddle_electra.io.torch_pickle, paddle_electra.resolve; "
            "print(sorted(m for m in sys.modules if m == 'paddle' or m.startswith(('paddle_electra.modeling', "
            "'paddle_electra.heads', 'paddle_electra.conversion'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['paddle_electra.modeling_utils']"


def _in(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_task_layer():
    """batching <- tasks (the task specs with their decode and metrics: the package paddle_electra.tasks)
    <- inference, finetuning, hub, serving, pipeline: a spec knows none of its consumers (tasks imports
    nothing of finetuning), and each consumer dispatches through the specs."""
    graph = _graph()
    tasks = [m for m in graph if _in(m, "paddle_electra.tasks")]
    assert {"paddle_electra.tasks", "paddle_electra.tasks.qa", "paddle_electra.tasks.metrics"} <= set(tasks)
    assert "paddle_electra.finetuning.qa" not in graph and "paddle_electra.finetuning.metrics" not in graph
    consumers = ("paddle_electra.inference", "paddle_electra.hub", "paddle_electra.serving", "paddle_electra.finetuning",
                 "paddle_electra.pipeline", "paddle_electra.deploy", "paddle_electra.batch_predict",
                 "paddle_electra.pretraining")
    wrong = [f"{m} imports {t}" for m in tasks for t in graph[m] if _in(t, *consumers)]
    assert not wrong, wrong  # in particular: tasks does not import finetuning
    assert graph["paddle_electra.batching"] == {}
    for m in ("paddle_electra.inference.static_export", "paddle_electra.inference.predictor", "paddle_electra.hub",
              "paddle_electra.finetuning.tasks",
              "paddle_electra.finetuning.trainer", "paddle_electra.pipeline"):
        assert any(_in(t, "paddle_electra.tasks") for t in graph[m]), m


INFERENCE_LAYERS = [["cache"], ["static_export"], ["rewrites"], ["paddle", "onnxruntime", "openvino", "choice"],
                    ["predictor"]]


def test_inference_pipeline_layers():
    """The inference package in the order of its pipeline: the cache folder <- the export <- the ONNX
    rewrites <- the engines and the choice <- the predictor (the package's __init__ loads the rest on
    first use); nothing below it (the model, the tasks) imports any of it."""
    graph = _graph()
    package = "paddle_electra.inference"
    rank = {f"{package}.{m}": i for i, layer in enumerate(INFERENCE_LAYERS) for m in layer}
    assert set(rank) == {m for m in graph if m.startswith(package + ".")}, "a module missing from INFERENCE_LAYERS"
    wrong = [f"{m} imports {t}" for m in rank for t in graph[m] if t in rank and rank[t] > rank[m]]
    assert not wrong, wrong
    assert set(graph[package]) <= {f"{package}.cache", f"{package}.choice"}, graph[package]
    below = ["paddle_electra.config", "paddle_electra.io", "paddle_electra.modeling_utils", "paddle_electra.modeling",
             "paddle_electra.heads", "paddle_electra.fast_cpu", "paddle_electra.cpu_kernels", "paddle_electra.batching",
             "paddle_electra.resolve", *(m for m in graph if _in(m, "paddle_electra.tasks"))]
    wrong = [f"{m} imports {t}" for m in below for t in graph[m] if t.startswith(package)]
    assert not wrong, wrong


def test_inference_package_imports_no_paddle():
    """The CLI's parsers read ENGINES and PRECISIONS: importing the package loads cache.py and choice.py only."""
    code = ("import sys, paddle_electra.inference as i; i.ENGINES, i.PRECISIONS, i.choose_engine; "
            "print(sorted(m for m in sys.modules if m == 'paddle' or m.startswith('paddle_electra.inference.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['paddle_electra.inference.cache', 'paddle_electra.inference.choice']"


def test_hub_and_serving_layers():
    """hub reads its data through tasks (not finetuning); serving's request handling knows modules by the
    interface it defines (ServedModule), not by importing the hub (nor by duck typing)."""
    graph = _graph()
    hub = [m for m in graph if _in(m, "paddle_electra.hub")]
    serving = [m for m in graph if _in(m, "paddle_electra.serving")]
    assert {"paddle_electra.hub", "paddle_electra.hub.tasks", "paddle_electra.hub.data"} <= set(hub)
    assert {"paddle_electra.serving", "paddle_electra.serving.app", "paddle_electra.serving.server"} <= set(serving)
    wrong = [f"{m} imports {t}" for m in hub for t in graph[m] if _in(t, "paddle_electra.finetuning")]
    wrong += [f"{m} imports {t}" for m in serving for t in graph[m] if _in(t, "paddle_electra.hub")]
    assert not wrong, wrong
    assert "paddle_electra.serving.app" in graph["paddle_electra.hub"]
