"""The task layer's typed options (an unknown option is an error, not ignored) and the one name of the QA
head's mode (the original's `joint_prediction` read from an hparams file for one release)."""
import logging

import pytest

from paddle_electra.finetuning.config import FinetuneConfig, HparamsError
from paddle_electra.tasks import QAOptions, TaggingOptions, get_spec


def test_an_unknown_option_is_an_error_naming_it_and_the_known_ones():
    with pytest.raises(TypeError, match=r"task 'token-cls' has no option 'sufix' \(did you mean 'suffix'\?\); "
                                        r"its options: split_char, suffix, ignore_label"):
        get_spec("token-cls").options(sufix=True)
    with pytest.raises(TypeError, match="task 'seq-cls' has no option 'split_char'; its options: none"):
        get_spec("seq-cls").options(split_char="/")
    assert get_spec("reading-comprehension").options(doc_stride=32) == QAOptions(doc_stride=32)


def test_a_spec_refuses_the_options_of_another_kind():
    spec = get_spec("reading-comprehension")
    with pytest.raises(TypeError, match="takes QAOptions, got TaggingOptions"):
        spec.model_kwargs(options=TaggingOptions())
    assert spec.model_kwargs() == {}  # no head setting given: a fine-tuned folder keeps its own
    assert spec.model_kwargs(options=spec.options(simple=True)) == {"simple": True}


def test_qa_head_mode_hparam_and_the_old_name(caplog):
    assert FinetuneConfig().qa_simple is False  # the original's joint head
    with caplog.at_level(logging.WARNING, logger="paddle_electra.finetuning.config"):
        c = FinetuneConfig.from_dict({"joint_prediction": False}, source="params.json")
    assert c.qa_simple is True and "joint_prediction" in caplog.text and "qa_simple" in caplog.text
    with pytest.raises(HparamsError, match="same hparam"):
        FinetuneConfig.from_dict({"joint_prediction": True, "qa_simple": False})
    with pytest.raises(TypeError):  # code says qa_simple
        FinetuneConfig(joint_prediction=True)
