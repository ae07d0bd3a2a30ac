# ruff: noqa: E501
"""Labeled requests for ``bench/routing.py``: what a user types, and where it must go.

Each case is a thread (earlier turns, then the request) and the expected label: ``code`` (write, run,
fix, test, implement, compute), ``search``, ``summarize`` or ``answer`` (greetings, conceptual
questions, and the turn after a specialist reported). ``bearing`` marks requests that carry code (a
fenced block or pasted source): all of them must reach the Code Agent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CASES", "RoutingCase"]


@dataclass(frozen=True)
class RoutingCase:
    """One request; ``before`` holds earlier turns as (role, name, text), role ``user`` or ``ai``."""

    text: str
    label: str
    before: tuple[tuple[str, str, str], ...] = field(default_factory=tuple)
    bearing: bool = False
    speaker: str = ""
    held_out: bool = False
    """Written after the first pass's rules, without changing them: a check against overfitting."""
    """Set when ``text`` is a specialist's report (that agent's name), not a user message."""


BUGGY = "```python\ndef mean(xs):\n    return sum(xs) / len(xs) + 1\n\nprint(mean([1, 2, 3]))\n```"
STUB = (
    '```python\ndef rotate(s: str, k: int) -> str:\n    """Rotate s left by k places; '
    "k may exceed len(s).\n\n    >>> rotate('abcde', 2)\n    'cdeab'\n    \"\"\"\n```"
)
REPORT = (
    "Done: main.py passed (attempt 1 of 3).\nOutput:\n```\n2870\n```\nCode (main.py, version v1):\n"
    "```python\nprint(sum(i * i for i in range(1, 21)))\n```"
)
FAILED = "Failed: main.py still fails after 3 of 3 attempts. Last error: NameError: name 'x' is not defined"
SEARCHED = (
    "Search results for 'python 3.13 release':\n[1] What's new in Python 3.13 - https://docs.python.org"
)

_code = [
    "Write a Python program that prints the sum of the squares of the integers from 1 to 20, run it, "
    "and tell me the number it printed.",
    "Write fizzbuzz.py that prints FizzBuzz up to 15",
    "write a function is_prime(n) and test it on the numbers up to 30",
    "Implement a binary search in Python.",
    "Can you code a TypeScript function that reverses an array? Put it in app.ts.",
    "fix main.py, it crashes with a ZeroDivisionError",
    "Run main.py and tell me what it prints",
    "compute the 30th Fibonacci number",
    "How many prime numbers are there below 10000?",
    "what is 123456789 * 987654321?",
    "Calculate the average of 3, 8, 15 and 22",
    "Create a script that counts the words in a sentence and prints the counts",
    "Écris un programme Python qui affiche les nombres pairs de 1 à 20.",
    "Schreibe eine Python-Funktion, die prüft, ob ein Wort ein Palindrom ist.",
    "Escribe un programa en Python que convierta grados Celsius a Fahrenheit para 0, 37 y 100.",
    "I need a python script that generates the first 10 rows of Pascal's triangle",
    "Add unit tests for the slugify function in utils.py",
    "Refactor main.py so that the parsing is in its own function",
    "Please debug my program, the loop never ends",
    "Write a TypeScript program that prints the current year's leap-year status for 2024",
    "make a small python program that sorts a list of names by length",
    "Implement merge sort and show it sorting [5, 2, 9, 1]",
    "Write a module shapes.py with an area(w, h) function and its tests in test_shapes.py",
    "Test whether 2**61 - 1 is prime",
    "Give me code to flatten a nested list in Python",
    "count how many times the letter e appears in 'the quick brown fox jumps over the lazy dog'",
    "Can you write me a quick Python snippet to reverse the words of a sentence?",
    "Convert this to TypeScript: a function that doubles every number of a list",
]
_bearing = [
    f"This has a bug, please find and fix it:\n{BUGGY}",
    f"Implement this function:\n{STUB}",
    f"{STUB}",
    f"Why does this print the wrong value?\n{BUGGY}",
    "What does this code print?\n```python\nprint(sum(range(10)))\n```",
    "```python\nfor i in range(3)\n    print(i)\n```\nSyntaxError, help",
    "def add(a, b):\n    return a - b\n\nadd(2, 3) should return 5 but it doesn't. Fix it.",
    "Make this faster:\n```python\ndef fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n```",
    "```ts\nconst xs: number[] = [1, 2, 3];\nconsole.log(xs.map(x => x * 2));\n```\nrun this",
    "Explain and fix:\n```python\nnames = ['a', 'b']\nprint(names[2])\n```",
    'def count_words(text):\n    """Return a dict word -> count.\n\n    >>> count_words("a b a")\n'
    "    {'a': 2, 'b': 1}\n    \"\"\"\n",
    "Add type hints to this:\n```python\ndef greet(name):\n    return 'hi ' + name\n```",
]
_answer = [
    "hi",
    "Hello!",
    "thanks, that's great",
    "Who are you?",
    "good morning",
    "What is a closure in Python?",
    "Explain the difference between a list and a tuple.",
    "what does the GIL do?",
    "When should I use a generator instead of a list?",
    "What is recursion?",
    "Bonjour, tu peux m'aider ?",
    "What can you do?",
    "ok thank you, bye",
    "Why is immutability useful?",
]
_search = [
    "Search the web for the latest Python release",
    "What's new in the latest version of LangGraph? Look it up.",
    "Find documentation for the asyncio TaskGroup API",
    "look up who maintains the requests library",
    "Search my workspace for files that mention 'database'",
    "What are the latest news about Deno 2?",
    "Find articles comparing gVisor and Kata Containers",
    "Busca en la web la última versión de Node.js",
]
_summarize = [
    "Summarize this: Python 3.13 adds an experimental free-threaded build, a JIT compiler, and a new "
    "interactive interpreter with multi-line editing and colour.",
    "tl;dr of the search results please",
    "Give me a short summary of the text above",
    "Condense these notes into three bullet points: meeting moved to Monday; budget approved; hire two "
    "engineers; office closed on Friday.",
    "Résume ce texte : le projet avance bien, les tests passent, la livraison est prévue pour mars.",
]

