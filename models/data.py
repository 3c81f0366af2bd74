"""Where sentence pairs come from: built-in tasks generated from a seed, or your own TSV files.

Every source here yields `(source, target)` pairs of Python strings; tokenizers.py turns them
into ids and batching.py into padded batches.

    splits = make_task("reverse", seed=0, n_train=20000)       # Splits(train, valid, test)
    pairs = load_tsv("train.tsv")                                # [(source, target), ...]
"""
import datetime
import random
import sys
from dataclasses import dataclass

SYMBOLS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
# Written out here rather than taken from strftime, whose names follow the user's locale.
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


class DataError(ValueError):
    """Input data that cannot be used, with the place (file:line) and the reason."""


@dataclass
class Splits:
    """Train, validation and test pairs; no source appears in two splits."""
    train: list
    valid: list
    test: list

    def __getitem__(self, name):
        if name not in ("train", "valid", "test"):
            raise KeyError(f"Splits: unknown split {name!r}; expected 'train', 'valid' or 'test'")
        return getattr(self, name)


# ---------------------------------------------------------------------------- built-in tasks

def _symbol_sequence(rng, vocab, min_len, max_len):
    return "".join(rng.choices(SYMBOLS[:vocab], k=rng.randint(min_len, max_len)))


def _copy(rng, vocab=10, min_len=1, max_len=10):
    source = _symbol_sequence(rng, vocab, min_len, max_len)
    return source, source


def _reverse(rng, vocab=10, min_len=1, max_len=10):
    source = _symbol_sequence(rng, vocab, min_len, max_len)
    return source, source[::-1]


def _sort(rng, vocab=10, min_len=1, max_len=10):
    source = _symbol_sequence(rng, vocab, min_len, max_len)
    # Sorted by the symbols' order in SYMBOLS, so "b" < "B" < "0" as listed there.
    return source, "".join(sorted(source, key=SYMBOLS.index))


def _add(rng, max_digits=4):
    a, b = (rng.randint(0, 10 ** rng.randint(1, max_digits) - 1) for _ in range(2))
    return f"{a}+{b}", str(a + b)


def _ordinal(day):
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


# Human ways of writing a date; each is an unambiguous function of the date (numeric forms always
# use the same field order), so a model can learn to undo it.
_DATE_FORMATS = [
    lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",
    lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",
    lambda d: f"{MONTHS[d.month - 1][:3]} {d.day} {d.year}",
    lambda d: f"{d.day:02d} {MONTHS[d.month - 1][:3].upper()} {d.year}",
    lambda d: f"{WEEKDAYS[d.weekday()]}, {MONTHS[d.month - 1]} {d.day}, {d.year}",
    lambda d: f"{WEEKDAYS[d.weekday()][:3]} {d.day} {MONTHS[d.month - 1][:3]} {d.year}",
    lambda d: f"the {_ordinal(d.day)} of {MONTHS[d.month - 1]} {d.year}",
    lambda d: f"{MONTHS[d.month - 1].lower()} {_ordinal(d.day)} {d.year}",
    lambda d: f"{d.month:02d}/{d.day:02d}/{d.year}",
    lambda d: f"{d.day}.{d.month}.{d.year}",
    lambda d: f"{d.year}/{d.month}/{d.day}",
    lambda d: f"{d.day:02d}-{d.month:02d}-{d.year}",
]


def _dates(rng, first_year=1900, last_year=2099):
    first = datetime.date(first_year, 1, 1).toordinal()
    day = datetime.date.fromordinal(rng.randint(first, datetime.date(last_year, 12, 31).toordinal()))
    return rng.choice(_DATE_FORMATS)(day), day.isoformat()


TASKS = {"copy": _copy, "reverse": _reverse, "sort": _sort, "add": _add, "dates": _dates}


