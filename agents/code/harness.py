"""The runner script that executes a Python attempt and its assert checks in one sandbox run.

It runs ``main.py`` as ``__main__`` (so a traceback names ``main.py`` and its real line numbers),
prints the local values of the failing frame and, for a failing ``assert``, the values of both sides
the way pytest does (``fib(10) returned 89, expected 55``: a bare ``AssertionError`` tells a small model
nothing), then runs each assert of ``test_main.py`` on its own in the program's namespace and reports
``CHECK n PASS|FAIL`` lines with the compared values. One run per attempt keeps the sandbox start cost
single.
"""

from __future__ import annotations

__all__ = ["ASSERT_MARKER", "CHECKS_MARKER", "RUNNER_NAME", "RUNNER_SOURCE", "build_files"]

RUNNER_NAME = "_agentic_runner.py"
CHECKS_MARKER = "--- checks ---"
ASSERT_MARKER = "Assert values: "

RUNNER_SOURCE = r"""
import ast, sys, traceback, types

SRC, TESTS = __SRC__, __TESTS__


def short(value):
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not hide the real error
        text = "<unrepresentable %s>" % type(exc).__name__
    return text if len(text) <= 160 else text[:160] + "..."


def failing_frame(tb):
    frame, line = None, 0
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == SRC:
            frame, line = tb.tb_frame, tb.tb_lineno
        tb = tb.tb_next
    return frame, line


def explain(test, scope, local=None):
    def value(node):
        return eval(compile(ast.Expression(node), SRC, "eval"), scope, local)

    def said(node, v):
        verb = "returned" if isinstance(node, ast.Call) else "is"
        return "%s %s %s" % (ast.unparse(node), verb, short(v))

    try:
        if isinstance(test, ast.Compare) and len(test.comparators) == 1:
            left, right = test.left, test.comparators[0]
            lv, rv = value(left), value(right)
            if isinstance(left, ast.Constant):
                return "%s, expected %s" % (said(right, rv), short(lv))
            if isinstance(test.ops[0], ast.Eq):
                shown = short(rv) if isinstance(right, ast.Constant) else said(right, rv)
                return "%s, expected %s" % (said(left, lv), shown)
            return "%s, %s; so `%s` is False" % (said(left, lv), said(right, rv), ast.unparse(test))
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            return "%s, expected a false value" % said(test.operand, value(test.operand))
        if not isinstance(test, ast.Constant):
            return "%s, expected a true value" % said(test, value(test))
    except BaseException as exc:
        return "evaluating it raised %s: %s" % (type(exc).__name__, exc)
    return ""


def show_assert(tb):
    frame, line = failing_frame(tb)
    if frame is None:
        return
    try:
        with open(SRC, encoding="utf-8") as f:
            tree = ast.parse(f.read(), SRC)
    except SyntaxError:
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert) and node.lineno <= line <= (node.end_lineno or node.lineno):
            detail = explain(node.test, frame.f_globals, frame.f_locals)
            if detail:
                print(__ASSERT__ + detail, file=sys.stderr)
            return


def show_locals(tb):
    frame, line = failing_frame(tb)
    if frame is None:
        return
    names = {
        k: v for k, v in frame.f_locals.items()
        if not k.startswith("__") and not callable(v) and not isinstance(v, types.ModuleType)
    }
    if names:
        print("Local values in %s (%s line %d):" % (frame.f_code.co_name, SRC, line), file=sys.stderr)
        for k, v in list(names.items())[:12]:
            print("    %s = %s" % (k, short(v)), file=sys.stderr)


module = types.ModuleType(SRC[:-3])
module.__dict__.update({"__name__": "__main__", "__file__": SRC})
ns = module.__dict__
program_ok = True
try:
    with open(SRC, encoding="utf-8") as f:
        code = compile(f.read(), SRC, "exec")
    exec(code, ns)
except SystemExit as exc:
    program_ok = exc.code in (None, 0)
except BaseException as exc:
    program_ok = False
    traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next if exc.__traceback__ else None)
    if isinstance(exc, AssertionError):
        show_assert(exc.__traceback__)
    show_locals(exc.__traceback__)
sys.stdout.flush()
sys.stderr.flush()
sys.modules[module.__name__] = module

failed = total = 0
if TESTS:
    print(__MARKER__)
    try:
        with open(TESTS, encoding="utf-8") as f:
            tree = ast.parse(f.read(), TESTS)
        stmts = tree.body
    except SyntaxError as exc:
        print("CHECK 0 FAIL: the tests do not parse: %s" % exc)
        stmts, failed, total = [], 1, 1
    for stmt in stmts:
        text = ast.unparse(stmt)
        if not isinstance(stmt, ast.Assert):
            try:
                exec(compile(ast.Module([stmt], []), TESTS, "exec"), ns)
            except BaseException as exc:
                print("SETUP FAIL: %s -> %s: %s" % (text, type(exc).__name__, exc))
            continue
        total += 1
        try:
            exec(compile(ast.Module([stmt], []), TESTS, "exec"), ns)
            print("CHECK %d PASS: %s" % (total, text))
        except AssertionError:
            failed += 1
            detail = explain(stmt.test, ns)
            print("CHECK %d FAIL: %s%s" % (total, text, " (%s)" % detail if detail else ""))
        except BaseException as exc:
            failed += 1
            print("CHECK %d FAIL: %s -> %s: %s" % (total, text, type(exc).__name__, exc))
    for stmt in stmts:  # pytest-style test functions of a tests file the user asked for
        is_test = isinstance(stmt, ast.FunctionDef) and stmt.name.startswith("test_")
        if is_test and callable(ns.get(stmt.name)):
            total += 1
            try:
                ns[stmt.name]()
                print("CHECK %d PASS: %s()" % (total, stmt.name))
            except BaseException as exc:
                failed += 1
                print("CHECK %d FAIL: %s() -> %s: %s" % (total, stmt.name, type(exc).__name__, exc))
    print("CHECKS: %d/%d passed" % (total - failed, total))
sys.exit(0 if program_ok and failed == 0 else 1)
"""


def build_files(
    code_path: str, code: str, tests_path: str | None, tests: str | None
) -> tuple[dict[str, str], str]:
    """The files of one Python run and the entry to start (the runner, which runs the program)."""
    runner = (
        RUNNER_SOURCE.replace("__SRC__", repr(code_path))
        .replace("__TESTS__", repr(tests_path if tests else ""))
        .replace("__MARKER__", repr(CHECKS_MARKER))
        .replace("__ASSERT__", repr(ASSERT_MARKER))
    )
    files = {code_path: code, RUNNER_NAME: runner}
    if tests_path and tests:
        files[tests_path] = tests
    return files, RUNNER_NAME
