"""interp_transformer: a hooked transformer for mechanistic interpretability research."""

from interp_transformer.activation_cache import ActivationCache as ActivationCache
from interp_transformer.config import TransformerConfig as TransformerConfig
from interp_transformer.hooks import HookedModule as HookedModule, HookPoint as HookPoint
from interp_transformer.model import HookedTransformer as HookedTransformer, LogitsAndLoss as LogitsAndLoss
from interp_transformer.names import get_act_name as get_act_name

__version__ = "0.1.0"
