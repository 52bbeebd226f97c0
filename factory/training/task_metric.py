"""The task's own metric during training: dev rows answered through the label trie with transformers, as the
served runtime answers them through llama.cpp, so the checkpoint kept is the one that serves best."""
from __future__ import annotations

from transformers import TrainerCallback


def constrained_answers(model, tokenizer, prompts: list[list[int]], sequences: dict[str, tuple[int, ...]]) -> list[str]:
    """Greedy decoding restricted to the answers' token sequences, a forward pass only where answers branch (the same
    walk as factory.runtime.classifier, on a transformers model and its KV cache)."""
    import torch

    answers = []
    with torch.inference_mode():
        for ids in prompts:
            out = model(input_ids=torch.tensor([ids], device=model.device), use_cache=True)
            candidates, depth = dict(sequences), 0
            while len(candidates) > 1:
                logits = out.logits[0, -1]
                best = max({s[depth] for s in candidates.values() if len(s) > depth}, key=lambda t: float(logits[t]))
                candidates = {a: s for a, s in candidates.items() if len(s) > depth and s[depth] == best}
                start, depth = depth, depth + 1
                if len(candidates) > 1:
                    while all(len(s) > depth for s in candidates.values()) and len({s[depth] for s in candidates.values()}) == 1:
                        depth += 1
                    feed = next(iter(candidates.values()))[start:depth]
                    out = model(input_ids=torch.tensor([list(feed)], device=model.device),
                                past_key_values=out.past_key_values, use_cache=True)
            answers.append(next(iter(candidates)))
    return answers


class DevMetric(TrainerCallback):
    """At every evaluation: dev macro-F1 through the constrained path, added as `eval_dev_macro_f1` for early stopping
    and the best checkpoint, and written to the log history."""

    def __init__(self, task, rows: list[dict], tokenizer):
        contract = task.build_contract()
        eos = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
        self.contract, self.targets = contract, [r["target"] for r in rows]
        self.sequences = {answer: tuple(tokenizer(answer, add_special_tokens=False)["input_ids"]) + (eos,)
                          for answer in (contract.render(label) for label in contract.labels)}
        self.prompts = [tokenizer.apply_chat_template(task.messages(r["text"]), add_generation_prompt=True, tokenize=True,
                                                      return_dict=True)["input_ids"] for r in rows]
        self.tokenizer = tokenizer

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        was_training = model.training
        model.eval()
        answers = constrained_answers(model, self.tokenizer, self.prompts, self.sequences)
        if was_training:
            model.train()
        score = self.contract.metrics(self.targets, [self.contract.parse_answer(a) for a in answers])["macro_f1"]
        metrics["eval_dev_macro_f1"] = score
        state.log_history.append({"step": state.global_step, "epoch": state.epoch, "eval_dev_macro_f1": score})
