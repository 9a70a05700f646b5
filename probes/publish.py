"""Publishing a concept bank on the Hugging Face Hub: the folder to upload (the bank's files, its plots, a model card)
and the upload itself. `python -m probes publish BANK_DIR --repo owner/name` runs it; ``--dry-run OUT`` writes the
folder instead, to read before anything leaves the machine.

The folder holds exactly what studio/hub.py accepts when the bank is loaded back with ``hf://owner/name``: README.md at
the repo's root, and bank.json, bank.safetensors and the plots in the bank folder (the root, or ``--subfolder``).
A repo holding several banks in subfolders has one card at its root: it describes the bank published last.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import yaml

from probes.bank import META_FILE, TENSORS_FILE, ConceptBank
from probes.figures import markdown_table
from studio.errors import BankError, InputError
from studio.hub import PLOTS, SCHEME, check_repo_id, parse

CARD = "README.md"
TAGS = ("musicrfm", "musicgen", "steering", "rfm", "concept-bank")


def load_for_publishing(bank_dir: Path) -> ConceptBank:
    """The bank in `bank_dir`, verified as the studio verifies it (a damaged one is refused)."""
    if not Path(bank_dir).is_dir():
        raise InputError(f"BANK_DIR {bank_dir} is not a folder; give a bank folder (bank.json + bank.safetensors)")
    return ConceptBank.load(bank_dir)


def bank_id(repo: str, subfolder: str | None) -> str:
    """The ``hf://`` id the published bank is loaded by; checks the repo id and subfolder."""
    check_repo_id(repo, what="--repo")
    spec = f"{SCHEME}{repo}" + (f"/{subfolder.strip('/')}" if subfolder else "")
    parse(spec)  # the subfolder's parts must be folder names
    return spec


def build_folder(bank_dir: Path, bank: ConceptBank, spec: str, out: Path) -> list[str]:
    """Write into the empty folder `out` what would be uploaded: the card at the root, the bank's files (and plots,
    when it has them) in its folder. Returns the paths written, relative to `out`."""
    _, sub = parse(spec)
    target = out / sub if sub else out
    target.mkdir(parents=True, exist_ok=True)
    names = [META_FILE, TENSORS_FILE] + [p for p in PLOTS if (bank_dir / p).is_file()]
    for name in names:
        shutil.copyfile(bank_dir / name, target / name)
    (out / CARD).write_text(model_card(bank, spec, has_plot=PLOTS[0] in names), encoding="utf-8")
    prefix = f"{sub}/" if sub else ""
    return sorted([CARD] + [prefix + name for name in names])


