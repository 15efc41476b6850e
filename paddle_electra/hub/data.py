"""PaddleHub's data side of the module: the tokenizer PaddleHub's datasets accept (HubTokenizer) and the
training records of task reading-comprehension (ReadingComprehensionDataset, PaddleHub has none)."""
from __future__ import annotations

from typing import Optional

import numpy as np
import paddle
from paddlenlp.transformers import ElectraTokenizer as _PaddleNLPElectraTokenizer

from ..batching import pad
from ..tasks import get_spec, qa
from ..tasks.squad import read_squad
from ..tokenizer import ElectraTokenizer, bundled_vocab_path


class HubTokenizer(_PaddleNLPElectraTokenizer):
    """What `get_tokenizer()` returns: PaddleHub's datasets (ChnSentiCorp, MSRA_NER, LCQMC, ...) accept
    only PaddleNLP tokenizers, so this is one, but every word is split by paddle_electra's tokenizer
    (the original's FullTokenizer; PaddleNLP's ElectraTokenizer splits symbols differently)."""

    def __init__(self, vocab_file: Optional[str] = None, **kwargs):
        vocab_file = vocab_file or bundled_vocab_path()
        # lower-casing is done (after accent stripping, as the original) by the backend below;
        # PaddleNLP would otherwise lower-case before it
        super().__init__(vocab_file, do_lower_case=False, **kwargs)
        self.backend_tokenizer = ElectraTokenizer(vocab_file)

    def _tokenize(self, text, **kwargs):
        return self.backend_tokenizer.tokenize(text)


class ReadingComprehensionDataset(paddle.io.Dataset):
    """Training records for task reading-comprehension in the PaddleHub dataset style (PaddleHub has
    none): a SQuAD-format file (CMRC 2018, DRCD) or its parsed dict (read by tasks.squad.read_squad)
    -> one record per window, (input_ids, token_type_ids, start_position, end_position) padded to
    max_seq_len; positions 0 ([CLS]) when the window does not hold the answer, as the original.
    `tokenizer` is the module's get_tokenizer() (or a paddle_electra ElectraTokenizer)."""

    def __init__(self, squad, tokenizer, max_seq_len: int = 512, doc_stride: int = qa.DOC_STRIDE):
        tok = tokenizer.backend_tokenizer if isinstance(tokenizer, HubTokenizer) else tokenizer
        spec = get_spec("reading-comprehension")
        feats = spec.encode(tok, read_squad(squad), max_seq_len, is_training=True,
                            options=spec.options(doc_stride=doc_stride))
        self.records = [(pad([f.input_ids], 0, max_seq_len)[0], pad([f.token_type_ids], 0, max_seq_len)[0],
                         np.array(f.start_position, dtype="int64"), np.array(f.end_position, dtype="int64"))
                        for f in feats]

    def __getitem__(self, idx):
        return self.records[idx]

    def __len__(self):
        return len(self.records)
