#!/usr/bin/env python3
"""Writes src/dro/text/ftfy_tables.inc: the data of ftfy 6.3.1's fix_text, read off ftfy itself.

ftfy's tables and regular expressions are imported from its source (an installed ftfy, or a
checkout given with --ftfy-src) and turned into plain data:
* the single-byte codecs fix_encoding tries (chardata.CHARMAP_ENCODINGS, with ftfy's "sloppy"
  variants: unassigned bytes decode as Latin-1, byte 0x1A as U+FFFD) and strict windows-1252;
* the translate tables LIGATURES, WIDTH_MAP, CONTROL_CHARS;
* HTML_ENTITIES beyond html5's own names (the upper-cased ones such as "&EACUTE;");
* the character classes of UTF8_DETECTOR_RE (chardata.UTF8_CLUES);
* BADNESS_RE (badness.py) as a program: alternatives of items, each a character class with a
  repeat range, or '^'; the classes as sorted code-point ranges (Python re's \\s and \\w included);
* ALTERED_UTF8_RE and LOSSY_UTF8_RE (bytes patterns of fixed-length alternatives) as byte sets.
Each converted pattern is checked against the original regex on random text before writing.
Usage: python3 scripts/gen_ftfy_tables.py [--ftfy-src DIR] > src/dro/text/ftfy_tables.inc
"""
import argparse
import random
import re
import sys

try:
    import re._parser as sre_parse  # Python >= 3.11
    from re._constants import (ANY, AT, AT_BEGINNING, BRANCH, CATEGORY, CATEGORY_DIGIT,
                               CATEGORY_SPACE, CATEGORY_WORD, IN, LITERAL, MAX_REPEAT, NEGATE,
                               RANGE, SUBPATTERN)
except ImportError:  # older Pythons
    import sre_parse
    from sre_constants import (ANY, AT, AT_BEGINNING, BRANCH, CATEGORY, CATEGORY_DIGIT,
                               CATEGORY_SPACE, CATEGORY_WORD, IN, LITERAL, MAX_REPEAT, NEGATE,
                               RANGE, SUBPATTERN)

MAX_CP = 0x110000


def ranges_of(members):
    out = []
    for cp in sorted(members):
        if out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return [tuple(r) for r in out]


CATEGORY_SETS = {}


def category_set(cat):
    if cat not in CATEGORY_SETS:
        pat = {CATEGORY_SPACE: r"\s", CATEGORY_WORD: r"\w", CATEGORY_DIGIT: r"\d"}[cat]
        rx = re.compile(pat)
        CATEGORY_SETS[cat] = frozenset(cp for cp in range(MAX_CP)
                                       if not 0xD800 <= cp <= 0xDFFF and rx.match(chr(cp)))
    return CATEGORY_SETS[cat]


def class_members(op, av):
    """The code points one parsed item (LITERAL, IN, ANY) matches."""
    if op == LITERAL:
        return frozenset([av])
    if op == ANY:
        return frozenset(range(MAX_CP)) - {0x0A}
    assert op == IN, op
    members, negate = set(), False
    for kind, val in av:
        if kind == NEGATE:
            negate = True
        elif kind == LITERAL:
            members.add(val)
        elif kind == RANGE:
            members.update(range(val[0], val[1] + 1))
        elif kind == CATEGORY:
            members |= category_set(val)
        else:
            raise ValueError(f"unsupported class element {kind}")
    if negate:
        members = set(range(MAX_CP)) - members
    return frozenset(members)


class Program:
    """A regex of the form alt1|alt2|... whose alternatives are sequences of classes with
    repeat counts (and '^'), as BADNESS_RE is."""

    def __init__(self, pattern, flags):
        tree = sre_parse.parse(pattern, flags)
        assert len(tree) == 1 and tree[0][0] == BRANCH
        self.classes = []  # list of frozensets
        self.index = {}
        self.alternatives = []
        for alt in tree[0][1][1]:
            items = []
            for op, av in alt:
                if op == AT:
                    assert av == AT_BEGINNING
                    items.append(("begin", -1, 1, 1))
                elif op == MAX_REPEAT:
                    lo, hi, sub = av
                    assert len(sub) == 1
                    items.append(("class", self.class_id(*sub[0]), lo, hi))
                else:
                    items.append(("class", self.class_id(op, av), 1, 1))
            self.alternatives.append(items)

    def class_id(self, op, av):
        members = class_members(op, av)
        if members not in self.index:
            self.index[members] = len(self.classes)
            self.classes.append(members)
        return self.index[members]

    def match_at(self, text, pos, items):
        if not items:
            return True
        kind, cls, lo, hi = items[0]
        if kind == "begin":
            return pos == 0 and self.match_at(text, pos, items[1:])
        n = 0
        while n < hi and pos + n < len(text) and ord(text[pos + n]) in self.classes[cls]:
            n += 1
        while n >= lo:
            if self.match_at(text, pos + n, items[1:]):
                return True
            n -= 1
        return False

    def search(self, text):
        return any(self.match_at(text, p, alt) for p in range(len(text) + 1)
                   for alt in self.alternatives)


