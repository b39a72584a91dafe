"""The one exception type users catch: every message is a single line naming the file and the problem."""


class TokenmillError(Exception):
    """A user-facing error: bad input, bad model file, bad option.

    The CLI prints ``tokenmill: error: <message>`` and exits with status 2.
    """


class ModelFileError(TokenmillError, ValueError):
    """A model file is missing, truncated, corrupt, foreign or from a newer tokenmill."""

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")

    def __reduce__(self):    # picklable: a task on another process or node reports it as itself
        return type(self), (self.path, self.problem)


class InputError(TokenmillError, ValueError):
    """An input file cannot be read or parsed (names the file and, where known, the line)."""

    def __init__(self, path, problem, line=None):
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {problem}")

    def __reduce__(self):
        return type(self), (self.path, self.problem, self.line)
