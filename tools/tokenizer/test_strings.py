"""Strings the tokenizer fixtures are computed on (authored cases plus seeded random mixtures).

Imported by make_fixtures.py; kept separate so the list is easy to read and extend.
"""

import os
import random

AUTHORED = [
    "",
    " ",
    "  ",
    "   ",
    "\t",
    "\n",
    "\n\n",
    "\r\n",
    " \n",
    "\n ",
    "a",
    " a",
    "a ",
    "  a  ",
    "Hello, world!",
    "Hello world!",
    " Hello, world!",
    "Hello,  world!",
    "Hello, world!  ",
    "hello\tworld",
    "\tleading tab",
    "trailing tab\t",
    "line one\nline two\nline three",
    "line one\r\nline two",
    "\n\nstarts with blank lines",
    "ends with newline\n",
    "Multiple    spaces    between    words.",
    "grabbed",
    " grabbed",
    "           grabbed",
    "ax\n####\nboo",
    "0",
    "7",
    "12345",
    "3.14159",
    "1,250,000",
    "2023-10-27T17:05:00Z",
    "+1 (555) 123-4567",
    "Order #A-9921 shipped on 03.04.2024",
    "1e-5 2e-4 0.0001",
    "The year 1993 and the number 4096.",
    "Élodie boit un café crème à Noël.",
    "Straße, Größe, Übergröße, Käse",
    "¿Dónde está la estación? ¡Qué bonito!",
    "Zażółć gęślą jaźń",
    "İstanbul'da yaşıyorum",
    "Москва — столица России.",
    "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
    "今天天气很好，我们去公园散步吧。",
    "镇",
    "東京の桜はもうすぐ咲きます。",
    "안녕하세요. 오늘 날씨가 정말 좋네요.",
    "مرحبا بكم في المدينة.",
    "שלום עולם",
    "English then עברית then English",
    "नमस्ते, आप कैसे हैं?",
    "Xin chào, hôm nay trời đẹp quá.",
    "😀",
    "🦙",
    "🦙Ꙋ",
    "Ꙋ🦙",
    "I love 🍕 and 🍣!",
    "👍🏽 thumbs up with skin tone",
    "👨‍👩‍👧‍👦 family (ZWJ sequence)",
    "🇫🇷🇯🇵 flags",
    "e\u0301 combining acute",
    "zero\u200bwidth\u200bspace",
    "non\u00a0breaking\u00a0space",
    "ideographic\u3000space",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math letters",
    "control\u0001char",
    "bell\u0007and\u001fus",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "!!!???...,,,;;;:::",
    "(((nested)))[[[brackets]]]{{{braces}}}",
    "<s> and </s> and <unk> written as text",
    "<0x41> looks like a byte token",
    "▁ already has the meta symbol ▁▁",
    "https://example.com/path?query=1&other=two#frag",
    "john.smith@example.com",
    "def f(x):\n    return x * 2\n",
    "class A:\n    def __init__(self):\n        self.x = 1\n",
    "for i in range(10):\n\tprint(i)",
    "{\"name\": \"example\", \"values\": [1, 2, 3]}",
    "SELECT name FROM users WHERE age > 30;",
    "| a | b |\n|---|---|\n| 1 | 2 |",
    "### Sentence:I need a new graphics card for my 486. ### Class:comp.sys.ibm.pc.hardware",
    "### Sentence:The goalie made 41 saves. ### Class:",
    "### Dialogue:Anna: Hi Tom!\nTom: Hi Anna, how are you? ### Summary:Anna greets Tom.",
    "Summarize the following dialogue that is delimited with triple backticks.\n\n### Dialogue: ```Mark: Keys?\nJulia: Blue bowl.```\n### Summary:\n",
    "Classify the sentence into one of 20 classes. The list of classes is provided below, where the classes are separated by commas: \n\nalt.atheism, sci.space\n\n",
    "Sentence: text \n Class: label \n\n",
    "The quick brown fox jumps over the lazy dog.",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "It's a dog's life; they're here, we'll see, I'd say.",
    "“Curly quotes” and ‘single’ and «guillemets» — dashes – too…",
    "☺ ★ ♥ → ← ∞ ≈ ≠ ≤ ≥ ± × ÷ € £ ¥ © ® ™ ° §",
    "Mixed: café 東京 😀 مرحبا 123 \t end",
    " " * 15 + "fifteen spaces",
    " " * 17 + "seventeen spaces",
    " " * 33 + "thirty-three spaces",
    "x" + " " * 16 + "y",
    "\t\t\t\tfour tabs",
    "a\n\n\n\nb",
    "   \n   \n",
]

# Fragments for seeded random mixtures: words of several scripts, digits, punctuation, emoji, whitespace.
_FRAGMENTS = [
    "the", "harbour", "market", "concert", "tickets", "tomorrow", "bridge", "budget", "Council", "MAYOR",
    "graphics", "card", "Windows", "OS/2", "shuttle", "orbit", "hockey", "playoffs", "encryption", "keys",
    "café", "crème", "Noël", "Straße", "Grüße", "niño", "mañana", "città", "però",
    "Москва", "книга", "Αθήνα", "天气", "公园", "書籍", "桜", "안녕", "날씨", "مرحبا", "الكتاب", "שלום", "नमस्ते",
    "0", "1", "42", "2019", "3.14", "1,000", "100%", "$9.99", "7:45", "2e-4",
    ",", ".", "!", "?", ":", ";", "'", "\"", "(", ")", "-", "--", "...", "#", "@", "&", "/", "\\", "*",
    "😀", "🦙", "🍕", "👍🏽", "🇯🇵", "✨", "♥", "€", "→", "∞",
    "def", "return", "self.x", "{", "}", "[1, 2]", "==", "=>", "<s>", "</s>", "▁",
]
_SEPARATORS = [" ", " ", " ", " ", "", "  ", "   ", "\t", "\n", " \n", "\n\n", "    ", "\u00a0"]


def generated(count, seed=20241130):
    """Return `count` seeded random mixtures of fragments and separators."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        n = rng.randint(1, 9)
        parts = []
        if rng.random() < 0.2:
            parts.append(rng.choice(_SEPARATORS))
        for j in range(n):
            if j:
                parts.append(rng.choice(_SEPARATORS))
            parts.append(rng.choice(_FRAGMENTS))
        if rng.random() < 0.2:
            parts.append(rng.choice(_SEPARATORS))
        out.append("".join(parts))
    return out


def space_runs():
    """Runs of 1..40 spaces (code indentation) before and after a word, and after a newline."""
    out = []
    for n in range(1, 41):
        out.append(" " * n + "return")
        out.append("x" + " " * n)
        out.append("if x:\n" + " " * n + "y = 1")
    return out


def corpus_lines():
    """Every non-empty line of corpus.txt, and the whole corpus as one long text."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus.txt"), encoding="utf-8") as f:
        text = f.read()
    return [line for line in text.split("\n") if line] + [text]


def all_strings():
    """Authored cases, space runs, 250 generated mixtures and the corpus lines; duplicates removed, order kept."""
    seen = set()
    result = []
    for s in AUTHORED + space_runs() + generated(250) + corpus_lines():
        if s not in seen:
            seen.add(s)
            result.append(s)
    return result