def byte_alternatives(pattern):
    """A bytes regex of fixed-length alternatives -> list of lists of 256-bit sets."""
    tree = sre_parse.parse(pattern.decode("latin-1"))
    alts = tree[0][1][1] if len(tree) == 1 and tree[0][0] == BRANCH else [list(tree)]
    out = []
    for alt in alts:
        seq = []
        for op, av in alt:
            members = class_members(op, av)
            assert max(members) < 256
            seq.append(sum(1 << b for b in members))
        out.append(seq)
    return out


def byte_sub_reference(alts, data):
    """What re.sub finds: leftmost, first alternative, non-overlapping."""
    spans, pos = [], 0
    while pos < len(data):
        for seq in alts:
            if pos + len(seq) <= len(data) and all(
                    (mask >> data[pos + i]) & 1 for i, mask in enumerate(seq)):
                spans.append((pos, pos + len(seq)))
                pos += len(seq)
                break
        else:
            pos += 1
    return spans


def c_string(s):
    out, prev_hex = [], False
    for b in s.encode("utf-8"):
        ch = chr(b)
        if b < 0x20 or b >= 0x7F or ch in '"\\?':
            out.append("\\x%02X" % b)
            prev_hex = True
        else:
            if prev_hex and ch in "0123456789abcdefABCDEF":
                out.append('" "')
            out.append(ch)
            prev_hex = False
    return '"' + "".join(out) + '"'


def emit(decl, items, per_line):
    """An array, at most per_line items a line and lines kept within 100 columns."""
    w = sys.stdout.write
    w(f"constexpr {decl}[] = {{\n")
    line = []
    for item in items:
        if line and (len(line) == per_line or 4 + len(" ".join(line + [item])) > 100):
            w("    " + " ".join(line) + "\n")
            line = []
        line.append(item)
    if line:
        w("    " + " ".join(line) + "\n")
    w("};\n")


def emit_ranges(name, members):
    emit(f"CodeRange {name}", [f"{{0x{lo:X}, 0x{hi:X}}}," for lo, hi in ranges_of(members)], 5)


def emit_translate(name, mapping):
    """A str.translate table: code point -> replacement (possibly empty or several characters)."""
    pool, entries = [], []
    for cp in sorted(mapping):
        repl = mapping[cp] or ""
        if isinstance(repl, int):
            repl = chr(repl)
        entries.append(f"{{0x{cp:X}, {len(pool)}, {len(repl)}}},")
        pool.extend(ord(c) for c in repl)
    emit(f"Translation {name}", entries, 4)
    emit(f"char32_t {name}Pool", [f"0x{c:X}," for c in pool] or ["0"], 12)


