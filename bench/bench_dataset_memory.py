"""Memory and construction time of GPTDatasetV1 against the book's version of the same dataset.

The book's ``GPTDatasetV1`` copies every window up front: two new tensors (inputs, targets) of ``max_length``
int64 ids per window. Ours keeps the token ids once, in one tensor, and slices windows out of it (views) when
they are asked for. Both are built here from the same precomputed token ids (The Verdict's 5,145 GPT-2
tokens, repeated to 1,000,000), so tokenization is not part of any measurement.

    python bench/bench_dataset_memory.py                      # 1,000,000 tokens, max_length 256, stride 1
    python bench/bench_dataset_memory.py --stride 128

What is measured, and how:

* tensor bytes: the bytes of the distinct tensor storages the dataset holds (exact, any platform);
* RSS delta: growth of the process's resident memory while the dataset is built and kept, read from
  /proc/self/statm after a garbage collection (Linux only). It includes what tensor bytes leave out
  (Python tensor objects, the lists holding them, allocator overhead) but is only accurate to a few MB.

The book's version with stride 1 would need about 4 GB for a million tokens, so it is built over the first
``--sample-windows`` windows only and its memory extrapolated linearly to the full window count (every
window costs the same, so this is proportional, not a guess about growth). Construction times compare the
two over that same sample.
"""

from __future__ import annotations

import argparse
import gc
import os
import time

import torch

from ch02_tokenizer.tokenizer import GPTDatasetV1
from shared.data import fetch, gpt2_encoding

MIB = 1024**2


class BookGPTDatasetV1:
    """The book's dataset construction: a list of new input tensors and one of target tensors."""

    def __init__(self, txt, tokenizer, max_length, stride):
        self.input_ids = []
        self.target_ids = []
        token_ids = tokenizer.encode(txt, allowed_special={"<|endoftext|>"})
        for i in range(0, len(token_ids) - max_length, stride):
            self.input_ids.append(torch.tensor(token_ids[i : i + max_length]))
            self.target_ids.append(torch.tensor(token_ids[i + 1 : i + max_length + 1]))

    def __len__(self):
        return len(self.input_ids)

    def __getitem__(self, idx):
        return self.input_ids[idx], self.target_ids[idx]


class PretokenizedText:
    """A tokenizer stand-in whose ``encode`` returns ids computed beforehand."""

    def __init__(self, ids):
        self.ids = ids

    def encode(self, text, allowed_special=()):
        return self.ids


def rss_bytes() -> int | None:
    """Resident set size of this process, or None where /proc is not available."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def tensor_bytes(dataset) -> int:
    """Bytes of the distinct tensor storages referenced by the dataset's attributes (and lists of them)."""
    storages = {}
    for value in vars(dataset).values():
        items = value if isinstance(value, (list, tuple)) else [value]
        for t in items:
            if isinstance(t, torch.Tensor):
                s = t.untyped_storage()
                storages[s.data_ptr()] = s.nbytes()
    return sum(storages.values())


def build(cls, ids, max_length, stride):
    """(dataset, seconds to build it, RSS growth in bytes or None)."""
    gc.collect()
    before = rss_bytes()
    start = time.perf_counter()
    dataset = cls("unused", PretokenizedText(ids), max_length, stride)
    seconds = time.perf_counter() - start
    gc.collect()
    after = rss_bytes()
    return dataset, seconds, None if before is None else after - before


def best_time(cls, ids, max_length, stride, repeats):
    """The fastest of ``repeats`` constructions (the least disturbed by other processes)."""
    return min(build(cls, ids, max_length, stride)[1] for _ in range(repeats))


