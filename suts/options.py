"""What a SUT adapter is given: the run-wide options, whole, and where an API SUT lives.

Adapters take `SUTOptions` as one object (as Inspect's model APIs take a GenerateConfig) and read
the fields they use; nothing copies options field by field on the way in. Kept apart from the
registry so that adapters need not import it.
"""

from pathlib import Path
from typing import Literal

from pydantic import BaseModel


class SUTOptions(BaseModel):
    """Run-time settings that apply to every SUT of a run."""

    max_new_tokens: int = 128
    batch_size: int | None = None
    device: str | None = None
    concurrency: int = 32
    calibration_size: int = 64
    calibration_seed: int = 0
    temperature: float = 0.0
    timeout_s: float = 60.0
    max_attempts: int = 5
    secrets_file: Path | None = None
    kv_cache: Literal["dynamic", "static"] | None = None
    # Local models: the dtype to run in. None: bfloat16 on a GPU or a CPU with native bf16, else
    # float32, so the same command may give other answers on another CPU; pin it to compare.
    dtype: Literal["float32", "bfloat16", "float16"] | None = None


class Endpoint(BaseModel):
    """Where an API SUT lives; the key is named, never written: it comes from env or secrets file."""

    base_url: str
    model: str
    api_key_env: str | None = None
