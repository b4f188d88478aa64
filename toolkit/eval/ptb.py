"""Caption tokenization as pycocoevalcap does it before CIDEr: Stanford's PTBTokenizer (CoreNLP
3.4.1, run through Java with `-preserveLines -lowerCase`), then its punctuation tokens removed.

This is a Python rendering of the PTB rules that matter for captions, checked against the Java
tokenizer's output (`tests/test_metrics.py` holds those outputs):

- lower-cased; whitespace separates chunks, and each chunk's leading and trailing punctuation
  becomes separate tokens, while punctuation inside a word stays (`black-and-white`, `2.5-inch`,
  `1,000`, `3:30`, `u.s.`, `and/or`, `horse.a`);
- clitics split off: `does n't`, `ca n't`, `wo n't`, `it 's`, `they 're`, `we 've`, `i 'm`,
  `you 'll`, `he 'd`, `dogs '`; `cannot`, `gonna`, `wanna`, `gotta`, `gimme`, `lemme` split in two;
- a trailing period stays on known abbreviations and initialisms (`mr.`, `etc.`, `u.s.a.`), and one
  that may end a sentence (`etc.`, `u.s.`, not `mr.`) is followed by a `.` before a capital;
- brackets become `-lrb-` `-rrb-` `-lsb-` `-rsb-` `-lcb-` `-rcb-`; a quote before a word opens (``, `),
  after a word it closes ('', ');
- then pycocoevalcap drops the tokens of its list ('' ' `` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : -
  -- ... ;). The list's bracket names are upper case and `-lowerCase` lower-cases them, so the
  Java pipeline keeps `-lrb-` and its kin as words; so does this one. `$ % # & @ + = * /` stay too.

Known differences from the Java tokenizer (rare in captions): an apostrophe inside a word is kept
whole (`y'all`, `rock'n'roll`; Java gives `y' all`, `rock 'n' roll`); emoticons such as `:)` are
split (Java: `:-rrb-`); the abbreviation lists are PTB's most common ones, not all of them.
"""

from __future__ import annotations

import re

# pycocoevalcap's PUNCTUATIONS, exactly (case-sensitive).
REMOVED = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"}
BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
TITLES = {"mr.", "mrs.", "ms.", "dr.", "st.", "jr.", "sr.", "prof.", "mt.", "ft.", "gov.", "gen.", "vs."}
ENDINGS = {"etc.", "inc.", "co.", "corp.", "ltd.", "jan.", "feb.", "aug.", "sept.", "oct.", "nov.", "dec."}
SPLIT_WORDS = {
    "cannot": ("can", "not"),
    "gonna": ("gon", "na"),
    "wanna": ("wan", "na"),
    "gotta": ("got", "ta"),
    "gimme": ("gim", "me"),
    "lemme": ("lem", "me"),
}
_PUNCT_RUN = re.compile(r"\.\.\.|--|[!?]+|\.|[^\w\s]")  # one punctuation token at the edge of a chunk
_CLITIC = re.compile(r"^(.+?)(n't|'s|'re|'ve|'ll|'d|'m)$")
_INITIALISM = re.compile(r"^(?:[a-z]\.)+$")
_ABBREV_DOTS = re.compile(r"^(.*?\.)(\.+)$")  # an abbreviation followed by more periods: mr...


def _abbreviation(word: str) -> str:
    """'title' (never ends a sentence), 'ending' (may end one) or ''."""
    if word in TITLES:
        return "title"
    return "ending" if word in ENDINGS or _INITIALISM.match(word) else ""


def _edge_token(chunk: str, at_start: bool) -> str:
    m = _PUNCT_RUN.match(chunk) if at_start else None
    if not at_start:
        for pattern in ("...", "--"):
            if chunk.endswith(pattern):
                return pattern
        m = re.search(r"[!?]+$", chunk) or re.search(r"[^\w\s]$", chunk)
    return m.group(0) if m else ""


def _word(core: str) -> list[str]:
    if core in SPLIT_WORDS:
        return list(SPLIT_WORDS[core])
    m = _CLITIC.match(core)
    if m and m.group(1).isalnum():
        stem, clitic = m.groups()
        return [stem, clitic]
    if core.endswith("'") and core[:-1].isalnum():  # plural possessive: dogs'
        return [core[:-1], "'"]
    return [core]


def _chunk(chunk: str) -> list[str]:
    lead, trail = [], []
    while chunk:
        tok = _edge_token(chunk, True)
        if not tok:
            break
        lead.append({'"': "``", "'": "`"}.get(tok, tok))  # a quote before a word opens
        chunk = chunk[len(tok) :]
    while chunk:
        if chunk.endswith(".") and _abbreviation(chunk):
            break
        m = _ABBREV_DOTS.match(chunk)
        if m and _abbreviation(m.group(1)):  # mr... -> mr. . .
            trail = ["."] * len(m.group(2)) + trail
            chunk = m.group(1)
            break
        if re.search(r"\w'$", chunk):  # dogs': the apostrophe belongs to the word
            break
        tok = _edge_token(chunk, False)
        if not tok:
            break
        trail.insert(0, "''" if tok == '"' else tok)  # after a word it closes
        chunk = chunk[: -len(tok)]
    return lead + (_word(chunk) if chunk else []) + trail


def ptb_tokens(text: str) -> list[str]:
    """The PTB tokens of one caption, lower-cased, before punctuation removal."""
    chunks = text.split()
    tokens: list[str] = []
    for i, chunk in enumerate(chunks):
        tokens += [BRACKETS.get(tok, tok) for tok in _chunk(chunk.lower())]
        # An abbreviation that may end a sentence does so before a capital: a "." follows.
        if _abbreviation(tokens[-1]) == "ending" and i + 1 < len(chunks) and chunks[i + 1][:1].isupper():
            tokens.append(".")
    return tokens


def caption_tokenize(text: str) -> str:
    """A caption as pycocoevalcap's tokenizer leaves it: PTB tokens without its punctuation list."""
    return " ".join(t for t in ptb_tokens(text) if t not in REMOVED)
