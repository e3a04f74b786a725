"""``FactoredMatrix`` lives next to the weights now (``interp_transformer.factored_matrix``); this name keeps working."""

from interp_transformer.factored_matrix import FactoredMatrix as FactoredMatrix
