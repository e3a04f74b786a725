"""``interp-transformer demo`` failures: one line on stderr, a non-zero exit, and no output folder left behind."""

from __future__ import annotations

import pytest

from interp_transformer import demo
from interp_transformer.cli import main


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, f"a bad input should give a one-line error, not a traceback:\n{err}"
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("demo report:")]  # tqdm's bar
    assert len(lines) == 1 and lines[0].startswith("interp-transformer demo: error: "), f"expected one error line, got:\n{err}"
    return lines[0]


def test_unknown_model_is_one_line_error_and_creates_no_folder(tmp_path, capsys):
    out = tmp_path / "nested" / "report"
    assert main(["demo", "--model", "no-such-model", "--out", str(out)]) == 1
    assert "no-such-model" in _one_line_error(capsys)
    assert not (tmp_path / "nested").exists(), "a failed demo must not leave the output folder (or its parents) it created"


def test_unknown_model_leaves_an_existing_folder_alone(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["demo", "--model", "no-such-model", "--out", str(tmp_path)]) == 1
    _one_line_error(capsys)
    assert (tmp_path / "notes.txt").read_text() == "mine", "the user's folder and its files must survive a failed demo"


def test_prompt_without_a_repeat_is_refused_before_the_folder_is_made(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["demo", "--prompt", "river castle garden morning", "--out", str(out)]) == 1
    assert "--prompt" in _one_line_error(capsys), "the error should name the flag to change"
    assert not out.exists()


def test_out_that_is_a_file_is_refused_and_left_alone(tmp_path, capsys):
    out = tmp_path / "report.html"
    out.write_text("mine")
    assert main(["demo", "--out", str(out / "inside")]) == 1
    message = _one_line_error(capsys)
    assert "--out" in message and "is a file" in message, f"the error should say --out names a file: {message}"
    assert out.read_text() == "mine"


@pytest.mark.parametrize("existing", [False, True])
def test_failure_while_writing_removes_only_a_folder_the_demo_created(tmp_path, capsys, monkeypatch, existing):
    def broken_section(model, out):
        raise ValueError("copying scores failed")

    monkeypatch.setattr(demo, "copying_section", broken_section)
    out = tmp_path / "made" / "report"
    if existing:
        out.mkdir(parents=True)
    assert main(["demo", "--out", str(out)]) == 1
    assert "copying scores failed" in _one_line_error(capsys)
    if existing:
        assert out.is_dir(), "a folder that existed before the run belongs to the user: keep it"
    else:
        assert not (tmp_path / "made").exists(), (
            "the demo created this folder and then failed half-way; it should remove it rather than leave a partial report"
        )


def test_prompt_longer_than_the_context_is_refused_not_cut(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["demo", "--prompt", "river castle " * 40, "--out", str(out)]) == 1
    message = _one_line_error(capsys)
    assert "--prompt" in message and "n_ctx=64" in message, f"expected the flag and the context length, got {message!r}"
    assert not out.exists()


def test_default_prompt_shrinks_to_a_short_context(make_hf_gpt2):
    from interp_transformer import HookedTransformer

    _, directory = make_hf_gpt2(with_tokenizer=True, n_layer=1)
    model = HookedTransformer.from_pretrained(directory)
    tokens = demo.prompt_tokens(model, None)
    assert tokens.shape[1] <= model.cfg.n_ctx, "the default prompt must fit the context without being cut"
    pair = demo.induction_patching_pair(model, tokens)  # still a repeat: the patching pair exists
    assert pair.answer != pair.wrong
