"""Dataset-scale activation caching: sharded safetensors files plus a manifest, resumable, multi-process."""

from interp_transformer.store.layout import StoreWriteError as StoreWriteError
from interp_transformer.store.reader import ActivationStore as ActivationStore
from interp_transformer.store.verification import CorruptStoreError as CorruptStoreError
from interp_transformer.store.writer import cache_dataset as cache_dataset
