"""Format checks and the mixed-language measure."""

from __future__ import annotations

import pytest

from srpo_mcore.rewards.format import extract_code, format_ok, language_mix, language_penalty

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


def test_language_mix_single_language():
    assert language_mix(ENGLISH).fraction == 0.0 and language_mix(ENGLISH).dominant == "latin"
    assert language_mix(CHINESE).fraction == 0.0 and language_mix(CHINESE).dominant == "cjk"


def test_language_mix_mixed_prose_is_penalised():
    half = ENGLISH[: len(ENGLISH) // 2] + " " + CHINESE[: len(CHINESE) // 2]
    mix = language_mix(half)
    assert 0.3 < mix.fraction <= 0.5
    assert language_penalty(half, threshold=0.1, min_units=20)[0] == 1.0


def test_code_math_and_short_words_are_not_prose():
    """A Chinese response with code, LaTeX and one-letter variables is one language."""
    response = (CHINESE + " 设 x 为未知数，$f(x) = \\frac{x^2}{2} + \\sin x$，代码如下：\n"
                "```python\ndef solve(values):\n    return sorted(values)\n```\n以及 `print(result)`。")
    mix = language_mix(response)
    assert mix.dominant == "cjk" and mix.fraction == 0.0
    assert language_penalty(response, 0.1, 20)[0] == 0.0


def test_few_foreign_words_and_short_responses_pass():
    response = ENGLISH + " (in Chinese: 导数)"
    assert 0.0 < language_mix(response).fraction < 0.1
    assert language_penalty(response, 0.1, 20)[0] == 0.0
    assert language_penalty("答案 is four", 0.1, 20)[0] == 0.0  # too short to judge
