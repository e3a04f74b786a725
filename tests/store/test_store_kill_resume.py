"""A cache run killed with SIGKILL mid-write, then resumed, leaves exactly the bytes of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from interp_transformer import HookedTransformer
from interp_transformer.store import ActivationStore, cache_dataset

HOOKS = ["blocks.0.hook_resid_post", "blocks.1.attn.hook_pattern"]
SETTINGS = dict(batch_size=2, sequences_per_shard=4)

# Runs cache_dataset in a child process that SIGKILLs itself halfway through writing the file named KILL_AT.
CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import torch
    from interp_transformer import HookedTransformer
    from interp_transformer.store import cache_dataset, layout

    model_dir, corpus_path, out, kill_at = sys.argv[1:5]
    torch.set_num_threads(1)
    real_atomic_write = layout.atomic_write

    def killed_mid_write(target, write):
        if Path(target).name == kill_at:
            partial = Path(target).parent / f".{Path(target).name}.killed.tmp"
            write(str(partial))
            data = partial.read_bytes()
            partial.write_bytes(data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        real_atomic_write(target, write)

    layout.atomic_write = killed_mid_write
    model = HookedTransformer.from_pretrained(model_dir).eval()
    cache_dataset(model, torch.load(corpus_path), HOOKS, out, progress=False, **SETTINGS)
    """
).replace("HOOKS", repr(HOOKS)).replace("SETTINGS", repr(SETTINGS))


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["shard-00002.safetensors", "shard-00001.json", "manifest.json"])
def test_sigkill_mid_write_then_resume_is_byte_identical(model, tmp_path, kill_at):
    model.save_pretrained(tmp_path / "model")
    corpus = torch.randint(0, model.cfg.d_vocab, (18, 7), generator=torch.Generator().manual_seed(5))
    torch.save(corpus, tmp_path / "corpus.pt")
    loaded = HookedTransformer.from_pretrained(tmp_path / "model").eval()
    cache_dataset(loaded, corpus, HOOKS, tmp_path / "clean", progress=False, **SETTINGS)

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", CHILD, str(tmp_path / "model"), str(tmp_path / "corpus.pt"), str(tmp_path / "killed"), kill_at]
    child = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, f"the child should have been killed mid-write, it exited {child.returncode}:\n{child.stderr[-2000:]}"
    left = sorted(p.name for p in (tmp_path / "killed").iterdir())
    assert f".{kill_at}.killed.tmp" in left and kill_at not in left, f"the kill should leave only a partial temporary file: {left}"
    with pytest.raises(FileNotFoundError, match="has not finished.*resume"):
        ActivationStore(tmp_path / "killed")

    cache_dataset(loaded, corpus, HOOKS, tmp_path / "killed", resume=True, progress=False, **SETTINGS)
    clean, resumed = _files(tmp_path / "clean"), _files(tmp_path / "killed")
    assert resumed.keys() == clean.keys(), f"files after resuming: {sorted(resumed)}; an uninterrupted run wrote {sorted(clean)}"
    differing = [name for name in clean if clean[name] != resumed[name]]
    assert not differing, f"these files differ from an uninterrupted run's: {differing}"
    store = ActivationStore(tmp_path / "killed", model=loaded)
    store.verify()
    _, expected = loaded.run_with_cache(corpus, names_filter=HOOKS)
    torch.testing.assert_close(store.rows(0, 18)[HOOKS[0]], expected[HOOKS[0]], rtol=1e-5, atol=1e-6)