CASES: list[RoutingCase] = [
    *(RoutingCase(t, "code") for t in _code),
    *(RoutingCase(t, "code", bearing=True) for t in _bearing),
    *(RoutingCase(t, "answer") for t in _answer),
    *(RoutingCase(t, "search") for t in _search),
    *(RoutingCase(t, "summarize") for t in _summarize),
    # Follow-ups in a thread.
    RoutingCase(
        "now make it print up to 30 instead",
        "code",
        (("user", "", "Write fizzbuzz.py that prints FizzBuzz up to 15"), ("ai", "task_agent", REPORT)),
    ),
    RoutingCase(
        "run it again with n = 50",
        "code",
        (("user", "", "write a program printing the nth triangular number"), ("ai", "task_agent", REPORT)),
    ),
    RoutingCase(
        "it still fails, try again",
        "code",
        (("user", "", "write main.py that parses a date"), ("ai", "task_agent", FAILED)),
    ),
    RoutingCase(
        "add a docstring and a test for it",
        "code",
        (("user", "", "write a function that squares a number"), ("ai", "task_agent", REPORT)),
    ),
    RoutingCase(
        "great, thanks!",
        "answer",
        (("user", "", "write a program that prints 2870"), ("ai", "task_agent", REPORT)),
    ),
    RoutingCase(
        "what does the second line of that code do?",
        "answer",
        (("user", "", "print the sum of squares from 1 to 20"), ("ai", "task_agent", REPORT)),
    ),
    RoutingCase(
        "summarize what you found",
        "summarize",
        (("user", "", "search for python 3.13 release"), ("ai", "search_agent", SEARCHED)),
    ),
    RoutingCase(
        "and what about TypeScript 5.5? search for it too",
        "search",
        (("user", "", "search for python 3.13 release"), ("ai", "search_agent", SEARCHED)),
    ),
    RoutingCase(
        "now translate the program to TypeScript",
        "code",
        (("user", "", "print the sum of squares from 1 to 20"), ("ai", "task_agent", REPORT)),
    ),
    RoutingCase(
        "why did it fail?",
        "answer",
        (("user", "", "write main.py that parses a date"), ("ai", "task_agent", FAILED)),
    ),
    # A specialist has just reported: the Task Agent must now answer (the reply of the turn).
    RoutingCase(
        REPORT, "answer", (("user", "", "print the sum of squares from 1 to 20"),), speaker="code_agent"
    ),
    RoutingCase(FAILED, "answer", (("user", "", "write main.py that parses a date"),), speaker="code_agent"),
    RoutingCase(
        "Python 3.13 adds a JIT [1].\n\nSources:\n[1] https://docs.python.org",
        "answer",
        (("user", "", "search and summarize python 3.13"), ("ai", "search_agent", SEARCHED)),
        speaker="summarize_agent",
    ),
]

_HELD_OUT = [
    (
        "Could you put together a small Python tool that renames every .txt extension to .md in a list of names?",
        "code",
    ),
    ("I'd like to see the output of sorted([3, 1, 2], reverse=True)", "code"),
    ("Please produce a TypeScript class for a stack with push and pop", "code"),
    ("what's 2 to the power of 64", "code"),
    ("Give me the 12th Catalan number", "code"),
    ("My script throws KeyError: 'name' when the dict is empty, help me handle it", "code"),
    ("Zeig mir ein Python-Programm, das die Zahlen von 1 bis 10 quadriert", "code"),
    ("Generate a CSV of the first 5 squares and print it", "code"),
    ("```python\nx = [1, 2, 3]\nprint(x[5])\n```", "code"),
    ("is this correct?\n```python\ndef inc(x):\n    return x + 2\n```", "code"),
    ("hey there", "answer"),
    ("What's the difference between == and is in Python?", "answer"),
    ("How do decorators work?", "answer"),
    ("cheers!", "answer"),
    ("Do you keep old versions of my files?", "answer"),
    ("Look up the release date of Python 3.14", "search"),
    ("Which companies sponsor the Rust foundation? Search online.", "search"),
    ("Find recent blog posts about WebAssembly components", "search"),
    (
        "Please give me a tl;dr: the server now streams tokens, routes better and reports failures honestly.",
        "summarize",
    ),
    (
        "Summarise the following in one sentence: caching cut the p99 latency from 900 ms to 120 ms.",
        "summarize",
    ),
]

CASES += [RoutingCase(t, label, held_out=True, bearing="```" in t) for t, label in _HELD_OUT]
