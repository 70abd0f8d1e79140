"""Configuration of a MoLFormer-shaped encoder (checkpoint-folder code, loaded with ``trust_remote_code``).

The keys are those of the ``ibm/MoLFormer-XL-both-10pct`` folder's ``config.json``; the defaults here are
that checkpoint's sizes (12 layers, 768-d, 12 heads, 202 positions, 32 random features).
"""

from transformers import PretrainedConfig


class MolformerConfig(PretrainedConfig):
    """Sizes and options of :class:`MolformerModel`.

    ``deterministic_eval``: keep the stored random-feature matrix of the linear attention in eval mode;
    when False (the checkpoint's default) a fresh matrix is drawn at every forward, so two calls differ.
    """

    model_type = "molformer"

    def __init__(self, vocab_size=2362, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=768, hidden_act="gelu", hidden_dropout_prob=0.1, embedding_dropout_prob=0.2,
                 max_position_embeddings=202, initializer_range=0.02, layer_norm_eps=1e-12,
                 linear_attention_eps=1e-6, num_random_features=32, feature_map_kernel="relu",
                 deterministic_eval=False, rotary_base=10000.0, pad_token_id=2, **kwargs):
        super().__init__(pad_token_id=pad_token_id, **kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.embedding_dropout_prob = embedding_dropout_prob
        self.max_position_embeddings = max_position_embeddings
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.linear_attention_eps = linear_attention_eps
        self.num_random_features = num_random_features
        self.feature_map_kernel = feature_map_kernel
        self.deterministic_eval = deterministic_eval
        self.rotary_base = rotary_base
