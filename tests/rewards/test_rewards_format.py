"""Format checks and the mixed-language measure (against the prompt's language; English, Chinese, mixed)."""

from __future__ import annotations

import re

import pytest

from srpo_mcore.rewards.format import SYLLABIC_WEIGHT, extract_code, format_ok, language_mix, language_penalty

GOOD_THINK_BOXED = "<think>\nWe add 2 and 2.\n</think>\nThe answer is $\\boxed{4}$."


@pytest.mark.parametrize("response, ok", [
    (GOOD_THINK_BOXED, True),
    ("We add 2 and 2.\n</think> so \\boxed{4}", True),  # <think> was in the prompt (r1_zero templates)
    ("<think></think> \\boxed{4}", False),  # empty reasoning
    ("<think>reasoning</think> the answer is 4", False),  # no box
    ("<think>reasoning \\boxed{4}", False),  # never closed
    ("<think>a</think><think>b</think> \\boxed{4}", False),  # two reasoning blocks
    ("<think>a</think> \\boxed{4} </think>", False),  # a second closing tag
    ("preamble <think>a</think> \\boxed{4}", False),  # text before <think>
    ("<think>a</think> \\boxed{}", False),  # empty box
    ("<think>a</think> \\boxed{4", False),  # unterminated box
    ("<think>a \\boxed{4}</think> no answer", False),  # the box is in the reasoning
])
def test_think_boxed(response, ok):
    assert format_ok(response, "think_boxed") is ok


def test_boxed_and_none():
    assert format_ok("just \\boxed{x}", "boxed") is True
    assert format_ok("<think>\\boxed{x}</think> nothing", "boxed") is False
    assert format_ok("anything at all", "none") is True
    with pytest.raises(ValueError):
        format_ok("x", "yaml")


CODE = "```python\nprint(1)\n```"


@pytest.mark.parametrize("response, mode, ok", [
    (f"<think>plan</think>\n{CODE}", "think_code", True),
    ("<think>plan</think>\n```py\nprint(1)\n```", "think_code", True),
    ("<think>plan</think>\n```python\n\n```", "think_code", False),  # empty block
    ("<think>plan</think>\n```python\nprint(1)", "think_code", False),  # unclosed
    ("<think>plan</think>\n```cpp\nint main(){}\n```", "think_code", False),
    (f"<think>plan {CODE}</think> done", "think_code", False),  # code only in the reasoning
    (CODE, "code_block", True),
    ("print(1)", "code_block", False),
])
def test_code_formats(response, mode, ok):
    assert format_ok(response, mode) is ok


def test_extract_code_takes_last_block_after_think():
    response = "<think>```python\nbad()\n```</think>\nFirst:\n```python\nx = 1\n```\nFinal:\n```python\nx = 2\n```"
    assert extract_code(response) == "x = 2\n"
    assert extract_code("```\nplain = True\n```") == "plain = True\n"
    assert extract_code("<think>```python\nx=1\n```") is None  # unfinished reasoning
    assert extract_code("no code") is None
    assert extract_code("```python\ny = 3\n```", require_think_close=True) is None


ENGLISH = ("First we compute the derivative of the function and set it to zero. Then we check the second "
           "derivative to make sure this point is a minimum, so the minimum value is four.")
CHINESE = "首先我们计算函数的导数并令其为零。然后检查二阶导数以确保这个点是最小值，所以最小值是四。"


ENGLISH_PROMPT = "Find the minimum value of the function f(x) = x^2 - 4x + 8."
CHINESE_PROMPT = "求函数 f(x) = x^2 - 4x + 8 的最小值。"


def letters(text: str) -> int:
    """ASCII letters of the words of two or more letters (one-letter words are variables, not prose)."""
    return sum(len(word) for word in re.findall("[A-Za-z]+", text) if len(word) > 1)


def test_language_mix_single_language():
    for response, prompt, script in ((ENGLISH, ENGLISH_PROMPT, "latin"), (CHINESE, CHINESE_PROMPT, "cjk")):
        mix = language_mix(response, prompt)
        assert (mix.fraction, mix.expected, mix.expected_from) == (0.0, script, "prompt")
        assert language_penalty(response, 0.1, 20, prompt)[0] == 0.0


