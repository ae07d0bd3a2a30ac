# ruff: noqa: E501
"""Tasks for ``bench/chat_tasks.py``: small requests a user types, each with hidden checks.

Kinds: ``function`` (the file must define a function that passes ``checks``, asserts the model never
sees), ``output`` (running the file must print ``expect``; with ``tell`` the final reply must quote it
too: "compute and report a number"). ``path`` is the file the request names (it must be used), else
the grader takes the workspace's main program.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TASKS", "ChatTask"]


@dataclass(frozen=True)
class ChatTask:
    """One request and how it is graded."""

    name: str
    prompt: str
    kind: str  # "function" | "output"
    checks: str = ""
    expect: str = ""
    path: str | None = None
    tell: bool = False


def _fn(name: str, prompt: str, checks: str, path: str | None = None) -> ChatTask:
    return ChatTask(name, prompt, "function", checks=checks, path=path)


def _out(name: str, prompt: str, expect: str, path: str | None = None, tell: bool = False) -> ChatTask:
    return ChatTask(name, prompt, "output", expect=expect, path=path, tell=tell)


_IMPLEMENT = [
    _fn(
        "rotate_left",
        'Implement this function:\n```python\ndef rotate(s: str, k: int) -> str:\n    """Rotate s left by k '
        "places; k may be larger than len(s); the empty string stays empty.\n\n    >>> rotate('abcde', 2)\n"
        '    \'cdeab\'\n    """\n```',
        "assert rotate('abcde', 7) == 'cdeab'\nassert rotate('', 3) == ''\nassert rotate('ab', 0) == 'ab'\n",
    ),
    _fn(
        "clamp",
        'Implement:\n```python\ndef clamp(x, lo, hi):\n    """Return x limited to the range [lo, hi].\n\n'
        '    >>> clamp(5, 0, 3)\n    3\n    >>> clamp(-1, 0, 3)\n    0\n    """\n```',
        "assert clamp(2, 0, 3) == 2\nassert clamp(10, -5, 5) == 5\nassert clamp(-10, -5, 5) == -5\n",
    ),
    _fn(
        "odd_fizz",
        'Write this function:\n```python\ndef fizz(n: int) -> str:\n    """Return "Fizz" when n is divisible by 7, '
        '"Buzz" when n is odd, "FizzBuzz" when both, otherwise str(n).\n\n    >>> fizz(21)\n    \'FizzBuzz\'\n'
        '    """\n```',
        "assert fizz(14) == 'Fizz'\nassert fizz(9) == 'Buzz'\nassert fizz(4) == '4'\nassert fizz(7) == 'FizzBuzz'\n",
    ),
    _fn(
        "digit_sum",
        "Write a Python function digit_sum(n) that returns the sum of the decimal digits of a non-negative "
        "integer n. digit_sum(1234) should return 10.",
        "assert digit_sum(0) == 0\nassert digit_sum(9) == 9\nassert digit_sum(99999) == 45\n",
    ),
    _fn(
        "run_length",
        'Implement:\n```python\ndef rle(s):\n    """Run-length encode s as count followed by the character.\n\n'
        "    >>> rle('aaab')\n    '3a1b'\n    >>> rle('')\n    ''\n    \"\"\"\n```",
        "assert rle('abc') == '1a1b1c'\nassert rle('zzzzzz') == '6z'\nassert rle('aabbaa') == '2a2b2a'\n",
    ),
    _fn(
        "second_largest",
        "Implement second_largest(xs) in Python: it returns the second largest distinct value of a list, "
        "or None when there is none. second_largest([3, 1, 3, 2]) should return 2.",
        "assert second_largest([5]) is None\nassert second_largest([2, 2]) is None\n"
        "assert second_largest([1, 9, 8]) == 8\nassert second_largest([-1, -2]) == -2\n",
    ),
    _fn(
        "count_vowels",
        'Implement this:\n```python\ndef count_vowels(s: str) -> int:\n    """Count the vowels a, e, i, o, u in s, '
        'ignoring case.\n\n    >>> count_vowels("Hello World")\n    3\n    """\n```',
        "assert count_vowels('AEIOU') == 5\nassert count_vowels('xyz') == 0\nassert count_vowels('') == 0\n",
    ),
    _fn(
        "chunk",
        "Write a Python function chunk(xs, n) that splits the list xs into consecutive lists of length n "
        "(the last may be shorter). For example chunk([1, 2, 3, 4, 5], 2) returns [[1, 2], [3, 4], [5]].",
        "assert chunk([], 3) == []\nassert chunk([1, 2, 3], 3) == [[1, 2, 3]]\n"
        "assert chunk([1, 2, 3, 4], 1) == [[1], [2], [3], [4]]\n",
    ),
    _fn(
        "title_case",
        'Implement:\n```python\ndef title(s: str) -> str:\n    """Capitalise the first letter of every word '
        "except the words 'and', 'of' and 'the' (unless first); words are separated by single spaces.\n\n"
        "    >>> title('the lord of the rings')\n    'The Lord of the Rings'\n    \"\"\"\n```",
        "assert title('war and peace') == 'War and Peace'\nassert title('of mice') == 'Of Mice'\n"
        "assert title('a') == 'A'\n",
    ),
    _fn(
        "is_leap",
        "Write is_leap(year) in Python using the Gregorian rules. is_leap(1900) should return False and "
        "is_leap(2000) should return True.",
        "assert is_leap(2024) is True\nassert is_leap(2023) is False\nassert is_leap(2100) is False\n"
        "assert is_leap(1600) is True\n",
    ),
    _fn(
        "dedupe",
        'Implement:\n```python\ndef dedupe(xs):\n    """Remove repeated items, keeping the first occurrence and '
        'the order.\n\n    >>> dedupe([3, 1, 3, 2, 1])\n    [3, 1, 2]\n    """\n```',
        "assert dedupe([]) == []\nassert dedupe(['a', 'a']) == ['a']\nassert dedupe([1, 2, 3]) == [1, 2, 3]\n",
    ),
    _fn(
        "collatz_steps",
        "Write a function collatz_steps(n) that returns how many steps the Collatz process takes to reach 1 "
        "from n (n even: n/2, n odd: 3n+1). collatz_steps(6) should return 8.",
        "assert collatz_steps(1) == 0\nassert collatz_steps(2) == 1\nassert collatz_steps(27) == 111\n",
    ),
]