def make_task(name, seed=0, n_train=10000, n_valid=500, n_test=500, **options):
    """Generate a built-in task's splits from `seed`; the same arguments give the same pairs.

    Options: copy/reverse/sort take vocab (number of symbols, <= 62), min_len, max_len;
    add takes max_digits; dates takes first_year, last_year. Sources are unique across splits,
    so validation and test measure generalisation rather than recall.
    """
    if name not in TASKS:
        raise ValueError(f"make_task: unknown task {name!r}; expected one of {', '.join(TASKS)}")
    if name in ("copy", "reverse", "sort"):
        vocab = options.get("vocab", 10)
        min_len, max_len = options.get("min_len", 1), options.get("max_len", 10)
        if not 1 <= vocab <= len(SYMBOLS):
            raise ValueError(f"make_task({name!r}): vocab={vocab} must be in 1..{len(SYMBOLS)}")
        if not 1 <= min_len <= max_len:
            raise ValueError(f"make_task({name!r}): need 1 <= min_len <= max_len, got "
                             f"min_len={min_len}, max_len={max_len}")
    generate = TASKS[name]
    try:
        generate(random.Random(0), **options)
    except TypeError as error:
        raise ValueError(f"make_task({name!r}): bad option in {options}: {error}") from None
    rng = random.Random(seed)
    wanted = n_train + n_valid + n_test
    pairs = {}
    attempts = 0
    while len(pairs) < wanted:
        attempts += 1
        if attempts > 20 * wanted + 1000:
            raise ValueError(f"make_task({name!r}, {options}): found only {len(pairs)} distinct "
                             f"examples, {wanted} asked for; widen the options (lengths, vocab, "
                             f"digits) or ask for fewer")
        source, target = generate(rng, **options)
        pairs.setdefault(source, target)
    items = list(pairs.items())  # dicts keep insertion order, so this is deterministic
    return Splits(items[:n_train], items[n_train:n_train + n_valid], items[n_train + n_valid:])


# ---------------------------------------------------------------------------- TSV files

def load_tsv(path, report=None):
    """Read `source<TAB>target` lines (UTF-8); a malformed line raises DataError naming file:line.
    Blank lines are skipped, and their count reported (`report`, default: print to stderr)."""
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory; expected a 'source<TAB>target' file") from None
    except OSError as error:  # unreadable: permissions, a device error, ...
        raise DataError(f"{path}: cannot read it ({error.strerror or error})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        column = error.start - (raw.rfind(b"\n", 0, error.start) + 1)
        raise DataError(_not_utf8(f"{path}:{line}", error.reason, column)) from None
    if text.startswith("\ufeff"):
        text = text[1:]  # a byte-order mark some editors write
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    pairs, blank = [], 0
    for number, line in enumerate(lines, 1):
        if line.endswith("\r"):
            line = line[:-1]
        if not line.strip():
            blank += 1
            continue
        source, tab, target = line.partition("\t")
        if not tab:
            raise DataError(f"{path}:{number}: no tab; expected 'source<TAB>target'")
        if "\t" in target:
            raise DataError(f"{path}:{number}: more than one tab; expected 'source<TAB>target'")
        if not source.strip():
            raise DataError(f"{path}:{number}: the source (before the tab) is empty")
        if not target.strip():
            raise DataError(f"{path}:{number}: the target (after the tab) is empty")
        pairs.append((source, target))
    if not pairs:
        raise DataError(f"{path}: no lines; expected 'source<TAB>target' per line")
    if blank:
        (report or _print_stderr)(f"{path}: skipped {blank} blank line{'s' * (blank != 1)}")
    return pairs


def _not_utf8(where, reason, column):
    return f"{where}: not valid UTF-8 ({reason} at byte {column} of the line)"


def decode_line(line, where):
    """One input line (bytes, or str read with surrogateescape as sys.argv and a non-UTF-8
    locale's stdin are) -> str; bad UTF-8 raises DataError naming `where` (file:line) and byte."""
    try:
        raw = line.encode("utf-8", "surrogateescape") if isinstance(line, str) else line
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(_not_utf8(where, error.reason, error.start)) from None
    except UnicodeEncodeError as error:  # a lone surrogate that stands for no byte
        raise DataError(f"{where}: not valid text ({error.reason} at character "
                        f"{error.start})") from None


def _print_stderr(message):
    print(message, file=sys.stderr)


def save_tsv(path, pairs):
    """Write pairs as `source<TAB>target` lines (the inverse of load_tsv)."""
    with open(path, "w", encoding="utf-8", newline="\n") as file:
        for source, target in pairs:
            file.write(f"{source}\t{target}\n")


def describe(pairs):
    """A one-line summary: count and character lengths, for logs."""
    if not pairs:
        return "0 pairs"
    src = [len(s) for s, _ in pairs]
    tgt = [len(t) for _, t in pairs]
    return (f"{len(pairs)} pairs, source {min(src)}-{max(src)} chars, "
            f"target {min(tgt)}-{max(tgt)} chars")