def mib(num_bytes):
    return "n/a (no /proc)" if num_bytes is None else f"{num_bytes / MIB:,.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--sample-windows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3, help="constructions timed per variant (best kept)")
    args = parser.parse_args()
    max_length, stride = args.max_length, args.stride

    verdict = gpt2_encoding().encode(fetch("the-verdict.txt").read_text(encoding="utf-8"))
    ids = (verdict * (args.tokens // len(verdict) + 1))[: args.tokens]
    full_windows = len(range(0, len(ids) - max_length, stride))
    sample_windows = min(args.sample_windows, full_windows)
    # The shortest prefix of the ids that gives exactly `sample_windows` windows.
    sample_ids = ids[: (sample_windows - 1) * stride + max_length + 1]
    scale = full_windows / sample_windows
    print(f"{len(ids):,} token ids (The Verdict repeated), max_length={max_length}, stride={stride}")
    print(f"{full_windows:,} windows in all; the book's version is built over {sample_windows:,} of them")
    print(f"and its memory multiplied by {scale:,.2f} (linear: every window costs the same)\n")

    ours, ours_seconds, ours_rss = build(GPTDatasetV1, ids, max_length, stride)
    assert len(ours) == full_windows
    ours_bytes = tensor_bytes(ours)
    del ours

    book, _, book_rss = build(BookGPTDatasetV1, sample_ids, max_length, stride)
    assert len(book) == sample_windows
    book_bytes = tensor_bytes(book)
    del book
    gc.collect()
    book_bytes_full = book_bytes * scale
    book_rss_full = None if book_rss is None else book_rss * scale

    rows = [
        ("book (list of tensors, extrapolated)", mib(book_bytes_full), mib(book_rss_full)),
        ("GPTDatasetV1 (one tensor, views)", mib(ours_bytes), mib(ours_rss)),
    ]
    rss_ratio = "n/a"
    if book_rss_full is not None and ours_rss is not None and ours_rss > 0:
        rss_ratio = f"{book_rss_full / ours_rss:,.0f}x"
    rows.append(("ratio book / ours", f"{book_bytes_full / ours_bytes:,.0f}x", rss_ratio))
    print(f"{f'memory for all {full_windows:,} windows':40}{'tensor bytes':>14}   {'RSS delta':>14}")
    for label, tensor_col, rss_col in rows:
        print(f"  {label:38}{tensor_col:>14}   {rss_col:>14}")
    if ours_rss is not None:
        noise = ours_rss - ours_bytes
        print(f"  (RSS delta of GPTDatasetV1 minus its tensor bytes, the allocator's share: {mib(noise)})\n")
    else:
        print()

    book_seconds = best_time(BookGPTDatasetV1, sample_ids, max_length, stride, args.repeats)
    ours_sample_seconds = best_time(GPTDatasetV1, sample_ids, max_length, stride, args.repeats)
    print(f"construction over the same {sample_windows:,} windows (best of {args.repeats})")
    print(f"  book          {book_seconds * 1e3:9.1f} ms")
    print(f"  GPTDatasetV1  {ours_sample_seconds * 1e3:9.1f} ms")
    print(f"  ratio book / ours  {book_seconds / ours_sample_seconds:,.0f}x")
    print(f"  (GPTDatasetV1 over all {len(ids):,} tokens: {ours_seconds * 1e3:.1f} ms)\n")

    # The other side of the trade: ours slices on every access, the book's indexes a ready list.
    book = BookGPTDatasetV1("unused", PretokenizedText(sample_ids), max_length, stride)
    ours = GPTDatasetV1("unused", PretokenizedText(sample_ids), max_length, stride)
    access = {}
    for name, dataset in [("book", book), ("GPTDatasetV1", ours)]:
        start = time.perf_counter()
        for i in range(len(dataset)):
            dataset[i]
        access[name] = time.perf_counter() - start
    print(f"reading all {sample_windows:,} items once (one pass, no DataLoader)")
    for name, seconds in access.items():
        print(f"  {name:12}  {seconds * 1e3:9.1f} ms  ({seconds / sample_windows * 1e6:.2f} us per item)")
    print(
        f"  ratio ours / book  {access['GPTDatasetV1'] / access['book']:.1f}x (ours slices on every access)"
    )


if __name__ == "__main__":
    main()
