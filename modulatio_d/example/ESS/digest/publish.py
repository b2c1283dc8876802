"""A `call:` step of the example: runs in a child Python with the project folder on sys.path."""

from pathlib import Path


def main(step):
    """`step` carries vault, project, plan_id, step_index, attempt, objective, usage_file, ..."""
    digest = Path(step.vault) / step.project / "out" / "digest.txt"
    text = digest.read_text() if digest.exists() else "(no digest built)\n"
    published = digest.with_name("published.txt")
    published.write_text(f"published by {step.fencing_token}\n{text}")
    return {"summary": f"published {len(text)} bytes to {published.name}",
            "usage": [{"model": "none", "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0,
                       "call_id": f"publish-{step.plan_id}", "agent_id": "digest.publish"}]}
