import torch
from safetensors.torch import load_file

from rsim_graph.strategies import StrategyLibrary
from rsim_graph.tasks.arith import ArithWorld
from rsim_graph.engine.tiny_models import build_tokenizer
from trainers.pretrain_tiny import IGNORE, example, pretrain


def test_pretraining_is_deterministic_from_its_seed(tmp_path):
    a = pretrain("reasoner-b", tmp_path / "a", steps=2, batch_size=4)
    b = pretrain("reasoner-b", tmp_path / "b", steps=2, batch_size=4)
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_loss_masks_the_question_and_injected_strategy_text():
    library = StrategyLibrary.default()
    tok = build_tokenizer(library)
    world = ArithWorld(split="train")
    prompt_tokens = {tok.convert_tokens_to_ids(library.render(s.id)) for s in library}
    for i in range(2, 5):  # injected traces (i % 8 >= 2)
        ids, labels = example(i, world, tok, library, 0.4)
        assert len(ids) == len(labels)
        assert all(lab == IGNORE for t, lab in zip(ids, labels, strict=True) if t in prompt_tokens)
        assert labels[0] == IGNORE and labels[-1] == tok.eos_token_id
