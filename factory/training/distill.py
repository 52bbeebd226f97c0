"""Distillation of the embedding classifier into the fine-tune: at the answer's first token, the model is also taught
MiniLM + LR's out-of-fold probabilities over the labels, which carry how alike the labels are, not only which is right."""
from __future__ import annotations

from pathlib import Path

from factory.lib.files import read_jsonl

SOFT_TARGETS = "soft_targets"


def label_first_tokens(tokenizer, contract) -> list[int]:
    """The first token id of each label's answer, in the contract's label order; they must differ, since the soft
    target is a distribution over them."""
    ids = [tokenizer(contract.render(label), add_special_tokens=False)["input_ids"][0] for label in contract.labels]
    shared = sorted({label for label, i in zip(contract.labels, ids) if ids.count(i) > 1})
    if shared:
        raise ValueError(f"distillation needs answers whose first tokens differ; {', '.join(shared)} share theirs "
                         "(give them distinct first words: `factory task import --distinct-first-words` or `answers`)")
    return ids


def read_soft_targets(path: str | Path, labels: list[str]) -> dict[str, list[float]]:
    """Row id -> probabilities in `labels` order, from the JSONL the training asset writes ({id, probabilities})."""
    return {row["id"]: [float(row["probabilities"].get(label, 0.0)) for label in labels] for row in read_jsonl(path)}


class SoftTargetCollator:
    """TRL's collator for everything else; the rows' soft targets stacked beside, when every row has one."""

    def __init__(self, base):
        self.base = base

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        soft = [example.get(SOFT_TARGETS) for example in examples]
        batch = self.base([{k: v for k, v in example.items() if k != SOFT_TARGETS} for example in examples])
        if all(s is not None for s in soft):
            batch[SOFT_TARGETS] = torch.tensor(soft, dtype=torch.float32)
        return batch


def distilling(trainer_class):
    """A subclass of TRL's SFTTrainer whose training loss is (1 - w) x its own answer loss + w x the cross-entropy
    between the soft targets and the model's distribution over the labels' first tokens."""
    import torch

    class DistillingSFTTrainer(trainer_class):
        def __init__(self, *args, label_token_ids: list[int], distill_weight: float, **kwargs):
            super().__init__(*args, **kwargs)
            self.label_token_ids = torch.tensor(label_token_ids)
            self.distill_weight = distill_weight
            self.data_collator = SoftTargetCollator(self.data_collator)

        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()
            if SOFT_TARGETS not in self._signature_columns:
                self._signature_columns = [*self._signature_columns, SOFT_TARGETS]

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            soft = inputs.pop(SOFT_TARGETS, None)
            if soft is None:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            captured = {}
            # The hidden states of TRL's own forward (its fused head returns only the answer's log-probabilities).
            hook = model.get_decoder().register_forward_hook(lambda module, args, out: captured.update(hidden=out[0]))
            try:
                result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            finally:
                hook.remove()
            rows = torch.arange(soft.shape[0])
            before_answer = (inputs["labels"] != -100).int().argmax(dim=1) - 1  # the position predicting the answer
            head = model.get_output_embeddings()
            hidden = captured["hidden"][rows, before_answer].to(head.weight.device)
            logits = head(hidden)[:, self.label_token_ids.to(head.weight.device)].float()
            distill = -(soft.to(logits.device) * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
            if num_items_in_batch is not None:  # the answer loss is already a share of the accumulated batch
                distill = distill / self.args.gradient_accumulation_steps
            loss = (1 - self.distill_weight) * (result[0] if return_outputs else result) + self.distill_weight * distill
            return (loss, result[1]) if return_outputs else loss

    return DistillingSFTTrainer
