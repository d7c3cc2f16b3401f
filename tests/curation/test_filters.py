"""Each filter rejects what it is named after and keeps look-alikes that are fine."""

import pytest

from srpo_mcore.curation.filters import FILTERS, first_failed, has_checkable_answer
from srpo_mcore.data.records import CodeRecord, CodeTest, MathRecord


def math(problem: str, answer: str = "5") -> MathRecord:
    return MathRecord("m", problem, answer)


def code(problem: str) -> CodeRecord:
    return CodeRecord("c", problem, [CodeTest("stdin", "1\n", "1\n")])


CASES = {
    "several_questions": (
        [
            math("(a) Find the area of the square. (b) What is its perimeter?"),
            math("Let $f(x)=x^2$.\n1. Compute $f(2)$.\n2. Find all $x$ with $f(x)=9$."),
            math("Answer the following two questions about the triangle. Find its area."),
            math(
                "A die is rolled. (i) What is the chance of a six? (ii) What is the chance of an even number?"
            ),
        ],
        [
            math("What is $1+1$? $\\textbf{(A)}\\ 1 \\qquad \\textbf{(B)}\\ 2 \\qquad \\textbf{(C)}\\ 3$"),
            math("What is the weight? The answer can be written as $\\frac mn$. What is $m+n$?"),
            math(
                "Rules:\n1) Pick a column.\n2) Break the lowest target.\nIn how many orders can they break?"
            ),
            math("Is $x$ (a) positive? Find $x$ if $x^2 = 4$ and $x > 0$."),
        ],
    ),
    "proof_only": (
        [
            math("Prove that there are infinitely many primes.", "proof"),
            math("Show that $n^2 + n$ is even for every integer $n$.", "See the solution"),
            math("Prove or disprove: every group of order 4 is cyclic.", "it is false in general"),
        ],
        [
            math("Show that $x = 3$ satisfies the equation, then find $x^2$.", "9"),
            math("Prove that the sum is an integer and find it.", "\\frac{n(n+1)}{2}"),
            math("Find the smallest prime larger than 100.", "101"),
        ],
    ),
    "needs_figure": (
        [
            math("Find the shaded area. [asy] draw(unitcircle); [/asy]"),
            math("As shown in the figure, $AB = 3$. Find $BC$."),
            math("Using the table below, find the median salary."),
            code("Each cell is coloured as in the picture below.\n\nInput Format\n..."),
            code("The board looks like this: ![](CDN_BASE_URL/abc123)"),
        ],
        [
            math("The graph of $y = x^2$ is a parabola. Find its vertex.", "(0,0)"),
            math("Cards lie on the table. What is the chance the top card is an ace?", "\\frac{1}{13}"),
            code("Find a shortest path in the graph.\n\nSample Input 1\n...\nThe following figure shows it."),
            code("Print the array as shown in the above code."),
        ],
    ),
    "needs_files": (
        [
            code("Read the numbers from input.txt and write the answer to output.txt."),
            code("The program reads the records from a CSV file and prints the total."),
            code("Write the result to the file named answer.out."),
        ],
        [
            code("Design an in-memory file system with mkdir and ls operations."),
            code("Given a list of file names, return those ending in .txt."),
        ],
    ),
    "needs_network": (
        [
            code("Make an HTTP request to the API endpoint and print the JSON it returns."),
            code("Download the data from the URL given on the first line and count its words."),
            code("import requests\nresp = requests.get(url)"),
        ],
        [
            code("A network of n servers is a tree. Find its diameter."),
            code("Encode a URL into a tiny URL and decode it back (string manipulation only)."),
        ],
    ),
    "needs_special_env": (
        [
            code("This is an interactive problem. You may ask at most 30 queries."),
            code("Write an SQL query to report the second highest salary from the Employee table."),
            code("Given a pandas DataFrame of players, return the top scorer."),
            code("Two different threads call foo() and bar(); print them alternately."),
            code("Write a bash script that prints the tenth line of a file."),
        ],
        [
            code("Two red pandas play a game on a tree. Who wins?"),
            code("The query function is deterministic; answer q queries offline."),
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_filter_rejects_its_cases_and_keeps_look_alikes(name):
    rejected, kept = CASES[name]
    for record in rejected:
        assert FILTERS[name](record), f"{name} should reject: {record.problem!r}"
    for record in kept:
        assert FILTERS[name](record) is None, f"{name} should keep: {record.problem!r}"


def test_filters_apply_to_their_domain_only():
    assert FILTERS["needs_special_env"](math("This is an interactive problem.")) is None
    assert FILTERS["proof_only"](code("Prove that the algorithm terminates.")) is None


def test_first_failed_reports_name_and_evidence():
    record = math("Prove that $x>0$. [asy] draw(unitcircle); [/asy]", "proof")
    assert first_failed(record, ["needs_figure", "proof_only"]) == ("needs_figure", "[asy]")
    assert first_failed(record, ["proof_only"])[0] == "proof_only"
    assert first_failed(math("Find $1+1$.", "2"), list(FILTERS)) is None


@pytest.mark.parametrize("answer", ["5", "x^2+1", "\\text{(C)}", "odd", "(0,1]", "-3"])
def test_checkable_answers(answer):
    assert has_checkable_answer(answer)


@pytest.mark.parametrize("answer", ["", "proof", "QED.", "see the solution", "the claim holds for all n"])
def test_non_answers(answer):
    assert not has_checkable_answer(answer)
