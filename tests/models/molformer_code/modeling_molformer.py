"""A MoLFormer-shaped encoder (checkpoint-folder code, loaded with ``trust_remote_code``).

Ross et al., "Large-scale chemical language representations capture molecular structure and properties",
Nat. Mach. Intell. 4, 1256 (2022): a post-norm BERT-style encoder over SMILES tokens whose attention is
linear (generalised random features of rotary-embedded queries and keys, Performer style), without a
position table. Layout of the outputs as in the published checkpoint's own code: ``hidden_states`` holds
the embedding output and every layer's output; the final ``LayerNorm`` is applied to the last of them to
give ``last_hidden_state`` only; ``pooler_output`` is the attention-mask mean of ``last_hidden_state``.
"""

import math

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .configuration_molformer import MolformerConfig


def rotate_pairs(x):
    """``(x1, x2) -> (-x2, x1)`` on the two halves of the last axis."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def rotary(q, k, base):
    """Rotate queries and keys ``(B, H, T, d)`` by the angle of their position (Su et al., arXiv:2104.09864)."""
    dim, length = q.shape[-1], q.shape[-2]
    inv_freq = 1.0 / base ** (torch.arange(0, dim, 2, device=q.device, dtype=torch.float32) / dim)
    angle = torch.outer(torch.arange(length, device=q.device, dtype=torch.float32), inv_freq)
    angle = torch.cat((angle, angle), dim=-1)
    cos, sin = angle.cos().to(q.dtype), angle.sin().to(q.dtype)
    return q * cos + rotate_pairs(q) * sin, k * cos + rotate_pairs(k) * sin


class MolformerFeatureMap(nn.Module):
    """Random features ``phi(x) = kernel(x W)``, ``W`` (head_dim, m) of scaled orthogonal blocks."""

    def __init__(self, config):
        super().__init__()
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.n_features = config.num_random_features
        self.kernel = ACT2FN[config.feature_map_kernel]
        self.deterministic = config.deterministic_eval
        self.register_buffer("weight", self.draw())

    def draw(self, device=None):
        """A fresh ``(head_dim, m)`` matrix: orthogonal columns scaled by Gaussian row norms."""
        blocks = []
        for _ in range(math.ceil(self.n_features / self.head_dim)):
            gauss = torch.randn(self.head_dim, self.head_dim, device=device)
            ortho, _ = torch.linalg.qr(gauss)
            blocks.append(ortho * torch.linalg.norm(gauss, dim=1).unsqueeze(0))
        return torch.cat(blocks, dim=1)[:, : self.n_features]

    def forward(self, q, k):
        weight = self.weight if (self.deterministic and not self.training) else self.draw(q.device).to(q.dtype)
        return self.kernel(q @ weight), self.kernel(k @ weight)


class MolformerSelfAttention(nn.Module):
    """Linear attention: ``out_t = phi(q_t) . sum_s phi(k_s) v_s^T / phi(q_t) . sum_s phi(k_s)`` over real keys."""

    def __init__(self, config):
        super().__init__()
        self.heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.feature_map = MolformerFeatureMap(config)
        self.eps = config.linear_attention_eps
        self.base = config.rotary_base

    def split(self, x):
        batch, length, _ = x.shape
        return x.view(batch, length, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, hidden, key_mask=None):
        q, k, v = self.split(self.query(hidden)), self.split(self.key(hidden)), self.split(self.value(hidden))
        q, k = self.feature_map(*rotary(q, k, self.base))
        if key_mask is not None:  # padded keys contribute nothing
            k = k * key_mask[:, None, :, None].to(k.dtype)
        kv = k.transpose(-1, -2) @ v
        norm = (q @ k.sum(dim=-2).unsqueeze(-1)).clamp(min=self.eps)
        out = (q @ kv) / norm
        batch, heads, length, dim = out.shape
        return out.transpose(1, 2).reshape(batch, length, heads * dim)


class MolformerLayer(nn.Module):
    """Post-norm block: attention + residual + LayerNorm, feed-forward + residual + LayerNorm."""

    def __init__(self, config):
        super().__init__()
        self.attention = MolformerSelfAttention(config)
        self.attention_output = nn.Linear(config.hidden_size, config.hidden_size)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACT2FN[config.hidden_act]
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.output_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden, key_mask=None):
        hidden = self.attention_norm(hidden + self.dropout(self.attention_output(self.attention(hidden, key_mask))))
        return self.output_norm(hidden + self.dropout(self.output(self.activation(self.intermediate(hidden)))))


class MolformerEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layer = nn.ModuleList(MolformerLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, hidden, key_mask=None):
        states = [hidden]
        for block in self.layer:
            hidden = block(hidden, key_mask)
            states.append(hidden)
        return states


class MolformerEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.dropout = nn.Dropout(config.embedding_dropout_prob)

    def forward(self, input_ids=None, inputs_embeds=None):
        return self.dropout(self.word_embeddings(input_ids) if inputs_embeds is None else inputs_embeds)


class MolformerPreTrainedModel(PreTrainedModel):
    config_class = MolformerConfig
    base_model_prefix = "molformer"

    @torch.no_grad()
    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            module.weight.normal_(0.0, std)
            module.bias.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.normal_(0.0, std)
            if module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()
        elif isinstance(module, MolformerFeatureMap):
            module.weight.copy_(module.draw(module.weight.device))


class MolformerModel(MolformerPreTrainedModel):
    """The encoder: token embeddings, linear-attention layers, a final LayerNorm and a mean pooler."""

    def __init__(self, config, add_pooling_layer=True):
        super().__init__(config)
        self.embeddings = MolformerEmbeddings(config)
        self.encoder = MolformerEncoder(config)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.add_pooling_layer = add_pooling_layer
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, output_hidden_states=None,
                return_dict=None):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        shape = input_ids.shape if input_ids is not None else inputs_embeds.shape[:-1]
        device = input_ids.device if input_ids is not None else inputs_embeds.device
        if attention_mask is None:
            attention_mask = torch.ones(shape, device=device, dtype=torch.long)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        states = self.encoder(self.embeddings(input_ids, inputs_embeds), attention_mask)
        last = self.LayerNorm(states[-1])
        pooled = None
        if self.add_pooling_layer:
            m = attention_mask.unsqueeze(-1).to(last.dtype)
            pooled = (last * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
        hidden_states = tuple(states) if output_hidden_states else None
        if return_dict is False:
            return tuple(x for x in (last, pooled, hidden_states) if x is not None)
        return BaseModelOutputWithPooling(last_hidden_state=last, pooler_output=pooled, hidden_states=hidden_states)