_FIX = [
    _fn(
        "fix_mean",
        "This program has a bug, find and fix it:\n```python\ndef mean(xs):\n    return sum(xs) / len(xs) + 1\n\n"
        "print(mean([1, 2, 3]))\n```",
        "assert mean([2, 4]) == 3\nassert mean([5]) == 5\n",
    ),
    _fn(
        "fix_factorial",
        "Fix the bug:\n```python\ndef factorial(n):\n    result = 1\n    for i in range(1, n):\n        result *= i\n"
        "    return result\n\nprint(factorial(5))\n```\nfactorial(5) should be 120.",
        "assert factorial(0) == 1\nassert factorial(1) == 1\nassert factorial(6) == 720\n",
    ),
    _fn(
        "fix_max",
        "My function is wrong for negative numbers, please fix it:\n```python\ndef largest(xs):\n    best = 0\n"
        "    for x in xs:\n        if x > best:\n            best = x\n    return best\n\nprint(largest([-3, -1, -2]))\n```",
        "assert largest([-3, -1, -2]) == -1\nassert largest([4, 9, 2]) == 9\nassert largest([-7]) == -7\n",
    ),
    _fn(
        "fix_reverse_words",
        "This crashes. Fix it:\n```python\ndef reverse_words(s):\n    return ' '.join(reversed(s.split(' ')))\n\n"
        "print(reverse_words('hello big world')\n```",
        "assert reverse_words('a b c') == 'c b a'\nassert reverse_words('one') == 'one'\n",
    ),
    _fn(
        "fix_palindrome",
        "Fix this so it ignores case:\n```python\ndef is_palindrome(s):\n    return s == s[::-1]\n\n"
        "print(is_palindrome('Racecar'))\n```",
        "assert is_palindrome('Racecar') is True\nassert is_palindrome('abc') is False\n"
        "assert is_palindrome('Aa') is True\n",
    ),
    _fn(
        "fix_count",
        "Find the bug: count_char('banana', 'a') returns 2 but should return 3.\n```python\n"
        "def count_char(s, c):\n    n = 0\n    for i in range(1, len(s)):\n        if s[i] == c:\n            n += 1\n"
        "    return n\n\nprint(count_char('banana', 'a'))\n```",
        "assert count_char('banana', 'a') == 3\nassert count_char('abc', 'a') == 1\nassert count_char('', 'x') == 0\n",
    ),
    _fn(
        "fix_fib",
        "Fix fib so fib(0) is 0 and fib(10) is 55:\n```python\ndef fib(n):\n    if n < 2:\n        return 1\n"
        "    return fib(n - 1) + fib(n - 2)\n\nprint(fib(10))\n```",
        "assert fib(0) == 0\nassert fib(1) == 1\nassert fib(10) == 55\nassert fib(15) == 610\n",
    ),
    _fn(
        "fix_celsius",
        "The conversion is wrong, fix it:\n```python\ndef to_fahrenheit(c):\n    return c * 5 / 9 + 32\n\n"
        "print(to_fahrenheit(100))\n```",
        "assert to_fahrenheit(100) == 212\nassert to_fahrenheit(0) == 32\nassert to_fahrenheit(-40) == -40\n",
    ),
    _fn(
        "fix_primes",
        "is_prime says 1 and 9 are prime. Fix it:\n```python\ndef is_prime(n):\n    for d in range(2, n // 2):\n"
        "        if n % d == 0:\n            return False\n    return True\n\nprint([n for n in range(12) if is_prime(n)])\n```",
        "assert [n for n in range(20) if is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19]\nassert is_prime(97)\n",
    ),
    _fn(
        "fix_name_error",
        "Fix this:\n```python\ndef total_price(prices, tax):\n    subtotal = sum(prices)\n    return subtotl * (1 + tax)\n\n"
        "print(total_price([10, 20], 0.5))\n```",
        "assert total_price([10, 20], 0.5) == 45\nassert total_price([], 0.2) == 0\n",
    ),
]

