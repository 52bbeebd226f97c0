"""The classify path on the real packaged GGUF: its label-trie decoding equals llama.cpp's own
grammar-constrained greedy decoding, and its free decoding equals llama.cpp's greedy chat completion."""
import json

import pytest

from factory.integrations.models import packaged_gguf
from factory.lib.task import load_task
from factory.serve.classifier import GGUFClassifier
from factory_tests.conftest import TINY_EVAL, TINY_SEEDS

TEXTS = [t for t, _ in TINY_EVAL["test"] + TINY_EVAL["dev"]] + [TINY_SEEDS["login"][0], TINY_SEEDS["billing"][3]]


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory):
    from factory_tests.conftest import make_tiny_task

    task = load_task(make_tiny_task(tmp_path_factory.mktemp("tasks")))
    gguf = str(packaged_gguf("smollm2-135m"))
    return task, GGUFClassifier(gguf, task), GGUFClassifier(gguf, task, constrained=False)


def test_trie_decoding_matches_llama_cpp_grammar_decoding(classifiers):
    from llama_cpp import LlamaGrammar

    task, constrained, _ = classifiers
    grammar = LlamaGrammar.from_string("root ::= " + " | ".join(json.dumps(label) for label in constrained.sequences),
                                       verbose=False)
    llm = constrained.llm
    for text in TEXTS:
        ours = constrained.classify(text)
        theirs = llm.create_chat_completion(task.messages(text), temperature=0.0, max_tokens=8, grammar=grammar)
        assert ours.label == theirs["choices"][0]["message"]["content"], text
        assert ours.label in {"billing", "shipping", "login"}


def test_free_decoding_matches_greedy_chat_completion(classifiers):
    task, _, free = classifiers
    for text in TEXTS:
        # From an empty cache both evaluate the prompt in one batch: the same floating-point sums.
        free.llm.reset()
        ours = free.classify(text)
        free.llm.reset()
        theirs = free.llm.create_chat_completion(task.messages(text), temperature=0.0, max_tokens=free.max_tokens)
        assert ours.answer == theirs["choices"][0]["message"]["content"], text


def test_answers_do_not_depend_on_the_previous_request(classifiers):
    task, constrained, _ = classifiers
    first = [constrained.classify(t).label for t in TEXTS]
    second = [constrained.classify(t).label for t in reversed(TEXTS)]
    assert first == list(reversed(second))