def test_units_are_letters_and_weighted_cjk_characters():
    mix = language_mix("Hello 世界", "")
    assert mix.units == 5 + 2 * SYLLABIC_WEIGHT and mix.expected == "cjk" and mix.expected_from == "response"
    assert mix.fraction == pytest.approx(5 / (5 + 2 * SYLLABIC_WEIGHT))
    # one sentence in both languages weighs about the same (within 1.5x): comparable units
    zh = language_mix("首先我们计算函数的导数并令其为零").units
    en = language_mix("First we compute the derivative of the function and set it to zero").units
    assert 1 / 1.5 < zh / en < 1.5


def test_answer_in_another_language_than_the_prompt_is_penalised_fully():
    """An all-English answer to a Chinese prompt is single-script, but not in the prompt's language."""
    mix = language_mix(ENGLISH, CHINESE_PROMPT)
    assert (mix.fraction, mix.expected) == (1.0, "cjk")
    assert language_penalty(ENGLISH, 0.1, 20, CHINESE_PROMPT)[0] == 1.0
    assert language_penalty(CHINESE, 0.1, 20, ENGLISH_PROMPT)[0] == 1.0


def test_mixed_prose_is_penalised_in_proportion():
    half = ENGLISH[: len(ENGLISH) // 2] + " " + CHINESE[: len(CHINESE) // 2]
    en = letters(ENGLISH[: len(ENGLISH) // 2])
    zh = len(re.findall("[\u4e00-\u9fff]", CHINESE[: len(CHINESE) // 2])) * SYLLABIC_WEIGHT  # Han, not punctuation
    mix = language_mix(half, ENGLISH_PROMPT)
    assert mix.fraction == pytest.approx(zh / (en + zh))
    penalty, _ = language_penalty(half, 0.1, 20, ENGLISH_PROMPT)
    assert penalty == pytest.approx((zh / (en + zh) - 0.1) / 0.9) and 0.3 < penalty < 0.7


def test_code_math_identifiers_and_one_letter_words_are_not_prose():
    """A Chinese answer to a Chinese prompt with code, LaTeX, a boxed English answer, identifiers, tags and
    one-letter variables is all in the prompt's language."""
    response = ("<think>" + CHINESE + " 设 x 为未知数，$f(x) = \\frac{x^2}{2} + \\sin x$，\\(a + b\\)，变量 max_len 和 "
                "getValue 与 dp2，代码如下：\n```python\ndef solve(values):\n    # sort them first\n    return "
                "sorted(values)\n```\n以及 `print(result)`。</think>\n答案 \\boxed{\\text{four}}")
    mix = language_mix(response, CHINESE_PROMPT)
    assert mix.expected == "cjk" and mix.fraction == 0.0
    assert language_penalty(response, 0.1, 20, CHINESE_PROMPT)[0] == 0.0


def test_a_few_english_technical_terms_in_a_chinese_answer_are_tolerated():
    response = (CHINESE + "这可以用 dynamic programming 在 GPU 上并行计算，复杂度较低。" + CHINESE)
    mix = language_mix(response, CHINESE_PROMPT)
    assert 0.0 < mix.fraction < 0.1 and mix.fraction == pytest.approx(
        letters("dynamic programming GPU") / mix.units)
    assert language_penalty(response, 0.1, 20, CHINESE_PROMPT)[0] == 0.0
    # more English than that is penalised, but not fully
    heavier = CHINESE + " We use dynamic programming over prefixes and then a binary search on the answer."
    penalty, mix = language_penalty(heavier, 0.1, 20, CHINESE_PROMPT)
    assert 0.1 < mix.fraction < 0.6 and 0.0 < penalty < 0.6


def test_prompt_without_prose_falls_back_to_the_response_and_short_responses_pass():
    mix = language_mix(ENGLISH + " (in Chinese: 导数)", "12+34=")
    assert mix.expected_from == "response" and mix.expected == "latin" and 0.0 < mix.fraction < 0.1
    assert language_penalty("答案 is four", 0.1, 20, ENGLISH_PROMPT)[0] == 0.0  # too short to judge