def write_dry_run(bank_dir: Path, repo: str, subfolder: str | None, out: Path) -> list[str]:
    """The upload folder written to `out` (which must not exist yet, or be an empty folder), all at once: built in a
    temporary sibling and renamed into place, so a failure leaves nothing behind."""
    bank = load_for_publishing(bank_dir)
    spec = bank_id(repo, subfolder)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"--dry-run {out} exists and is not an empty folder; name a new folder")
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        files = build_folder(Path(bank_dir), bank, spec, tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it owner-only
        if out.is_dir():
            out.rmdir()
        os.rename(tmp, out)
        tmp = None
    except OSError as err:
        raise BankError(f"could not write the upload folder {out} ({err}); nothing was written") from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return files


def upload(bank_dir: Path, repo: str, subfolder: str | None, private: bool) -> str:
    """Create the repo (when new) and upload the folder in one commit; the repo's URL. One line for what stops it."""
    from huggingface_hub import HfApi, constants, get_token

    bank = load_for_publishing(bank_dir)
    spec = bank_id(repo, subfolder)
    if constants.is_offline_mode():
        raise InputError("uploading needs the network, and HF_HUB_OFFLINE is set; unset it, or use --dry-run OUT")
    if get_token() is None:
        raise InputError("uploading needs a Hugging Face token with write access: set HF_TOKEN or run `hf auth login`")
    with tempfile.TemporaryDirectory(prefix="musicrfm-publish-") as tmp:
        build_folder(Path(bank_dir), bank, spec, Path(tmp))
        try:
            api = HfApi()
            url = api.create_repo(repo, private=private, exist_ok=True)
            api.upload_folder(
                repo_id=repo,
                folder_path=tmp,
                commit_message=f"Concept bank '{bank.concept}' for {bank.signature.model_id} (MusicRFM Studio)",
            )
        except Exception as err:  # noqa: BLE001 - mapped to one line, or re-raised when it is not the Hub's
            raise _upload_error(repo, err) from None
    return str(url)


def _upload_error(repo: str, err: Exception) -> Exception:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(err, HfHubHTTPError):
        status = err.response.status_code if err.response is not None else None
        if status in (401, 403):
            return BankError(
                f"the Hub refused the upload to {repo} (HTTP {status}): the token cannot write there; use a token "
                f"with write access to {repo.split('/')[0]}"
            )
        return BankError(f"the Hub answered HTTP {status} to the upload to {repo}: {str(err).splitlines()[0]}")
    if isinstance(err, (httpx2.TransportError, ConnectionError)):
        return BankError(f"cannot reach the Hugging Face Hub to upload to {repo} ({err}); connect and try again")
    return err


# ------------------------------------------------------------------------------------------------ the model card


def card_metadata(bank: ConceptBank) -> dict:
    """The card's YAML front matter: what the Hub indexes (base_model, library, tags) and the bank's own facts."""
    model_id = bank.signature.model_id
    meta = {}
    if "/" in model_id:  # the Hub accepts only a Hub model id here; the tiny model built here is not one
        meta["base_model"] = model_id
    meta |= {
        "library_name": "musicrfm",
        "tags": [*TAGS, bank.concept],
        "concept": bank.concept,
        "classes": list(bank.classes),
        "layers": list(bank.layers),
        "readout_layer": int(bank.readout_layer),
        "val_metric": bank.val_metric,
        "method": bank.method,
        "model_signature": {
            "model_id": model_id,
            "config_hash": bank.signature.config_hash,
            "hidden_size": bank.signature.hidden_size,
            "num_layers": bank.signature.num_layers,
        },
    }
    return meta


def model_card(bank: ConceptBank, spec: str, has_plot: bool) -> str:
    """README.md for the repo: YAML front matter, then what the bank is, how to use it and how it was made."""
    metric = "R²" if bank.val_metric == "r2" else "AUC"
    _, sub = parse(spec)
    plot = f"\n![Validation {metric} by layer]({sub + '/' if sub else ''}{PLOTS[0]})\n" if has_plot else ""
    command = bank.command or "not recorded (the bank was made before MusicRFM Studio recorded it)"
    kind = "regression (one direction set for the value)" if bank.val_metric == "r2" else "one-vs-rest per class"
    holds = (
        f"the top {bank.num_components} eigenvectors of the AGOP of an RFM probe ({kind})"
        if bank.method == "rfm"
        else f"{bank.num_components} direction(s) found by the `{bank.method}` method ({kind}; see MusicRFM Studio's "
        f"probes/directions.py)"
    )
    front = yaml.safe_dump(card_metadata(bank), sort_keys=False, allow_unicode=True)
    settings = (
        f"Hyper-parameters (a list was searched: each probe kept its best value on the validation split):\n\n```yaml\n"
        f"{yaml.safe_dump(bank.hparams, sort_keys=True, default_flow_style=None).strip()}\n```"
        if bank.hparams
        else "Hyper-parameters: none recorded."
    )
    return f"""---
{front}---

# {bank.concept} concept bank for {bank.signature.model_id}

A MusicRFM Studio concept bank: steering directions for the **{bank.concept}** concept inside the decoder of
{bank.signature.describe()}. For every trained decoder layer and class
it holds {holds}, and an RFM readout probe at
layer {bank.readout_layer}. It is two files and no code: `bank.json` and `bank.safetensors` (no pickle).

Classes ({len(bank.classes)}): {", ".join(f"`{c}`" for c in bank.classes)}.
Trained on {bank.describe_layers()}; readout at layer {bank.readout_layer}.

## Use it

In a recipe:

```json
{{"version": 1, "model": "{bank.signature.model_id}", "bank": "{spec}", "seconds": 10,
 "controls": [{{"concept": "{bank.concept}", "class": "{bank.classes[0]}", "strength": 0.3}}]}}
```

or type `{spec}` in the studio's **Concept banks** tab, under "Load a bank from the Hugging Face Hub". The studio
fetches only the bank's files, checks them and refuses the bank for any other model than the one above.

## Validation {metric} by layer

{markdown_table(bank)}
{plot}
## Training data: the SynTheory subset

```yaml
{yaml.safe_dump(bank.dataset, sort_keys=True, default_flow_style=None).strip() or "{}"}
```

## RFM settings

Pooling of a clip's states: `{bank.pooling}`. {settings}

## The command that made it

```
{command}
```
"""
