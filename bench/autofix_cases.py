# ruff: noqa: E501
"""Small buggy Python programs for ``bench/autofix.py``, written for this bench.

Each program ends with a visible ``assert`` that fails (or crashes earlier); ``held_out`` holds more checks
that the model never sees, appended after the repair so deleting or weakening the visible check does not
count as a fix.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CASES", "Case"]


@dataclass(frozen=True)
class Case:
    """One buggy program, what it should do, and held-out checks."""

    name: str
    goal: str
    code: str
    held_out: str


CASES: list[Case] = [
    Case(
        "factorial_range",
        "factorial(n) returns n! (factorial(0) == 1).",
        "def factorial(n):\n    result = 1\n    for i in range(1, n):\n        result *= i\n    return result\n\n\n"
        "print(factorial(5))\nassert factorial(5) == 120\n",
        "assert factorial(0) == 1\nassert factorial(1) == 1\nassert factorial(6) == 720\n",
    ),
    Case(
        "is_prime_one",
        "is_prime(n) tells whether the integer n is a prime number.",
        "def is_prime(n):\n    for d in range(2, n):\n        if n % d == 0:\n            return False\n"
        "    return True\n\n\nprint([n for n in range(10) if is_prime(n)])\nassert not is_prime(1)\n",
        "assert not is_prime(0)\nassert is_prime(2)\nassert is_prime(13)\nassert not is_prime(15)\n",
    ),
    Case(
        "reverse_words_split",
        "reverse_words(s) returns the words of s in reverse order, joined by single spaces.",
        "def reverse_words(s):\n    words = s.split('')\n    return ' '.join(reversed(words))\n\n\n"
        "print(reverse_words('hello big world'))\nassert reverse_words('hello big world') == 'world big hello'\n",
        "assert reverse_words('a') == 'a'\nassert reverse_words('one two') == 'two one'\n",
    ),
    Case(
        "fib_base_case",
        "fib(n) returns the n-th Fibonacci number with fib(0) == 0 and fib(1) == 1.",
        "def fib(n):\n    if n < 2:\n        return 1\n    return fib(n - 1) + fib(n - 2)\n\n\n"
        "print([fib(i) for i in range(8)])\nassert fib(10) == 55\n",
        "assert fib(0) == 0\nassert fib(1) == 1\nassert fib(7) == 13\n",
    ),
    Case(
        "max_negative",
        "largest(xs) returns the largest number of a non-empty list.",
        "def largest(xs):\n    best = 0\n    for x in xs:\n        if x > best:\n            best = x\n    return best\n\n\n"
        "print(largest([-5, -2, -9]))\nassert largest([-5, -2, -9]) == -2\n",
        "assert largest([3, 8, 1]) == 8\nassert largest([-1]) == -1\nassert largest([0, -3]) == 0\n",
    ),
    Case(
        "count_words_len",
        "count_words(text) returns how many whitespace-separated words text has.",
        "def count_words(text):\n    return len(text)\n\n\n"
        "print(count_words('the quick brown fox'))\nassert count_words('the quick brown fox') == 4\n",
        "assert count_words('') == 0\nassert count_words('  a  b ') == 2\n",
    ),
    Case(
        "flatten_nested",
        "flatten(xs) turns an arbitrarily nested list into a flat list of its non-list items, in order.",
        "def flatten(xs):\n    out = []\n    for x in xs:\n        if isinstance(x, list):\n            out.extend(x)\n"
        "        else:\n            out.append(x)\n    return out\n\n\n"
        "print(flatten([1, [2, [3, 4]], 5]))\nassert flatten([1, [2, [3, 4]], 5]) == [1, 2, 3, 4, 5]\n",
        "assert flatten([]) == []\nassert flatten([[[[7]]]]) == [7]\nassert flatten([1, [2], 3]) == [1, 2, 3]\n",
    ),
    Case(
        "celsius_sign",
        "to_fahrenheit(c) converts degrees Celsius to Fahrenheit.",
        "def to_fahrenheit(c):\n    return c * 9 / 5 - 32\n\n\nprint(to_fahrenheit(100))\nassert to_fahrenheit(100) == 212\n",
        "assert to_fahrenheit(0) == 32\nassert to_fahrenheit(-40) == -40\n",
    ),
    Case(
        "palindrome_case",
        "is_palindrome(s) tells whether s reads the same backwards, ignoring case and spaces.",
        "def is_palindrome(s):\n    return s == s[::-1]\n\n\n"
        "print(is_palindrome('Never odd or even'))\nassert is_palindrome('Never odd or even')\n",
        "assert is_palindrome('abba')\nassert not is_palindrome('abc')\nassert is_palindrome('A man a plan a canal Panama')\n",
    ),
    Case(
        "sum_even_parity",
        "sum_even(xs) returns the sum of the even numbers in xs.",
        "def sum_even(xs):\n    return sum(x for x in xs if x % 2 == 1)\n\n\n"
        "print(sum_even([1, 2, 3, 4]))\nassert sum_even([1, 2, 3, 4]) == 6\n",
        "assert sum_even([]) == 0\nassert sum_even([5, 7]) == 0\nassert sum_even([-2, 10]) == 8\n",
    ),
    Case(
        "merge_remainder",
        "merge(a, b) merges two sorted lists into one sorted list.",
        "def merge(a, b):\n    i = j = 0\n    out = []\n    while i < len(a) and j < len(b):\n"
        "        if a[i] <= b[j]:\n            out.append(a[i])\n            i += 1\n        else:\n"
        "            out.append(b[j])\n            j += 1\n    return out\n\n\n"
        "print(merge([1, 4, 9], [2, 3]))\nassert merge([1, 4, 9], [2, 3]) == [1, 2, 3, 4, 9]\n",
        "assert merge([], [1]) == [1]\nassert merge([5], []) == [5]\nassert merge([1, 1], [1]) == [1, 1, 1]\n",
    ),
    Case(
        "binary_search_last",
        "find(xs, target) returns the index of target in the sorted list xs, or -1 if absent.",
        "def find(xs, target):\n    lo, hi = 0, len(xs) - 1\n    while lo < hi:\n        mid = (lo + hi) // 2\n"
        "        if xs[mid] == target:\n            return mid\n        if xs[mid] < target:\n            lo = mid + 1\n"
        "        else:\n            hi = mid - 1\n    return -1\n\n\n"
        "print(find([1, 3, 5, 7], 7))\nassert find([1, 3, 5, 7], 7) == 3\n",
        "assert find([1, 3, 5, 7], 1) == 0\nassert find([1, 3, 5, 7], 4) == -1\nassert find([], 2) == -1\n"
        "assert find([2], 2) == 0\n",
    ),
    Case(
        "word_freq_reset",
        "word_freq(text) returns a dict mapping each word to how many times it occurs.",
        "def word_freq(text):\n    counts = {}\n    for w in text.split():\n        counts[w] = 1\n    return counts\n\n\n"
        "print(word_freq('a b a c a'))\nassert word_freq('a b a c a') == {'a': 3, 'b': 1, 'c': 1}\n",
        "assert word_freq('') == {}\nassert word_freq('x x') == {'x': 2}\n",
    ),
    Case(
        "median_unsorted",
        "median(xs) returns the median of a non-empty list of numbers.",
        "def median(xs):\n    n = len(xs)\n    mid = n // 2\n    if n % 2:\n        return xs[mid]\n"
        "    return (xs[mid - 1] + xs[mid]) / 2\n\n\nprint(median([3, 1, 2]))\nassert median([3, 1, 2]) == 2\n",
        "assert median([4, 1, 3, 2]) == 2.5\nassert median([7]) == 7\nassert median([9, 8, 1]) == 8\n",
    ),
    Case(
        "total_str_concat",
        "describe(prices) returns the text 'Total: N' where N is the sum of prices.",
        "def describe(prices):\n    total = sum(prices)\n    return 'Total: ' + total\n\n\n"
        "print(describe([1, 2, 3]))\nassert describe([1, 2, 3]) == 'Total: 6'\n",
        "assert describe([]) == 'Total: 0'\nassert describe([10]) == 'Total: 10'\n",
    ),
    Case(
        "name_error_typo",
        "mean_of_squares(xs) returns the mean of the squares of the numbers in xs.",
        "def mean_of_squares(xs):\n    squares = [x * x for x in xs]\n    return sum(sqaures) / len(xs)\n\n\n"
        "print(mean_of_squares([1, 2, 3]))\nassert abs(mean_of_squares([1, 2, 3]) - 14 / 3) < 1e-9\n",
        "assert mean_of_squares([2]) == 4\nassert mean_of_squares([-1, 1]) == 1\n",
    ),
    Case(
        "pairwise_index",
        "diffs(xs) returns the differences between consecutive items: [xs[1]-xs[0], xs[2]-xs[1], ...].",
        "def diffs(xs):\n    return [xs[i + 1] - xs[i] for i in range(len(xs))]\n\n\n"
        "print(diffs([1, 4, 9, 16]))\nassert diffs([1, 4, 9, 16]) == [3, 5, 7]\n",
        "assert diffs([5]) == []\nassert diffs([]) == []\nassert diffs([2, 2]) == [0]\n",
    ),
    Case(
        "group_keyerror",
        "group_lengths(words) returns a dict mapping each word length to the number of words of that length.",
        "def group_lengths(words):\n    counts = {}\n    for w in words:\n        counts[len(w)] += 1\n    return counts\n\n\n"
        "print(group_lengths(['hi', 'yo', 'hey']))\nassert group_lengths(['hi', 'yo', 'hey']) == {2: 2, 3: 1}\n",
        "assert group_lengths([]) == {}\nassert group_lengths(['abcd']) == {4: 1}\n",
    ),
    Case(
        "title_upper",
        "title_case(s) capitalises the first letter of every word and lowercases the rest.",
        "def title_case(s):\n    return ' '.join(w.upper() for w in s.split())\n\n\n"
        "print(title_case('hello wORLD'))\nassert title_case('hello wORLD') == 'Hello World'\n",
        "assert title_case('a') == 'A'\nassert title_case('python is FUN') == 'Python Is Fun'\n",
    ),
    Case(
        "gcd_floor_div",
        "gcd(a, b) returns the greatest common divisor of two positive integers.",
        "def gcd(a, b):\n    while b:\n        a, b = b, a // b\n    return a\n\n\nprint(gcd(48, 18))\nassert gcd(48, 18) == 6\n",
        "assert gcd(7, 5) == 1\nassert gcd(10, 10) == 10\nassert gcd(21, 14) == 7\n",
    ),
    Case(
        "unique_order",
        "unique(xs) returns the items of xs without duplicates, keeping the order of first occurrence.",
        "def unique(xs):\n    return list(set(xs))\n\n\nprint(unique([3, 1, 3, 2, 1]))\nassert unique([3, 1, 3, 2, 1]) == [3, 1, 2]\n",
        "assert unique([]) == []\nassert unique(['b', 'a', 'b']) == ['b', 'a']\nassert unique([9, 8, 7]) == [9, 8, 7]\n",
    ),
    Case(
        "running_total_order",
        "running_totals(xs) returns the list of cumulative sums: [xs[0], xs[0]+xs[1], ...].",
        "def running_totals(xs):\n    out = []\n    total = 0\n    for x in xs:\n        out.append(total)\n"
        "        total += x\n    return out\n\n\nprint(running_totals([1, 2, 3]))\nassert running_totals([1, 2, 3]) == [1, 3, 6]\n",
        "assert running_totals([]) == []\nassert running_totals([5]) == [5]\nassert running_totals([2, -2, 4]) == [2, 0, 4]\n",
    ),
    Case(
        "leap_year_400",
        "is_leap(year) tells whether year is a leap year in the Gregorian calendar.",
        "def is_leap(year):\n    return year % 4 == 0 and year % 100 != 0\n\n\n"
        "print(is_leap(2000))\nassert is_leap(2000)\n",
        "assert not is_leap(1900)\nassert is_leap(2024)\nassert not is_leap(2023)\nassert is_leap(1600)\n",
    ),
    Case(
        "rotate_right",
        "rotate(xs, k) rotates the list xs right by k positions (the last k items move to the front).",
        "def rotate(xs, k):\n    return xs[k:] + xs[:k]\n\n\nprint(rotate([1, 2, 3, 4, 5], 2))\n"
        "assert rotate([1, 2, 3, 4, 5], 2) == [4, 5, 1, 2, 3]\n",
        "assert rotate([1, 2, 3], 1) == [3, 1, 2]\nassert rotate([1, 2, 3], 3) == [1, 2, 3]\n"
        "assert rotate([1, 2], 0) == [1, 2]\n",
    ),
]
