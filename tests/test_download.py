"""from_pretrained("chinese-electra-small") downloading HF repos from a local HTTP server (HF_ENDPOINT)."""
import http.server
import os
import socket
import threading

import numpy as np
import pytest

from paddle_electra.io import CheckpointError

DISC_REPO = "hfl/chinese-electra-small-discriminator"
GEN_REPO = "hfl/chinese-electra-small-generator"


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    """Tiny random HF discriminator (saved as safetensors) and generator (pytorch_model.bin)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    common = dict(vocab_size=300, embedding_size=32, num_hidden_layers=1, max_position_embeddings=32)
    disc = transformers.ElectraForPreTraining(transformers.ElectraConfig(
        hidden_size=64, num_attention_heads=2, intermediate_size=128, **common)).eval()
    gen = transformers.ElectraForMaskedLM(transformers.ElectraConfig(
        hidden_size=16, num_attention_heads=1, intermediate_size=64, **common)).eval()
    gen.electra.embeddings.load_state_dict(disc.electra.embeddings.state_dict())
    root = tmp_path_factory.mktemp("hub")
    disc.save_pretrained(root / DISC_REPO, safe_serialization=True)
    gen.save_pretrained(root / GEN_REPO, safe_serialization=False)
    ids = np.array([[1, 5, 9, 200, 7, 2], [1, 8, 3, 2, 0, 0]])
    mask = (ids != 0).astype("int64")
    with torch.no_grad():
        t = dict(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
        ref = dict(disc=disc(**t).logits.numpy(), gen=gen(**t).logits.numpy())
    return dict(root=root, ids=ids, mask=mask, ref=ref)


class _Server:
    """Serves `root` as an HF hub: GET /{repo}/resolve/main/{file}; weights go through a redirect
    (as HF's CDN does). `hide` lists repo-relative paths to answer 404 for."""

    def __init__(self, root):
        self.root, self.hide, self.gone_repos, self.requests = root, set(), set(), []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                path = self.path
                if path.startswith("/cdn/"):
                    path = path[len("/cdn"):]
                elif path.endswith((".safetensors", ".bin")):
                    self.send_response(302)
                    self.send_header("Location", "/cdn" + path)
                    self.end_headers()
                    return
                rel = path.lstrip("/").replace("/resolve/main/", "/")
                f = os.path.join(server.root, rel)
                if rel.rsplit("/", 1)[0] in server.gone_repos:
                    self.send_response(401)  # what HF answers for a repo that does not exist
                    self.send_header("X-Error-Code", "RepoNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if rel in server.hide or not os.path.isfile(f):
                    self.send_error(404)
                    return
                data = open(f, "rb").read()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hub(repos, monkeypatch):
    server = _Server(str(repos["root"]))
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    yield server
    server.close()


def _home_entries():
    home = os.environ["PADDLE_ELECTRA_HOME"]
    return sorted(os.listdir(home)) if os.path.isdir(home) else []


def test_download_convert_and_load(repos, hub):
    import paddle
    from paddle_electra.modeling import ElectraDiscriminator, ElectraForPreTraining, ElectraGenerator
    model = ElectraDiscriminator.from_pretrained("chinese-electra-small").eval()
    x = dict(input_ids=paddle.to_tensor(repos["ids"]), attention_mask=paddle.to_tensor(repos["mask"]))
    assert np.max(np.abs(model(**x).numpy() - repos["ref"]["disc"])) < 1e-5
    # both HF formats were fetched: safetensors for the discriminator, .bin after a 404 for the generator
    assert f"/{DISC_REPO}/resolve/main/model.safetensors" in hub.requests
    assert f"/{GEN_REPO}/resolve/main/model.safetensors" in hub.requests
    assert f"/cdn/{GEN_REPO}/resolve/main/pytorch_model.bin" in hub.requests
    assert _home_entries() == ["chinese-electra-small"]
    assert sorted(os.listdir(os.path.join(os.environ["PADDLE_ELECTRA_HOME"], "chinese-electra-small"))) == [
        "README.md", "config.json", "generator.safetensors", "generator_config.json", "model.safetensors", "vocab.txt"]
    n = len(hub.requests)
    gen = ElectraGenerator.from_pretrained("hfl/chinese-electra-small-generator").eval()  # HF spelling works too
    assert np.max(np.abs(gen(**x).numpy() - repos["ref"]["gen"])) < 1e-5
    ElectraForPreTraining.from_pretrained("chinese-electra-small")
    assert len(hub.requests) == n  # found on disk: no second download


@pytest.mark.parametrize("how", ["404", "401 RepoNotFound"])
def test_missing_generator_gives_discriminator_only(repos, hub, how):
    from paddle_electra.modeling import ElectraDiscriminator, ElectraForPreTraining
    if how == "404":
        hub.hide.add(f"{GEN_REPO}/config.json")
    else:
        hub.gone_repos.add(GEN_REPO)
    with pytest.warns(UserWarning, match="discriminator only"):
        ElectraDiscriminator.from_pretrained("chinese-electra-small")
    with pytest.raises(CheckpointError, match="holds no generator"):
        ElectraForPreTraining.from_pretrained("chinese-electra-small")


def _closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unreachable_endpoint_gives_instructions(monkeypatch):
    from paddle_electra.modeling import ElectraDiscriminator
    url = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("HF_ENDPOINT", url)
    with pytest.raises(FileNotFoundError) as e:
        ElectraDiscriminator.from_pretrained("chinese-electra-small")
    msg = str(e.value)
    assert url in msg and "paddle-electra convert tf" in msg and "paddle-electra convert hf" in msg
    assert _home_entries() == []


def test_missing_weights_and_truncated_transfer_leave_nothing(repos, hub):
    from paddle_electra.modeling import ElectraDiscriminator
    hub.hide.add(f"{DISC_REPO}/model.safetensors")  # and there is no .bin for it
    with pytest.raises(FileNotFoundError, match="neither model.safetensors nor pytorch_model.bin"):
        ElectraDiscriminator.from_pretrained("chinese-electra-small")
    assert _home_entries() == []
    hub.hide.clear()
    # a server that promises more bytes than it sends
    real = os.path.join(repos["root"], DISC_REPO, "model.safetensors")
    handler = hub.httpd.RequestHandlerClass
    original = handler.do_GET

    def short(self):
        if self.path.endswith(f"{DISC_REPO}/resolve/main/model.safetensors"):
            data = open(real, "rb").read()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data) + 100))
            self.end_headers()
            self.wfile.write(data)
            self.close_connection = True
            return
        original(self)

    monkeypatch_target = handler
    monkeypatch_target.do_GET = short
    try:
        with pytest.raises(FileNotFoundError, match="ended after"):
            ElectraDiscriminator.from_pretrained("chinese-electra-small")
    finally:
        monkeypatch_target.do_GET = original
    assert _home_entries() == []
