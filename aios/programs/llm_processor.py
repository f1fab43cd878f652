"""llm_processor: a triggered job that receives arguments and writes a result file.

Honest about what it can do: no language model is installed on this machine. It prints
the arguments it received, "processes" every text argument (positional, or keyword
values) with a trivial local transformation (word and character counts), and writes
the result as JSON to $AIOS_HOME/results/llm_processor-<AIOS_RUN_ID>.json. Plug a real
model into `process()`. Standard library only.

    aios trigger llm_processor --arg "some text" --kw model=small
"""
import json
import os
import time
from pathlib import Path


def process(text):
    return {"text": text, "words": len(text.split()), "characters": len(text)}


def main(*args, **kwargs):
    print(f"llm_processor: received args={args!r} kwargs={kwargs!r}", flush=True)
    texts = [a for a in args if isinstance(a, str)]
    texts += [v for v in kwargs.values() if isinstance(v, str)]
    run_id = os.environ.get("AIOS_RUN_ID") or f"manual-{int(time.time())}"
    result = {
        "job": os.environ.get("AIOS_JOB", "llm_processor"),
        "run_id": run_id,
        "args": list(args),
        "kwargs": kwargs,
        "model": None,
        "note": "no model is configured on this machine; results are word and character counts",
        "results": [process(text) for text in texts],
    }
    out = Path(os.environ.get("AIOS_HOME", ".")) / "results" / f"llm_processor-{run_id}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=repr) + "\n", encoding="utf-8")
    print(f"llm_processor: processed {len(texts)} text(s) -> {out}")