def check_program(prog, regex, alphabet, rng, n=20000):
    for _ in range(n):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8)))
        assert prog.search(s) == bool(regex.search(s)), repr(s)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ftfy-src", help="folder holding the ftfy package (a source checkout)")
    args = parser.parse_args()
    if args.ftfy_src:
        sys.path.insert(0, args.ftfy_src)
    import html
    import ftfy
    from ftfy import badness, chardata, fixes
    assert ftfy.__version__ == "6.3.1", ftfy.__version__
    rng = random.Random(0)
    w = sys.stdout.write
    w("// Generated by scripts/gen_ftfy_tables.py; do not edit.\n")
    w(f"// ftfy {ftfy.__version__}, Python {sys.version.split()[0]}.\n")

    # --- codecs -----------------------------------------------------------------------------
    encodings = list(chardata.CHARMAP_ENCODINGS)
    assert encodings[:2] == ["latin-1", "sloppy-windows-1252"]
    tables = []
    for enc in encodings + ["windows-1252"]:
        table = []
        for b in range(256):
            try:
                table.append(ord(bytes([b]).decode(enc)))
            except UnicodeDecodeError:
                table.append(0xFFFF)  # strict windows-1252 only
        tables.append(table)
    for enc, table in zip(encodings, tables):
        image = [c for c in table]
        assert len(set(image)) == 256 and 0xFFFF not in image, enc  # encoding is a bijection
        allowed = set(image)
        for cp in range(0x10000):
            assert (cp in allowed) == chardata.possible_encoding(chr(cp), enc), (enc, cp)
        for b in range(256):
            assert chr(table[b]).encode(enc) == bytes([b]), (enc, b)
    w("// chardata.CHARMAP_ENCODINGS in ftfy's order, then strict windows-1252 (0xFFFF: "
      "unassigned).\n")
    emit("const char* kEncodingNames", [f'"{e}",' for e in encodings + ["windows-1252"]], 4)
    w(f"constexpr char16_t kCodecTables[{len(tables)}][256] = {{\n")
    for enc, table in zip(encodings + ["windows-1252"], tables):
        w(f"    {{  // {enc}\n")
        for i in range(0, 256, 8):
            w("        " + " ".join(f"0x{c:X}," for c in table[i:i + 8]) + "\n")
        w("    },\n")
    w("};\n")

    # --- translate tables -------------------------------------------------------------------
    w("// chardata.LIGATURES, WIDTH_MAP, CONTROL_CHARS: code point -> offset, length in the pool.\n")
    emit_translate("kLigatures", chardata.LIGATURES)
    emit_translate("kWidthMap", chardata.WIDTH_MAP)
    emit_ranges("kControlChars", set(chardata.CONTROL_CHARS))
    # fixes.ANSI_RE uses \d, which on str patterns is exactly category Nd (the C++ side's test).
    import unicodedata
    assert category_set(CATEGORY_DIGIT) == {cp for cp in range(MAX_CP) if not 0xD800 <= cp <= 0xDFFF
                                            and unicodedata.category(chr(cp)) == "Nd"}

    # --- HTML entities ----------------------------------------------------------------------
    extra = {}
    for key, value in chardata.HTML_ENTITIES.items():
        name = key[1:]
        if html.entities.html5.get(name) != value:
            assert name not in html.entities.html5, name
            extra[name] = value
    w("// chardata.HTML_ENTITIES beyond html5's names with ';' (which it also holds): the\n"
      "// upper-cased names of lower-case entities, sorted.\n")
    emit("NamedReplacement kUpperEntities",
         [f"{{{c_string(k)}, {c_string(extra[k])}}}," for k in sorted(extra, key=str.encode)], 3)

    # --- UTF8_DETECTOR_RE classes -----------------------------------------------------------
    w("// chardata.UTF8_CLUES, the classes of UTF8_DETECTOR_RE.\n")
    for key, name in [("utf8_first_of_2", "kUtf8FirstOf2"), ("utf8_first_of_3", "kUtf8FirstOf3"),
                      ("utf8_first_of_4", "kUtf8FirstOf4"),
                      ("utf8_continuation", "kUtf8Continuation"),
                      ("utf8_continuation_strict", "kUtf8ContinuationStrict")]:
        rx = re.compile("[" + chardata.UTF8_CLUES[key] + "]")
        emit_ranges(name, {cp for cp in range(0x10000) if rx.match(chr(cp))})
    detector = sre_parse.parse(chardata.UTF8_DETECTOR_RE.pattern, re.VERBOSE)
    assert [op for op, _ in detector] == [sre_parse.ASSERT_NOT, MAX_REPEAT]

    # --- BADNESS_RE -------------------------------------------------------------------------
    prog = Program(badness.BADNESS_RE.pattern, re.VERBOSE)
    alphabet = sorted({chr(c) for cls in prog.classes if len(cls) < 1000 for c in cls} |
                      set("aAzZ \n\t.,?!1"))
    check_program(prog, badness.BADNESS_RE, alphabet, rng)
    w("// badness.BADNESS_RE: character classes (ranges into kBadnessRanges) and alternatives.\n")
    pool, spans = [], []
    for cls in prog.classes:
        rs = ranges_of(cls)
        spans.append(f"{{{len(pool)}, {len(rs)}}},")
        pool.extend(rs)
    emit("ClassSpan kBadnessClasses", spans, 6)
    emit("CodeRange kBadnessRanges", [f"{{0x{lo:X}, 0x{hi:X}}}," for lo, hi in pool], 5)
    items, alts = [], []
    for alt in prog.alternatives:
        alts.append(f"{{{len(items)}, {len(alt)}}},")
        for kind, cls, lo, hi in alt:
            items.append(f"{{{cls}, {lo}, {hi}}},")  # class -1: '^'
    emit("PatternItem kBadnessItems", items, 6)
    emit("ItemSpan kBadnessAlternatives", alts, 6)

    # --- bytes patterns ---------------------------------------------------------------------
    for regex, name in [(chardata.ALTERED_UTF8_RE, "kAlteredUtf8"),
                        (chardata.LOSSY_UTF8_RE, "kLossyUtf8")]:
        alts = byte_alternatives(regex.pattern)
        data_alphabet = bytes(sorted({b for seq in alts for m in seq for b in range(256)
                                      if (m >> b) & 1} | {0x41}))
        for _ in range(20000):
            data = bytes(rng.choice(data_alphabet) for _ in range(rng.randint(1, 10)))
            assert byte_sub_reference(alts, data) == [m.span() for m in regex.finditer(data)]
        w(f"// chardata.{'ALTERED_UTF8_RE' if name == 'kAlteredUtf8' else 'LOSSY_UTF8_RE'}: "
          "alternatives of byte sets (bits of four 64-bit words).\n")
        sets, seqs = [], []
        for seq in alts:
            seqs.append(f"{{{len(sets)}, {len(seq)}}},")
            for m in seq:
                words = [(m >> (64 * k)) & ((1 << 64) - 1) for k in range(4)]
                sets.append("{{" + ", ".join(f"0x{x:X}u" for x in words) + "}},")
        emit(f"ByteSet {name}Sets", sets, 1)
        emit(f"ItemSpan {name}Alternatives", seqs, 6)


if __name__ == "__main__":
    main()
