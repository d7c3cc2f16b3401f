import pytest

from srpo_mcore.data.records import CodeRecord, CodeTest, MathRecord
from srpo_mcore.data.templates import get_template, register_template, render_prompts, template_names

MATH = MathRecord("m/1", "What is $\\frac{1}{2}+\\frac{1}{2}$?", "1")
STDIN = CodeRecord("c/1", "Read two integers and print their sum.", [CodeTest("stdin", "1 2\n", "3\n")])
METHOD = CodeRecord(
    "c/2",
    "Return the sum of nums.",
    [CodeTest("functional", "[1, 2]", "3")],
    starter_code="class Solution:\n    def total(self, nums):\n",
    entry_point="Solution().total",
)


def test_r1_zero_math_prompt():
    prompt = get_template("r1_zero_math", "math").render(MATH)
    assert prompt.startswith("A conversation between User and Assistant.")
    assert "first thinks about the reasoning process in the mind" in prompt
    assert "<think> </think>" in prompt and "\\boxed{}" in prompt
    assert "User: What is $\\frac{1}{2}+\\frac{1}{2}$?" in prompt  # braces survive: no str.format
    assert prompt.endswith("Assistant: <think>")


def test_r1_zero_code_prompts():
    template = get_template("r1_zero_code", "code")
    stdin = template.render(STDIN)
    assert "```python" in stdin and "standard input" in stdin and "Start from this code" not in stdin
    method = template.render(METHOD)
    assert "```python\nclass Solution:\n    def total(self, nums):\n```" in method
    assert "class `Solution` with the method `total`" in method


def test_chat_templates_give_one_user_turn():
    (turn,) = get_template("math_chat", "math").messages(MATH)
    assert turn["role"] == "user" and turn["content"].startswith(MATH.problem)


def test_wrong_domain_and_unknown_names_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="is for math, not code"):
        get_template("r1_zero_math", "code")
    with pytest.raises(ValueError, match="is for code records, got a math record"):
        get_template("r1_zero_code", "code").render(MATH)
    with pytest.raises(ValueError, match="unknown prompt template 'nope'.*r1_zero_math"):
        get_template("nope", "math")
    bad = tmp_path / "bad.txt"
    bad.write_text("no placeholder here")
    with pytest.raises(ValueError, match="no \\{problem\\} placeholder"):
        get_template(str(bad), "math")


def test_custom_templates_from_file_and_registry(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("Q: {problem}\nA: \\boxed{")
    assert get_template(str(path), "math").render(MATH) == f"Q: {MATH.problem}\nA: \\boxed{{"
    register_template("test_terse_math", "math", "{problem} =")
    assert "test_terse_math" in template_names("math")
    assert get_template("test_terse_math", "math").render(MATH).endswith("? =")
    with pytest.raises(ValueError, match="already registered"):
        register_template("r1_zero_math", "math", "{problem}")


def test_render_prompts_drops_long_prompts():
    templates = {"math": get_template("r1_zero_math", "math"), "code": get_template("r1_zero_code", "code")}
    long = MathRecord("m/long", "x " * 500, "1")
    kept, dropped = render_prompts(
        [MATH, STDIN, long], templates, count_tokens=lambda s: len(s.split()), max_prompt_tokens=200
    )
    assert [r.id for r, _ in kept] == ["m/1", "c/1"] and dropped == ["m/long"]
