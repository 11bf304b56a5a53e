"""text_stats: an MCP tool (docs/mcp.md) in Python: statistics of a text.

Input `{"text": "...", "top": 3}`, output `{"characters": .., "words": .., "lines": ..,
"sentences": .., "top_words": [{"word": "the", "count": 4}, ...]}` (the `top` most
frequent words, ties in order of first appearance; case-folded). The host checks the
input against input_schema first, so only an empty text is refused here (a tool error).
Config (optional): {"stopwords": ["the", "a"]} words left out of top_words.
Capabilities: none.
"""

import re

import routeiq_tool as rt

WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")


def call(arguments: dict) -> dict:
    text = arguments["text"]
    if not text.strip():
        raise rt.ToolError("text is empty: give some words to count")
    stop = set((rt.config_json() or {}).get("stopwords", []))
    words = [w.casefold() for w in WORD.findall(text)]
    counts: dict[str, int] = {}
    for word in words:
        if word not in stop:
            counts[word] = counts.get(word, 0) + 1
    top = sorted(counts.items(), key=lambda item: -item[1])[: arguments.get("top", 5)]
    rt.log.debug(f"text_stats: {len(words)} words")
    return {
        "characters": len(text),
        "words": len(words),
        "lines": len(text.splitlines()),
        "sentences": len(SENTENCE_END.findall(text.strip())) or 1,
        "top_words": [{"word": w, "count": c} for w, c in top],
    }