_COMPUTE = [
    _out(
        "sum_squares",
        "Write a Python program that prints the sum of the squares of the integers from 1 to 20, run it, and "
        "tell me the number it printed.",
        "2870",
        tell=True,
    ),
    _out(
        "fib_30",
        "Compute the 30th Fibonacci number (fib(1) = fib(2) = 1) and tell me the result.",
        "832040",
        tell=True,
    ),
    _out("primes_below", "How many prime numbers are there below 10000? Compute it.", "1229", tell=True),
    _out(
        "product",
        "Calculate 123456789 * 987654321 with a program and report the result.",
        "121932631112635269",
        tell=True,
    ),
    _out("digits_2_100", "What is the sum of the digits of 2**100? Compute it.", "115", tell=True),
    _out("collatz_27", "Compute how many Collatz steps it takes to reach 1 from 27.", "111", tell=True),
    _out("factorial_20", "Compute 20 factorial and tell me the number.", "2432902008176640000", tell=True),
    _out(
        "leap_count", "Count the leap years between 1900 and 2000 inclusive, with a program.", "25", tell=True
    ),
    _out(
        "vowels_pangram",
        "Count the vowels in 'the quick brown fox jumps over the lazy dog' with Python.",
        "11",
        tell=True,
    ),
    _out(
        "triangular_100",
        "Compute the 100th triangular number (1 + 2 + ... + 100) and tell me.",
        "5050",
        tell=True,
    ),
]

_NAMED = [
    _out(
        "fizzbuzz_file",
        "Write fizzbuzz.py that prints FizzBuzz up to 15",
        "1\n2\nFizz\n4\nBuzz\nFizz\n7\n8\nFizz\nBuzz\n11\nFizz\n13\n14\nFizzBuzz",
        path="fizzbuzz.py",
    ),
    _out(
        "squares_file",
        "Create squares.py that prints the squares of 1 to 5, one per line.",
        "1\n4\n9\n16\n25",
        path="squares.py",
    ),
    _fn(
        "geometry_file",
        "Write geometry.py with a function circle_area(r) that returns the area of a circle (use math.pi).",
        "import math\nassert abs(circle_area(1) - math.pi) < 1e-9\nassert abs(circle_area(2) - 4 * math.pi) < 1e-9\n",
        path="geometry.py",
    ),
    _fn(
        "textutil_file",
        "Write textutil.py containing word_count(s) that returns the number of words separated by whitespace.",
        "assert word_count('') == 0\nassert word_count('a  b\\tc') == 3\nassert word_count(' one ') == 1\n",
        path="textutil.py",
    ),
    _out(
        "countdown_file",
        "Write countdown.py that prints the numbers 5 down to 1 and then 'Liftoff!'",
        "5\n4\n3\n2\n1\nLiftoff!",
        path="countdown.py",
    ),
    _fn(
        "temps_file",
        "Write temps.py with c_to_f(c) converting Celsius to Fahrenheit; c_to_f(100) should return 212.",
        "assert c_to_f(0) == 32\nassert c_to_f(-40) == -40\nassert abs(c_to_f(37) - 98.6) < 1e-9\n",
        path="temps.py",
    ),
    _out(
        "hello_ts",
        "Write hello.ts, a TypeScript program that prints 'Hello, TypeScript!'",
        "Hello, TypeScript!",
        path="hello.ts",
    ),
    _out(
        "table_file",
        "Write table.py that prints the multiplication table of 3 from 3 x 1 to 3 x 5, like '3 x 1 = 3'.",
        "3 x 1 = 3\n3 x 2 = 6\n3 x 3 = 9\n3 x 4 = 12\n3 x 5 = 15",
        path="table.py",
    ),
]

TASKS: list[ChatTask] = [*_IMPLEMENT, *_FIX, *_COMPUTE, *_NAMED]
