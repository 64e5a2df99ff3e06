"""Benchmark BPETokenizer (ch02_tokenizer/bpe.py) against baselines measured in the same process.

The text is the-verdict.txt, the SMS Spam Collection and instruction-data.json joined by ``<|endoftext|>``
(about 0.7 MB). Three measurements:

1. Training a 1,000-token vocabulary (256 bytes + 743 merges + ``<|endoftext|>``): the incremental trainer
   of ``BPETokenizer.train`` against the straightforward ``train_bpe_naive`` of the same module, which
   recounts every pair after every merge. Both work on the distinct pieces with their counts (the naive
   one would be far slower on the raw list of pieces), and the script checks that both learn the same
   merges in the same order.
2. Encoding the text with GPT-2's merges, in MB/s of UTF-8: ``tiktoken`` (Rust) against ``BPETokenizer``
   with a cold piece cache (every distinct piece goes through BPE) and a warm one (a second pass).
3. Peak memory of training (tracemalloc), as a multiple of the text's size (the naive trainer's too).

    python bench/bench_bpe.py                       # everything, the naive trainer in full (about a minute)
    python bench/bench_bpe.py --naive-merges 150    # naive trainer on the first 150 merges, extrapolated
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

from ch02_tokenizer.bpe import BPETokenizer, train_bpe_naive
from shared.data import fetch, gpt2_encoding

SPECIAL = "<|endoftext|>"
FILES = ["the-verdict.txt", "SMSSpamCollection", "instruction-data.json"]


def best_of(repeats: int, fn, setup=lambda: None) -> float:
    times = []
    for _ in range(repeats):
        setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vocab-size", type=int, default=1000)
    parser.add_argument(
        "--naive-merges", type=int, default=None, help="time the naive trainer on this many merges"
    )
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs for the fast timings")
    args = parser.parse_args()

    text = SPECIAL.join(fetch(name).read_text(encoding="utf-8") for name in FILES)
    n_bytes = len(text.encode("utf-8"))
    print(f"text: {' + '.join(FILES)}, {len(text):,} characters, {n_bytes / 1e6:.2f} MB as UTF-8")

    # 1. training speed
    n_merges = args.vocab_size - 257
    print(f"\ntraining a {args.vocab_size:,}-token vocabulary ({n_merges} merges + {SPECIAL}):")
    tok = BPETokenizer()
    fast_s = best_of(args.repeats, lambda: tok.train(text, args.vocab_size, special_tokens=[SPECIAL]))
    start = time.perf_counter()
    naive = train_bpe_naive(text, args.vocab_size, [SPECIAL], max_merges=args.naive_merges)
    naive_s = time.perf_counter() - start
    same_merges = sum(a == b for a, b in zip(naive, tok.merges, strict=False))  # compared, not assumed
    print(f"  incremental (BPETokenizer.train)     {fast_s:7.2f} s")
    if len(naive) < n_merges:
        per_merge = naive_s / len(naive)
        naive_s = per_merge * n_merges
        print(
            f"  naive, first {len(naive)} merges            {per_merge * len(naive):7.2f} s "
            f"-> {naive_s:.1f} s for {n_merges} merges, extrapolated at {per_merge * 1e3:.1f} ms per merge"
        )
    else:
        print(f"  naive (recounts all pairs per merge) {naive_s:7.2f} s")
    print(f"  merges equal at the same rank: {same_merges} of {len(naive)} compared")
    speedup = naive_s / fast_s
    print(f"  speed-up: {speedup:.0f}x ({'meets' if speedup >= 10 else 'MISSES'} the goal of at least 10x)")

    # 2. encoding speed
    print(f"\nencoding with GPT-2's merges (best of {args.repeats}):")
    reference = gpt2_encoding()
    gpt2 = BPETokenizer.from_gpt2_files(fetch("encoder.json"), fetch("vocab.bpe"))
    ids = gpt2.encode(text, allowed_special="all")
    reference_ids = reference.encode(text, allowed_special="all")
    differing = sum(a != b for a, b in zip(ids, reference_ids, strict=False)) + abs(
        len(ids) - len(reference_ids)
    )
    tik_s = best_of(args.repeats, lambda: reference.encode(text, allowed_special="all"))
    # cold: empty the piece cache before each run (private attribute; the benchmark's business only)
    cold_s = best_of(args.repeats, lambda: gpt2.encode(text, allowed_special="all"), setup=gpt2._cache.clear)
    warm_s = best_of(args.repeats, lambda: gpt2.encode(text, allowed_special="all"))
    mbps = {name: n_bytes / 1e6 / s for name, s in [("tiktoken", tik_s), ("cold", cold_s), ("warm", warm_s)]}
    print(f"  tiktoken (Rust)                 {mbps['tiktoken']:6.2f} MB/s")
    for kind in ["cold", "warm"]:
        ratio = mbps[kind] / mbps["tiktoken"]
        print(f"  BPETokenizer, {kind} piece cache  {mbps[kind]:6.2f} MB/s = {ratio:.2f}x tiktoken")
    cold_ratio = mbps["cold"] / mbps["tiktoken"]
    print(f"  {len(ids):,} tokens ({len(reference_ids):,} from tiktoken), {differing:,} positions differ")
    verdict = "meets" if cold_ratio >= 0.1 else "MISSES"
    print(f"  cold piece cache {cold_ratio:.2f}x tiktoken: {verdict} the goal of at least 0.1x")

    # 3. training memory (the naive trainer's peak, for scale, is reached in its first merges)
    peaks = {}
    for name, train in [
        ("incremental", lambda: BPETokenizer().train(text, args.vocab_size, special_tokens=[SPECIAL])),
        ("naive, 20 merges", lambda: train_bpe_naive(text, args.vocab_size, [SPECIAL], max_merges=20)),
    ]:
        tracemalloc.start()
        train()
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    print(f"\npeak memory while training (tracemalloc), text {n_bytes / 1e6:.2f} MB:")
    for name, peak in peaks.items():
        print(f"  {name:18s} {peak / 1e6:5.1f} MB = {peak / n_bytes:4.1f}x the text")


if __name__ == "__main__":
    main()
