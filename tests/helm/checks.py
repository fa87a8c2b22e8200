"""A small check runner for the packaging tests: each check passes, fails (AssertionError or any other
exception, with its message) or skips (Skip, with the reason). The last line is
"<suite>: N passed, N failed, N skipped"; the exit code is 1 when anything failed."""
import sys
import traceback


class Skip(Exception):
    """Raised by a check that needs something missing; the message says what and why."""


class Suite:
    def __init__(self, name, notes=()):
        self.name = name
        self.checks = []
        self.notes = notes  # a list the checks may add to: what they could not cover, printed before the summary

    def check(self, function):
        self.checks.append(function)
        return function

    def run(self, only=None):
        passed = failed = skipped = 0
        for function in self.checks:
            title = function.__name__
            if only and not any(word in title for word in only):
                continue
            try:
                function()
            except Skip as skip:
                skipped += 1
                print(f"SKIP  {self.name}/{title}: {skip}", flush=True)
            except AssertionError as error:
                failed += 1
                print(f"FAIL  {self.name}/{title}: {str(error) or traceback.format_exc(limit=3)}", flush=True)
            except Exception:  # noqa: BLE001 - a check that crashes has failed
                failed += 1
                print(f"FAIL  {self.name}/{title}: {traceback.format_exc(limit=4)}", flush=True)
            else:
                passed += 1
                print(f"PASS  {self.name}/{title}", flush=True)
        for note in self.notes:
            print(f"NOTE  {self.name}: {note}", flush=True)
        print(f"{self.name}: {passed} passed, {failed} failed, {skipped} skipped", flush=True)
        return 1 if failed else 0


def main(suite):
    sys.exit(suite.run(sys.argv[1:]))
