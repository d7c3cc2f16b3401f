"""Sampler / History Resampling state is keyed by prompt content, not table position: a reordered data set
resumes exactly (the same prompts, in the same order, with the same drop decisions), an edited one fails naming
the prompt."""

import dataclasses
import json

import pytest

from srpo_mcore.algorithm.sampling import GroupOutcome
from srpo_mcore.config import load_config
from srpo_mcore.data.records import MathRecord
from srpo_mcore.tasks.prompts import PromptTable, prompt_key
from srpo_mcore.train.trainer import build_samplers


class CharTokenizer:
    bos_token_id = None

    def encode(self, text, add_special_tokens=False):
        return [ord(c) % 97 for c in text]


CFG = load_config(None, ["rollout.max_prompt_length=512", "train.max_tokens_per_micro_batch=8192"])
RECORDS = [MathRecord(id=f"set/{i}", problem=f"What is {i} + {i}?", answer=str(2 * i)) for i in range(10)]


def solved(record: MathRecord) -> bool:
    """Controlled outcomes: problems with an even number are solved by every rollout (dropped next epoch)."""
    return int(record.id.split("/")[1]) % 2 == 0


def table(records) -> PromptTable:
    return PromptTable.from_records({"math": list(records)}, CFG, CharTokenizer())


def draw(sampler, prompts: PromptTable, steps: int, per_step: int = 3) -> list[str]:
    """Run ``steps`` steps of 3 prompts with the controlled outcomes; the record ids drawn, in order."""
    drawn = []
    for _ in range(steps):
        batch = sampler.begin_batch(per_step)
        while ids := batch.next_request():
            drawn += [prompts[i].record.id for i in ids]
            ok = [solved(prompts[i].record) for i in ids]
            batch.add([GroupOutcome(i, (1.0, float(o)), (True, o)) for i, o in zip(ids, ok)])
    return drawn


def checkpoint_after(steps: int):
    prompts = table(RECORDS)
    sampler = build_samplers(CFG, prompts)["math"]
    before = draw(sampler, prompts, steps)
    return before, json.loads(json.dumps(sampler.state_dict()))


def test_reordered_data_set_resumes_exactly():
    straight_prompts = table(RECORDS)
    straight = draw(build_samplers(CFG, straight_prompts)["math"], straight_prompts, 9)
    before, state = checkpoint_after(5)  # epoch 0 (10 prompts) and into epoch 1 (the 5 unsolved ones)
    assert before == straight[:len(before)]
    reordered = table(RECORDS[::-1][3:] + RECORDS[::-1][:3])
    resumed = build_samplers(CFG, reordered)["math"]
    resumed.load_state_dict(state)
    after = draw(resumed, reordered, 4)
    assert before + after == straight
    assert not any(solved(r) for r in RECORDS if r.id in straight[10:16])  # History Resampling dropped them


def test_edited_data_set_fails_naming_the_prompt():
    _, state = checkpoint_after(5)
    edited = [dataclasses.replace(r, answer="41") if r.id == "set/7" else r for r in RECORDS]
    with pytest.raises(ValueError, match="1 prompt of the checkpoint's History Resampling state changed content: "
                                         "first: set/7"):
        build_samplers(CFG, table(edited))["math"].load_state_dict(state)
    swapped = RECORDS[:9] + [MathRecord(id="new/0", problem="What is 5 + 6?", answer="11")]
    with pytest.raises(ValueError) as error:
        build_samplers(CFG, table(swapped))["math"].load_state_dict(state)
    assert "1 prompt in the checkpoint's History Resampling state not in the data set: first: set/9" in str(error.value)
    assert "1 prompt of the data set not in the checkpoint's History Resampling state: first: new/0" in str(error.value)
    with pytest.raises(ValueError, match="not in the data set: first: set/9"):
        build_samplers(CFG, table(RECORDS[:9]))["math"].load_state_dict(state)


def test_prompt_key_is_content_not_position():
    a = MathRecord(id="x/1", problem="p", answer="1", source="x", difficulty="easy")
    assert prompt_key(a) == prompt_key(dataclasses.replace(a, id="y/9", source="y", difficulty="hard"))
    assert prompt_key(a) != prompt_key(dataclasses.replace(a, answer="2"))
    assert prompt_key(a) != prompt_key(dataclasses.replace(a, problem="q"))
    twice = table([a, dataclasses.replace(a, id="x/2")])  # the same content twice: two distinct keys
    assert twice[1].key == twice[0].key + "#2"
